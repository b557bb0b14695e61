//! Runs over REST: their state, their events (replayed after a cursor, then live, as
//! server-sent events) and stopping one.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::chat::sse_event;
use super::extract::{ApiQuery, IdPath};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::runs::{EventsQuery, RUN_SNAPSHOT, RunDto, RunList, RunQuery, RunSnapshotDto};
use crate::service::chat::runs::{Read, RunEvents, RunSnapshot};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(run_events))
        .routes(routes!(cancel_run))
}

/// The caller's newest runs (`?status=in_progress` for the live ones), newest first.
#[utoipa::path(get, path = "/ai/runs", tag = "chat", params(RunQuery),
    responses((status = 200, body = RunList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_runs(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<RunQuery>,
) -> Result<Json<RunList>, ApiError> {
    let status = query.status.map(Into::into);
    let runs = state
        .runs
        .list(&user.id, status, query.limit.unwrap_or(20))
        .await?;
    Ok(Json(RunList {
        data: runs.into_iter().map(Into::into).collect(),
    }))
}

/// A run of the caller.
#[utoipa::path(get, path = "/ai/runs/{id}", tag = "chat",
    params(("id" = uuid::Uuid, Path, description = "Run id")),
    responses((status = 200, body = RunDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_run(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<RunDto>, ApiError> {
    Ok(Json(state.runs.get(&user.id, id).await?.into()))
}

/// Resume a run: its events after `after` (or the `Last-Event-ID` header), replayed, then live
/// to its end, as server-sent events with `id: <seq>`. When they are no longer kept here,
/// one `run:snapshot` event with the run and its stored reply.
#[utoipa::path(get, path = "/ai/runs/{id}/events", tag = "chat",
    params(("id" = uuid::Uuid, Path, description = "Run id"), EventsQuery),
    responses(
        (status = 200, description = "`text/event-stream`: the run's events, or `run:snapshot`", body = RunSnapshotDto),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn run_events(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = query.after.or(last_event_id).unwrap_or(0);
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(15))
        .text("keep-alive");
    let events = match state.runs.events(&user.id, id, after).await? {
        RunEvents::Snapshot(snapshot) => {
            let event = snapshot_event(*snapshot);
            let once = futures::stream::once(async move { Ok::<_, Infallible>(event) });
            return Ok(Sse::new(once).keep_alive(keep_alive).into_response());
        }
        RunEvents::Log(reader) => reader,
    };
    let runs = state.runs.clone();
    let (user_id, run_id) = (user.id.clone(), id);
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

fn snapshot_event(snapshot: RunSnapshot) -> Event {
    let payload = RunSnapshotDto::from(snapshot);
    Event::default()
        .event(RUN_SNAPSHOT)
        .json_data(&payload)
        .unwrap_or_default()
}

/// Stop a live run: the upstream call is cancelled, the partial reply stored, and the run
/// ends `stopped` (its readers get `chat:stopped`). A run that has ended is left as it is.
#[utoipa::path(post, path = "/ai/runs/{id}/cancel", tag = "chat",
    params(("id" = uuid::Uuid, Path, description = "Run id")),
    responses((status = 202, body = RunDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn cancel_run(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<(axum::http::StatusCode, Json<RunDto>), ApiError> {
    let run = state.runs.cancel(&user.id, id).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(run.into())))
}
