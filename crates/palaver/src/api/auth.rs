//! The bearer-token middleware applied to every route under `/api/v1`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::{bearer, client_ip_of};
use crate::error::ApiError;
use crate::state::AppState;

/// Authenticates the request and attaches its [`crate::auth::AuthUser`]; 401, or 429 for an
/// IP over its limit of failed attempts.
pub async fn require_auth(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = client_ip_of(
        request.headers(),
        request.extensions(),
        state.config.trust_forwarded_for,
    );
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = state.auth.authenticate(bearer(header), &ip).await?;
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}
