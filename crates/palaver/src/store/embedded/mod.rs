//! The embedded SQLite engine under the store and the `jobs` table: one writer thread that
//! commits concurrent writes together, and read-only connections beside it.
//!
//! Why not sqlx here: sqlx-sqlite runs every statement on a worker thread of its connection
//! and its pool pings that thread on each acquire and release, so a single write costs
//! three thread hand-offs. With one writer, those hand-offs were the ceiling of the whole
//! service (about 1,100 chats/s on a 2-core machine, mostly spent in the scheduler). Here a
//! write is one hand-off to the writer thread, which takes every write waiting at that
//! moment into one transaction (group commit): each in a savepoint of its own, so one
//! write failing leaves the others alone, and each caller hears back only after the commit.
//!
//! Migrations are sqlx's (same files, same `_sqlx_migrations` table), applied here.

mod checkpoint;
mod migrate;
mod writer;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, oneshot};

pub use checkpoint::Checkpoints;
use checkpoint::{checkpoint_loop, note_wal_pages, open_checkpointer};
use migrate::apply_migrations;
use writer::{Job, ReadJob, WriteJob, in_savepoint, write_loop};

/// Errors of the embedded engine.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("sqlite: the transaction could not be committed: {0}")]
    Commit(String),
    #[error("sqlite: the database is closed")]
    Closed,
    #[error("sqlite: bad database url: {0}")]
    Url(String),
    #[error("sqlite: {0}")]
    Io(#[from] std::io::Error),
    #[error("sqlite: migration {version} ({description}): {message}")]
    Migrate {
        version: i64,
        description: String,
        message: String,
    },
}

impl DbError {
    /// A primary key or unique constraint refused the row.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        )
    }
}

pub type DbResult<T> = Result<T, DbError>;

const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The page size of a new database (an existing one keeps its own).
///
/// Every commit appends each page it touched to the WAL, and each checkpoint flushes all of
/// that to disk: a short chat touches about 20 pages of 4 KiB (26 of 1 KiB), so 1 KiB pages
/// write and flush a third as much (28 KB instead of 84 KB per chat). Interleaved runs on the
/// 2-core VM of the benchmarks, short replies: chat p99 at concurrency 1 +0.91–1.00 ms over
/// the upstream with 1 KiB pages, +1.45–1.57 ms with 4 KiB; throughput at concurrency 64 and
/// embeddings jobs did not get worse. With 300-word replies (which spill into overflow
/// pages): p99 at concurrency 1 1.7–2.3 ms against 1.6–3.1 ms, and about 9% fewer chats/s at
/// concurrency 64 (3,900–4,300 against 3,800–5,300; the machine was noisy).
const PAGE_SIZE: i64 = 1024;

/// A handle on one database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    writer: mpsc::Sender<Job>,
    readers: Option<Readers>,
    /// Dropping it (and the writer thread's clone) stops the checkpoint thread.
    _checkpoints: Option<mpsc::SyncSender<()>>,
}

struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    path: PathBuf,
}

impl Db {
    /// Opens (creating when missing) the database at `url` (`sqlite://path`, `sqlite:path`
    /// or `sqlite::memory:`).
    pub async fn open(url: &str) -> DbResult<Db> {
        Db::open_with(url, Checkpoints::default()).await
    }

    /// [`Db::open`] with its own checkpoint policy.
    pub async fn open_with(url: &str, checkpoints: Checkpoints) -> DbResult<Db> {
        let path = sqlite_path(url);
        tokio::task::spawn_blocking(move || Db::open_blocking(path, checkpoints))
            .await
            .map_err(|_| DbError::Closed)?
    }

    fn open_blocking(path: Option<PathBuf>, policy: Checkpoints) -> DbResult<Db> {
        let writer = match &path {
            Some(path) => {
                if let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)?;
                }
                Connection::open(path)?
            }
            None => Connection::open_in_memory()?,
        };
        // Only takes effect on an empty file: it must come before `journal_mode = WAL`, which
        // writes the first page.
        writer.pragma_update(None, "page_size", PAGE_SIZE)?;
        configure(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        let mut checkpoints = None;
        let readers = match path {
            Some(path) => {
                // Checkpoints (copying the WAL into the file, with its fsyncs) run on a thread
                // of their own, not inside whichever commit crosses the WAL size limit. The
                // hook replaces SQLite's autocheckpoint (keeping it as a backstop).
                writer.wal_hook(Some(note_wal_pages));
                let checkpointer = open_checkpointer(&path)?;
                let (nudge, nudged) = mpsc::sync_channel::<()>(1);
                std::thread::Builder::new()
                    .name("palaver-sqlite-checkpoint".into())
                    .spawn(move || checkpoint_loop(&checkpointer, &nudged, policy.every))?;
                checkpoints = Some(nudge);
                let first = open_reader(&path)?;
                Some(Readers {
                    idle: Mutex::new(vec![first]),
                    permits: Arc::new(Semaphore::new(READERS)),
                    path,
                })
            }
            None => None,
        };
        let (sender, receiver) = mpsc::channel();
        let soon = checkpoints.clone().map(|nudge| (nudge, policy.soon_pages));
        std::thread::Builder::new()
            .name("palaver-sqlite-writer".into())
            .spawn(move || write_loop(&writer, &receiver, soon))?;
        Ok(Db {
            inner: Arc::new(Inner {
                writer: sender,
                _checkpoints: checkpoints,
                readers,
            }),
        })
    }

    /// Runs `f` on the writer, in a transaction shared with the other writes waiting at the
    /// same moment, under a savepoint of its own: when `f` fails, only its changes are undone.
    /// Returns once the transaction is committed. The write runs to its end even when the
    /// caller stops waiting.
    ///
    /// Writes never run on the caller's (async) thread, even when the writer is idle: tried,
    /// it saved ~0.1 ms per write at concurrency 1, but a write there can hold an async
    /// worker on the filesystem (behind a checkpoint's fsync, say), and a relay benchmark
    /// run with it showed a p99 of +16 ms per chunk.
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<DbResult<T>>();
        let job: WriteJob = Box::new(move |conn| {
            let outcome = match conn {
                Ok(conn) => in_savepoint(conn, f),
                Err(why) => Err(DbError::Commit(why.to_owned())),
            };
            Box::new(move |committed: Result<(), &str>| {
                let result = match (outcome, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Ok(_), Err(why)) => Err(DbError::Commit(why.to_owned())),
                    (Err(e), _) => Err(e),
                };
                let _ = tx.send(result);
            })
        });
        self.send(Job::Write(job))?;
        rx.await.map_err(|_| DbError::Closed)?
    }

    /// Runs `f` on a read-only connection (off the async threads); reads see every write
    /// that has been acknowledged.
    pub async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let Some(readers) = &self.inner.readers else {
            let (tx, rx) = oneshot::channel();
            let job: ReadJob = Box::new(move |conn| {
                let result = catch_unwind(AssertUnwindSafe(|| f(conn)));
                if let Ok(result) = result {
                    let _ = tx.send(result.map_err(DbError::from));
                }
            });
            self.send(Job::Read(job))?;
            return rx.await.map_err(|_| DbError::Closed)?;
        };
        // Owned by the read itself: a caller that stops waiting does not free its connection.
        let permit = readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DbError::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let Some(readers) = &inner.readers else {
                return Err(DbError::Closed);
            };
            let idle = readers.idle.lock().map_err(|_| DbError::Closed)?.pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open_reader(&readers.path)?,
            };
            let result = f(&conn).map_err(DbError::from);
            if let Ok(mut idle) = readers.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|_| DbError::Closed)?
    }

    fn send(&self, job: Job) -> DbResult<()> {
        self.inner.writer.send(job).map_err(|_| DbError::Closed)
    }

    /// Applies the pending migrations of `migrator` (sqlx's format and bookkeeping table).
    pub async fn migrate(&self, migrator: &'static sqlx::migrate::Migrator) -> DbResult<()> {
        // Migrations run outside the batch transaction: one write that commits its own.
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(apply_migrations(conn, migrator));
        });
        self.send(Job::Read(job))?;
        rx.await.map_err(|_| DbError::Closed)?
    }
}

/// The file of a SQLite URL (`sqlite://path`, `sqlite:path`, a bare path; query ignored);
/// `None` for an in-memory database (`sqlite::memory:`, an empty path, `mode=memory`).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -16000)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn open_reader(path: &PathBuf) -> DbResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -16000)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[cfg(test)]
mod tests;
