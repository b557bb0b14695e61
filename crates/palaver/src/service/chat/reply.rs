//! The end of an exchange: the reply and its usage stored, or the failure recorded.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use uuid::Uuid;

use super::scope::tag;
use super::stream::Answer;
use super::turn::Turn;
use super::{ChatOutcome, ChatService};
use crate::providers::tokens;
use crate::providers::{ProviderError, Usage};
use crate::service::{Attribution, DEFAULT_TITLE, ServiceError};
use crate::store::{
    self, Checkpoint, Message, Role, RunEnd, RunStatus, StoreError, Timestamp, UsageRecord,
};

impl ChatService {
    /// Stores what the provider gave: the reply (complete, stopped, or the partial text of a
    /// stream that broke, which is then reported as failed), or records a failed call.
    pub(super) async fn conclude(
        &self,
        user_id: &str,
        turn: Turn<'_>,
        answer: Answer,
        last_seq: u64,
    ) -> Result<ChatOutcome, ServiceError> {
        let (content, finish_reason, reported, stopped) = match answer {
            Answer::Complete {
                content,
                finish_reason,
                reported,
            } => (content, finish_reason, reported, false),
            Answer::Stopped { content } => (content, "stopped".to_owned(), None, true),
            Answer::Interrupted { content } => {
                self.store_interrupted(user_id, &turn, &content, last_seq)
                    .await?;
                return Err(ServiceError::Interrupted);
            }
            Answer::Failed(err) => return Err(self.upstream_failed(user_id, &turn, err).await),
            Answer::Broken { content, error } => {
                // Keep what arrived: the partial reply is stored, then the failure reported.
                let usage = self.usage_of(&turn, &content, None);
                let metadata = json!({"partial": true, "error": "upstream_error"});
                match self
                    .store_reply(user_id, &turn, &content, usage, metadata, None)
                    .await
                {
                    // A job's partial reply is not stored (its next attempt answers in full).
                    Ok(_) | Err(ServiceError::Cancelled) => {}
                    Err(err) => return Err(err),
                }
                return Err(ServiceError::Provider(error));
            }
        };
        let usage = self.usage_of(&turn, &content, reported);
        let mut metadata = json!({
            "finishReason": finish_reason,
            "provider": turn.provider.name(),
            "usage": {"promptTokens": usage.prompt_tokens, "completionTokens": usage.completion_tokens},
        });
        if stopped {
            metadata["stopped"] = json!(true);
        }
        if turn.cached.load(Ordering::Relaxed) {
            metadata["cached"] = json!(true);
        }
        let reply = self
            .store_reply(
                user_id,
                &turn,
                &content,
                usage,
                metadata,
                Some(Self::run_end(stopped, last_seq)),
            )
            .await?;
        self.queue_title(user_id, &turn, &reply);
        let mut conversation = turn.conversation;
        conversation.message_count += 1 + i64::from(turn.new_user_message);
        conversation.updated_at = reply.created_at;
        conversation.active_leaf_id = Some(reply.id);
        Ok(ChatOutcome {
            run_id: turn.run_id,
            conversation,
            created_conversation: turn.created,
            user_message: turn.user_message,
            reply,
            model: turn.model,
            finish_reason,
            usage,
            stopped,
        })
    }

    /// Stores the partial reply of an interrupted exchange (when there is one) with the end of
    /// its run, `interrupted`.
    async fn store_interrupted(
        &self,
        user_id: &str,
        turn: &Turn<'_>,
        content: &str,
        last_seq: u64,
    ) -> Result<(), ServiceError> {
        if content.is_empty() && turn.checkpointed.get().is_none() {
            return Ok(());
        }
        let usage = self.usage_of(turn, content, None);
        let metadata =
            json!({"partial": true, "interrupted": true, "provider": turn.provider.name()});
        let end = RunEnd {
            status: RunStatus::Interrupted,
            last_seq: i64::try_from(last_seq).unwrap_or(i64::MAX),
            error_code: Some("interrupted".to_owned()),
            at: store::now(),
        };
        match self
            .store_reply(user_id, turn, content, usage, metadata, Some(end))
            .await
        {
            Ok(_) | Err(ServiceError::Cancelled) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Writes the reply's text so far to its row (inserted the first time), with the run's
    /// progress and a renewed lease; false when the run is no longer live (taken for lost).
    /// A failed write is logged: the next one, or the last, catches up.
    /// `tokens` is the reply's token count so far (summed over the checkpoints' new text: it
    /// may differ from the whole text's count by a token per checkpoint).
    pub(super) async fn checkpoint(
        &self,
        turn: &Turn<'_>,
        content: String,
        tokens: i64,
        last_seq: u64,
    ) -> bool {
        let first = turn.checkpointed.get().is_none();
        let at = turn.checkpointed.get().copied().unwrap_or_else(store::now);
        let metadata =
            json!({"partial": true, "streaming": true, "provider": turn.provider.name()});
        let reply = self.reply_message(turn, content, tokens, metadata, at);
        let checkpoint = Checkpoint {
            reply: &reply,
            first,
            run_id: turn.run_id,
            last_seq: i64::try_from(last_seq).unwrap_or(i64::MAX),
            lease_until: self.lease_from(store::now()),
        };
        match self.store.checkpoint_reply(&checkpoint).await {
            Ok(live) => {
                if live && first {
                    let _ = turn.checkpointed.set(at);
                }
                live
            }
            Err(err) => {
                tracing::warn!(error = %err, run_id = %turn.run_id, "runs: could not checkpoint a reply");
                true
            }
        }
    }

    /// The reply of `turn`, as stored.
    fn reply_message(
        &self,
        turn: &Turn<'_>,
        content: String,
        tokens: i64,
        metadata: Value,
        created_at: Timestamp,
    ) -> Message {
        Message {
            id: turn.reply_id,
            conversation_id: turn.conversation.id,
            parent_id: Some(turn.user_message.id),
            role: Role::Assistant,
            content,
            tokens,
            model: Some(turn.model.clone()),
            metadata,
            created_at,
            edited_at: None,
        }
    }

    /// Queues the conversation's title job when this was its first exchange and it is
    /// untitled (`AUTO_TITLE`), from a tracked task: the exchange does not wait for the
    /// queue, and a failure to queue is logged, not the exchange's.
    fn queue_title(&self, user_id: &str, turn: &Turn<'_>, reply: &Message) {
        let Some(auto) = &self.titles else {
            return;
        };
        // Messages stored before this exchange (the message it answers aside, when stored
        // before: a job's earlier attempt stored it).
        let before = turn.conversation.message_count - i64::from(!turn.new_user_message);
        if before > 0 || turn.conversation.title != DEFAULT_TITLE || reply.content.trim().is_empty()
        {
            return;
        }
        let model = auto.model.as_deref().unwrap_or(turn.requested).to_owned();
        let queue = auto.queue.clone();
        let (user, conversation_id) = (user_id.to_owned(), turn.conversation.id);
        self.tasks.spawn(async move {
            if let Err(err) = queue.queue_title(&user, conversation_id, &model).await {
                tracing::warn!(error = %err, %conversation_id, "titles: could not queue the title job");
            }
        });
    }

    /// The provider's reported usage when present, else our exact count.
    fn usage_of(&self, turn: &Turn<'_>, content: &str, reported: Option<Usage>) -> Usage {
        reported.unwrap_or_else(|| Usage {
            prompt_tokens: turn.counted_prompt,
            completion_tokens: tokens::count_text(&turn.model, content) as u32,
        })
    }

    /// Stores the reply with its usage, and with `end` the end of its run (in the same write;
    /// `None` for the partial reply of a stream that broke, whose run ends failed). A job
    /// stores only its complete reply, once: a partial or stopped one is not stored, its
    /// usage is, and the job's guard is asked first.
    async fn store_reply(
        &self,
        user_id: &str,
        turn: &Turn<'_>,
        content: &str,
        usage: Usage,
        mut metadata: Value,
        end: Option<RunEnd>,
    ) -> Result<Message, ServiceError> {
        let partial = end
            .as_ref()
            .is_none_or(|e| matches!(e.status, RunStatus::Stopped | RunStatus::Interrupted));
        tag(&mut metadata, turn.scope.as_ref());
        let now = store::now();
        // A checkpointed reply keeps the time its row was first written.
        let created_at = turn.checkpointed.get().copied().unwrap_or(now);
        let tokens = i64::from(usage.completion_tokens);
        let reply = self.reply_message(turn, content.to_owned(), tokens, metadata, created_at);
        let record = self.usage_record(user_id, turn, "chat", usage, now);
        if let Some(scope) = &turn.scope {
            if partial {
                self.store.record_usage(&record).await?;
                return Err(ServiceError::Cancelled);
            }
            let total = record.prompt_tokens + record.completion_tokens;
            if !scope.guard.before_reply(&reply, total).await? {
                return Err(ServiceError::Cancelled);
            }
        }
        let stored = match (&end, turn.checkpointed.get()) {
            (end, Some(_)) => {
                self.store
                    .replace_reply(&reply, &record, turn.run_id, end.as_ref())
                    .await
            }
            (Some(end), None) => {
                self.store
                    .end_exchange(&reply, &record, turn.run_id, end)
                    .await
            }
            (None, None) => self.store.append_message(&reply, Some(&record)).await,
        };
        match stored {
            Ok(()) => Ok(reply),
            // The conversation was deleted while the reply was being generated: the tokens
            // were still spent, so they still count against the user.
            Err(StoreError::NotFound) => {
                self.store.record_usage(&record).await?;
                Err(ServiceError::NotFound("Conversation"))
            }
            Err(err) => Err(err.into()),
        }
    }

    fn usage_record(
        &self,
        user_id: &str,
        turn: &Turn<'_>,
        kind: &str,
        usage: Usage,
        created_at: store::Timestamp,
    ) -> UsageRecord {
        let mut record = self.priced_usage(user_id, &turn.model, &turn.attribution, usage);
        record.conversation_id = Some(turn.conversation.id);
        kind.clone_into(&mut record.kind);
        record.created_at = created_at;
        // A reply from the response cache cost the provider nothing.
        if turn.cached.load(Ordering::Relaxed) {
            record.cost_usd = 0.0;
        }
        record
    }

    /// The usage record of one provider call of `model`, priced, made now, of kind `chat`
    /// and in no conversation (the callers set what differs).
    pub(super) fn priced_usage(
        &self,
        user_id: &str,
        model: &str,
        attribution: &Attribution,
        usage: Usage,
    ) -> UsageRecord {
        let (prompt, completion) = (
            i64::from(usage.prompt_tokens),
            i64::from(usage.completion_tokens),
        );
        UsageRecord {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            conversation_id: None,
            kind: "chat".to_owned(),
            model: model.to_owned(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost_usd: self.prices.cost(model, prompt, completion),
            created_at: store::now(),
            api_key_id: attribution.api_key_id,
            end_user: attribution.end_user.clone(),
        }
    }

    /// Records a failed upstream call (the user message stays stored) and returns the error.
    async fn upstream_failed(
        &self,
        user_id: &str,
        turn: &Turn<'_>,
        err: ProviderError,
    ) -> ServiceError {
        tracing::warn!(error = %err, model = turn.model, "chat: provider failed");
        tracing::debug!(detail = err.detail(), "chat: provider failure detail");
        let none = Usage {
            prompt_tokens: 0,
            completion_tokens: 0,
        };
        let mut record = self.usage_record(user_id, turn, "chat_failed", none, store::now());
        record.cost_usd = 0.0;
        if let Err(store_err) = self.store.record_usage(&record).await {
            tracing::error!(error = %store_err, "chat: could not record the failed call");
        }
        ServiceError::Provider(err)
    }
}
