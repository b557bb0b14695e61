//! A JWKS (from a URL or a file), cached and refreshed when a token names an unknown key.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::RwLock;

use super::{AuthConfigError, AuthError};

/// Refetch an unknown `kid` at most this often, so forged kids cannot hammer the JWKS host.
const MIN_REFRESH: Duration = Duration::from_secs(30);

type KeyMap = HashMap<Option<String>, (DecodingKey, Algorithm)>;

pub(super) struct JwksCache {
    source: String,
    state: RwLock<(KeyMap, Instant)>,
}

impl JwksCache {
    pub(super) async fn load(source: &str) -> Result<JwksCache, AuthConfigError> {
        let keys = fetch(source).await?;
        Ok(JwksCache {
            source: source.to_owned(),
            state: RwLock::new((keys, Instant::now())),
        })
    }

    pub(super) async fn key_for(
        &self,
        kid: Option<&str>,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some(found) = lookup(&self.state.read().await.0, kid) {
            return Ok(found);
        }
        let mut state = self.state.write().await;
        if state.1.elapsed() >= MIN_REFRESH {
            match fetch(&self.source).await {
                Ok(keys) => *state = (keys, Instant::now()),
                Err(err) => {
                    tracing::warn!(error = %err, "JWKS refresh failed");
                    state.1 = Instant::now();
                }
            }
        }
        lookup(&state.0, kid).ok_or(AuthError::UnknownKey)
    }
}

fn lookup(keys: &KeyMap, kid: Option<&str>) -> Option<(DecodingKey, Algorithm)> {
    match kid {
        Some(kid) => keys.get(&Some(kid.to_owned())).cloned(),
        // No kid in the token: acceptable only when the set holds exactly one key.
        None if keys.len() == 1 => keys.values().next().cloned(),
        None => None,
    }
}

async fn fetch(source: &str) -> Result<KeyMap, AuthConfigError> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let response = reqwest::Client::new()
            .get(source)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthConfigError::Jwks(format!("cannot fetch: {e}")))?;
        response
            .text()
            .await
            .map_err(|e| AuthConfigError::Jwks(format!("cannot read: {e}")))?
    } else {
        let path = source.strip_prefix("file://").unwrap_or(source);
        std::fs::read_to_string(path)
            .map_err(|e| AuthConfigError::Jwks(format!("cannot read `{path}`: {e}")))?
    };
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| AuthConfigError::Jwks(format!("not a JWKS: {e}")))?;
    let mut keys = KeyMap::new();
    for jwk in &set.keys {
        match key_of(jwk) {
            Some(entry) => {
                keys.insert(jwk.common.key_id.clone(), entry);
            }
            None => {
                tracing::warn!(kid = ?jwk.common.key_id, "skipping a JWKS key that is not RSA or EC P-256")
            }
        }
    }
    if keys.is_empty() {
        return Err(AuthConfigError::Jwks(
            "the set holds no usable RSA or EC key".into(),
        ));
    }
    Ok(keys)
}

/// Asymmetric keys only; the algorithm is the key's own `alg`, or the type's default.
fn key_of(jwk: &Jwk) -> Option<(DecodingKey, Algorithm)> {
    let default = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
        _ => return None,
    };
    let algorithm = match &jwk.common.key_algorithm {
        Some(alg) => Algorithm::from_str(&alg.to_string()).ok()?,
        None => default,
    };
    if matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return None;
    }
    Some((DecodingKey::from_jwk(jwk).ok()?, algorithm))
}
