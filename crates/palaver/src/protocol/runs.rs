//! Wire shapes of runs.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::dto::{Message, rfc3339};
use crate::service::chat::runs::RunSnapshot;
use crate::store::{Run, RunStatus};

/// Run statuses on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatusDto {
    Queued,
    InProgress,
    Completed,
    Stopped,
    Failed,
    Interrupted,
}

impl From<RunStatus> for RunStatusDto {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Queued => RunStatusDto::Queued,
            RunStatus::InProgress => RunStatusDto::InProgress,
            RunStatus::Completed => RunStatusDto::Completed,
            RunStatus::Stopped => RunStatusDto::Stopped,
            RunStatus::Failed => RunStatusDto::Failed,
            RunStatus::Interrupted => RunStatusDto::Interrupted,
        }
    }
}

impl From<RunStatusDto> for RunStatus {
    fn from(s: RunStatusDto) -> Self {
        match s {
            RunStatusDto::Queued => RunStatus::Queued,
            RunStatusDto::InProgress => RunStatus::InProgress,
            RunStatusDto::Completed => RunStatus::Completed,
            RunStatusDto::Stopped => RunStatus::Stopped,
            RunStatusDto::Failed => RunStatus::Failed,
            RunStatusDto::Interrupted => RunStatus::Interrupted,
        }
    }
}

/// One exchange: its state and the sequence number of its last event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDto {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// The reply's id.
    pub message_id: Uuid,
    /// The user message answered.
    pub user_message_id: Option<Uuid>,
    pub status: RunStatusDto,
    /// The sequence number of its last event (0 until it ends, for a run not streamed).
    pub last_seq: i64,
    /// The `chat:error` code of a failed run.
    pub error_code: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Run> for RunDto {
    fn from(r: Run) -> Self {
        RunDto {
            id: r.id,
            conversation_id: r.conversation_id,
            message_id: r.message_id,
            user_message_id: r.user_message_id,
            status: r.status.into(),
            last_seq: r.last_seq,
            error_code: r.error_code,
            created_at: rfc3339(&r.created_at),
            updated_at: rfc3339(&r.updated_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// Newest first.
    pub data: Vec<RunDto>,
}

/// `GET /ai/runs`.
#[derive(Debug, Clone, Deserialize, IntoParams, garde::Validate)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Only runs in this status (e.g. `in_progress`).
    #[garde(skip)]
    pub status: Option<RunStatusDto>,
    /// 1 to 100, default 20.
    #[garde(range(min = 1, max = 100))]
    pub limit: Option<u64>,
}

/// `GET /ai/runs/{id}/events`.
#[derive(Debug, Clone, Deserialize, IntoParams, garde::Validate)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay the events after this sequence number (else `Last-Event-ID`, else from the
    /// first).
    #[garde(skip)]
    pub after: Option<u64>,
}

/// `run:snapshot`: the run as stored, when its events are no longer kept here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSnapshotDto {
    pub run_id: Uuid,
    pub run: RunDto,
    /// The stored reply (partial for a stopped or interrupted run); null if none was stored.
    pub message: Option<Message>,
}

impl From<RunSnapshot> for RunSnapshotDto {
    fn from(s: RunSnapshot) -> Self {
        RunSnapshotDto {
            run_id: s.run.id,
            run: s.run.into(),
            message: s.message.map(Into::into),
        }
    }
}

/// The name of the snapshot event.
pub const RUN_SNAPSHOT: &str = "run:snapshot";
