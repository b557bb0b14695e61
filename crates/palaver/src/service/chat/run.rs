//! The run an exchange is: stored as it starts (with its user message), ended with its outcome.

use uuid::Uuid;

use super::exchange::Turn;
use super::{ChatFailure, ChatOutcome, ChatService};
use crate::store::{self, Run, RunEnd, RunStatus, StoreError};

impl ChatService {
    /// Records the run of `turn` as in progress.
    pub(super) async fn start_run(&self, user_id: &str, turn: &Turn<'_>) -> Result<(), StoreError> {
        let now = store::now();
        let run = Run {
            id: turn.run_id,
            user_id: user_id.to_owned(),
            conversation_id: turn.conversation.id,
            message_id: turn.reply_id,
            user_message_id: Some(turn.user_message.id),
            status: RunStatus::InProgress,
            last_seq: 0,
            error_code: None,
            created_at: now,
            updated_at: now,
        };
        self.store.create_run(&run).await
    }

    /// Records how the run ended; `last_seq` is the sequence number of its last event. A
    /// failure to record it is logged (the exchange's own outcome stands).
    pub(super) async fn end_run(
        &self,
        run_id: Uuid,
        result: &Result<ChatOutcome, ChatFailure>,
        last_seq: u64,
    ) {
        let (status, error_code) = match result {
            Ok(outcome) if outcome.stopped => (RunStatus::Stopped, None),
            Ok(_) => (RunStatus::Completed, None),
            Err(failure) => (
                RunStatus::Failed,
                Some(self.encoder.error_code(failure).to_owned()),
            ),
        };
        let end = RunEnd {
            status,
            last_seq: i64::try_from(last_seq).unwrap_or(i64::MAX),
            error_code,
            at: store::now(),
        };
        if let Err(err) = self.store.finish_run(run_id, &end).await {
            tracing::error!(error = %err, %run_id, "runs: could not record the end of a run");
        }
    }
}
