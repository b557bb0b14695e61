//! Background jobs: the `ai-tasks` queue of API.md (`POST /ai/jobs`, `GET /ai/jobs/:id`).
//!
//! Two halves with one rule between them:
//! - **State** is the `jobs` table of the main database ([`crate::store::JobStore`]): status, progress,
//!   attempts, result, error, and a lease. Every instance reads it; only the worker holding
//!   the lease writes it.
//! - **Delivery**, with `REDIS_URL`, is apalis-redis: a [`queue::Envelope`] `{jobId, attempt}`
//!   travels through Redis, apalis decides which worker runs it and re-delivers the envelopes
//!   of a worker that died, and a delivery is acted on only when the table says it is due, so
//!   duplicate or stale deliveries are harmless. Without Redis the table is the queue too:
//!   workers claim its due rows (waiting, delayed and due, or under an expired lease).
//!
//! Retries: a failed attempt that may succeed later schedules the next attempt with a delay
//! (`JOB_BACKOFF_MS`, doubled per attempt) and marks the job `delayed`; after `maxAttempts`
//! the job is `failed` with the public message of the error. A completion job writes into its
//! conversation through [`scoped::JobScopedStore`], which tags its messages with the job id
//! so that a re-run never stores a second user message or reply.

pub mod api;
mod progress;
mod queue;
mod runner;
mod scoped;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::api::chat::ChatRequest;
use crate::api::extract::from_value;
use crate::config::Config;
use crate::error::{ApiError, FieldError};
use crate::pricing::PriceTable;
use crate::providers::Providers;
use crate::service::{ChatDefaults, ConversationService};
use crate::store::{self, JobStore, JobStoreError, Store};

pub use queue::{Envelope, QueueError};

/// What `palaver-bench jobs` needs to drive the Redis queue exactly as Palaver does (the
/// storage settings, the task an envelope travels in, the worker's poll interval). Not an API.
#[doc(hidden)]
pub mod bench_support {
    pub use super::queue::{Pushed, redis_config, task};
    pub use super::worker::{POLL_EVERY, Wakeups};
}
pub use crate::store::jobs::{Job, JobKind, JobStatus};
pub use runner::RunError;
pub use worker::{Workers, run_standalone, start_workers};

/// Attempts a job gets before it is `failed` (API.md: `maxAttempts` default 3).
pub const MAX_ATTEMPTS: i32 = 3;

/// A `job:progress`, `job:completed` or `job:failed` event and the user it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub user_id: String,
    pub name: &'static str,
    pub payload: Value,
}

/// `generate-embeddings` data: `{text, model?}`, with the limits of `POST /ai/embeddings`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingJobData {
    #[garde(length(chars, min = 1, max = 100000))]
    pub text: String,
    /// Default `text-embedding-3-small`.
    #[garde(length(min = 1, max = 200))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Repo(#[from] JobStoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What the chat pipeline of a job is built from (the same parts as `AppState::chat`).
#[derive(Clone)]
pub struct ChatParts {
    pub store: Arc<dyn Store>,
    pub providers: Arc<Providers>,
    pub prices: Arc<PriceTable>,
    pub defaults: ChatDefaults,
}

/// The job service: enqueue and read jobs. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    repo: Arc<dyn JobStore>,
    queue: queue::JobQueue,
    chat: ChatParts,
    conversations: ConversationService,
    concurrency: usize,
    backoff: Duration,
    heartbeat: Duration,
    /// Every `job:*` event this process emits, for in-process observers.
    events: tokio::sync::broadcast::Sender<JobEvent>,
}

impl Jobs {
    /// The job service on the `jobs` table `repo` (migrated with the store) and the queue backend.
    pub async fn connect(
        config: &Config,
        chat: ChatParts,
        repo: Arc<dyn JobStore>,
    ) -> Result<Jobs, JobsError> {
        let queue = queue::JobQueue::connect(config).await?;
        let adopted = repo.adopt_unassigned(queue.name()).await?;
        if adopted > 0 {
            tracing::info!(
                adopted,
                queue = queue.name(),
                "jobs: unfinished jobs from before job queues were stored adopted into this queue"
            );
        }
        tracing::info!(backend = queue.backend(), queue = %config.jobs.queue, "job queue ready");
        Ok(Jobs {
            inner: Arc::new(Inner {
                repo,
                queue,
                conversations: ConversationService::new(chat.store.clone()),
                chat,
                concurrency: config.jobs.concurrency as usize,
                backoff: config.jobs.backoff,
                heartbeat: config.jobs.heartbeat,
                events: tokio::sync::broadcast::channel(256).0,
            }),
        })
    }

    /// The `job:*` events emitted by this process's workers (each also goes to the owner's
    /// Socket.IO connections).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// Which queue backend carries the jobs ("redis", or "table" for the `jobs` table).
    pub fn backend(&self) -> &'static str {
        self.inner.queue.backend()
    }

    /// Validates `data` for `kind`, stores the job as `waiting` and queues its first attempt.
    pub async fn enqueue(
        &self,
        user_id: &str,
        kind: Option<&str>,
        data: Option<Value>,
    ) -> Result<Job, ApiError> {
        let kind = kind.ok_or_else(|| ApiError::validation("type", "is required"))?;
        let kind = JobKind::parse(kind).ok_or_else(|| {
            ApiError::validation(
                "type",
                "must be `generate-completion` or `generate-embeddings`",
            )
        })?;
        let data = data.ok_or_else(|| ApiError::validation("data", "is required"))?;
        let data = match kind {
            JobKind::GenerateCompletion => {
                let request: ChatRequest = from_value(data.clone()).map_err(in_data)?;
                if let Some(id) = request.conversation_id {
                    // As `POST /ai/chat` does: another user's conversation is not found.
                    self.inner.conversations.get(user_id, id).await?;
                }
                data
            }
            JobKind::GenerateEmbeddings => {
                let request: EmbeddingJobData = from_value(data).map_err(in_data)?;
                serde_json::to_value(request).map_err(ApiError::internal)?
            }
        };
        let now = store::now();
        let job = Job {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            kind,
            data,
            status: JobStatus::Waiting,
            progress: 0,
            attempts: 0,
            max_attempts: MAX_ATTEMPTS,
            result: None,
            error: None,
            conversation_id: None,
            run_at: None,
            locked_by: None,
            locked_until: None,
            created_at: now,
            updated_at: now,
        };
        self.inner
            .repo
            .insert(&job, self.inner.queue.name())
            .await
            .map_err(ApiError::internal)?;
        if let Err(err) = self
            .inner
            .queue
            .push(
                Envelope {
                    job_id: job.id,
                    attempt: 1,
                },
                Duration::ZERO,
            )
            .await
        {
            // Not queued: say so now rather than leave a job that never runs.
            let _ = self
                .inner
                .repo
                .abandon(job.id, "The job could not be queued")
                .await;
            tracing::error!(error = %err, job_id = %job.id, "jobs: could not queue a job");
            return Err(ApiError::Unavailable("The job queue is unavailable".into()));
        }
        tracing::info!(job_id = %job.id, kind = kind.as_str(), "jobs: queued");
        Ok(job)
    }

    /// The caller's job; another user's job is not found.
    pub async fn get(&self, user_id: &str, id: Uuid) -> Result<Job, ApiError> {
        match self.inner.repo.get(id).await.map_err(ApiError::internal)? {
            Some(job) if job.user_id == user_id => Ok(job),
            _ => Err(ApiError::NotFound("Job not found".into())),
        }
    }
}

/// Handles one delivery of attempt `attempt` of a job here and now, as a worker does (a
/// duplicate or stale delivery is a no-op): lets tests and operators drive a job by hand.
pub async fn run_delivery(
    state: &crate::state::AppState,
    job_id: Uuid,
    attempt: i32,
) -> Result<(), RunError> {
    runner::Runner::new(state.clone())
        .run(Envelope { job_id, attempt })
        .await
}

/// Queues again, here and now, the unfinished jobs nobody has looked after for `older_than`
/// (what every worker process's sweeper does each minute with five minutes); returns how many.
pub async fn rescue_stranded(
    state: &crate::state::AppState,
    older_than: Duration,
) -> Result<usize, RunError> {
    runner::Runner::new(state.clone())
        .rescue_stranded(older_than)
        .await
}

/// Field paths of a job's data are reported under `data.` (a missing field by its name).
fn in_data(err: ApiError) -> ApiError {
    let field = |e: &FieldError| {
        let missing = e
            .message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        match (e.field.as_str(), missing) {
            ("body", Some(name)) => format!("data.{name}"),
            ("body", None) => "data".to_owned(),
            (path, _) => format!("data.{path}"),
        }
    };
    match err {
        ApiError::Validation(errors) => ApiError::Validation(
            errors
                .into_iter()
                .map(|e| FieldError {
                    field: field(&e),
                    message: e.message,
                })
                .collect(),
        ),
        other => other,
    }
}
