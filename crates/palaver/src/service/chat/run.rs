//! The run an exchange is: stored with its user message, ended with its reply (or its failure).

use uuid::Uuid;

use super::exchange::Turn;
use super::{ChatFailure, ChatOutcome, ChatService};
use crate::store::{self, Run, RunEnd, RunStatus};

impl ChatService {
    /// The run of `turn`, in progress.
    pub(super) fn new_run(&self, user_id: &str, turn: &Turn<'_>) -> Run {
        let now = store::now();
        Run {
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
        }
    }

    /// How the run of a stored reply ended.
    pub(super) fn run_end(stopped: bool, last_seq: u64) -> RunEnd {
        RunEnd {
            status: if stopped {
                RunStatus::Stopped
            } else {
                RunStatus::Completed
            },
            last_seq: i64::try_from(last_seq).unwrap_or(i64::MAX),
            error_code: None,
            at: store::now(),
        }
    }

    /// Records how a run that failed ended (a stored reply ends its run in the same write);
    /// `last_seq` is the sequence number of its last event. A failure to record it is logged
    /// (the exchange's own outcome stands).
    pub(super) async fn end_run(
        &self,
        run_id: Uuid,
        result: &Result<ChatOutcome, ChatFailure>,
        last_seq: u64,
    ) {
        let Err(failure) = result else {
            return;
        };
        let end = RunEnd {
            status: RunStatus::Failed,
            last_seq: i64::try_from(last_seq).unwrap_or(i64::MAX),
            error_code: Some(self.encoder.error_code(failure).to_owned()),
            at: store::now(),
        };
        if let Err(err) = self.store.finish_run(run_id, &end).await {
            tracing::error!(error = %err, %run_id, "runs: could not record the end of a run");
        }
    }
}
