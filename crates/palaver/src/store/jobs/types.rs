//! The rows and outcomes the [`JobStore`](super::JobStore) speaks.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::JobStoreError;
use crate::store::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum JobKind {
    #[serde(rename = "generate-completion")]
    GenerateCompletion,
    #[serde(rename = "generate-embeddings")]
    GenerateEmbeddings,
    /// Queued by Palaver itself after the first exchange of an untitled conversation (not
    /// accepted by `POST /ai/jobs`).
    #[serde(rename = "generate-title")]
    GenerateTitle,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::GenerateCompletion => "generate-completion",
            JobKind::GenerateEmbeddings => "generate-embeddings",
            JobKind::GenerateTitle => "generate-title",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "generate-completion" => Some(JobKind::GenerateCompletion),
            "generate-embeddings" => Some(JobKind::GenerateEmbeddings),
            "generate-title" => Some(JobKind::GenerateTitle),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Waiting,
    Active,
    Completed,
    Failed,
    Delayed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Waiting => "waiting",
            JobStatus::Active => "active",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Delayed => "delayed",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        match s {
            "waiting" => Some(JobStatus::Waiting),
            "active" => Some(JobStatus::Active),
            "completed" => Some(JobStatus::Completed),
            "failed" => Some(JobStatus::Failed),
            "delayed" => Some(JobStatus::Delayed),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed)
    }
}

/// One row of the `jobs` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub user_id: String,
    pub kind: JobKind,
    /// The validated `data` of the request.
    pub data: Value,
    pub status: JobStatus,
    pub progress: i32,
    /// Attempts started so far (the one running included).
    pub attempts: i32,
    pub max_attempts: i32,
    /// Set when completed (a completion job also keeps it while its reply is being stored).
    pub result: Option<Value>,
    /// The public message of the last failure.
    pub error: Option<String>,
    /// The conversation a completion job writes to, once known (a title job's from the start).
    pub conversation_id: Option<Uuid>,
    /// When a delayed job is due.
    pub run_at: Option<Timestamp>,
    /// The lease of the attempt running now: a token unique to that attempt, and its expiry.
    pub locked_by: Option<String>,
    pub locked_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How an attempt ends.
#[derive(Debug, Clone)]
pub enum Finish<'a> {
    /// With the result as JSON text.
    Completed {
        result: &'a RawValue,
    },
    Failed {
        error: String,
    },
    /// Failed, with another attempt due at `run_at`.
    Delayed {
        error: String,
        run_at: Timestamp,
    },
}

/// The columns [`Finish`] writes: status, progress (`None` keeps it), result, error, run_at.
pub(crate) struct Finished<'a> {
    pub status: JobStatus,
    pub progress: Option<i32>,
    pub result: Option<&'a RawValue>,
    pub error: Option<String>,
    pub run_at: Option<Timestamp>,
}

impl<'a> Finish<'a> {
    pub(crate) fn columns(&self) -> Finished<'a> {
        match *self {
            Finish::Completed { result } => Finished {
                status: JobStatus::Completed,
                progress: Some(100),
                result: Some(result),
                error: None,
                run_at: None,
            },
            Finish::Failed { ref error } => Finished {
                status: JobStatus::Failed,
                progress: None,
                result: None,
                error: Some(error.clone()),
                run_at: None,
            },
            Finish::Delayed { ref error, run_at } => Finished {
                status: JobStatus::Delayed,
                progress: Some(0),
                result: None,
                error: Some(error.clone()),
                run_at: Some(run_at),
            },
        }
    }
}

/// A job that nobody seems to be taking care of (see [`JobStore::stranded`](super::JobStore::stranded)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stranded {
    pub id: Uuid,
    pub status: JobStatus,
    pub attempts: i32,
}

/// A job claimed by [`JobStore::claim_due`](super::JobStore::claim_due) whose row could not be
/// read back.
#[derive(Debug)]
pub struct Unreadable {
    pub id: Option<Uuid>,
    pub error: String,
}

pub(crate) fn parse_status(s: &str) -> Result<JobStatus, JobStoreError> {
    JobStatus::parse(s).ok_or_else(|| JobStoreError::Corrupt(format!("status `{s}`")))
}

pub(crate) fn parse_kind(s: &str) -> Result<JobKind, JobStoreError> {
    JobKind::parse(s).ok_or_else(|| JobStoreError::Corrupt(format!("kind `{s}`")))
}
