//! The store a completion job's chat pipeline writes through: the real store, with the
//! exchange made idempotent per job.
//!
//! - Every message the job stores carries `metadata.jobId`.
//! - The user message is stored once: when an earlier attempt stored it (its upstream call
//!   failed), this attempt does not store it again, and the history it builds the context
//!   from leaves the earlier copy out (the pipeline adds the message itself).
//! - The reply is stored once, complete: a partial reply of a failed stream is not stored
//!   (its usage still is), since the next attempt answers in full; and just before the reply
//!   is stored, the job's result is kept in the `jobs` table, so that an attempt that finds
//!   the reply already stored (its predecessor died right after storing it) completes with
//!   that result instead of asking again.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::store::{
    Conversation, JobStore, Message, NewConversation, Role, Store, StoreError, StoreResult,
    Timestamp, UsageRecord, UsageTotals, User,
};

/// Whether `message` was stored by job `job_id`.
pub fn is_from_job(message: &Message, job_id: Uuid) -> bool {
    message.metadata.get("jobId").and_then(Value::as_str) == Some(job_id.to_string().as_str())
}

/// The id of a completion job's reply: the same for every attempt of the job.
pub fn reply_id(job_id: Uuid) -> Uuid {
    Uuid::new_v5(&job_id, b"reply")
}

/// The result of a completion job (API.md: `{conversationId, messageId, content, tokens}`,
/// `tokens` counting the whole exchange as `POST /ai/chat` does).
pub fn completion_result(reply: &Message, total_tokens: i64) -> Value {
    json!({
        "conversationId": reply.conversation_id,
        "messageId": reply.id,
        "content": reply.content,
        "tokens": total_tokens,
    })
}

pub struct JobScopedStore {
    inner: Arc<dyn Store>,
    repo: Arc<dyn JobStore>,
    job_id: Uuid,
    /// The lease token of the attempt.
    token: String,
    /// An earlier attempt stored the user message.
    user_message_stored: bool,
}

impl JobScopedStore {
    pub fn new(
        inner: Arc<dyn Store>,
        repo: Arc<dyn JobStore>,
        job_id: Uuid,
        token: String,
        user_message_stored: bool,
    ) -> Self {
        JobScopedStore {
            inner,
            repo,
            job_id,
            token,
            user_message_stored,
        }
    }
}

impl JobScopedStore {
    /// `message` with `metadata.jobId` set to this job.
    fn tagged(&self, message: &Message) -> Message {
        let mut message = message.clone();
        if !message.metadata.is_object() {
            message.metadata = json!({});
        }
        message.metadata["jobId"] = json!(self.job_id);
        message
    }
}

#[async_trait]
impl Store for JobScopedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn migrate(&self) -> StoreResult<()> {
        self.inner.migrate().await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn ensure_user(&self, user_id: &str, now: Timestamp) -> StoreResult<()> {
        self.inner.ensure_user(user_id, now).await
    }

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        self.inner.get_user(user_id).await
    }

    async fn create_conversation(&self, new: &NewConversation) -> StoreResult<Conversation> {
        self.inner.create_conversation(new).await
    }

    async fn start_conversation(&self, new: &NewConversation, first: &Message) -> StoreResult<()> {
        self.inner
            .start_conversation(new, &self.tagged(first))
            .await
    }

    async fn list_conversations(
        &self,
        user_id: &str,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Conversation>, u64)> {
        self.inner.list_conversations(user_id, offset, limit).await
    }

    async fn get_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Conversation>> {
        self.inner.get_conversation(user_id, id).await
    }

    async fn delete_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<bool> {
        self.inner.delete_conversation(user_id, id).await
    }

    async fn list_messages(&self, conversation_id: Uuid) -> StoreResult<Vec<Message>> {
        self.inner.list_messages(conversation_id).await
    }

    async fn recent_messages(
        &self,
        conversation_id: Uuid,
        limit: u64,
    ) -> StoreResult<Vec<Message>> {
        let mut messages = self.inner.recent_messages(conversation_id, limit).await?;
        messages.retain(|m| !is_from_job(m, self.job_id));
        Ok(messages)
    }

    async fn append_message(
        &self,
        message: &Message,
        usage: Option<&UsageRecord>,
    ) -> StoreResult<()> {
        let mut message = self.tagged(message);
        match message.role {
            Role::User if self.user_message_stored => Ok(()),
            Role::Assistant if message.metadata.get("partial") == Some(&json!(true)) => match usage
            {
                Some(usage) => self.inner.record_usage(usage).await,
                None => Ok(()),
            },
            Role::Assistant => {
                // One id per job: however attempts interleave, a second reply cannot be stored.
                message.id = reply_id(self.job_id);
                let total = usage.map_or(message.tokens, |u| u.prompt_tokens + u.completion_tokens);
                let result = completion_result(&message, total);
                if !self
                    .repo
                    .stash_result(self.job_id, &self.token, &result)
                    .await
                    .map_err(StoreError::from)?
                {
                    // The lease was lost: another worker has the job now; it stores the reply.
                    return Err(StoreError::Conflict);
                }
                self.inner.append_message(&message, usage).await
            }
            _ => self.inner.append_message(&message, usage).await,
        }
    }

    async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()> {
        self.inner.record_usage(usage).await
    }

    async fn usage_stats(&self, user_id: &str) -> StoreResult<UsageTotals> {
        self.inner.usage_stats(user_id).await
    }

    async fn tokens_used_since(&self, user_id: &str, since: Timestamp) -> StoreResult<i64> {
        self.inner.tokens_used_since(user_id, since).await
    }
}
