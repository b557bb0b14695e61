//! Who is calling: the bearer token verified, failures throttled per IP, the user row made.

use std::collections::HashSet;
use std::sync::Mutex;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{AuthError, JwtVerifier};
use crate::limits::RateLimiter;
use crate::store::{self, Store, StoreError};

/// The authenticated caller: the token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: String,
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
            Some(token) => self.verifier.verify(token).await,
            None => Err(AuthError::Missing),
        };
        let claims = match verified {
            Ok(claims) => claims,
            Err(error) => return Err(self.failed(ip, error).await),
        };
        self.known_users
            .ensure(self.store.as_ref(), &claims.sub)
            .await
            .map_err(|e| AuthRefusal::Unavailable(e.to_string()))?;
        Ok(AuthUser { id: claims.sub })
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
