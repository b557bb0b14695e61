//! `POST /ai/chat` (plain, or SSE with `stream: true`), `POST /ai/embeddings`, `GET /ai/usage`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::dto::rfc3339;
use super::events;
use super::extract::ApiJson;
use crate::auth::AuthUser;
use crate::config::DisconnectPolicy;
use crate::error::{ApiError, ErrorBody};
use crate::service::{ChatEvent, ChatInput, ChatMode, ChatOutcome, ChatSink, ServiceError};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat))
}

#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct ChatRequest {
    /// The user's message, 1 to 32000 characters.
    #[garde(length(chars, min = 1, max = 32000), custom(not_blank))]
    pub message: String,
    /// Continue this conversation; a new one is created when absent.
    #[garde(skip)]
    pub conversation_id: Option<Uuid>,
    /// Defaults to `OPENAI_MODEL`; `claude-*`, `gemini-*` or `provider/model` route elsewhere.
    #[garde(length(min = 1, max = 200))]
    pub model: Option<String>,
    /// 1 to 8000, default 4096.
    #[garde(range(min = 1, max = 8000))]
    pub max_tokens: Option<u32>,
    /// 0 to 2, default 0.7; 0 is a real value.
    #[garde(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    #[garde(length(chars, max = 32000))]
    pub system_prompt: Option<String>,
    /// Answer as `text/event-stream` with the Socket.IO event names.
    #[garde(skip)]
    pub stream: Option<bool>,
    /// Sent by old clients; ignored (identity comes from the token).
    #[garde(skip)]
    #[schema(value_type = Option<String>, deprecated)]
    pub user_id: Option<serde_json::Value>,
}

fn not_blank(value: &str, _: &()) -> garde::Result {
    if value.trim().is_empty() {
        Err(garde::Error::new("must not be blank"))
    } else {
        Ok(())
    }
}

impl ChatRequest {
    pub fn into_input(self) -> ChatInput {
        ChatInput {
            conversation_id: self.conversation_id,
            message: self.message,
            model: self.model,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            system_prompt: self.system_prompt,
        }
    }
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

/// Send a message and get the reply; with `stream: true`, a server-sent event stream.
#[utoipa::path(post, path = "/ai/chat", tag = "chat", request_body = ChatRequest,
    responses(
        (status = 200, description = "The reply (or an event stream with `stream: true`)", body = ChatResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
async fn chat(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let streaming = body.stream.unwrap_or(false);
    let input = body.into_input();
    if streaming {
        return stream_chat(state, user, input).await;
    }
    // In a task of its own: a client that goes away mid-call does not cancel the exchange,
    // so the reply (or the failure) and its usage are still stored.
    let chat = state.chat.clone();
    let outcome = state
        .tasks
        .spawn(async move { chat.chat(&user.id, input, ChatMode::Plain).await })
        .await
        .map_err(ApiError::internal)?
        .map_err(|f| ApiError::from(f.error))?;
    Ok(Json(ChatResponse::from(&outcome)).into_response())
}

/// Forwards pipeline events into the SSE response.
struct ChannelSink(mpsc::UnboundedSender<Event>);

impl ChatSink for ChannelSink {
    fn emit(&self, event: ChatEvent<'_>) {
        let event = match events::wire(event) {
            events::Wire::Chunk(chunk) => Event::default()
                .event(events::MESSAGE)
                .json_data(&chunk)
                .unwrap_or_default(),
            events::Wire::Other(name, payload) => sse_event(name, &payload),
        };
        let _ = self.0.send(event);
    }
}

fn sse_event(name: &str, payload: &serde_json::Value) -> Event {
    Event::default().event(name).data(payload.to_string())
}

/// Runs the exchange in its own task, so a client that goes away does not lose the reply:
/// with `STREAM_ON_DISCONNECT=finish` it is generated to the end and stored, with `stop`
/// the upstream call is cancelled and the partial reply stored.
async fn stream_chat(
    state: AppState,
    user: AuthUser,
    input: ChatInput,
) -> Result<Response, ApiError> {
    let prepared = state
        .chat
        .prepare(&user.id, &input)
        .await
        .map_err(|f| ApiError::from(f.error))?;
    let claim = state
        .streams
        .claim(prepared.conversation.id, &user.id)
        .ok_or(ApiError::from(ServiceError::Busy))?;
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let chat = state.chat.clone();
    let policy = state.config.stream_on_disconnect;
    state.tasks.spawn(async move {
        let cancel = claim.cancel.clone();
        let done = tokio_util::sync::CancellationToken::new();
        // Notices a client that went away even while no chunk is being sent.
        let watcher = {
            let (tx, cancel, done) = (tx.clone(), cancel.clone(), done.clone());
            async move {
                tokio::select! {
                    () = tx.closed() => if policy == DisconnectPolicy::Stop { cancel.cancel() },
                    () = done.cancelled() => {}
                }
            }
        };
        tokio::spawn(watcher);
        let sink = ChannelSink(tx.clone());
        let result = chat
            .run(
                &user.id,
                prepared,
                input,
                ChatMode::Stream {
                    sink: &sink,
                    cancel,
                },
            )
            .await;
        done.cancel();
        let (name, payload) = match result {
            Ok(outcome) => events::finished(&outcome),
            Err(failure) => events::failed(failure),
        };
        let _ = tx.send(sse_event(name, &payload));
        drop(claim);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keep-alive"),
        )
        .into_response())
}
