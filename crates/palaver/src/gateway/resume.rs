//! `chat:resume {runId, afterSeq}`: a run's events after a cursor, replayed then followed live
//! to its end, to this connection (`run:snapshot` when they are no longer kept here).

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use uuid::Uuid;

use super::connection::{Connection, emit_logged};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::protocol::runs::{RUN_SNAPSHOT, RunSnapshotDto};
use crate::protocol::{events, from_value};
use crate::service::chat::runs::{Read, RunEvents, RunService};
use crate::state::AppState;

/// The payload of `chat:resume`.
#[derive(Debug, serde::Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
struct ResumeEvent {
    #[garde(skip)]
    run_id: Uuid,
    /// The last seq the client has (0 or absent: from the first event).
    #[garde(skip)]
    after_seq: Option<u64>,
}

pub(super) async fn chat_resume<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    State(state): State<AppState>,
    Extension(user): Extension<AuthUser>,
    Extension(connection): Extension<Connection>,
) {
    let parsed = data
        .map_err(|e| ApiError::validation("body", format!("payload must be a JSON object: {e}")))
        .and_then(from_value::<ResumeEvent>);
    let request = match parsed {
        Ok(request) => request,
        Err(error) => return refuse(&socket, ack, error),
    };
    let events = match state
        .runs
        .events(&user.id, request.run_id, request.after_seq.unwrap_or(0))
        .await
    {
        Ok(events) => events,
        Err(error) => return refuse(&socket, ack, error.into()),
    };
    let _ = ack.send(&json!({"runId": request.run_id}));
    follow(socket, &state, user.id, request.run_id, events, connection);
}

/// Sends a run's events (or its snapshot) to the connection, to the run's end or the
/// connection's.
pub(super) fn follow<A: Adapter>(
    socket: SocketRef<A>,
    state: &AppState,
    user_id: String,
    run_id: Uuid,
    events: RunEvents,
    connection: Connection,
) {
    let mut reader = match events {
        RunEvents::Snapshot(snapshot) => {
            let _ = socket.emit(RUN_SNAPSHOT, &RunSnapshotDto::from(*snapshot));
            return;
        }
        RunEvents::Log(reader) => reader,
    };
    let runs = state.runs.clone();
    state.tasks.spawn(async move {
        loop {
            let read = tokio::select! {
                () = connection.gone.cancelled() => return,
                read = reader.next() => read,
            };
            match read {
                Some(Read::Event(logged)) => {
                    if emit_logged(&socket, &logged).is_err() {
                        return;
                    }
                }
                Some(Read::Gap) => emit_snapshot(&socket, &runs, &user_id, run_id).await,
                None => return,
            }
        }
    });
}

async fn emit_snapshot<A: Adapter>(
    socket: &SocketRef<A>,
    runs: &RunService,
    user_id: &str,
    run_id: Uuid,
) {
    if let Ok(snapshot) = runs.snapshot_of(user_id, run_id).await {
        let _ = socket.emit(RUN_SNAPSHOT, &RunSnapshotDto::from(snapshot));
    }
}

fn refuse<A: Adapter>(socket: &SocketRef<A>, ack: AckSender<A>, error: ApiError) {
    let _ = ack.send(&json!({"error": {"code": error.code(), "message": error.public_message()}}));
    let (name, payload) = events::error_payload(error, None);
    let _ = socket.emit(name, &payload);
}
