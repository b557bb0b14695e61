//! How tokens are verified: `JWT_*`.

use std::time::Duration;

use secrecy::SecretString;

use super::ConfigError;
use super::env::Env;

#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    pub secret: Option<SecretString>,
    /// A PEM public key (RSA or EC P-256), given inline or as a file path.
    pub public_key: Option<String>,
    /// A JWKS document: an `http(s)://` URL, a `file://` URL or a path.
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
}

impl JwtConfig {
    pub fn has_verifier(&self) -> bool {
        self.secret.is_some() || self.public_key.is_some() || self.jwks_url.is_some()
    }
}

pub(super) fn jwt(env: &Env) -> Result<JwtConfig, ConfigError> {
    Ok(JwtConfig {
        secret: env
            .get("JWT_SECRET")
            .map(|s| SecretString::from(s.to_owned())),
        public_key: env.get("JWT_PUBLIC_KEY").map(str::to_owned),
        jwks_url: env.get("JWT_JWKS_URL").map(str::to_owned),
        issuer: env.get("JWT_ISSUER").map(str::to_owned),
        audience: env.get("JWT_AUDIENCE").map(str::to_owned),
        leeway: Duration::from_secs(env.parse("JWT_LEEWAY_SECS", 30)?),
    })
}
