//! `POST /ai/jobs` (202 Job) and `GET /ai/jobs/{id}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, IdPath};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::dto::rfc3339;
use crate::protocol::jobs::CreateJobRequest;
use crate::state::AppState;
use crate::store::jobs::{Job, JobKind, JobStatus};

/// `POST /ai/jobs`: it leads to upstream calls, so it counts against the rate limit.
pub fn metered_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_job))
}

/// `GET /ai/jobs/{id}`: polling is free.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_job))
}

/// A job as API.md describes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobResponse {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: JobKind,
    pub status: JobStatus,
    /// 0 to 100.
    pub progress: i32,
    /// Attempts started so far.
    pub attempts: i32,
    pub max_attempts: i32,
    #[schema(value_type = Object)]
    pub data: Value,
    /// When completed: `generate-completion` `{conversationId, messageId, content, tokens}`,
    /// `generate-embeddings` `{embedding, model, tokens}`, `generate-title`
    /// `{conversationId, title}` (`title` null when none was set).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The last failure (kept while a retry is pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Job> for JobResponse {
    fn from(job: Job) -> Self {
        JobResponse {
            id: job.id,
            kind: job.kind,
            status: job.status,
            progress: job.progress,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            data: job.data,
            result: job.result.filter(|_| job.status == JobStatus::Completed),
            error: job.error,
            created_at: rfc3339(&job.created_at),
            updated_at: rfc3339(&job.updated_at),
        }
    }
}

/// Queue a background job; follow it with `GET /ai/jobs/{id}` or the `job:*` Socket.IO events.
#[utoipa::path(post, path = "/ai/jobs", tag = "jobs", request_body = CreateJobRequest,
    responses(
        (status = 202, description = "Queued", body = JobResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
async fn create_job(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateJobRequest>,
) -> Result<(StatusCode, Json<JobResponse>), ApiError> {
    let job = state.jobs.enqueue(&user.id, body.into_job()?).await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

/// A job of the caller (another user's job is not found).
#[utoipa::path(get, path = "/ai/jobs/{id}", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_job(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<JobResponse>, ApiError> {
    Ok(Json(state.jobs.get(&user.id, id).await?.into()))
}
