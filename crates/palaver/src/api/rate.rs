//! The per-user rate limit on the routes that cost money, as REST reports it: the service
//! decides ([`crate::service::Admission`]), every answer carries the `RateLimit-*` headers.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::service::Admission;
use crate::state::AppState;

pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(user) = request.extensions().get::<AuthUser>().cloned() else {
        return ApiError::Unauthorized("Missing bearer token".into()).into_response();
    };
    let key = user
        .key
        .as_ref()
        .and_then(|k| k.rate_limit_per_minute.map(|n| (k.id, n)));
    let decision = match state.admission.decide_with_key(&user.id, key).await {
        Ok(decision) => decision,
        Err(err) => return ApiError::from(err).into_response(),
    };
    let mut response = match Admission::verdict(&decision) {
        Ok(()) => next.run(request).await,
        Err(refused) => ApiError::from(refused).into_response(),
    };
    decision.apply_headers(response.headers_mut(), state.admission.rate_window());
    response
}
