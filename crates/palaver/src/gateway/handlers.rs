//! Socket.IO handlers: they translate between events and the chat pipeline, nothing more.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::connection::{Connection, emit_logged};
use super::user_room;
use crate::auth::{AuthRefusal, AuthUser, bearer, client_ip_of};
use crate::error::ApiError;
use crate::protocol::events;
use crate::protocol::{ChatRequest, from_value};
use crate::service::chat::runs::Logged;
use crate::service::{ChatEvent, ChatInput, ChatSink, ExchangeOptions, Regeneration};
use crate::state::AppState;
use crate::store::Run;

/// Why a handshake was refused, as the client's `connect_error` gets it: `err.message` is
/// `"unauthorized"` for any token problem (what the old module's clients test for before
/// refreshing their token), and `err.data` says why: `{code, reason}`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

impl From<AuthRefusal> for Refused {
    fn from(refusal: AuthRefusal) -> Self {
        let error = ApiError::from(refusal.clone());
        let message = match refusal {
            AuthRefusal::Unauthorized(_) => "unauthorized",
            AuthRefusal::Throttled { .. } => "rate_limited",
            AuthRefusal::Unavailable(_) => "unavailable",
        };
        let body = json!({
            "message": message,
            "data": {"code": error.code(), "reason": error.public_message()},
        });
        Refused(body.to_string())
    }
}

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
    let raw = auth
        .ok()
        .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
    // `auth: { token }` may carry the header form, `Bearer <jwt>`, too.
    let token = raw.as_deref().map(|raw| bearer(Some(raw)).unwrap_or(raw));
    let user = state.auth.authenticate(token, &ip).await?;
    register(&socket, &user);
    socket.extensions.insert(user);
    socket.extensions.insert(Connection::default());
    Ok(())
}

/// Joins the user's room and registers the connection's handlers, here in the middleware:
/// socketioxide sends the client its `connect` packet once the middlewares are done, then
/// runs the connect handler in a task of its own, so an event the client sends the moment it
/// is connected (socket.io-client flushes what was emitted before at once) could arrive before
/// a handler registered there, and be dropped without an answer.
fn register<A: Adapter>(socket: &SocketRef<A>, user: &AuthUser) {
    socket.join(user_room(&user.id));
    socket.on("chat:start", chat_start::<A>);
    socket.on("chat:regenerate", chat_regenerate::<A>);
    socket.on("chat:resume", super::resume::chat_resume::<A>);
    socket.on("chat:stop", chat_stop);
    socket.on_disconnect(|Extension(connection): Extension<Connection>| async move {
        connection.gone.cancel();
    });
}

/// The connection is up (its handlers were registered by [`authenticate`]).
pub async fn on_connect<A: Adapter>(socket: SocketRef<A>, Extension(user): Extension<AuthUser>) {
    tracing::debug!(sid = %socket.id, user = %user.id, "socket connected");
}

struct SocketSink<A: Adapter> {
    socket: SocketRef<A>,
    gone: CancellationToken,
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
    fn emit(&self, event: ChatEvent<'_>, logged: &Logged) {
        match &event {
            ChatEvent::UserMessage(m) => {
                self.answer(&json!({"conversationId": m.conversation_id, "runId": logged.run_id}));
            }
            // Failed before the user message was stored: the ack carries the error.
            ChatEvent::Failed(failure) => {
                let error = ApiError::from(&failure.error);
                self.answer(&ack_error(&error));
            }
            _ => {}
        }
        if let Err(err) = emit_logged(&self.socket, logged) {
            tracing::debug!(error = %err, "socket emit failed (client gone?)");
        }
    }

    fn closed(&self) -> BoxFuture<'static, ()> {
        Box::pin(self.gone.clone().cancelled_owned())
    }
}

fn ack_error(error: &ApiError) -> Value {
    json!({"error": {"code": error.code(), "message": error.public_message()}})
}

fn refuse<A: Adapter>(
    socket: &SocketRef<A>,
    ack: AckSender<A>,
    error: ApiError,
    conversation_id: Option<Uuid>,
) {
    let _ = ack.send(&ack_error(&error));
    let (name, payload) = events::error_payload(error, conversation_id);
    let _ = socket.emit(name, &payload);
}

async fn chat_start<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
    Extension(user): Extension<AuthUser>,
    Extension(connection): Extension<Connection>,
) {
    let Some((request, ack)) = metered::<A, ChatRequest>(&socket, ack, &state, &user, data).await
    else {
        return;
    };
    let input = request.into_input();
    // Sent again with the `clientRequestId` of an earlier start: that run's events, from the
    // first, instead of a new exchange.
    match state.chat.keyed_run(&user.id, &input).await {
        Ok(Some(run)) => return attach(socket, ack, &state, user, run, connection).await,
        Ok(None) => {}
        Err(error) => return refuse(&socket, ack, error.into(), None),
    }
    let start = Start {
        socket,
        ack,
        state,
        user,
        connection,
    };
    start.run(input, ExchangeOptions::default()).await;
}

/// Answers a start with the run an earlier one (same `clientRequestId`) started: the ack
/// names it (`attached: true`), then its events follow from the first.
async fn attach<A: Adapter>(
    socket: SocketRef<A>,
    ack: AckSender<A>,
    state: &AppState,
    user: AuthUser,
    run: Run,
    connection: Connection,
) {
    let events = match state.runs.events(&user.id, run.id, 0).await {
        Ok(events) => events,
        Err(error) => return refuse(&socket, ack, error.into(), Some(run.conversation_id)),
    };
    let _ = ack.send(&json!({
        "conversationId": run.conversation_id,
        "runId": run.id,
        "attached": true,
    }));
    super::resume::follow(socket, state, user.id, run.id, events, connection);
}

/// Counts a metered event against the rate limit and reads its payload; a refusal answers
/// the ack and emits `chat:error` (and gives `None`).
async fn metered<A, T>(
    socket: &SocketRef<A>,
    ack: AckSender<A>,
    state: &AppState,
    user: &AuthUser,
    data: Result<Value, impl std::fmt::Display>,
) -> Option<(T, AckSender<A>)>
where
    A: Adapter,
    T: serde::de::DeserializeOwned + garde::Validate<Context = ()>,
{
    if let Err(refused) = state.admission.rate(&user.id).await {
        refuse(socket, ack, refused.into(), None);
        return None;
    }
    let parsed = data
        .map_err(|e| ApiError::validation("body", format!("payload must be a JSON object: {e}")))
        .and_then(from_value::<T>);
    match parsed {
        Ok(request) => Some((request, ack)),
        Err(error) => {
            refuse(socket, ack, error, None);
            None
        }
    }
}

/// `chat:regenerate {messageId, model?, temperature?, maxTokens?}`: a new reply beside an
/// assistant message (or to a user message), streamed with the events of `chat:start`.
async fn chat_regenerate<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
    Extension(user): Extension<AuthUser>,
    Extension(connection): Extension<Connection>,
) {
    let Some((request, ack)) =
        metered::<A, RegenerateEvent>(&socket, ack, &state, &user, data).await
    else {
        return;
    };
    let with = request.regeneration();
    let (input, options) = match state
        .tree
        .regeneration(&user.id, request.message_id, with)
        .await
    {
        Ok(exchange) => exchange,
        Err(error) => return refuse(&socket, ack, error.into(), None),
    };
    let start = Start {
        socket,
        ack,
        state,
        user,
        connection,
    };
    start.run(input, options).await;
}

/// The payload of `chat:regenerate`.
#[derive(Debug, serde::Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
struct RegenerateEvent {
    #[garde(skip)]
    message_id: Uuid,
    #[garde(length(min = 1, max = 200))]
    model: Option<String>,
    #[garde(range(min = 0.0, max = 2.0))]
    temperature: Option<f32>,
    #[garde(range(min = 1, max = 8000))]
    max_tokens: Option<u32>,
}

impl RegenerateEvent {
    fn regeneration(&self) -> Regeneration {
        Regeneration {
            model: self.model.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        }
    }
}

/// An exchange a connection asked for, ready to start.
struct Start<A: Adapter> {
    socket: SocketRef<A>,
    ack: AckSender<A>,
    state: AppState,
    user: AuthUser,
    connection: Connection,
}

impl<A: Adapter> Start<A> {
    /// Streams the exchange to the connection; the ack answers once the user message is
    /// stored, or with the error of an exchange refused before it started.
    async fn run(self, input: ChatInput, options: ExchangeOptions) {
        let sink = Arc::new(SocketSink {
            socket: self.socket.clone(),
            gone: self.connection.gone.clone(),
            ack: Mutex::new(Some(self.ack)),
        });
        let started = self
            .state
            .chat
            .start_stream(&self.user.id, input, sink.clone(), options)
            .await;
        // Refused before anything started: the ack and `chat:error` say why.
        if let Err(failure) = started {
            let error = ApiError::from(&failure.error);
            sink.answer(&ack_error(&error));
            let (name, payload) = events::error_payload(error, failure.conversation_id);
            let _ = self.socket.emit(name, &payload);
        }
    }
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
    // Here and, with Redis, on the instance that produces the stream.
    let stopped = state.runs.control().stop(&user.id, conversation_id).await;
    tracing::debug!(user = %user.id, stopped, "chat:stop");
}
