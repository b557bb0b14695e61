//! Delivery of job attempts on apalis: apalis-redis with `REDIS_URL`, apalis-sqlite otherwise.
//!
//! The SQLite queue is a file of its own: apalis-sqlite's `Jobs` table would collide with our
//! `jobs` table (SQLite names are case-insensitive), its migrations would share the store's
//! `_sqlx_migrations` table, and its set-up switches `synchronous` off. Beside a SQLite store
//! it is `<db>.queue.db`; with PostgreSQL and no Redis it is `<data dir>/queue.db`, so that
//! instance's jobs are delivered to the workers on its host (the sweeper of any instance
//! re-queues jobs stranded by an instance that never came back).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;
use std::time::Duration;

use futures::task::AtomicWaker;

use apalis::prelude::{Task, TaskBuilder, TaskSink};
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use uuid::Uuid;

use crate::config::{Config, DatabaseConfig};

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
    #[error("sqlite queue: {0}")]
    Sqlite(String),
    #[error("sqlite queue file: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
pub struct JobQueue {
    storage: Storage,
    /// Raised by each push, so that this process's worker fetches at once.
    pushed: Arc<Pushed>,
}

#[derive(Clone)]
pub enum Storage {
    /// The storage, and the queue's name in it.
    Sqlite(SqliteStorage<Envelope>, String),
    Redis(RedisStorage<Envelope>),
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
        if let Some(url) = &config.redis_url {
            let conn = apalis_redis::connect(url.expose_secret())
                .await
                .map_err(|e| QueueError::Redis(e.to_string()))?;
            let storage = RedisStorage::new(conn).with_config(redis_config(
                &jobs.queue,
                jobs.heartbeat,
                batch(jobs),
            ));
            return Ok(JobQueue::new(Storage::Redis(storage)));
        }
        let path = queue_file(&config.database, &config.data_dir);
        let options = match &path {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
            }
            None => {
                tracing::warn!(
                    "the SQLite store is in memory: so is the job queue (jobs do not survive a restart)"
                );
                SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| QueueError::Sqlite(e.to_string()))?
            }
        };
        // One connection: for an in-memory queue each connection would be a database of its
        // own, and on a file several connections only take turns at the write lock through
        // SQLite's sleeping busy handler (4 connections: 401 embeddings jobs/s end to end in
        // palaver-bench; 1 connection: 490/s).
        let connections = 1;
        // No ping of the connection's worker thread before each acquire (one hand-off less
        // per queue operation); a file database has no connection to lose.
        let pool = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(connections)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.busy_timeout(Duration::from_secs(10)))
            .await
            .map_err(|e| QueueError::Sqlite(e.to_string()))?;
        SqliteStorage::setup(&pool)
            .await
            .map_err(|e| QueueError::Sqlite(e.to_string()))?;
        let apalis_config = apalis_sqlite::Config::default()
            .queue(&jobs.queue)
            .batch_size(batch(jobs))
            .heartbeat_interval(jobs.heartbeat)
            .missed_heartbeats(3);
        Ok(JobQueue::new(Storage::Sqlite(
            SqliteStorage::new(&pool).with_config(apalis_config),
            jobs.queue.clone(),
        )))
    }

    fn new(storage: Storage) -> JobQueue {
        JobQueue {
            storage,
            pushed: Arc::default(),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn pushed(&self) -> Arc<Pushed> {
        self.pushed.clone()
    }

    pub fn backend(&self) -> &'static str {
        match self.storage {
            Storage::Sqlite(..) => "sqlite",
            Storage::Redis(_) => "redis",
        }
    }

    /// Queues an attempt, due after `delay`. Queuing the same attempt twice is a no-op while the
    /// backend remembers it (and harmless after: the `jobs` table decides what runs).
    pub async fn push(&self, envelope: Envelope, delay: Duration) -> Result<(), QueueError> {
        let task = task(envelope, delay);
        match &self.storage {
            Storage::Sqlite(storage, _) => storage
                .clone()
                .push_task(task)
                .await
                .map_err(|e| QueueError::Sqlite(e.to_string()))?,
            Storage::Redis(storage) => storage
                .clone()
                .push_task(task)
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

impl JobQueue {
    /// Forgets deliveries handled more than `older_than` ago (apalis-sqlite keeps them).
    /// apalis-redis can only prune through `apalis_core::backend::Vacuum`, which this crate
    /// does not depend on: with Redis this is a no-op.
    pub async fn prune(&self, older_than: Duration) -> Result<usize, QueueError> {
        match &self.storage {
            Storage::Sqlite(storage, queue) => {
                let cutoff = chrono::Utc::now().timestamp()
                    - i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
                let done = sqlx::query("DELETE FROM Jobs WHERE job_type = ?1 AND status IN ('Done', 'Killed') AND done_at < ?2")
                    .bind(queue)
                    .bind(cutoff)
                    .execute(storage.pool())
                    .await
                    .map_err(|e| QueueError::Sqlite(e.to_string()))?;
                Ok(done.rows_affected() as usize)
            }
            Storage::Redis(_) => Ok(0),
        }
    }
}

/// Where the SQLite queue lives: beside a SQLite store file, else in the data directory;
/// `None` for an in-memory store.
fn queue_file(database: &DatabaseConfig, data_dir: &Path) -> Option<PathBuf> {
    match database {
        DatabaseConfig::Postgres { .. } => Some(data_dir.join("queue.db")),
        DatabaseConfig::Sqlite { url } => {
            crate::store::embedded::sqlite_path(url).map(|path| path.with_extension("queue.db"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(url: &str) -> Option<PathBuf> {
        queue_file(
            &DatabaseConfig::Sqlite {
                url: url.to_owned(),
            },
            Path::new("/data"),
        )
    }

    #[test]
    fn the_sqlite_queue_sits_beside_the_store() {
        assert_eq!(
            sqlite("sqlite://./palaver-data/palaver.db"),
            Some(PathBuf::from("./palaver-data/palaver.queue.db"))
        );
        assert_eq!(
            sqlite("sqlite:/tmp/x/app.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x/app.queue.db"))
        );
        assert_eq!(sqlite("sqlite::memory:"), None);
        assert_eq!(sqlite("sqlite://file.db?mode=memory&cache=shared"), None);
        let pg = DatabaseConfig::Postgres {
            url: "postgres://h/db".into(),
        };
        assert_eq!(
            queue_file(&pg, Path::new("/data")),
            Some(PathBuf::from("/data/queue.db"))
        );
    }
}
