//! The job workers: the third transport into the service layer, beside REST and Socket.IO.
//! They take attempts from the queue ([`crate::queue`]), run them under a lease in the
//! `jobs` table ([`crate::store::JobStore`]) and report to the owner's connections.
//!
//! - **State** is the `jobs` table: status, progress, attempts, result, error, and a lease.
//!   Every instance reads it; only the worker holding the lease writes it.
//! - **Delivery**, with `REDIS_URL`, is apalis-redis: an [`Envelope`] `{jobId, attempt}`
//!   travels through Redis, apalis decides which worker runs it and re-delivers the envelopes
//!   of a worker that died, and a delivery is acted on only when the table says it is due, so
//!   duplicate or stale deliveries are harmless. Without Redis the table is the queue too:
//!   workers claim its due rows (waiting, delayed and due, or under an expired lease).
//!
//! Retries: a failed attempt that may succeed later schedules the next attempt with a delay
//! (`JOB_BACKOFF_MS`, doubled per attempt) and marks the job `delayed`; after `maxAttempts`
//! the job is `failed` with the public message of the error. A job whose worker stopped under
//! it (its lease expired) is taken over and run again, until the `maxAttempts`-th takeover,
//! which fails it instead (`JobStore::claim`). A completion job runs the chat
//! pipeline with a [`crate::service::JobScope`], so that a re-run never stores a second user
//! message or reply. A `generate-title` job (queued by the pipeline, not by clients) sets a
//! conversation's title only while it is still the default one.

mod attempt;
mod maintenance;
mod outcome;
mod progress;
mod runner;
mod title;
mod work;
mod worker;

use std::time::Duration;

use uuid::Uuid;

pub use crate::queue::{Envelope, QueueError};
pub use maintenance::{prune_finished, prune_usage};
pub use runner::RunError;
pub use worker::{Workers, start_workers};

/// What `palaver-bench jobs` needs to drive the Redis queue exactly as Palaver does (the
/// storage settings, the task an envelope travels in, the worker's poll interval). Not an API.
#[doc(hidden)]
pub mod bench_support {
    pub use super::worker::{POLL_EVERY, Wakeups};
    pub use crate::queue::{Pushed, redis_config, task};
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
