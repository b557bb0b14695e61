//! The HTTP side of limits: the per-user rate limit on the AI endpoints that cost money.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Counts the request against the caller's limit; every answer carries the `RateLimit` headers.
pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(user) = request.extensions().get::<AuthUser>().cloned() else {
        return ApiError::Unauthorized("Missing bearer token".into()).into_response();
    };
    let decision = match state.limiter.check(&user.id).await {
        Ok(d) => d,
        Err(err) => return ApiError::internal(err).into_response(),
    };
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        ApiError::RateLimited {
            retry_after_secs: decision.retry_after_secs(),
        }
        .into_response()
    };
    decision.apply_headers(response.headers_mut(), state.limiter.rate().period);
    response
}
