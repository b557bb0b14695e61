//! A `generate-completion` job's exchange, made idempotent across the job's attempts: an
//! explicit option of the pipeline (not a storage wrapper).
//!
//! - Every message the job stores carries `metadata.jobId`.
//! - The user message is stored once: when an earlier attempt stored it (its upstream call
//!   failed), this attempt answers that one ([`Anchor::Reply`](super::Anchor::Reply)).
//! - The reply has one id per job ([`job_reply_id`]), so however attempts interleave, a second
//!   reply cannot be stored; a partial or stopped reply is not stored at all (its usage still
//!   is), since the next attempt answers in full.
//! - Just before the reply is stored, the [`ReplyGuard`] is asked: the job keeps its result
//!   in the `jobs` table under its lease, so that an attempt that finds the reply already
//!   stored (its predecessor died right after storing it) completes with that result.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::service::ServiceError;
use crate::store::Message;

/// The id of a completion job's reply: the same for every attempt of the job.
pub fn job_reply_id(job_id: Uuid) -> Uuid {
    Uuid::new_v5(&job_id, b"reply")
}

/// Asked just before a job's reply is stored.
#[async_trait]
pub trait ReplyGuard: Send + Sync {
    /// `Ok(false)` when the reply must not be stored (the job's lease was lost: another
    /// worker has the job now, and it stores the reply).
    async fn before_reply(&self, reply: &Message, total_tokens: i64) -> Result<bool, ServiceError>;
}

#[derive(Clone)]
pub struct JobScope {
    pub job_id: Uuid,
    pub guard: Arc<dyn ReplyGuard>,
}

/// Whether `message` was stored by job `job_id`.
pub fn is_from_job(message: &Message, job_id: Uuid) -> bool {
    message.metadata.get("jobId").and_then(Value::as_str) == Some(job_id.to_string().as_str())
}

/// Marks `metadata` as written by the job of `scope`, if any.
pub(super) fn tag(metadata: &mut Value, scope: Option<&JobScope>) {
    if let Some(scope) = scope {
        if !metadata.is_object() {
            *metadata = json!({});
        }
        metadata["jobId"] = json!(scope.job_id);
    }
}
