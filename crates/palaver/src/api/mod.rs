//! The HTTP surface: routes, the OpenAPI document and the middleware stack.

mod auth;
pub mod chat;
mod conversations;
mod docs;
mod embeddings;
pub mod extract;
mod health;
mod jobs;
mod keys;
mod messages;
pub mod openai;
mod rate;
mod runs;
mod sse;
mod templates;
mod transfer;
mod usage;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use self::auth::require_auth;
use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;
pub use crate::telemetry::REQUEST_ID;

#[derive(OpenApi)]
#[openapi(
    info(title = "Palaver", description = "Self-hosted AI conversation backend: conversations, chat, streaming, jobs and usage."),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "chat", description = "Chat (plain or streamed) and embeddings"),
        (name = "conversations", description = "Per-user conversations and their messages"),
        (name = "templates", description = "Per-user prompt templates, every version kept"),
        (name = "usage", description = "Usage, cost and limits"),
        (name = "jobs", description = "Background jobs (the `ai-tasks` queue)"),
        (name = "keys", description = "API keys (`pal_…`) for OpenAI-compatible clients"),
        (name = "openai", description = "The OpenAI-compatible surface (`/v1`): a JWT or an API key, errors in OpenAI's shape"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

/// The bearer security scheme, declared once; every operation uses it unless it opts out.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT, or a Palaver API key (pal_…)".to_owned());
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Routes that need a bearer token and cost money: they count against the rate limit.
fn metered() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().nest(
        "/api/v1",
        chat::router()
            .merge(embeddings::router())
            .merge(jobs::metered_router())
            .merge(messages::metered_router()),
    )
}

/// Routes that need a bearer token (the rest of `/api/v1`).
fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().nest(
        "/api/v1",
        conversations::router()
            .merge(transfer::router())
            .merge(messages::router())
            .merge(runs::router())
            .merge(usage::router())
            .merge(templates::router())
            .merge(keys::router())
            .merge(jobs::router()),
    )
}

/// Routes open to everyone.
fn public() -> OpenApiRouter<AppState> {
    health::router()
}

/// The OpenAPI document, generated from the code.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(metered().into_openapi());
    doc.merge(protected().into_openapi());
    doc.merge(public().into_openapi());
    doc.merge(openai::metered().into_openapi());
    doc.merge(openai::protected().into_openapi());
    doc
}

/// The whole HTTP module as one router (no Socket.IO): nest it in a host app or serve it.
pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    with_middleware(routes(state), &config)
}

/// The routes, without the middleware stack ([`with_middleware`] adds it).
pub fn routes(state: AppState) -> Router {
    let (metered, _) = metered().split_for_parts();
    let metered = metered.route_layer(from_fn_with_state(state.clone(), rate::rate_limit));
    let (protected, _) = protected().split_for_parts();
    let protected = protected
        .merge(metered)
        .route_layer(from_fn_with_state(state.clone(), require_auth));
    let (public, _) = public().split_for_parts();
    let v1 = openai_routes(&state);
    let openapi_json = openapi().to_json().unwrap_or_else(|_| "{}".to_owned());
    Router::new()
        .merge(protected)
        .merge(v1)
        .merge(public)
        .merge(docs::router(openapi_json))
        .fallback(|| async { ApiError::NotFound("Route not found".into()) })
        .with_state(state)
}

/// The OpenAI-compatible `/v1` routes: the same authentication and rate limit as
/// `/api/v1`, errors rewritten in OpenAI's shape.
fn openai_routes(state: &AppState) -> Router<AppState> {
    let (metered, _) = openai::metered().split_for_parts();
    let metered = metered.route_layer(from_fn_with_state(state.clone(), rate::rate_limit));
    let (protected, _) = openai::protected().split_for_parts();
    protected
        .merge(metered)
        .merge(openai::unknown())
        .route_layer(from_fn_with_state(state.clone(), require_auth))
        .layer(from_fn(openai::openai_errors))
}

/// Error envelope, body limit, metrics, tracing, request ids and CORS.
pub fn with_middleware(router: Router, config: &Config) -> Router {
    let body_limit = config.body_limit_bytes;
    router
        .layer(from_fn(crate::error::error_envelope))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(extract::BodyLimit(body_limit)))
        .layer(from_fn(crate::telemetry::record_http_metrics))
        .layer(crate::telemetry::http_trace_layer())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(cors(&config.cors_origins))
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            REQUEST_ID,
            HeaderName::from_static("x-conversation-id"),
            HeaderName::from_static("x-openwebui-user-id"),
        ])
        .expose_headers([
            REQUEST_ID,
            header::RETRY_AFTER,
            HeaderName::from_static("x-palaver-ignored-params"),
            HeaderName::from_static("x-palaver-conversation-id"),
        ]);
    if origins.iter().any(|o| o == "*") {
        layer
    } else {
        layer.allow_credentials(true)
    }
}
