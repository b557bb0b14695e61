//! Runs: every exchange, with its status and the sequence number of its last event.

use uuid::Uuid;

use super::Timestamp;

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
