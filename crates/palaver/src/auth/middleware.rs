//! The bearer-token middleware applied to every route under `/api/v1`.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{self, Store};

/// The authenticated caller: the token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthUser>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("Missing bearer token".into()))
    }
}

/// Verifies the bearer token, creates the user row on first sight and attaches [`AuthUser`].
/// Failed attempts are counted per client IP; past the limit the IP gets 429 instead of
/// 401, before any verification, so token guessing is throttled.
pub async fn require_auth(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = client_ip(&request, state.config.trust_forwarded_for);
    let blocked = state
        .auth_failures
        .peek(&ip)
        .await
        .map_err(ApiError::internal)?;
    if !blocked.allowed {
        return Err(ApiError::RateLimited {
            retry_after_secs: blocked.retry_after_secs(),
        });
    }
    let token = bearer(
        request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let verified = match token {
        Some(token) => state
            .verifier
            .verify(token)
            .await
            .map_err(|e| e.to_string()),
        None => Err("Missing bearer token".to_owned()),
    };
    let claims = match verified {
        Ok(claims) => claims,
        Err(message) => return Err(auth_failed(&state, &ip, message).await),
    };
    state
        .known_users
        .ensure(state.store.as_ref(), &claims.sub)
        .await?;
    request.extensions_mut().insert(AuthUser { id: claims.sub });
    Ok(next.run(request).await)
}

/// Counts a failed authentication for `ip`: 401, or 429 once the IP is over its limit.
pub async fn auth_failed(state: &AppState, ip: &str, message: String) -> ApiError {
    match state.auth_failures.check(ip).await {
        Ok(decision) if !decision.allowed => ApiError::RateLimited {
            retry_after_secs: decision.retry_after_secs(),
        },
        _ => ApiError::Unauthorized(message),
    }
}

/// The client's IP: the peer address, or the first `X-Forwarded-For` hop behind a trusted proxy.
pub fn client_ip<B>(request: &axum::http::Request<B>, trust_forwarded_for: bool) -> String {
    client_ip_of(request.headers(), request.extensions(), trust_forwarded_for)
}

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
    pub async fn ensure(&self, store: &dyn Store, user_id: &str) -> Result<(), ApiError> {
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
