//! Reading runs: their state, their events after a cursor (replayed from the log, then
//! followed live), and stopping one.

use std::sync::Arc;

use uuid::Uuid;

use super::{EventEncoder, RunControl, RunLog, RunReader};
use crate::service::ServiceError;
use crate::store::{Message, Run, RunStatus, Store};

/// Runs marked interrupted per statement.
const SWEEP_BATCH: u32 = 100;

/// A run's events as a client resuming it gets them.
pub enum RunEvents {
    /// Replayed after the cursor from this process's log, then followed live.
    Log(RunReader),
    /// No log of it here (past retention, or produced by another instance): what is stored.
    Snapshot(Box<RunSnapshot>),
}

/// A run as stored, with its reply when it was stored.
pub struct RunSnapshot {
    pub run: Run,
    pub message: Option<Message>,
}

#[derive(Clone)]
pub struct RunService {
    store: Arc<dyn Store>,
    log: Arc<RunLog>,
    control: RunControl,
    encoder: Arc<dyn EventEncoder>,
}

impl RunService {
    pub fn new(
        store: Arc<dyn Store>,
        log: Arc<RunLog>,
        control: RunControl,
        encoder: Arc<dyn EventEncoder>,
    ) -> Self {
        Self {
            store,
            log,
            control,
            encoder,
        }
    }

    /// Stops runs, here and (with Redis) on other instances.
    pub fn control(&self) -> &RunControl {
        &self.control
    }

    /// The runs' event logs.
    pub fn log(&self) -> &RunLog {
        &self.log
    }

    pub async fn get(&self, user_id: &str, id: Uuid) -> Result<Run, ServiceError> {
        self.store
            .get_run(user_id, id)
            .await?
            .ok_or(ServiceError::NotFound("Run"))
    }

    /// The user's newest runs (of one status when given), newest first.
    pub async fn list(
        &self,
        user_id: &str,
        status: Option<RunStatus>,
        limit: u64,
    ) -> Result<Vec<Run>, ServiceError> {
        Ok(self.store.list_runs(user_id, status, limit).await?)
    }

    /// The run's events after `after`.
    pub async fn events(
        &self,
        user_id: &str,
        id: Uuid,
        after: u64,
    ) -> Result<RunEvents, ServiceError> {
        let run = self.get(user_id, id).await?;
        if let Some(reader) = self.log.local().reader(id, after) {
            return Ok(RunEvents::Log(RunReader::local(reader)));
        }
        if let Some(shared) = self.log.shared() {
            match self.shared_reader(shared, &run, after).await {
                Ok(Some(reader)) => return Ok(RunEvents::Log(reader)),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, run_id = %id, "runs: the shared log is unreachable: answering with a snapshot")
                }
            }
        }
        Ok(RunEvents::Snapshot(Box::new(self.snapshot(run).await?)))
    }

    /// A reader of the run in the shared log, when it is there (or still to come).
    async fn shared_reader(
        &self,
        shared: &super::RedisLog,
        run: &Run,
        after: u64,
    ) -> Result<Option<RunReader>, super::RedisLogError> {
        let live = run.status.is_live();
        let Some(reader) = shared
            .reader(run.id, after, live, self.encoder.clone())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(RunReader::shared(
            reader,
            after,
            run.clone(),
            self.store.clone(),
            self.encoder.clone(),
        )))
    }

    /// Marks the runs whose producer is gone (their lease expired) `interrupted`, their
    /// checkpointed replies kept; returns how many.
    pub async fn interrupt_expired(&self) -> Result<usize, ServiceError> {
        let mut interrupted = 0;
        loop {
            let runs = self
                .store
                .interrupt_expired_runs(crate::store::now(), SWEEP_BATCH)
                .await?;
            interrupted += runs.len();
            if runs.len() < SWEEP_BATCH as usize {
                return Ok(interrupted);
            }
        }
    }

    /// The user's run `id` as stored now, with its reply (what a reader behind a gap gets).
    pub async fn snapshot_of(&self, user_id: &str, id: Uuid) -> Result<RunSnapshot, ServiceError> {
        let run = self.get(user_id, id).await?;
        self.snapshot(run).await
    }

    /// A run as stored, with its reply.
    pub async fn snapshot(&self, run: Run) -> Result<RunSnapshot, ServiceError> {
        let message = self.store.get_message(&run.user_id, run.message_id).await?;
        Ok(RunSnapshot { run, message })
    }

    /// Stops a live run of the user, on whichever instance produces it (with Redis); the
    /// run then ends `stopped`, its partial reply stored. Returns the run as it was when
    /// asked.
    pub async fn cancel(&self, user_id: &str, id: Uuid) -> Result<Run, ServiceError> {
        let run = self.get(user_id, id).await?;
        if run.status.is_live()
            && !self.control.stop_run(user_id, id).await
            && !self.control.is_shared()
        {
            return Err(ServiceError::Invalid {
                field: "id".into(),
                message: "this run is produced by another instance; stop it there".to_owned(),
            });
        }
        Ok(run)
    }
}
