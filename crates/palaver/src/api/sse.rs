//! Runs' events as server-sent events (`POST /ai/chat` with `stream: true`, and resumes).

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::error::ApiError;
use crate::protocol::runs::{RUN_SNAPSHOT, RunSnapshotDto};
use crate::service::chat::runs::{Logged, Read, RunEvents, RunSnapshot};
use crate::state::AppState;

/// A run's event as SSE: `id` its sequence number (a reconnecting client sends it back as
/// `Last-Event-ID`), `event` its name, `data` its payload.
pub(super) fn sse_event(logged: &Logged) -> Event {
    Event::default()
        .id(logged.seq.to_string())
        .event(logged.name)
        .data(logged.data.get())
}

/// A run's events after `after` as server-sent events: replayed, then live to its end (one
/// `run:snapshot` when they are no longer kept).
pub(super) async fn events_response(
    state: &AppState,
    user_id: &str,
    id: uuid::Uuid,
    after: u64,
) -> Result<Response, ApiError> {
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(15))
        .text("keep-alive");
    let events = match state.runs.events(user_id, id, after).await? {
        RunEvents::Snapshot(snapshot) => {
            let event = snapshot_event(*snapshot);
            let once = futures::stream::once(async move { Ok::<_, Infallible>(event) });
            return Ok(Sse::new(once).keep_alive(keep_alive).into_response());
        }
        RunEvents::Log(reader) => reader,
    };
    let runs = state.runs.clone();
    let (user_id, run_id) = (user_id.to_owned(), id);
    let stream = futures::stream::unfold(events, |mut reader| async move {
        reader.next().await.map(|read| (read, reader))
    })
    .then(move |read| {
        let (runs, user_id) = (runs.clone(), user_id.clone());
        async move {
            let event = match read {
                Read::Event(logged) => sse_event(&logged),
                Read::Gap => match runs.get(&user_id, run_id).await {
                    Ok(run) => match runs.snapshot(run).await {
                        Ok(snapshot) => snapshot_event(snapshot),
                        Err(_) => Event::default().comment("snapshot unavailable"),
                    },
                    Err(_) => Event::default().comment("snapshot unavailable"),
                },
            };
            Ok::<_, Infallible>(event)
        }
    });
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}

pub(super) fn snapshot_event(snapshot: RunSnapshot) -> Event {
    let payload = RunSnapshotDto::from(snapshot);
    Event::default()
        .event(RUN_SNAPSHOT)
        .json_data(&payload)
        .unwrap_or_default()
}
