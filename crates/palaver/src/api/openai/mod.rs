//! The OpenAI-compatible surface (`/v1`, same port): chat completions, embeddings and the
//! model list, for the official SDKs and OpenAI-speaking tools. It only translates: the chat
//! pipeline, the embeddings service and the model list answer; authentication (a JWT or an
//! API key), rate limits and quotas are those of `/api/v1`. Every error is in OpenAI's shape.

mod chat;
mod embeddings;
mod errors;
mod models;
mod stream;
mod wire;

use axum::Router;
use axum::routing::any;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use errors::openai_errors;

use crate::error::ApiError;
use crate::state::AppState;

/// The `/v1` routes that cost money (rate limited).
pub fn metered() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat::chat_completions))
        .routes(routes!(embeddings::embeddings))
}

/// The other `/v1` routes.
pub fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(models::list_models))
        .routes(routes!(models::get_model))
}

/// Any other `/v1` path: 404, in OpenAI's shape.
pub fn unknown() -> Router<AppState> {
    Router::new().route(
        "/v1/{*rest}",
        any(|| async { ApiError::NotFound("Unknown /v1 route".into()) }),
    )
}
