//! Runs one delivered attempt: claim it in the `jobs` table, run it under a lease while
//! publishing progress (`attempt.rs`), then complete it, fail it, or schedule the next one.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::outcome::{Outcome, is_transient, public_error};
use crate::queue::{Envelope, JobQueue, Storage};
use crate::service::ServiceError;
use crate::state::AppState;
use crate::store::jobs::{Finish, Job, JobStatus, Stranded, Unreadable};
use crate::store::{self, JobStore, JobStoreError};

/// A delivery waits at most this long for a job that is running elsewhere or not yet due.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] JobStoreError),
}

#[derive(Clone)]
pub struct Runner {
    pub(super) state: AppState,
    settings: Settings,
}

#[derive(Clone, Copy)]
struct Settings {
    backoff: Duration,
    heartbeat: Duration,
}

impl Runner {
    pub fn new(state: AppState) -> Runner {
        let settings = Settings {
            backoff: state.config.jobs.backoff,
            heartbeat: state.config.jobs.heartbeat,
        };
        Runner { state, settings }
    }

    pub(super) fn store(&self) -> &dyn JobStore {
        self.state.jobs.store().as_ref()
    }

    pub(super) fn heartbeat(&self) -> Duration {
        self.settings.heartbeat
    }

    fn queue(&self) -> &JobQueue {
        self.state.jobs.queue()
    }

    /// A lease outlives two renewals. On Redis it expires before apalis presumes the worker
    /// dead (three missed heartbeats), so that a re-delivered attempt finds it expired; with
    /// the table queue its expiry is what makes the job due again.
    pub(super) fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.heartbeat() * 2).unwrap_or(chrono::Duration::seconds(20))
    }

    /// Handles one delivery of the Redis queue (or one driven by hand). `Err` only when the
    /// `jobs` table cannot be reached (apalis then delivers the envelope again).
    pub async fn run(&self, envelope: Envelope) -> Result<(), RunError> {
        let Some((job, token)) = self.claim(envelope).await? else {
            return Ok(());
        };
        if job.status == JobStatus::Failed {
            self.report_exhausted(&job).await;
            return Ok(());
        }
        self.execute(job, &token).await
    }

    /// The table queue: claims up to `limit` due jobs of this process's queue, under one lease
    /// token (see [`JobStore::claim_due`]), for [`Runner::execute`].
    pub async fn claim_due(&self, limit: usize) -> Result<(Vec<Job>, String), RunError> {
        let token = Uuid::now_v7().to_string();
        let now = store::now();
        let queue = self.queue().name();
        let claimed = self
            .store()
            .claim_due(queue, limit, &token, now, now + self.lease())
            .await?;
        let mut jobs = Vec::with_capacity(claimed.len());
        for job in claimed {
            match job {
                Ok(job) if job.status == JobStatus::Failed => self.report_exhausted(&job).await,
                Ok(job) => jobs.push(job),
                Err(Unreadable { id, error }) => {
                    // Left active, it would come back at each lease expiry, for ever.
                    tracing::error!(job_id = ?id, error, "jobs: a claimed job could not be read; failing it");
                    if let Some(id) = id {
                        let finish = Finish::Failed {
                            error: "The job could not be read".to_owned(),
                        };
                        // Not `?`: the jobs claimed beside it are run either way.
                        if let Err(err) = self.store().finish(id, &token, &finish).await {
                            tracing::error!(job_id = %id, error = %err, "jobs: could not fail an unreadable job");
                        }
                    }
                }
            }
        }
        Ok((jobs, token))
    }

    /// Tells the owner of a job that a claim failed instead of taking it over once more (its
    /// workers kept dying while running it: see [`JobStore::claim`]); nothing runs.
    async fn report_exhausted(&self, job: &Job) {
        let error = job
            .error
            .as_deref()
            .unwrap_or("The job failed unexpectedly");
        tracing::error!(job_id = %job.id, attempt = job.attempts, error, "jobs: failed: its workers kept dying while running it");
        self.emit(
            &job.user_id,
            "job:failed",
            &json!({"jobId": job.id, "error": error}),
        )
        .await;
    }

    /// Whether [`Runner::claim_due`] would find a job now (a read only).
    pub async fn any_due(&self) -> Result<bool, RunError> {
        let queue = self.queue().name();
        Ok(self.store().any_due(queue, store::now()).await?)
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
        if self.store().finish(job.id, token, &finish).await? {
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
            .store()
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
        if let Err(err) = self.queue().push(next, delay).await {
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
        if self.store().finish(job.id, token, &finish).await? {
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
        self.settings.backoff.saturating_mul(1 << doublings)
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
                .store()
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
            let Some(job) = self.store().get(envelope.job_id).await? else {
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
            tokio::time::sleep(pause.min(self.heartbeat())).await;
        }
    }

    pub(super) async fn emit<T: Serialize + ?Sized>(
        &self,
        user_id: &str,
        name: &'static str,
        payload: &T,
    ) {
        self.state.notifier.to_user(user_id, name, payload).await;
    }

    /// Queues again the jobs whose deliveries seem lost (see [`JobStore::stranded`]); none are
    /// with the table queue, where a job's row is its delivery.
    pub async fn rescue_stranded(&self, older_than: Duration) -> Result<usize, RunError> {
        if matches!(self.queue().storage(), Storage::Table) {
            return Ok(0);
        }
        let before = store::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
        let stranded = self.store().stranded(before, 100).await?;
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
                .queue()
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

/// `job:completed`.
#[derive(Serialize)]
struct Completed<'a> {
    #[serde(rename = "jobId")]
    job_id: Uuid,
    result: &'a RawValue,
}
