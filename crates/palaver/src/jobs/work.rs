//! The work of each kind of job: `generate-completion` through the chat pipeline's one
//! streaming entry, made idempotent by a [`JobScope`]; `generate-embeddings` through the
//! embedding service.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::outcome::invalid_result;
use super::progress::{CONTEXT_BUILT, ProgressSink};
use super::runner::Runner;
use crate::service::NewConversationInput;
use crate::service::chat::{is_from_job, job_reply_id};
use crate::service::jobs::job_error;
use crate::service::{Anchor, ChatInput, DEFAULT_TITLE, ExchangeOptions, JobScope};
use crate::service::{EmbedInput, ReplyGuard, ServiceError};
use crate::store::jobs::Job;
use crate::store::{Message, Role};

impl Runner {
    /// `generate-completion`: the chat pipeline's streaming entry, so that tokens count as
    /// progress, with the job's scope making every attempt write the same exchange once.
    pub(super) async fn completion(
        &self,
        job: &Job,
        token: &str,
        progress: &watch::Sender<i32>,
    ) -> Result<Value, ServiceError> {
        let mut input: ChatInput = serde_json::from_value(job.data.clone()).map_err(|e| {
            ServiceError::Corrupt(format!("data of job {} is not a chat request: {e}", job.id))
        })?;
        let conversation_id = match input.conversation_id.or(job.conversation_id) {
            Some(id) => id,
            None => self.create_conversation(job, token, &input).await?,
        };
        input.conversation_id = Some(conversation_id);
        let (_, messages) = self
            .state
            .conversations
            .get_with_messages(&job.user_id, conversation_id)
            .await?;
        if let Some(result) = stored_result(job, &messages) {
            // An earlier attempt stored the reply and died before completing the job.
            return Ok(result);
        }
        // An earlier attempt stored the user message (its upstream call failed): this one
        // answers it.
        let anchor = messages
            .iter()
            .find(|m| m.role == Role::User && is_from_job(m, job.id))
            .map_or(Anchor::Latest, |m| Anchor::Reply(m.id));
        let scope = JobScope {
            job_id: job.id,
            guard: Arc::new(LeaseGuard {
                runner: self.clone(),
                job_id: job.id,
                token: token.to_owned(),
            }),
        };
        let max_tokens = input
            .max_tokens
            .unwrap_or(self.state.chat.defaults().max_tokens);
        let sink = Arc::new(ProgressSink::new(progress.clone(), max_tokens));
        let options = ExchangeOptions {
            job: Some(scope),
            anchor,
        };
        let handle = self
            .state
            .chat
            .start_stream(&job.user_id, input, sink, options)
            .await
            .map_err(|failure| failure.error)?;
        // An attempt given up (its lease lost) stops its exchange, which then stores nothing.
        let _stop = handle.stopper().drop_guard();
        let outcome = handle.finished().await.map_err(|failure| failure.error)?;
        Ok(completion_result(
            &outcome.reply,
            i64::from(outcome.total_tokens()),
        ))
    }

    /// The conversation of a job that names none: created once, before the first call, so
    /// that every attempt writes to it.
    async fn create_conversation(
        &self,
        job: &Job,
        token: &str,
        input: &ChatInput,
    ) -> Result<uuid::Uuid, ServiceError> {
        self.state.admission.quota_open(&job.user_id).await?;
        let new = NewConversationInput {
            title: Some(DEFAULT_TITLE.to_owned()),
            system_prompt: input.system_prompt.clone(),
            model: input.model.clone(),
            metadata: Some(json!({"jobId": job.id})),
        };
        let conversation = self.state.conversations.create(&job.user_id, new).await?;
        if !self
            .store()
            .set_conversation(job.id, token, conversation.id)
            .await
            .map_err(job_error)?
        {
            return Err(ServiceError::Cancelled);
        }
        Ok(conversation.id)
    }

    /// `generate-embeddings`: `{embedding, model, tokens}` as `POST /ai/embeddings` answers `{text}`.
    pub(super) async fn embeddings(
        &self,
        job: &Job,
        progress: &watch::Sender<i32>,
    ) -> Result<Box<RawValue>, ServiceError> {
        let data: EmbeddingJobData = serde_json::from_value(job.data.clone()).map_err(|e| {
            ServiceError::Corrupt(format!(
                "data of job {} is not an embedding request: {e}",
                job.id
            ))
        })?;
        progress.send_replace(CONTEXT_BUILT);
        let out = self
            .state
            .embeddings
            .embed(&job.user_id, EmbedInput::texts(data.model, vec![data.text]))
            .await?;
        // Written straight from the f32s, each as its shortest decimal, as `POST /ai/embeddings`
        // writes it: the text is stored, emitted and served as it is.
        let result = EmbeddingResult {
            embedding: out.vectors.first().map_or(&[], Vec::as_slice),
            model: &out.model,
            tokens: out.prompt_tokens,
        };
        to_raw_value(&result).map_err(invalid_result)
    }
}

/// Keeps a job's result in its row, under its lease, just before its reply is stored (see
/// [`JobScope`]).
struct LeaseGuard {
    runner: Runner,
    job_id: uuid::Uuid,
    token: String,
}

#[async_trait]
impl ReplyGuard for LeaseGuard {
    async fn before_reply(&self, reply: &Message, total_tokens: i64) -> Result<bool, ServiceError> {
        let result = completion_result(reply, total_tokens);
        self.runner
            .store()
            .stash_result(self.job_id, &self.token, &result)
            .await
            .map_err(job_error)
    }
}

/// The result of a completion job (API.md: `{conversationId, messageId, content, tokens}`,
/// `tokens` counting the whole exchange as `POST /ai/chat` does).
fn completion_result(reply: &Message, total_tokens: i64) -> Value {
    json!({
        "conversationId": reply.conversation_id,
        "messageId": reply.id,
        "content": reply.content,
        "tokens": total_tokens,
    })
}

/// `generate-embeddings` data, as `POST /ai/jobs` stored it.
#[derive(serde::Deserialize)]
struct EmbeddingJobData {
    text: String,
    model: Option<String>,
}

/// The result of a `generate-embeddings` job.
#[derive(Serialize)]
struct EmbeddingResult<'a> {
    embedding: &'a [f32],
    model: &'a str,
    tokens: u32,
}

/// The result an earlier attempt kept, when its reply is stored in the conversation.
fn stored_result(job: &Job, messages: &[Message]) -> Option<Value> {
    let reply = messages
        .iter()
        .find(|m| m.role == Role::Assistant && m.id == job_reply_id(job.id))?;
    match &job.result {
        Some(result)
            if result.get("messageId").and_then(Value::as_str)
                == Some(reply.id.to_string().as_str()) =>
        {
            Some(result.clone())
        }
        // The result kept before the reply was stored was lost (a failed attempt cleared it):
        // rebuild it from the stored exchange.
        _ => {
            let prompt = messages
                .iter()
                .filter(|m| m.role == Role::User && is_from_job(m, job.id))
                .map(|m| m.tokens)
                .sum::<i64>();
            Some(completion_result(reply, prompt + reply.tokens))
        }
    }
}
