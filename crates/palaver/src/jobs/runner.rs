//! Runs one delivered attempt: claim it in the `jobs` table, run it under a lease while
//! publishing progress, then complete it, fail it, or schedule the next attempt.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::progress::{CONTEXT_BUILT, ProgressSink};
use super::queue::{Envelope, Storage};
use super::scoped::{JobScopedStore, completion_result, is_from_job, reply_id};
use super::{EmbeddingJobData, Inner, Job, JobEvent, JobKind, JobStatus, Jobs};
use crate::api::chat::ChatRequest;
use crate::error::ApiError;
use crate::providers::ProviderError;
use crate::service::{ChatMode, ChatService, DEFAULT_TITLE, NewConversationInput, ServiceError};
use crate::state::AppState;
use crate::store::jobs::{Finish, JobStore, JobStoreError, Stranded, Unreadable};
use crate::store::{self, Role, StoreError};

/// Progress is written and emitted at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// A delivery waits at most this long for a job that is running elsewhere or not yet due.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Repo(#[from] JobStoreError),
}

/// How an attempt's work ended.
enum Outcome {
    /// The job's result, as JSON text (an embedding is written once, not held as a `Value`).
    Done(Box<RawValue>),
    Failed(ServiceError),
    /// Another worker took the job over (this one was presumed dead): nothing more to write.
    LostLease,
    /// The attempt's code panicked.
    Panicked,
}

#[derive(Clone)]
pub struct Runner {
    state: AppState,
    jobs: Jobs,
}

impl Runner {
    pub fn new(state: AppState) -> Runner {
        Runner {
            jobs: state.jobs.clone(),
            state,
        }
    }

    fn inner(&self) -> &Inner {
        &self.jobs.inner
    }

    fn repo(&self) -> &Arc<dyn JobStore> {
        &self.inner().repo
    }

    /// A lease outlives two renewals. On Redis it expires before apalis presumes the worker
    /// dead (three missed heartbeats), so that a re-delivered attempt finds it expired; with
    /// the table queue its expiry is what makes the job due again.
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.inner().heartbeat * 2)
            .unwrap_or(chrono::Duration::seconds(20))
    }

    /// Handles one delivery of the Redis queue (or one driven by hand). `Err` only when the
    /// `jobs` table cannot be reached (apalis then delivers the envelope again).
    pub async fn run(&self, envelope: Envelope) -> Result<(), RunError> {
        let Some((job, token)) = self.claim(envelope).await? else {
            return Ok(());
        };
        self.execute(job, &token).await
    }

    /// The table queue: claims up to `limit` due jobs of this process's queue, under one lease
    /// token (see [`JobStore::claim_due`]), for [`Runner::execute`].
    pub async fn claim_due(&self, limit: usize) -> Result<(Vec<Job>, String), RunError> {
        let token = Uuid::now_v7().to_string();
        let now = store::now();
        let queue = self.inner().queue.name();
        let claimed = self
            .repo()
            .claim_due(queue, limit, &token, now, now + self.lease())
            .await?;
        let mut jobs = Vec::with_capacity(claimed.len());
        for job in claimed {
            match job {
                Ok(job) => jobs.push(job),
                Err(Unreadable { id, error }) => {
                    // Left active, it would come back at each lease expiry, for ever.
                    tracing::error!(job_id = ?id, error, "jobs: a claimed job could not be read; failing it");
                    if let Some(id) = id {
                        let finish = Finish::Failed {
                            error: "The job could not be read".to_owned(),
                        };
                        // Not `?`: the jobs claimed beside it are run either way.
                        if let Err(err) = self.repo().finish(id, &token, &finish).await {
                            tracing::error!(job_id = %id, error = %err, "jobs: could not fail an unreadable job");
                        }
                    }
                }
            }
        }
        Ok((jobs, token))
    }

    /// Whether [`Runner::claim_due`] would find a job now (a read only).
    pub async fn any_due(&self) -> Result<bool, RunError> {
        let queue = self.inner().queue.name();
        Ok(self.repo().any_due(queue, store::now()).await?)
    }

    /// Runs an attempt claimed under `token` to its end: completes the job, fails it, or
    /// schedules its next attempt. `Err` only when the `jobs` table cannot be reached.
    pub async fn execute(&self, job: Job, token: &str) -> Result<(), RunError> {
        tracing::info!(job_id = %job.id, kind = job.kind.as_str(), attempt = job.attempts, "jobs: attempt started");
        let attempt = AssertUnwindSafe(self.attempt(&job, token)).catch_unwind();
        match attempt.await.unwrap_or(Outcome::Panicked) {
            Outcome::Done(result) => self.complete(&job, token, result).await,
            Outcome::Failed(error) => self.retry_or_fail(&job, token, error).await,
            Outcome::Panicked => {
                // A bug, which another attempt would meet again: the job fails (left active,
                // it would be taken up again at each lease expiry, for ever).
                tracing::error!(job_id = %job.id, attempt = job.attempts, "jobs: the attempt panicked");
                self.fail(&job, token, "The job failed unexpectedly").await
            }
            Outcome::LostLease => {
                tracing::warn!(job_id = %job.id, "jobs: lease lost; another worker has the job");
                Ok(())
            }
        }
    }

    async fn complete(
        &self,
        job: &Job,
        token: &str,
        result: Box<RawValue>,
    ) -> Result<(), RunError> {
        let finish = Finish::Completed { result: &result };
        if self.repo().finish(job.id, token, &finish).await? {
            tracing::info!(job_id = %job.id, attempt = job.attempts, "jobs: completed");
            let (id, user) = (job.id, &job.user_id);
            self.emit(user, "job:progress", &json!({"jobId": id, "progress": 100}))
                .await;
            self.emit(
                user,
                "job:completed",
                &Completed {
                    job_id: id,
                    result: &result,
                },
            )
            .await;
        }
        Ok(())
    }

    /// Schedules the next attempt after a backoff when another may succeed, else fails the job.
    async fn retry_or_fail(
        &self,
        job: &Job,
        token: &str,
        failure: ServiceError,
    ) -> Result<(), RunError> {
        let retry = is_transient(&failure) && job.attempts < job.max_attempts;
        let error = public_error(failure);
        if !retry {
            return self.fail(job, token, &error).await;
        }
        let delay = self.backoff(job.attempts);
        let run_at = store::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        if !self
            .repo()
            .finish(
                job.id,
                token,
                &Finish::Delayed {
                    error: error.clone(),
                    run_at,
                },
            )
            .await?
        {
            return Ok(());
        }
        let delay_ms = delay.as_millis() as u64;
        tracing::warn!(job_id = %job.id, attempt = job.attempts, delay_ms, error, "jobs: attempt failed; retrying");
        let next = Envelope {
            job_id: job.id,
            attempt: job.attempts + 1,
        };
        if let Err(err) = self.inner().queue.push(next, delay).await {
            // The job stays `delayed`: Redis's sweeper queues it again once the queue answers
            // (the table queue cannot fail to push: the row is the delivery).
            tracing::error!(job_id = %job.id, error = %err, "jobs: could not queue the next attempt");
        }
        Ok(())
    }

    /// Fails the job for good with the public message `error`.
    async fn fail(&self, job: &Job, token: &str, error: &str) -> Result<(), RunError> {
        let finish = Finish::Failed {
            error: error.to_owned(),
        };
        if self.repo().finish(job.id, token, &finish).await? {
            tracing::warn!(job_id = %job.id, attempt = job.attempts, error, "jobs: failed");
            self.emit(
                &job.user_id,
                "job:failed",
                &json!({"jobId": job.id, "error": error}),
            )
            .await;
        }
        Ok(())
    }

    /// `JOB_BACKOFF_MS` before the second attempt, doubled for each one after.
    fn backoff(&self, attempts: i32) -> Duration {
        let doublings = (attempts.clamp(1, 16) - 1) as u32;
        self.inner().backoff.saturating_mul(1 << doublings)
    }

    /// Takes the attempt when the table says it is due, waiting while the job runs elsewhere
    /// (its worker may have died: the lease tells) or is not due yet; `None` for a stale or
    /// duplicate delivery.
    async fn claim(&self, envelope: Envelope) -> Result<Option<(Job, String)>, RunError> {
        let token = Uuid::now_v7().to_string();
        let started = tokio::time::Instant::now();
        loop {
            let now = store::now();
            if let Some(job) = self
                .repo()
                .claim(
                    envelope.job_id,
                    envelope.attempt,
                    &token,
                    now,
                    now + self.lease(),
                )
                .await?
            {
                return Ok(Some((job, token)));
            }
            let Some(job) = self.repo().get(envelope.job_id).await? else {
                tracing::warn!(job_id = %envelope.job_id, "jobs: delivered a job that does not exist");
                return Ok(None);
            };
            let wait = match job.status {
                JobStatus::Active if job.attempts <= envelope.attempt => job.locked_until,
                JobStatus::Waiting | JobStatus::Delayed if job.attempts < envelope.attempt => {
                    job.run_at
                }
                _ => None,
            };
            let Some(until) = wait else {
                tracing::debug!(job_id = %job.id, attempt = envelope.attempt, status = job.status.as_str(), "jobs: stale delivery");
                return Ok(None);
            };
            if started.elapsed() > MAX_WAIT {
                tracing::warn!(job_id = %job.id, "jobs: gave up waiting for a job held elsewhere");
                return Ok(None);
            }
            let pause = (until - now).to_std().unwrap_or_default() + Duration::from_millis(20);
            tokio::time::sleep(pause.min(self.inner().heartbeat)).await;
        }
    }

    /// Runs the job's work while renewing the lease and publishing progress.
    async fn attempt(&self, job: &Job, token: &str) -> Outcome {
        let (progress, updates) = watch::channel(0);
        // Until when this attempt surely holds the lease (µs since the epoch): renewals move
        // it; past it another worker may have taken the job over.
        let held = AtomicI64::new(
            job.locked_until
                .unwrap_or_else(|| store::now() + self.lease())
                .timestamp_micros(),
        );
        let work = async {
            match job.kind {
                JobKind::GenerateCompletion => self
                    .completion(job, token, &progress)
                    .await
                    .and_then(|result| to_raw_value(&result).map_err(invalid_result)),
                JobKind::GenerateEmbeddings => self.embeddings(job, &progress).await,
            }
        };
        tokio::select! {
            result = work => match result {
                Ok(value) => Outcome::Done(value),
                Err(error) => Outcome::Failed(error),
            },
            () = self.keep_lease(job.id, token, &held) => Outcome::LostLease,
            () = self.publish_progress(job, token, &held, updates) => Outcome::LostLease,
        }
    }

    /// Renews the lease until it is lost, or has run out while the database could not be
    /// reached (returns then: the attempt could record nothing, and the job may already run
    /// elsewhere).
    async fn keep_lease(&self, id: Uuid, token: &str, held: &AtomicI64) {
        loop {
            tokio::time::sleep(self.inner().heartbeat / 2).await;
            let until = store::now() + self.lease();
            match self.repo().renew(id, token, until).await {
                Ok(true) => held.store(until.timestamp_micros(), Ordering::Release),
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(job_id = %id, error = %err, "jobs: could not renew a lease");
                    if !holds(held) {
                        return;
                    }
                }
            }
        }
    }

    /// Emits progress as it changes, at most every [`PROGRESS_EVERY`], and writes it to the
    /// job's row [`PROGRESS_EVERY`] after each emit if the attempt is still running then: the
    /// row lags the events by at most that, and a job done sooner (an embedding, most
    /// often) goes from 0 to 100 in the one write that completes it. Emits only while the
    /// lease is held; returns when it is lost.
    async fn publish_progress(
        &self,
        job: &Job,
        token: &str,
        held: &AtomicI64,
        mut updates: watch::Receiver<i32>,
    ) {
        let mut stored = job.progress;
        while updates.changed().await.is_ok() {
            if !holds(held) {
                return;
            }
            let progress = *updates.borrow_and_update();
            self.emit(
                &job.user_id,
                "job:progress",
                &json!({"jobId": job.id, "progress": progress}),
            )
            .await;
            tokio::time::sleep(PROGRESS_EVERY).await;
            let latest = *updates.borrow();
            if latest == stored {
                continue;
            }
            match self.repo().set_progress(job.id, token, latest).await {
                Ok(true) => stored = latest,
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(job_id = %job.id, error = %err, "jobs: could not record progress")
                }
            }
        }
        std::future::pending::<()>().await;
    }

    /// `generate-completion`: the chat pipeline, streamed so that tokens count as progress.
    async fn completion(
        &self,
        job: &Job,
        token: &str,
        progress: &watch::Sender<i32>,
    ) -> Result<Value, ServiceError> {
        let request: ChatRequest =
            serde_json::from_value(job.data.clone()).map_err(|e| ServiceError::Invalid {
                field: "data",
                message: e.to_string(),
            })?;
        let mut input = request.into_input();
        let user = job.user_id.as_str();
        let conversation_id = match input.conversation_id.or(job.conversation_id) {
            Some(id) => id,
            None => {
                // Created once, before the first call, so that every attempt writes to it.
                drop(self.state.quotas.reserve(user, 0).await?);
                let new = NewConversationInput {
                    title: Some(DEFAULT_TITLE.to_owned()),
                    system_prompt: input.system_prompt.clone(),
                    model: input.model.clone(),
                    metadata: Some(json!({"jobId": job.id})),
                };
                let conversation = self.inner().conversations.create(user, new).await?;
                if !self
                    .repo()
                    .set_conversation(job.id, token, conversation.id)
                    .await
                    .map_err(repo_error)?
                {
                    return Err(ServiceError::Store(StoreError::Conflict));
                }
                conversation.id
            }
        };
        input.conversation_id = Some(conversation_id);
        let (_, messages) = self
            .inner()
            .conversations
            .get_with_messages(user, conversation_id)
            .await?;
        if let Some(result) = stored_result(job, &messages) {
            // An earlier attempt stored the reply and died before completing the job.
            return Ok(result);
        }
        let user_message_stored = messages
            .iter()
            .any(|m| m.role == Role::User && is_from_job(m, job.id));
        let parts = &self.inner().chat;
        let store = JobScopedStore::new(
            parts.store.clone(),
            self.repo().clone(),
            job.id,
            token.to_owned(),
            user_message_stored,
        );
        let chat = ChatService::new(
            Arc::new(store),
            parts.providers.clone(),
            parts.prices.clone(),
            self.state.quotas.clone(),
            parts.defaults.clone(),
        );
        let sink = ProgressSink::new(
            progress,
            input.max_tokens.unwrap_or(parts.defaults.max_tokens),
        );
        let mode = ChatMode::Stream {
            sink: &sink,
            cancel: CancellationToken::new(),
        };
        let outcome = chat
            .chat(user, input, mode)
            .await
            .map_err(|failure| failure.error)?;
        // The reply was stored under the job's reply id (see `JobScopedStore`).
        let tokens = i64::from(outcome.total_tokens());
        let mut reply = outcome.reply;
        reply.id = reply_id(job.id);
        Ok(completion_result(&reply, tokens))
    }

    /// `generate-embeddings`: `{embedding, model, tokens}` as `POST /ai/embeddings` answers `{text}`.
    async fn embeddings(
        &self,
        job: &Job,
        progress: &watch::Sender<i32>,
    ) -> Result<Box<RawValue>, ServiceError> {
        let data: EmbeddingJobData =
            serde_json::from_value(job.data.clone()).map_err(|e| ServiceError::Invalid {
                field: "data",
                message: e.to_string(),
            })?;
        progress.send_replace(CONTEXT_BUILT);
        let out = self
            .state
            .embeddings
            .embed(&job.user_id, data.model, vec![data.text])
            .await?;
        // Written straight from the f32s, each as its shortest decimal, as `POST /ai/embeddings`
        // writes it: the text is stored, emitted and served as it is.
        let result = EmbeddingResult {
            embedding: out.vectors.first().map_or(&[], Vec::as_slice),
            model: &out.model,
            tokens: out.prompt_tokens,
        };
        to_raw_value(&result).map_err(invalid_result)
    }

    async fn emit<T: Serialize + ?Sized>(&self, user_id: &str, name: &'static str, payload: &T) {
        if let Some(broadcaster) = self.state.broadcaster.get() {
            broadcaster.to_user(user_id, name, payload).await;
        }
        let events = &self.inner().events;
        // In-process observers (tests) get a `Value`, built only when there is one.
        if events.receiver_count() > 0
            && let Ok(payload) = serde_json::to_value(payload)
        {
            let _ = events.send(JobEvent {
                user_id: user_id.to_owned(),
                name,
                payload,
            });
        }
    }

    /// Queues again the jobs whose deliveries seem lost (see [`JobStore::stranded`]); none are
    /// with the table queue, where a job's row is its delivery.
    pub async fn rescue_stranded(&self, older_than: Duration) -> Result<usize, RunError> {
        if matches!(self.inner().queue.storage(), Storage::Table) {
            return Ok(0);
        }
        let before = store::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let stranded = self.repo().stranded(before, 100).await?;
        let mut queued = 0;
        for Stranded {
            id,
            status,
            attempts,
        } in stranded
        {
            let attempt = if status == JobStatus::Active {
                attempts
            } else {
                attempts + 1
            };
            match self
                .inner()
                .queue
                .push(
                    Envelope {
                        job_id: id,
                        attempt,
                    },
                    Duration::ZERO,
                )
                .await
            {
                Ok(()) => queued += 1,
                Err(err) => {
                    tracing::warn!(job_id = %id, error = %err, "jobs: could not queue a stranded job");
                    break;
                }
            }
        }
        Ok(queued)
    }
}

/// Whether the lease held until `held` (µs since the epoch) is still held now.
fn holds(held: &AtomicI64) -> bool {
    store::now().timestamp_micros() < held.load(Ordering::Acquire)
}

/// `job:completed`.
#[derive(Serialize)]
struct Completed<'a> {
    #[serde(rename = "jobId")]
    job_id: Uuid,
    result: &'a RawValue,
}

/// The result of a `generate-embeddings` job.
#[derive(Serialize)]
struct EmbeddingResult<'a> {
    embedding: &'a [f32],
    model: &'a str,
    tokens: u32,
}

fn invalid_result(err: serde_json::Error) -> ServiceError {
    ServiceError::Invalid {
        field: "result",
        message: err.to_string(),
    }
}

/// The result an earlier attempt kept, when its reply is stored in the conversation.
fn stored_result(job: &Job, messages: &[store::Message]) -> Option<Value> {
    let reply = messages
        .iter()
        .find(|m| m.role == Role::Assistant && m.id == reply_id(job.id))?;
    match &job.result {
        Some(result)
            if result.get("messageId").and_then(Value::as_str)
                == Some(reply.id.to_string().as_str()) =>
        {
            Some(result.clone())
        }
        // The result kept before the reply was stored was lost (a failed attempt cleared it):
        // rebuild it from the stored exchange.
        _ => {
            let prompt = messages
                .iter()
                .filter(|m| m.role == Role::User && is_from_job(m, job.id))
                .map(|m| m.tokens)
                .sum::<i64>();
            Some(completion_result(reply, prompt + reply.tokens))
        }
    }
}

/// Whether another attempt may succeed: upstream hiccups and infrastructure, not a refusal.
fn is_transient(error: &ServiceError) -> bool {
    match error {
        ServiceError::Provider(e) => {
            e.is_retryable()
                || matches!(
                    e,
                    ProviderError::StreamCut { .. } | ProviderError::Protocol { .. }
                )
        }
        ServiceError::Busy | ServiceError::Limits(_) => true,
        ServiceError::Store(StoreError::NotFound) => false,
        ServiceError::Store(_) => true,
        ServiceError::NotFound(_)
        | ServiceError::Invalid { .. }
        | ServiceError::QuotaExceeded { .. } => false,
    }
}

/// The job's `error`: what `ApiError` lets a client see (never an upstream body), with the
/// fields of a validation failure.
fn public_error(error: ServiceError) -> String {
    let error = ApiError::from(error);
    error.log();
    match &error {
        ApiError::Validation(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            format!("{}: {}", error.public_message(), fields.join("; "))
        }
        _ => error.public_message(),
    }
}

fn repo_error(err: JobStoreError) -> ServiceError {
    match err {
        JobStoreError::Corrupt(detail) => ServiceError::Limits(detail),
        other => ServiceError::Store(StoreError::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_not_retried() {
        assert!(is_transient(&ServiceError::Provider(
            ProviderError::Status {
                status: 503,
                detail: String::new()
            }
        )));
        assert!(is_transient(&ServiceError::Provider(
            ProviderError::Timeout {
                detail: String::new()
            }
        )));
        assert!(!is_transient(&ServiceError::Provider(
            ProviderError::Status {
                status: 400,
                detail: String::new()
            }
        )));
        assert!(!is_transient(&ServiceError::QuotaExceeded {
            retry_after_secs: 60
        }));
        assert!(!is_transient(&ServiceError::NotFound("conversation")));
    }

    #[test]
    fn public_errors_never_carry_upstream_detail() {
        let error = ServiceError::Provider(ProviderError::Status {
            status: 500,
            detail: "sk-secret body".into(),
        });
        let message = public_error(error);
        assert_eq!(message, "The AI provider failed to answer");
        let invalid = public_error(ServiceError::Invalid {
            field: "model",
            message: "unknown model x".into(),
        });
        assert_eq!(invalid, "Validation failed: model: unknown model x");
    }
}
