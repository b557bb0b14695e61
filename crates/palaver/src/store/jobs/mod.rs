//! The `jobs` table (migrations `*_jobs.sql`): the state of every background job, readable
//! from every instance, behind one narrow trait with a SQLite and a PostgreSQL implementation
//! (`store/sqlite/jobs.rs`, `store/postgres/jobs.rs`).
//!
//! Writes by a running attempt are guarded by its lease token (`locked_by`): a worker that
//! lost its lease (presumed dead, job handed over) can no longer change the job.

mod types;

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

pub use types::{Finish, Job, JobKind, JobStatus, Stranded, Unreadable};
pub(crate) use types::{parse_kind, parse_status};

use super::{BoxError, StoreError, Timestamp};

/// Errors of the `jobs` table. `Corrupt` is a row that does not read as a job: retrying
/// will not help, unlike `Other` (the database unreachable, a timeout).
#[derive(Debug, thiserror::Error)]
pub enum JobStoreError {
    /// A job with this id exists already.
    #[error("jobs table: a job with this id already exists")]
    Conflict,
    #[error("jobs table: unreadable row: {0}")]
    Corrupt(String),
    #[error("jobs table: {0}")]
    Other(#[source] BoxError),
}

pub type JobStoreResult<T> = Result<T, JobStoreError>;

impl From<JobStoreError> for StoreError {
    /// For callers that report job-table failures as store failures.
    fn from(e: JobStoreError) -> StoreError {
        match e {
            JobStoreError::Conflict => StoreError::Conflict,
            JobStoreError::Other(e) => StoreError::Other(e),
            corrupt @ JobStoreError::Corrupt(_) => StoreError::Other(Box::new(corrupt)),
        }
    }
}

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new job in `queue` (the name of `JOB_QUEUE`). `Conflict` when its id exists.
    async fn insert(&self, job: &Job, queue: &str) -> JobStoreResult<()>;

    /// The job; `Corrupt` when its row does not read as one.
    async fn get(&self, id: Uuid) -> JobStoreResult<Option<Job>>;

    /// Starts attempt `attempt` under the lease `token` when the job is due for it: waiting or
    /// delayed (and due) with fewer attempts, or active under a lease that has expired (its
    /// worker died: a takeover, counted). `None` when it is not due (see [`Job`] for why).
    ///
    /// A takeover that would be the job's `max_attempts`-th fails the job instead (its worker
    /// died that often: the job itself probably kills it) and returns it `failed`, with no
    /// lease and a public error: the caller reports it and runs nothing. The same holds for
    /// each job [`JobStore::claim_due`] returns.
    async fn claim(
        &self,
        id: Uuid,
        attempt: i32,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> JobStoreResult<Option<Job>>;

    /// The table as the queue: starts, under the lease `token`, up to `limit` due jobs of
    /// `queue`, oldest first. Due: waiting, delayed past `run_at`, or active under a lease that
    /// expired before `now` (its worker died: the same attempt runs again, as a re-delivered
    /// envelope would, or the job fails as [`JobStore::claim`] says). Each job is claimed by one caller only, across processes. A claimed
    /// row that cannot be read back is returned as [`Unreadable`] (it does not block the rest).
    async fn claim_due(
        &self,
        queue: &str,
        limit: usize,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> JobStoreResult<Vec<Result<Job, Unreadable>>>;

    /// Puts the unfinished jobs stored before jobs had a queue (migration 0004) into `queue`;
    /// returns how many. Idempotent, so every process may run it at start-up.
    async fn adopt_unassigned(&self, queue: &str) -> JobStoreResult<u64>;

    /// Whether [`JobStore::claim_due`] would find a job now (a read: an idle worker asks this
    /// before it takes the write lock).
    async fn any_due(&self, queue: &str, now: Timestamp) -> JobStoreResult<bool>;

    /// Extends the lease; false when it was lost.
    async fn renew(&self, id: Uuid, token: &str, until: Timestamp) -> JobStoreResult<bool>;

    /// Sets the progress of the attempt holding `token`; false when the lease was lost.
    async fn set_progress(&self, id: Uuid, token: &str, progress: i32) -> JobStoreResult<bool>;

    /// Records the conversation a completion job writes to; false when the lease was lost.
    async fn set_conversation(
        &self,
        id: Uuid,
        token: &str,
        conversation_id: Uuid,
    ) -> JobStoreResult<bool>;

    /// Keeps a completion's result before its reply is stored (see `crate::service::JobScope`).
    async fn stash_result(&self, id: Uuid, token: &str, result: &Value) -> JobStoreResult<bool>;

    /// Ends the attempt holding `token` and releases the lease; false when it was lost.
    async fn finish(&self, id: Uuid, token: &str, finish: &Finish<'_>) -> JobStoreResult<bool>;

    /// Fails a job that never ran (it could not be queued).
    async fn abandon(&self, id: Uuid, error: &str) -> JobStoreResult<()>;

    /// Jobs not finished and not looked after since `before`: waiting since then, delayed
    /// and due since then, or active under a lease that expired then. Their deliveries were
    /// probably lost (an instance's local queue gone, a Redis without persistence restarted).
    async fn stranded(&self, before: Timestamp, limit: i64) -> JobStoreResult<Vec<Stranded>>;

    /// Deletes up to `limit` completed and failed jobs last updated before `finished_before`,
    /// oldest first; returns how many. Unfinished jobs are never deleted.
    async fn prune_finished(&self, finished_before: Timestamp, limit: u32) -> JobStoreResult<u64>;
}

/// The columns of a [`Job`], in the order of `insert`.
macro_rules! columns {
    () => {
        "id, user_id, kind, data, status, progress, attempts, max_attempts, result, error, \
         conversation_id, run_at, locked_by, locked_until, created_at, updated_at"
    };
}

/// The jobs of queue `$queue` that are due at `$now` (placeholders of the dialect): waiting,
/// delayed past `run_at`, or active under an expired lease. The `status IN` term lets the
/// partial index `jobs_queued` serve the search.
macro_rules! due {
    ($queue:literal, $now:literal) => {
        concat!(
            "queue = ",
            $queue,
            " AND status IN ('waiting', 'active', 'delayed')
             AND (status = 'waiting' OR (status = 'delayed' AND run_at <= ",
            $now,
            ")
                  OR (status = 'active' AND locked_until < ",
            $now,
            "))"
        )
    };
}

/// Whether a claim takes the row over from a dead worker (active and due: its lease expired)
/// for the `max_attempts`-th time. A takeover re-runs the attempt without counting it, so the
/// row counts takeovers apart (`takeovers`, migrations `*_job_takeovers.sql`); the claim that
/// would be the `max_attempts`-th fails the job instead of starting it.
macro_rules! exhausted {
    () => {
        "(status = 'active' AND takeovers + 1 >= max_attempts)"
    };
}

/// The `SET` of a claim (placeholders of the dialect; `$attempts` is the attempt it starts):
/// starts the attempt under the lease, counting a takeover, or fails the job with a public
/// error and no lease when the takeover is one too many (see [`exhausted!`]).
macro_rules! claim_set {
    ($attempts:literal, $token:literal, $now:literal, $lease:literal) => {
        concat!(
            "status = CASE WHEN ",
            $crate::store::jobs::exhausted!(),
            " THEN 'failed' ELSE 'active' END,
             attempts = CASE WHEN ",
            $crate::store::jobs::exhausted!(),
            " THEN attempts ELSE ",
            $attempts,
            " END,
             takeovers = takeovers + CASE WHEN status = 'active' THEN 1 ELSE 0 END,
             error = CASE WHEN ",
            $crate::store::jobs::exhausted!(),
            " THEN 'The worker running the job stopped '
                 || CASE WHEN takeovers = 0 THEN 'once' ELSE (takeovers + 1) || ' times' END
               ELSE error END,
             locked_by = CASE WHEN ",
            $crate::store::jobs::exhausted!(),
            " THEN NULL ELSE ",
            $token,
            " END,
             locked_until = CASE WHEN ",
            $crate::store::jobs::exhausted!(),
            " THEN NULL ELSE ",
            $lease,
            " END,
             run_at = NULL, updated_at = ",
            $now
        )
    };
}

pub(crate) use {claim_set, columns, due, exhausted};
