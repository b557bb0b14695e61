//! Delivery of job attempts: apalis-redis with `REDIS_URL`, otherwise the `jobs` table itself.
//!
//! Without Redis the store's `jobs` table is the queue (SQLite embedded, or PostgreSQL): the
//! row of a job already says whether it is due (waiting, delayed past `run_at`, or active
//! under an expired lease), so a worker claims due rows directly (`JobStore::claim_due`) and
//! nothing else needs writing. Queued jobs survive a restart with the database, every
//! instance on a shared PostgreSQL takes from the same queue, and a delivery cannot be lost.
//!
//! This replaced apalis-sqlite (a queue file of its own beside the store): its lock and ack
//! statements, run on its connection's worker thread, took about a third of the CPU of an
//! embeddings job in `palaver-bench jobs` (profile of 645 jobs/s end to end), and each job
//! paid for a push, a lock, an ack and a prune in that file on top of its row in `jobs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;
use std::time::Duration;

use futures::task::AtomicWaker;

use apalis::prelude::{Task, TaskBuilder, TaskSink};
use apalis_redis::RedisStorage;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;

/// What travels through the queue: run attempt `attempt` of job `job_id`. The job itself
/// (data, state) is in the `jobs` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub job_id: Uuid,
    pub attempt: i32,
}

/// How many times apalis re-delivers an envelope whose handler failed (a database outage,
/// not a failed attempt: those are scheduled as new envelopes).
const DELIVERIES: usize = 10;

/// How long Redis remembers that an envelope was queued (duplicates are dropped meanwhile).
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis queue: {0}")]
    Redis(String),
}

#[derive(Clone)]
pub struct JobQueue {
    storage: Storage,
    /// The queue's name (`JOB_QUEUE`).
    name: Arc<str>,
    /// Raised by each push, so that this process's worker fetches at once.
    pushed: Arc<Pushed>,
}

#[derive(Clone)]
pub enum Storage {
    /// The `jobs` table of the store is the queue.
    Table,
    Redis(Box<RedisStorage<Envelope>>),
}

/// A flag raised when this process queues an envelope, and the waker of its worker.
#[derive(Debug, Default)]
pub struct Pushed {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Pushed {
    pub fn raise(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether it was raised since the last call; wakes `cx` when it is raised next.
    pub fn take(&self, cx: &Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.set.swap(false, Ordering::AcqRel)
    }
}

impl JobQueue {
    pub async fn connect(config: &Config) -> Result<JobQueue, QueueError> {
        let jobs = &config.jobs;
        let storage = match &config.redis_url {
            Some(url) => {
                let conn = apalis_redis::connect(url.expose_secret())
                    .await
                    .map_err(|e| QueueError::Redis(e.to_string()))?;
                Storage::Redis(Box::new(RedisStorage::new(conn).with_config(redis_config(
                    &jobs.queue,
                    jobs.heartbeat,
                    batch(jobs),
                ))))
            }
            None => Storage::Table,
        };
        Ok(JobQueue::new(storage, &jobs.queue))
    }

    fn new(storage: Storage, name: &str) -> JobQueue {
        JobQueue {
            storage,
            name: name.into(),
            pushed: Arc::default(),
        }
    }

    /// The queue's name (`JOB_QUEUE`): with the table queue, the `queue` of its rows.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn pushed(&self) -> Arc<Pushed> {
        self.pushed.clone()
    }

    pub fn backend(&self) -> &'static str {
        match self.storage {
            Storage::Table => "table",
            Storage::Redis(_) => "redis",
        }
    }

    /// Queues an attempt, due after `delay`. Queuing the same attempt twice is a no-op while the
    /// backend remembers it (and harmless after: the `jobs` table decides what runs). With the
    /// table queue the job's row, stored or updated before this call, is its delivery.
    pub async fn push(&self, envelope: Envelope, delay: Duration) -> Result<(), QueueError> {
        match &self.storage {
            Storage::Table => {}
            Storage::Redis(storage) => (**storage)
                .clone()
                .push_task(task(envelope, delay))
                .await
                .map_err(|e| QueueError::Redis(e.to_string()))?,
        }
        if delay.is_zero() {
            self.pushed.raise();
        }
        Ok(())
    }
}

/// How many envelopes a worker fetches at once: its concurrency. apalis sizes the channel of
/// its lock and ack events at four times this, and a handler waits on that channel until the
/// worker drains it; with 1, a busy worker's handlers stalled there until the next poll tick.
fn batch(jobs: &crate::config::JobsConfig) -> usize {
    (jobs.concurrency as usize).max(1)
}

/// The apalis-redis settings of the queue named `queue`.
pub fn redis_config(queue: &str, heartbeat: Duration, batch: usize) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(queue)
        .batch_size(batch.max(1))
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(3)
        .idempotency_ttl(Some(IDEMPOTENCY_TTL))
        // apalis-redis's lock (`acquire_leases.lua`) runs an LREM over the whole waiting list
        // for every task: a cost per job that grows with the backlog. The `jobs` table's lease
        // already guards each attempt, and a dead worker's envelopes are re-queued from its
        // in-flight set, which fetching maintains without the lock.
        .lock_tasks(false)
}

/// The apalis task that carries `envelope`, due after `delay`.
pub fn task(envelope: Envelope, delay: Duration) -> Task<Envelope> {
    TaskBuilder::new(envelope)
        .run_after(delay)
        .max_attempts(DELIVERIES)
        .idempotency_key(format!("{}:{}", envelope.job_id, envelope.attempt))
        .build()
}
