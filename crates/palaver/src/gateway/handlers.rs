//! Socket.IO handlers: they translate between events and the chat pipeline, nothing more.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::user_room;
use crate::api::chat::ChatRequest;
use crate::api::events;
use crate::api::extract::from_value;
use crate::auth::{AuthUser, auth_failed, bearer, client_ip_of};
use crate::config::DisconnectPolicy;
use crate::error::ApiError;
use crate::service::{ChatEvent, ChatMode, ChatSink, ServiceError};
use crate::state::AppState;

/// Why a handshake was refused: the message reaches the client as `connect_error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// Handshake middleware: `auth.token` must be a valid JWT.
pub async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(auth): TryData<Value>,
    State(state): State<AppState>,
) -> Result<(), Refused> {
    let parts = socket.req_parts();
    let ip = client_ip_of(
        &parts.headers,
        &parts.extensions,
        state.config.trust_forwarded_for,
    );
    if let Ok(blocked) = state.auth_failures.peek(&ip).await
        && !blocked.allowed
    {
        return Err(Refused(format!(
            "Too many failed attempts: retry in {} s",
            blocked.retry_after_secs()
        )));
    }
    let raw = auth
        .ok()
        .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
    let verified = match raw.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => Err("missing token (connect with auth: { token })".to_owned()),
        Some(raw) => state
            .verifier
            .verify(bearer(Some(raw)).unwrap_or(raw))
            .await
            .map_err(|e| e.to_string()),
    };
    let claims = match verified {
        Ok(claims) => claims,
        Err(message) => {
            return Err(match auth_failed(&state, &ip, message).await {
                ApiError::RateLimited { retry_after_secs } => Refused(format!(
                    "Too many failed attempts: retry in {retry_after_secs} s"
                )),
                other => Refused(format!("Unauthorized: {}", other.public_message())),
            });
        }
    };
    state
        .known_users
        .ensure(state.store.as_ref(), &claims.sub)
        .await
        .map_err(|_| Refused("Service unavailable: try again".into()))?;
    socket.extensions.insert(AuthUser { id: claims.sub });
    socket.extensions.insert(SocketStreams::default());
    Ok(())
}

/// Streams started by one connection, cancelled on disconnect when `STREAM_ON_DISCONNECT=stop`.
#[derive(Clone, Default)]
pub struct SocketStreams(Arc<Mutex<Vec<CancellationToken>>>);

impl SocketStreams {
    fn add(&self, token: CancellationToken) {
        if let Ok(mut list) = self.0.lock() {
            list.retain(|t| !t.is_cancelled());
            list.push(token);
        }
    }

    fn cancel_all(&self) {
        if let Ok(list) = self.0.lock() {
            list.iter().for_each(CancellationToken::cancel);
        }
    }
}

pub async fn on_connect<A: Adapter>(socket: SocketRef<A>, Extension(user): Extension<AuthUser>) {
    socket.join(user_room(&user.id));
    tracing::debug!(sid = %socket.id, user = %user.id, "socket connected");
    socket.on("chat:start", chat_start::<A>);
    socket.on("chat:stop", chat_stop);
    socket.on_disconnect(on_disconnect);
}

async fn on_disconnect(State(state): State<AppState>, Extension(mine): Extension<SocketStreams>) {
    if state.config.stream_on_disconnect == DisconnectPolicy::Stop {
        mine.cancel_all();
    }
}

struct SocketSink<A: Adapter> {
    socket: SocketRef<A>,
    /// The `chat:start` acknowledgement, answered once the user message is stored (so the
    /// conversation it names exists), or with the error of an exchange that failed before.
    ack: Mutex<Option<AckSender<A>>>,
}

impl<A: Adapter> SocketSink<A> {
    fn answer(&self, answer: &Value) {
        if let Some(ack) = self.ack.lock().ok().and_then(|mut ack| ack.take()) {
            let _ = ack.send(answer);
        }
    }
}

impl<A: Adapter> ChatSink for SocketSink<A> {
    fn emit(&self, event: ChatEvent<'_>) {
        match &event {
            ChatEvent::ConversationCreated(c) => self.answer(&json!({"conversationId": c.id})),
            ChatEvent::UserMessage(m) => {
                self.answer(&json!({"conversationId": m.conversation_id}));
            }
            ChatEvent::Chunk { .. } => {}
        }
        let result = match events::wire(event) {
            events::Wire::Chunk(chunk) => self.socket.emit(events::MESSAGE, &chunk),
            events::Wire::Other(name, payload) => self.socket.emit(name, &payload),
        };
        if let Err(err) = result {
            tracing::debug!(error = %err, "socket emit failed (client gone?)");
        }
    }
}

fn refuse<A: Adapter>(
    socket: &SocketRef<A>,
    ack: AckSender<A>,
    error: ApiError,
    conversation_id: Option<Uuid>,
) {
    let _ = ack.send(&json!({"error": {"code": error.code(), "message": error.public_message()}}));
    let (name, payload) = events::error_payload(error, conversation_id);
    let _ = socket.emit(name, &payload);
}

async fn chat_start<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
    Extension(user): Extension<AuthUser>,
    Extension(mine): Extension<SocketStreams>,
) {
    match state.limiter.check(&user.id).await {
        Ok(decision) if !decision.allowed => {
            let error = ApiError::RateLimited {
                retry_after_secs: decision.retry_after_secs(),
            };
            return refuse(&socket, ack, error, None);
        }
        Ok(_) => {}
        Err(err) => return refuse(&socket, ack, ApiError::internal(err), None),
    }
    let parsed = data
        .map_err(|e| ApiError::validation("body", format!("payload must be a JSON object: {e}")))
        .and_then(from_value::<ChatRequest>);
    let request = match parsed {
        Ok(r) => r,
        Err(error) => return refuse(&socket, ack, error, None),
    };
    let input = request.into_input();
    let prepared = match state.chat.prepare(&user.id, &input).await {
        Ok(prepared) => prepared,
        Err(failure) => return refuse(&socket, ack, failure.error.into(), failure.conversation_id),
    };
    let conversation_id = prepared.conversation.id;
    let Some(claim) = state.streams.claim(conversation_id, &user.id) else {
        return refuse(
            &socket,
            ack,
            ServiceError::Busy.into(),
            Some(conversation_id),
        );
    };
    mine.add(claim.cancel.clone());
    let chat = state.chat.clone();
    state.tasks.spawn(async move {
        let sink = SocketSink {
            socket: socket.clone(),
            ack: Mutex::new(Some(ack)),
        };
        let mode = ChatMode::Stream {
            sink: &sink,
            cancel: claim.cancel.clone(),
        };
        let result = chat.run(&user.id, prepared, input, mode).await;
        let (name, payload) = match result {
            Ok(outcome) => events::finished(&outcome),
            Err(failure) => {
                let (name, payload) = events::failed(failure);
                // Failed before the user message was stored: the ack carries the error.
                sink.answer(
                    &json!({"error": {"code": payload["code"], "message": payload["message"]}}),
                );
                (name, payload)
            }
        };
        let _ = socket.emit(name, &payload);
        // Finished: marking the token done lets the connection's list forget it.
        claim.cancel.cancel();
        drop(claim);
    });
}

async fn chat_stop(
    TryData(data): TryData<Value>,
    State(state): State<AppState>,
    Extension(user): Extension<AuthUser>,
) {
    // No payload or no `conversationId`: every stream of the caller. An id that is not a
    // UUID names no stream, so nothing is stopped (rather than everything).
    let conversation_id = match data.ok().and_then(|d| d.get("conversationId").cloned()) {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) => Some(id),
            None => {
                tracing::debug!(user = %user.id, "chat:stop with an invalid conversationId: ignored");
                return;
            }
        },
    };
    let stopped = state.streams.stop(&user.id, conversation_id);
    tracing::debug!(user = %user.id, stopped, "chat:stop");
}
