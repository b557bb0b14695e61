//! Reading runs: their state, their events after a cursor (replayed from the log, then
//! followed live), and stopping one.

use std::sync::Arc;

use uuid::Uuid;

use super::{RunLog, RunReader};
use crate::service::{ActiveStreams, ServiceError};
use crate::store::{Message, Run, RunStatus, Store};

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
    streams: Arc<ActiveStreams>,
}

impl RunService {
    pub fn new(store: Arc<dyn Store>, log: Arc<RunLog>, streams: Arc<ActiveStreams>) -> Self {
        Self {
            store,
            log,
            streams,
        }
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
        if let Some(reader) = self.log.reader(id, after) {
            return Ok(RunEvents::Log(reader));
        }
        Ok(RunEvents::Snapshot(Box::new(self.snapshot(run).await?)))
    }

    /// A run as stored, with its reply.
    pub async fn snapshot(&self, run: Run) -> Result<RunSnapshot, ServiceError> {
        let message = self.store.get_message(&run.user_id, run.message_id).await?;
        Ok(RunSnapshot { run, message })
    }

    /// Stops a live run of the user; the run then ends `stopped`, its partial reply stored.
    /// Returns the run as it was when asked.
    pub async fn cancel(&self, user_id: &str, id: Uuid) -> Result<Run, ServiceError> {
        let run = self.get(user_id, id).await?;
        if run.status.is_live() && !self.streams.stop_run(user_id, id) {
            return Err(ServiceError::Invalid {
                field: "id".into(),
                message: "this run is produced by another instance; stop it there".to_owned(),
            });
        }
        Ok(run)
    }
}
