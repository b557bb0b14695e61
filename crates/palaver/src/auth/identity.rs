//! Who is calling: the bearer token (a JWT or an API key) verified, failures throttled per
//! IP, the user row made.

use std::collections::HashSet;
use std::sync::Mutex;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{AuthError, JwtVerifier, keys};
use crate::limits::RateLimiter;
use crate::store::{self, Store, StoreError};

/// The authenticated caller: the token's `sub`, or the owner of the API key used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: String,
    /// The API key the caller authenticated with; `None` for a JWT.
    pub key: Option<KeyGrant>,
}

/// What an API key grants beyond its owner's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub id: uuid::Uuid,
    /// The models the key may use; `None`: every model.
    pub models: Option<Vec<String>>,
    /// The key's own rate limit (requests per minute), on top of its user's.
    pub rate_limit_per_minute: Option<u32>,
    /// The key's own daily token quota, on top of its user's.
    pub token_quota_per_day: Option<i64>,
}

/// Put in request extensions by the REST middleware; a handler that names it gets it.
impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = AuthRefusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthUser>()
            .cloned()
            .ok_or_else(|| AuthRefusal::Unauthorized(AuthError::Missing.to_string()))
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// Too many failed attempts from the caller's IP: refused before any verification.
    #[error("Too many failed attempts: retry in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// No token, or one that does not verify (the reason says which).
    #[error("{0}")]
    Unauthorized(String),
    /// The limiter or the store could not be reached.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// Authenticates callers for every transport (REST middleware, Socket.IO handshake):
/// verifies the token, counts failures per client IP, and creates the user row on first sight.
pub struct Authenticator {
    verifier: Arc<JwtVerifier>,
    failures: Arc<RateLimiter>,
    store: Arc<dyn Store>,
    known_users: KnownUsers,
}

impl Authenticator {
    pub fn new(
        verifier: Arc<JwtVerifier>,
        failures: Arc<RateLimiter>,
        store: Arc<dyn Store>,
    ) -> Self {
        Authenticator {
            verifier,
            failures,
            store,
            known_users: KnownUsers::default(),
        }
    }

    /// The caller behind `token`, or why not. Failed attempts are counted per client IP;
    /// past the limit the IP is throttled before any verification, so token guessing is too.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        ip: &str,
    ) -> Result<AuthUser, AuthRefusal> {
        let blocked = self
            .failures
            .peek(ip)
            .await
            .map_err(|e| AuthRefusal::Unavailable(e.to_string()))?;
        if !blocked.allowed {
            return Err(AuthRefusal::Throttled {
                retry_after_secs: blocked.retry_after_secs(),
            });
        }
        let verified = match token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(secret) if keys::is_api_key(secret) => self.key_owner(secret).await?,
            Some(token) => self.verifier.verify(token).await.map(|claims| AuthUser {
                id: claims.sub,
                key: None,
            }),
            None => Err(AuthError::Missing),
        };
        let user = match verified {
            Ok(user) => user,
            Err(error) => return Err(self.failed(ip, error).await),
        };
        self.known_users
            .ensure(self.store.as_ref(), &user.id)
            .await
            .map_err(|e| AuthRefusal::Unavailable(e.to_string()))?;
        Ok(user)
    }

    /// The owner of an API key, by the hash of its secret (one indexed read: a revoked key
    /// is refused on its next request, on every instance); `Err` when the store fails.
    async fn key_owner(&self, secret: &str) -> Result<Result<AuthUser, AuthError>, AuthRefusal> {
        let found = self
            .store
            .api_key_by_hash(&keys::hash_secret(secret))
            .await
            .map_err(|e| AuthRefusal::Unavailable(e.to_string()))?;
        let Some(key) = found else {
            return Ok(Err(AuthError::UnknownApiKey));
        };
        if key.revoked_at.is_some() {
            return Ok(Err(AuthError::RevokedApiKey));
        }
        if !key.is_usable(store::now()) {
            return Ok(Err(AuthError::ExpiredApiKey));
        }
        Ok(Ok(AuthUser {
            id: key.user_id,
            key: Some(KeyGrant {
                id: key.id,
                models: key.models,
                rate_limit_per_minute: key
                    .rate_limit_per_minute
                    .and_then(|n| u32::try_from(n).ok()),
                token_quota_per_day: key.token_quota_per_day,
            }),
        }))
    }

    /// Counts a failed authentication for `ip`: unauthorized, or throttled once over the limit.
    async fn failed(&self, ip: &str, error: AuthError) -> AuthRefusal {
        match self.failures.check(ip).await {
            Ok(decision) if !decision.allowed => AuthRefusal::Throttled {
                retry_after_secs: decision.retry_after_secs(),
            },
            _ => AuthRefusal::Unauthorized(error.to_string()),
        }
    }
}

/// The client's IP: the peer address, or the first `X-Forwarded-For` hop behind a trusted proxy.
pub fn client_ip_of(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    trust_forwarded_for: bool,
) -> String {
    if trust_forwarded_for
        && let Some(first) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
    {
        return first.trim().to_owned();
    }
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `Bearer <token>`, scheme case-insensitive.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let header = header?.trim();
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Users this process has already made sure exist, so the hot path skips the write.
/// Losing it costs one idempotent insert per user, so it is not shared state.
#[derive(Default)]
pub struct KnownUsers(Mutex<HashSet<String>>);

const KNOWN_USERS_CAP: usize = 100_000;

impl KnownUsers {
    pub async fn ensure(&self, store: &dyn Store, user_id: &str) -> Result<(), StoreError> {
        if self
            .0
            .lock()
            .map(|set| set.contains(user_id))
            .unwrap_or(false)
        {
            return Ok(());
        }
        store.ensure_user(user_id, store::now()).await?;
        if let Ok(mut set) = self.0.lock() {
            if set.len() >= KNOWN_USERS_CAP {
                set.clear();
            }
            set.insert(user_id.to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
