//! Identity: JWT verification (HS256, RS256/ES256 from a PEM key, or a JWKS), API keys
//! (`pal_…`, looked up by their hash) and the [`Authenticator`] every transport asks who is
//! calling.

mod identity;
mod jwks;
pub mod keys;
mod token;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::config::JwtConfig;

pub use identity::{
    AuthRefusal, AuthUser, Authenticator, KeyGrant, KnownUsers, bearer, client_ip_of,
};
pub use token::{mint_hs256, parse_ttl};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Missing bearer token")]
    Missing,
    #[error("Token has expired")]
    Expired,
    #[error("Token is not valid yet")]
    NotYetValid,
    #[error("Token signature is invalid")]
    BadSignature,
    #[error("Token algorithm is not accepted")]
    BadAlgorithm,
    #[error("Token issuer or audience is not accepted")]
    BadClaims,
    #[error("Token is malformed")]
    Malformed,
    #[error("Token signing key is unknown")]
    UnknownKey,
    #[error("Incorrect API key provided")]
    UnknownApiKey,
    #[error("API key has been revoked")]
    RevokedApiKey,
    #[error("API key has expired")]
    ExpiredApiKey,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("JWT_PUBLIC_KEY: {0}")]
    PublicKey(String),
    #[error("JWT_JWKS_URL: {0}")]
    Jwks(String),
    #[error("no JWT verifier configured: set JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL")]
    Missing,
}

/// The claims Palaver reads; others are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
}

enum Keys {
    Static {
        key: DecodingKey,
        algorithm: Algorithm,
    },
    Jwks(jwks::JwksCache),
}

/// Verifies bearer tokens. Cheap to share behind an `Arc`.
pub struct JwtVerifier {
    keys: Keys,
    base: Validation,
}

impl JwtVerifier {
    /// Builds the verifier from configuration: a JWKS takes precedence over a PEM key,
    /// which takes precedence over a shared secret.
    pub async fn from_config(config: &JwtConfig) -> Result<Arc<JwtVerifier>, AuthConfigError> {
        let keys = if let Some(source) = &config.jwks_url {
            Keys::Jwks(jwks::JwksCache::load(source).await?)
        } else if let Some(pem) = &config.public_key {
            let (key, algorithm) = pem_key(pem)?;
            Keys::Static { key, algorithm }
        } else if let Some(secret) = &config.secret {
            Keys::Static {
                key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                algorithm: Algorithm::HS256,
            }
        } else {
            return Err(AuthConfigError::Missing);
        };
        let mut base = Validation::new(Algorithm::HS256);
        base.validate_nbf = true;
        base.leeway = config.leeway.as_secs();
        let mut required = vec!["exp", "sub"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        base.set_required_spec_claims(&required);
        match &config.issuer {
            Some(iss) => base.set_issuer(&[iss]),
            None => base.iss = None,
        }
        match &config.audience {
            Some(aud) => base.set_audience(&[aud]),
            None => base.validate_aud = false,
        }
        Ok(Arc::new(JwtVerifier { keys, base }))
    }

    /// Verifies a token and returns its claims. Only the configured algorithm is accepted,
    /// so `alg: none` and algorithm switching are refused.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let (key, algorithm) = match &self.keys {
            Keys::Static { key, algorithm } => (key.clone(), *algorithm),
            Keys::Jwks(cache) => cache.key_for(header.kid.as_deref()).await?,
        };
        if header.alg != algorithm {
            return Err(AuthError::BadAlgorithm);
        }
        let mut validation = self.base.clone();
        validation.algorithms = vec![algorithm];
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(map_jwt_error)?;
        if data.claims.sub.trim().is_empty() {
            return Err(AuthError::BadClaims);
        }
        Ok(data.claims)
    }
}

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::BadAlgorithm,
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience | ErrorKind::InvalidSubject => {
            AuthError::BadClaims
        }
        ErrorKind::MissingRequiredClaim(_) => AuthError::BadClaims,
        _ => AuthError::Malformed,
    }
}

/// A PEM public key, inline (with real or `\n`-escaped newlines) or as a file path.
fn pem_key(value: &str) -> Result<(DecodingKey, Algorithm), AuthConfigError> {
    let pem = if value.contains("-----BEGIN") {
        value.replace("\\n", "\n")
    } else {
        std::fs::read_to_string(value)
            .map_err(|e| AuthConfigError::PublicKey(format!("cannot read file `{value}`: {e}")))?
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok((key, Algorithm::ES256));
    }
    Err(AuthConfigError::PublicKey(
        "not an RSA or EC (P-256) public key in PEM form".into(),
    ))
}
