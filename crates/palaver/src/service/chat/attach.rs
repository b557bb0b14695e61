//! Requests sent again with the key of an earlier one (`Idempotency-Key`, `clientRequestId`):
//! they attach to the run the first one started instead of starting, and paying for, another.

use std::time::Duration;

use super::{ChatInput, ChatOutcome, ChatService};
use crate::providers::Usage;
use crate::service::ServiceError;
use crate::store::{Run, RunStatus, StoreError};

/// How often a request attached to a live run that is not streamed checks for its end.
const ATTACH_POLL: Duration = Duration::from_millis(100);

impl ChatService {
    /// The run that an earlier request of the user with the same key started, if any.
    pub async fn keyed_run(
        &self,
        user_id: &str,
        input: &ChatInput,
    ) -> Result<Option<Run>, ServiceError> {
        let Some(key) = &input.client_request_id else {
            return Ok(None);
        };
        Ok(self.store.run_by_request_key(user_id, key).await?)
    }

    /// The outcome of a keyed run, as stored once it has ended (waiting for its end while it
    /// runs: its lease guarantees one). A run that stored no reply is reported as such.
    pub async fn outcome_of(&self, user_id: &str, run: Run) -> Result<ChatOutcome, ServiceError> {
        let mut run = run;
        while run.status.is_live() {
            tokio::time::sleep(ATTACH_POLL).await;
            run = self
                .store
                .get_run(user_id, run.id)
                .await?
                .ok_or(ServiceError::NotFound("Run"))?;
        }
        let reply = self.store.get_message(user_id, run.message_id).await?;
        let user_message = match run.user_message_id {
            Some(id) => self.store.get_message(user_id, id).await?,
            None => None,
        };
        let (Some(reply), Some(user_message)) = (reply, user_message) else {
            return Err(ServiceError::KeyReused(format!(
                "the request with this key ended without a reply ({}); send it again with a new key",
                run.error_code.as_deref().unwrap_or(run.status.as_str())
            )));
        };
        let conversation = self
            .store
            .get_conversation(user_id, run.conversation_id)
            .await?
            .ok_or(ServiceError::NotFound("Conversation"))?;
        let usage = &reply.metadata["usage"];
        let count = |field: &str| usage[field].as_u64().and_then(|n| u32::try_from(n).ok());
        let finish_reason = match reply.metadata["finishReason"].as_str() {
            Some(reason) => reason.to_owned(),
            None => run.status.as_str().to_owned(),
        };
        Ok(ChatOutcome {
            run_id: run.id,
            model: reply.model.clone().unwrap_or_default(),
            usage: Usage {
                prompt_tokens: count("promptTokens").unwrap_or(0),
                completion_tokens: count("completionTokens")
                    .unwrap_or_else(|| u32::try_from(reply.tokens).unwrap_or(0)),
            },
            finish_reason,
            stopped: run.status == RunStatus::Stopped,
            created_conversation: false,
            conversation,
            user_message,
            reply,
        })
    }
}

/// The error of an exchange's first write: its key taken meanwhile by a twin request is a
/// conflict the client can act on.
pub(super) fn begin_error(keyed: bool, error: StoreError) -> ServiceError {
    match error {
        StoreError::Conflict if keyed => ServiceError::KeyReused(
            "a request with this key is being answered; send it again to attach to it".to_owned(),
        ),
        error => error.into(),
    }
}
