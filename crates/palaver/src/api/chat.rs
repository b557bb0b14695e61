//! `POST /ai/chat`: plain, or server-sent events with `stream: true`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::ApiJson;
use super::sse::sse_event;
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::ChatRequest;
use crate::protocol::dto::rfc3339;
use crate::service::chat::runs::Logged;
use crate::service::{Attribution, ChatEvent, ChatInput, ChatOutcome, ChatSink, ExchangeOptions};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageDto {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatResponse {
    pub conversation_id: Uuid,
    /// The run this exchange was (`GET /ai/runs/{id}`).
    pub run_id: Uuid,
    /// The stored assistant message.
    pub message_id: Uuid,
    pub content: String,
    pub model: String,
    /// Tokens of the whole exchange (prompt + completion).
    pub tokens: u32,
    pub created_at: String,
    pub user_message_id: Uuid,
    pub finish_reason: String,
    pub usage: UsageDto,
}

impl From<&ChatOutcome> for ChatResponse {
    fn from(o: &ChatOutcome) -> Self {
        ChatResponse {
            conversation_id: o.conversation.id,
            run_id: o.run_id,
            message_id: o.reply.id,
            content: o.reply.content.clone(),
            model: o.model.clone(),
            tokens: o.total_tokens(),
            created_at: rfc3339(&o.reply.created_at),
            user_message_id: o.user_message.id,
            finish_reason: o.finish_reason.clone(),
            usage: UsageDto {
                prompt_tokens: o.usage.prompt_tokens,
                completion_tokens: o.usage.completion_tokens,
                total_tokens: o.total_tokens(),
            },
        }
    }
}

/// Send a message and get the reply; with `stream: true`, a server-sent event stream. With an
/// `Idempotency-Key` header (or `clientRequestId`) that an earlier request of the caller
/// used, nothing new is started: the earlier run answers (its stored reply, or its events
/// from the first), with `Idempotent-Replayed: true`.
#[utoipa::path(post, path = "/ai/chat", tag = "chat", request_body = ChatRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "The client's key of this request, 1 to 200 visible ASCII characters"),
        ("Cache-Control" = Option<String>, Header, description = "`no-cache` skips the response cache (as `cache: false`)"),
    ),
    responses(
        (status = 200, description = "The reply (or an event stream with `stream: true`)", body = ChatResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
async fn chat(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let streaming = body.stream.unwrap_or(false);
    let mut input = body.into_input();
    input.attribution = Attribution::of(&user, None);
    if let Some(key) = idempotency_key(&headers)? {
        input.client_request_id = Some(key);
    }
    if no_cache(&headers) {
        input.cache = Some(false);
    }
    // Sent again with the key of an earlier request: the run that one started answers.
    if let Some(run) = state.chat.keyed_run(&user.id, &input).await? {
        let mut response = if streaming {
            super::sse::events_response(&state, &user.id, run.id, 0).await?
        } else {
            let outcome = state.chat.outcome_of(&user.id, run).await?;
            Json(ChatResponse::from(&outcome)).into_response()
        };
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(response);
    }
    answer(&state, &user, input, ExchangeOptions::default(), streaming).await
}

/// Whether `Cache-Control` says `no-cache` (or `no-store`): the response cache is skipped.
fn no_cache(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            matches!(
                d.trim().to_ascii_lowercase().as_str(),
                "no-cache" | "no-store"
            )
        })
}

/// The `Idempotency-Key` header: 1 to 200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=200).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_owned()))
        }
        _ => Err(ApiError::validation(
            "Idempotency-Key",
            "must be 1 to 200 visible ASCII characters",
        )),
    }
}

/// Runs an exchange and answers it: in one piece ([`ChatResponse`]), or streamed.
pub(super) async fn answer(
    state: &AppState,
    user: &AuthUser,
    input: ChatInput,
    options: ExchangeOptions,
    streaming: bool,
) -> Result<Response, ApiError> {
    if streaming {
        return stream_chat(state, user, input, options).await;
    }
    let outcome = state
        .chat
        .chat(&user.id, input, options)
        .await
        .map_err(|f| ApiError::from(f.error))?;
    Ok(Json(ChatResponse::from(&outcome)).into_response())
}

/// Streams the exchange as server-sent events named like the Socket.IO events. The exchange
/// runs on its own: a client that goes away does not lose the reply (`STREAM_ON_DISCONNECT`).
async fn stream_chat(
    state: &AppState,
    user: &AuthUser,
    input: ChatInput,
    options: ExchangeOptions,
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let sink = Arc::new(SseSink(tx));
    state
        .chat
        .start_stream(&user.id, input, sink, options)
        .await
        .map_err(|f| ApiError::from(f.error))?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(super::sse::keep_alive(state))
        .into_response())
}

/// Forwards pipeline events into the SSE response.
struct SseSink(mpsc::UnboundedSender<Event>);

impl ChatSink for SseSink {
    fn emit(&self, _: ChatEvent<'_>, logged: &Logged) {
        let _ = self.0.send(sse_event(logged));
    }

    /// The response body is dropped when the client goes away.
    fn closed(&self) -> BoxFuture<'static, ()> {
        let tx = self.0.clone();
        Box::pin(async move { tx.closed().await })
    }
}
