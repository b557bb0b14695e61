//! The run an exchange is: stored with its user message, held by a lease while it runs, ended
//! with its reply (or its failure).

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use super::turn::Turn;
use super::{ChatFailure, ChatOutcome, ChatService, ServiceError};
use crate::store::{self, Run, RunEnd, RunStatus, Timestamp};

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
            lease_until: Some(self.lease_from(now)),
            request_key: turn.request_key.clone(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Until when a lease taken or renewed at `now` holds.
    pub(super) fn lease_from(&self, now: Timestamp) -> Timestamp {
        now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::seconds(15))
    }

    /// Runs `work`, the exchange of run `run_id`, renewing the run's lease every third of it
    /// meanwhile (a short exchange never does): only a run whose producer is gone sees its
    /// lease expire. The renewal runs beside the work, never holding it up.
    pub(super) async fn leased<T>(&self, run_id: Uuid, work: impl Future<Output = T>) -> T {
        let every = (self.lease / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(work);
        let mut renewing: Option<BoxFuture<'_, ()>> = None;
        loop {
            tokio::select! {
                biased;
                out = &mut work => return out,
                () = async { if let Some(r) = renewing.as_mut() { r.await } }, if renewing.is_some() => {
                    renewing = None;
                }
                _ = tick.tick(), if renewing.is_none() => {
                    renewing = Some(self.renew(run_id).boxed());
                }
            }
        }
    }

    async fn renew(&self, run_id: Uuid) {
        match self
            .store
            .renew_run(run_id, self.lease_from(store::now()))
            .await
        {
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, %run_id, "runs: could not renew a lease"),
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
        let status = match failure.error {
            ServiceError::Interrupted => RunStatus::Interrupted,
            _ => RunStatus::Failed,
        };
        let end = RunEnd {
            status,
            last_seq: i64::try_from(last_seq).unwrap_or(i64::MAX),
            error_code: Some(self.encoder.error_code(failure).to_owned()),
            at: store::now(),
        };
        if let Err(err) = self.store.finish_run(run_id, &end).await {
            tracing::error!(error = %err, %run_id, "runs: could not record the end of a run");
        }
    }
}
