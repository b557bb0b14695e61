//! Runs: every exchange, with its status and the sequence number of its last event, the
//! lease its producer holds on it while it is live, and the client's key of the request that
//! started it.

use async_trait::async_trait;
use uuid::Uuid;

use super::{Message, StoreResult, Timestamp, UsageRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    InProgress,
    Completed,
    Stopped,
    Failed,
    /// Its producer went away before it ended (its partial reply is kept).
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::InProgress => "in_progress",
            RunStatus::Completed => "completed",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Queued,
            RunStatus::InProgress,
            RunStatus::Completed,
            RunStatus::Stopped,
            RunStatus::Failed,
            RunStatus::Interrupted,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Still producing events.
    pub fn is_live(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::InProgress)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: Uuid,
    pub user_id: String,
    pub conversation_id: Uuid,
    /// The reply's id.
    pub message_id: Uuid,
    /// The user message it answers.
    pub user_message_id: Option<Uuid>,
    pub status: RunStatus,
    /// The sequence number of its last event (events count from 1).
    pub last_seq: i64,
    /// Why it failed (the error code of its `chat:error`).
    pub error_code: Option<String>,
    /// While it is live: until when its producer holds it (renewed as it runs).
    pub lease_until: Option<Timestamp>,
    /// The client's key of the request that started it (`Idempotency-Key`).
    pub request_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub status: RunStatus,
    pub last_seq: i64,
    pub error_code: Option<String>,
    pub at: Timestamp,
}

/// A checkpoint of a streaming reply: its text so far, written to its message row (inserted
/// by the first checkpoint, updated by the next ones), with the run's progress and lease.
#[derive(Debug, Clone)]
pub struct Checkpoint<'a> {
    /// The reply as it stands (its metadata marks it partial).
    pub reply: &'a Message,
    /// True for the run's first checkpoint: the reply's row is inserted (as
    /// [`Store::append_message`](super::Store::append_message) would), else updated.
    pub first: bool,
    pub run_id: Uuid,
    /// The sequence number of the last event the reply's text includes.
    pub last_seq: i64,
    pub lease_until: Timestamp,
}

/// The operations on runs (every [`Store`](super::Store) has them).
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Records how a run ended; false when there is no such run, or it has ended already.
    async fn finish_run(&self, id: Uuid, end: &RunEnd) -> StoreResult<bool>;

    /// A run of `user_id`.
    async fn get_run(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Run>>;

    /// The run of `user_id` started by the request of key `key`.
    async fn run_by_request_key(&self, user_id: &str, key: &str) -> StoreResult<Option<Run>>;

    /// The user's newest `limit` runs (of one status when given), newest first.
    async fn list_runs(
        &self,
        user_id: &str,
        status: Option<RunStatus>,
        limit: u64,
    ) -> StoreResult<Vec<Run>>;

    /// Extends the lease of a live run; false when it is not live (it ended, or was marked
    /// interrupted).
    async fn renew_run(&self, id: Uuid, lease_until: Timestamp) -> StoreResult<bool>;

    /// Writes a checkpoint of a live run's reply, and renews its lease, in one transaction.
    /// `NotFound` (nothing written) when the conversation is gone; false when the run is no
    /// longer live (its reply is then left as it is).
    async fn checkpoint_reply(&self, checkpoint: &Checkpoint<'_>) -> StoreResult<bool>;

    /// The last write of an exchange whose reply was checkpointed: the reply's row updated to
    /// its final text and metadata, its usage recorded and, with `end`, the end of its run, in
    /// one transaction. `NotFound` (nothing written) when the reply's row is gone.
    async fn replace_reply(
        &self,
        reply: &Message,
        usage: &UsageRecord,
        run_id: Uuid,
        end: Option<&RunEnd>,
    ) -> StoreResult<()>;

    /// Marks up to `limit` live runs whose lease expired before `now` as `interrupted` (their
    /// checkpointed replies are marked too: `metadata.interrupted`), and returns them.
    async fn interrupt_expired_runs(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Run>>;
}
