//! Runs over REST: their state, their events (replayed after a cursor, then live, as
//! server-sent events) and stopping one.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiQuery, IdPath};
use super::sse::events_response;
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::runs::{EventsQuery, RunDto, RunList, RunQuery, RunSnapshotDto};
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
    events_response(&state, &user.id, id, after).await
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
