//! Runs' events as server-sent events (`POST /ai/chat` with `stream: true`, and resumes).

use std::convert::Infallible;

use axum::body::Body;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::protocol::runs::{RUN_SNAPSHOT, RunSnapshotDto};
use crate::service::chat::runs::{Logged, Read, RunEvents, RunReader, RunService, RunSnapshot};
use crate::state::AppState;

/// A run's event as SSE: `id` its sequence number (a reconnecting client sends it back as
/// `Last-Event-ID`), `event` its name, `data` its payload.
pub(super) fn sse_event(logged: &Logged) -> Event {
    Event::default()
        .id(logged.seq.to_string())
        .event(logged.name)
        .data(logged.data.get())
}

/// The keep-alive comment of every event stream, each `SSE_KEEPALIVE_SECS` of silence.
pub(super) fn keep_alive(state: &AppState) -> KeepAlive {
    KeepAlive::new()
        .interval(state.config.sse_keep_alive)
        .text("keep-alive")
}

/// The most bytes of events sent in one write of a replay.
const BATCH_BYTES: usize = 64 * 1024;

/// A run's events after `after` as server-sent events: replayed, then live to its end (one
/// `run:snapshot` when they are no longer kept). What the log has ready goes out in one
/// write (a replay of thousands of events is a few writes, not thousands).
pub(super) async fn events_response(
    state: &AppState,
    user_id: &str,
    id: uuid::Uuid,
    after: u64,
) -> Result<Response, ApiError> {
    let every = state.config.sse_keep_alive;
    let reader = match state.runs.events(user_id, id, after).await? {
        RunEvents::Snapshot(snapshot) => {
            let event = snapshot_event(*snapshot);
            let once = futures::stream::once(async move { Ok::<_, Infallible>(event) });
            return Ok(Sse::new(once).keep_alive(keep_alive(state)).into_response());
        }
        RunEvents::Log(reader) => reader,
    };
    let replay = Replay {
        reader,
        runs: state.runs.clone(),
        user_id: user_id.to_owned(),
        run_id: id,
        idle: tokio::time::interval_at(Instant::now() + every, every),
    };
    let body = Body::from_stream(futures::stream::unfold(replay, Replay::next_write));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// A run's events on their way out as server-sent events.
struct Replay {
    reader: RunReader,
    runs: RunService,
    user_id: String,
    run_id: uuid::Uuid,
    idle: tokio::time::Interval,
}

impl Replay {
    /// The next write: the next event and every one ready after it, or a keep-alive comment
    /// after a silence; `None` once the run has ended.
    async fn next_write(mut self) -> Option<(Result<Bytes, Infallible>, Replay)> {
        let read = tokio::select! {
            read = self.reader.next() => read?,
            _ = self.idle.tick() => {
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
            }
        };
        let mut text = String::new();
        self.write(read, &mut text).await;
        while text.len() < BATCH_BYTES {
            let Some(read) = self.reader.next_ready() else {
                break;
            };
            self.write(read, &mut text).await;
        }
        self.idle.reset();
        Some((Ok(Bytes::from(text)), self))
    }

    async fn write(&self, read: Read, out: &mut String) {
        use std::fmt::Write as _;
        match read {
            // The payload is compact JSON: one `data` line.
            Read::Event(logged) => {
                let _ = write!(
                    out,
                    "id: {}\nevent: {}\ndata: {}\n\n",
                    logged.seq,
                    logged.name,
                    logged.data.get()
                );
            }
            Read::Gap => {
                let snapshot = self.runs.snapshot_of(&self.user_id, self.run_id).await;
                let payload = snapshot
                    .ok()
                    .and_then(|s| serde_json::to_string(&RunSnapshotDto::from(s)).ok());
                match payload {
                    Some(json) => {
                        let _ = write!(out, "event: {RUN_SNAPSHOT}\ndata: {json}\n\n");
                    }
                    None => out.push_str(": snapshot unavailable\n\n"),
                }
            }
        }
    }
}

pub(super) fn snapshot_event(snapshot: RunSnapshot) -> Event {
    let payload = RunSnapshotDto::from(snapshot);
    Event::default()
        .event(RUN_SNAPSHOT)
        .json_data(&payload)
        .unwrap_or_default()
}
