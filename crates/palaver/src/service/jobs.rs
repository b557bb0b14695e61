//! The job service: enqueue and read jobs (`POST /ai/jobs`, `GET /ai/jobs/:id`). The
//! workers that run them are the `jobs` transport.
//!
//! State is the `jobs` table ([`JobStore`]): every instance reads it; only the worker holding
//! a job's lease writes it. Delivery is the [`JobQueue`]: apalis-redis with `REDIS_URL`,
//! otherwise the table itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ChatInput, ConversationService, ServiceError, TitleQueue};
use crate::queue::{Envelope, JobQueue};
use crate::store::jobs::{Job, JobKind, JobStatus};
use crate::store::{self, JobStore, JobStoreError, Store};

/// Attempts a job gets before it is `failed` (API.md: `maxAttempts` default 3).
pub const MAX_ATTEMPTS: i32 = 3;

/// A job to queue, validated by its transport.
#[derive(Debug, Clone)]
pub enum JobRequest {
    Completion(Box<ChatInput>),
    Embeddings {
        text: String,
        model: Option<String>,
    },
    /// Queued by the chat pipeline, never by a client: titles a conversation with `model`.
    Title {
        conversation_id: Uuid,
        model: String,
    },
}

/// Cheap to clone; one per process.
#[derive(Clone)]
pub struct JobService {
    store: Arc<dyn JobStore>,
    queue: JobQueue,
    conversations: ConversationService,
}

impl JobService {
    /// Adopts the unfinished jobs stored before job queues had names into this queue.
    pub async fn new(
        store: Arc<dyn JobStore>,
        queue: JobQueue,
        conversations: Arc<dyn Store>,
    ) -> Result<JobService, ServiceError> {
        let adopted = store
            .adopt_unassigned(queue.name())
            .await
            .map_err(job_error)?;
        if adopted > 0 {
            tracing::info!(
                adopted,
                queue = queue.name(),
                "jobs: unfinished jobs from before job queues were stored adopted into this queue"
            );
        }
        tracing::info!(
            backend = queue.backend(),
            queue = queue.name(),
            "job queue ready"
        );
        Ok(JobService {
            store,
            queue,
            conversations: ConversationService::new(conversations),
        })
    }

    /// The `jobs` table.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    pub fn queue(&self) -> &JobQueue {
        &self.queue
    }

    /// Which queue backend carries the jobs ("redis", or "table" for the `jobs` table).
    pub fn backend(&self) -> &'static str {
        self.queue.backend()
    }

    /// Stores the job as `waiting` and queues its first attempt.
    pub async fn enqueue(&self, user_id: &str, request: JobRequest) -> Result<Job, ServiceError> {
        let (kind, data, conversation_id) = match request {
            JobRequest::Completion(input) => {
                if let Some(id) = input.conversation_id {
                    // As `POST /ai/chat` does: another user's conversation is not found.
                    self.conversations.get(user_id, id).await?;
                }
                (JobKind::GenerateCompletion, to_data(&input)?, None)
            }
            JobRequest::Embeddings { text, model } => {
                let data = json!({"text": text, "model": model});
                (JobKind::GenerateEmbeddings, strip_nulls(data), None)
            }
            JobRequest::Title {
                conversation_id,
                model,
            } => {
                let data = json!({"conversationId": conversation_id, "model": model});
                (JobKind::GenerateTitle, data, Some(conversation_id))
            }
        };
        let mut job = new_job(user_id, kind, data);
        job.conversation_id = conversation_id;
        self.store
            .insert(&job, self.queue.name())
            .await
            .map_err(job_error)?;
        let first = Envelope {
            job_id: job.id,
            attempt: 1,
        };
        if let Err(err) = self.queue.push(first, Duration::ZERO).await {
            // Not queued: say so now rather than leave a job that never runs.
            let _ = self
                .store
                .abandon(job.id, "The job could not be queued")
                .await;
            tracing::error!(error = %err, job_id = %job.id, "jobs: could not queue a job");
            return Err(ServiceError::Queue(err.to_string()));
        }
        tracing::info!(job_id = %job.id, kind = kind.as_str(), "jobs: queued");
        Ok(job)
    }

    /// The caller's job; another user's job is not found.
    pub async fn get(&self, user_id: &str, id: Uuid) -> Result<Job, ServiceError> {
        match self.store.get(id).await.map_err(job_error)? {
            Some(job) if job.user_id == user_id => Ok(job),
            _ => Err(ServiceError::NotFound("Job")),
        }
    }
}

#[async_trait]
impl TitleQueue for JobService {
    async fn queue_title(
        &self,
        user_id: &str,
        conversation_id: Uuid,
        model: &str,
    ) -> Result<Uuid, ServiceError> {
        let request = JobRequest::Title {
            conversation_id,
            model: model.to_owned(),
        };
        Ok(self.enqueue(user_id, request).await?.id)
    }
}

fn new_job(user_id: &str, kind: JobKind, data: Value) -> Job {
    let now = store::now();
    Job {
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
    }
}

fn to_data(input: &ChatInput) -> Result<Value, ServiceError> {
    serde_json::to_value(input)
        .map(strip_nulls)
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

/// A job's `data` as a client would write it: absent fields left out, not `null`.
fn strip_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// A `jobs` table error as the service reports it: a corrupt row is not transient (it fails
/// its job at once), the database being away is.
pub fn job_error(err: JobStoreError) -> ServiceError {
    match err {
        JobStoreError::Corrupt(detail) => ServiceError::Corrupt(detail),
        other => ServiceError::Store(other.into()),
    }
}
