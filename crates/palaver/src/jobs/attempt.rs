//! One attempt's work under its lease: the job's work, lease renewals and progress, until
//! the work ends or the lease is lost.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::json;
use serde_json::value::to_raw_value;
use tokio::sync::watch;
use uuid::Uuid;

use super::outcome::{Outcome, invalid_result};
use super::runner::Runner;
use crate::store;
use crate::store::jobs::{Job, JobKind};

/// Progress is written and emitted at most this often.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

impl Runner {
    /// Runs the job's work while renewing the lease and publishing progress.
    pub(super) async fn attempt(&self, job: &Job, token: &str) -> Outcome {
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
                JobKind::GenerateTitle => self.title(job).await,
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
            tokio::time::sleep(self.heartbeat() / 2).await;
            let until = store::now() + self.lease();
            match self.store().renew(id, token, until).await {
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
            match self.store().set_progress(job.id, token, latest).await {
                Ok(true) => stored = latest,
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(job_id = %job.id, error = %err, "jobs: could not record progress")
                }
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Whether the lease held until `held` (µs since the epoch) is still held now.
fn holds(held: &AtomicI64) -> bool {
    store::now().timestamp_micros() < held.load(Ordering::Acquire)
}
