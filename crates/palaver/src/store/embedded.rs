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

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, oneshot};

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

/// Writes taken into one transaction at most.
const MAX_BATCH: usize = 256;
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
/// WAL pages after which a commit checkpoints by itself, on the writer (SQLite's default is
/// 1,000): a backstop, far above what the checkpoint thread leaves.
const BACKSTOP_CHECKPOINT_PAGES: c_int = 100_000;

/// When the checkpoint thread copies the WAL into the database file.
///
/// Each checkpoint costs fsyncs and copying, and makes the next commit restart the WAL (one
/// more fsync, on the writer's path); pages rewritten by many commits (the last leaf of each
/// table and index) are copied once per checkpoint, however often they were written. On the
/// 2-core VM of the benchmarks, checkpoints every 100 ms put the p99 of a chat at
/// concurrency 1 at about +2 ms over the upstream alone, and once a second at about +1 ms.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoints {
    /// The longest wait between two checkpoints.
    pub every: Duration,
    /// WAL pages after which the writer asks for a checkpoint at once, and again each time
    /// the WAL has grown by as much since (32 MiB of 1 KiB pages, 128 MiB of 4 KiB). This does not
    /// bound the WAL: it starts over only after a checkpoint has copied all of it, which
    /// sustained writes can put off.
    pub soon_pages: c_int,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Checkpoints {
            every: Duration::from_secs(1),
            soon_pages: 32_768,
        }
    }
}

thread_local! {
    /// The WAL's length in pages after the last commit of the writer on this thread (set by
    /// its WAL hook, which runs inside COMMIT on the writer thread).
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer's WAL hook: notes the WAL's length and, past the backstop, checkpoints there and
/// then (as SQLite's own autocheckpoint would). Never fails: an error here would make COMMIT
/// report a failure for a transaction that is committed.
fn note_wal_pages(wal: &rusqlite::hooks::Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    if pages >= BACKSTOP_CHECKPOINT_PAGES {
        match wal.checkpoint() {
            Ok(()) => {}
            // The checkpoint thread is at it (a passive checkpoint does not wait).
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {}
            Err(e) => tracing::warn!(error = %e, pages, "sqlite backstop checkpoint failed"),
        }
    }
    Ok(())
}

/// Called once the batch a write ran in is committed (or not).
type Deliver = Box<dyn FnOnce(Result<(), &str>) + Send>;
/// A write: runs on the writer inside the batch's transaction, or is told why it cannot.
type WriteJob = Box<dyn FnOnce(Result<&Connection, &str>) -> Deliver + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

enum Job {
    Write(WriteJob),
    /// Reads go through the writer only when the database is in memory (one connection).
    Read(ReadJob),
}

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

fn open_checkpointer(path: &PathBuf) -> DbResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// A passive checkpoint every `every`, or at once when the writer asks: it copies what it can
/// without waiting for, or blocking, readers and the writer. Ends when every sender is gone.
fn checkpoint_loop(conn: &Connection, nudged: &mpsc::Receiver<()>, every: Duration) {
    while let Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) = nudged.recv_timeout(every) {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match done {
            Ok((wal_frames, copied)) => {
                metrics::gauge!("palaver_sqlite_wal_frames").set(wal_frames as f64);
                metrics::gauge!("palaver_sqlite_wal_frames_behind")
                    .set((wal_frames - copied) as f64);
            }
            Err(e) => tracing::warn!(error = %e, "sqlite checkpoint failed"),
        }
    }
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

/// Runs `f` between `SAVEPOINT` and `RELEASE`, undoing its changes when it fails (or panics).
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> DbResult<T> {
    conn.prepare_cached("SAVEPOINT write")?.execute([])?;
    match catch_unwind(AssertUnwindSafe(|| f(conn))) {
        Ok(Ok(value)) => {
            conn.prepare_cached("RELEASE write")?.execute([])?;
            Ok(value)
        }
        failed => {
            // These fail when the error already ended the whole transaction (the batch
            // notices that); the error to report is the write's own.
            let _ = conn.execute_batch("ROLLBACK TO write; RELEASE write");
            match failed {
                Ok(Err(e)) => Err(e.into()),
                _ => Err(DbError::Commit("the write panicked".into())),
            }
        }
    }
}

/// `soon`: where to ask for a checkpoint, and past how many WAL pages.
fn write_loop(
    conn: &Connection,
    jobs: &mpsc::Receiver<Job>,
    soon: Option<(mpsc::SyncSender<()>, c_int)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // The WAL length at which to ask for the next checkpoint.
    let mut ask_at = soon.as_ref().map_or(c_int::MAX, |(_, pages)| *pages);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(conn, &mut batch);
        if let Some((nudge, step)) = &soon {
            let pages = WAL_PAGES.get();
            if pages < ask_at.saturating_sub(*step) {
                // The WAL started over.
                ask_at = *step;
            }
            if pages >= ask_at {
                // Full: a request is already waiting.
                let _ = nudge.try_send(());
                ask_at = pages.saturating_add(*step);
            }
        }
    }
}

/// Runs the reads of a batch, then its writes in one transaction; answers after COMMIT.
///
/// Some errors (disk full, I/O, out of memory) make SQLite roll the whole transaction back,
/// not only the failing write's savepoint: the writes before it in the batch are then lost,
/// so they are answered with an error, and the rest of the batch starts a new transaction.
fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    const ROLLED_BACK: &str = "the transaction was rolled back by another write's error";
    let started = Instant::now();
    let mut writes = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        match job {
            Job::Read(read) => {
                let _ = catch_unwind(AssertUnwindSafe(|| read(conn)));
            }
            Job::Write(write) => writes.push(write),
        }
    }
    if writes.is_empty() {
        return;
    }
    if !conn.is_autocommit() {
        // Left open by a failed ROLLBACK of an earlier batch.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let count = writes.len();
    let begin = || {
        conn.prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let mut delivers: Vec<Deliver> = Vec::with_capacity(count);
    let mut open = begin();
    for write in writes {
        if open.is_ok() && conn.is_autocommit() {
            // The previous write's error ended the transaction.
            for deliver in delivers.drain(..) {
                deliver(Err(ROLLED_BACK));
            }
            open = begin();
        }
        match &open {
            Ok(()) => delivers.push(write(Ok(conn))),
            Err(why) => write(Err(why))(Err(why)),
        }
    }
    if open.is_err() {
        return;
    }
    let committed = if conn.is_autocommit() {
        Err(ROLLED_BACK.to_owned())
    } else {
        conn.prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(|e| e.to_string())
    };
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for deliver in delivers {
        deliver(committed.as_ref().map(|_| ()).map_err(String::as_str));
    }
    metrics::histogram!("palaver_sqlite_batch_writes").record(count as f64);
    metrics::histogram!("palaver_sqlite_batch_seconds").record(started.elapsed().as_secs_f64());
}

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

fn apply_migrations(conn: &Connection, migrator: &sqlx::migrate::Migrator) -> DbResult<()> {
    conn.execute_batch(MIGRATIONS_TABLE)?;
    let mut applied = std::collections::HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT version, checksum, success FROM _sqlx_migrations")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, bool>(2)?,
            ))
        })?;
        for row in rows {
            let (version, checksum, success) = row?;
            applied.insert(version, (checksum, success));
        }
    }
    let known: std::collections::HashSet<i64> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    if let Some(missing) = applied.keys().find(|v| !known.contains(v)) {
        return Err(DbError::Migrate {
            version: *missing,
            description: String::new(),
            message: "applied to this database but not known to this build (a newer Palaver?)"
                .into(),
        });
    }
    for migration in migrator.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        let fail = |message: String| DbError::Migrate {
            version: migration.version,
            description: migration.description.to_string(),
            message,
        };
        match applied.get(&migration.version) {
            Some((_, false)) => return Err(fail("left half-applied by an earlier run".into())),
            Some((checksum, true)) if checksum.as_slice() != &*migration.checksum => {
                return Err(fail(
                    "it was applied from a different file than this build carries".into(),
                ));
            }
            Some(_) => continue,
            None => {}
        }
        let started = Instant::now();
        let run = || -> rusqlite::Result<()> {
            if migration.no_tx {
                conn.execute_batch(migration.sql.as_str())?;
                conn.execute_batch("BEGIN IMMEDIATE")?;
            } else {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                conn.execute_batch(migration.sql.as_str())?;
            }
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (?1, ?2, TRUE, ?3, ?4)",
                rusqlite::params![
                    migration.version,
                    migration.description.as_ref(),
                    migration.checksum.as_ref(),
                    i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX),
                ],
            )?;
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = run() {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            return Err(fail(e.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// An in-memory database with a table `t (k INTEGER PRIMARY KEY)`.
    async fn table_db() -> Db {
        let db = Db::open("sqlite::memory:").await.unwrap();
        db.write(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
            .await
            .unwrap();
        db
    }

    /// The keys in `t`, in order.
    async fn keys(db: &Db) -> Vec<i64> {
        db.read(|c| {
            c.prepare("SELECT k FROM t ORDER BY k")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .await
        .unwrap()
    }

    /// A write that holds the writer for 200 ms, so that the writes sent meanwhile form one
    /// batch (one transaction). Returns once the writer is inside it: writes sent before
    /// that could share its batch, or one of them be taken on its own.
    async fn keep_writer_busy(db: &Db) -> tokio::task::JoinHandle<DbResult<()>> {
        let db = db.clone();
        let (inside, entered) = tokio::sync::oneshot::channel();
        let busy = tokio::spawn(async move {
            db.write(move |_| {
                let _ = inside.send(());
                std::thread::sleep(Duration::from_millis(200));
                Ok(())
            })
            .await
        });
        let _ = entered.await;
        busy
    }

    #[tokio::test]
    async fn a_failing_write_leaves_the_others_of_its_batch() {
        let dir = std::env::temp_dir().join(format!("palaver-embedded-{}", uuid::Uuid::now_v7()));
        let db = Db::open(&format!("sqlite://{}/t.db", dir.display()))
            .await
            .unwrap();
        db.write(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
            .await
            .unwrap();
        // Many writes at once land in few batches; the duplicates fail alone.
        let writes = (0..200).map(|i| {
            let db = db.clone();
            async move {
                db.write(move |c| c.execute("INSERT INTO t (k) VALUES (?1)", [i % 100]))
                    .await
            }
        });
        let results = futures::future::join_all(writes).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(e) if e.is_unique_violation()))
            .count();
        assert_eq!((ok, conflicts), (100, 100));
        let n: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(n, 100);
        // A write that fails after changing rows leaves none of them.
        let failed = db
            .write(|c| {
                c.execute("INSERT INTO t (k) VALUES (1000)", [])?;
                c.execute("INSERT INTO t (k) VALUES (1)", [])
            })
            .await;
        assert!(failed.unwrap_err().is_unique_violation());
        let n: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM t WHERE k = 1000", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(n, 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn urls() {
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://:memory:"), None);
        assert_eq!(sqlite_path("sqlite://x.db?mode=memory"), None);
        assert_eq!(
            sqlite_path("sqlite://data/x.db?mode=rwc"),
            Some("data/x.db".into())
        );
        assert_eq!(sqlite_path("sqlite:///tmp/x.db"), Some("/tmp/x.db".into()));
    }

    #[tokio::test]
    async fn a_write_failing_halfway_is_undone_alone_within_its_batch() {
        let db = table_db().await;
        // Keep the writer busy so that the writes below share one batch (one transaction).
        let busy = keep_writer_busy(&db).await;
        let before = db.write(|c| c.execute("INSERT INTO t (k) VALUES (1)", []));
        let halfway = db.write(|c| {
            c.execute("INSERT INTO t (k) VALUES (1000)", [])?;
            c.execute("INSERT INTO t (k) VALUES (1)", [])
        });
        let after = db.write(|c| c.execute("INSERT INTO t (k) VALUES (2)", []));
        let (busy, before, halfway, after) = tokio::join!(busy, before, halfway, after);
        busy.unwrap().unwrap();
        assert_eq!(before.unwrap(), 1);
        assert!(halfway.unwrap_err().is_unique_violation(), "its own error");
        assert_eq!(after.unwrap(), 1);
        let keys = keys(&db).await;
        assert_eq!(
            keys,
            vec![1, 2],
            "1000 was undone with its write, nothing else"
        );
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone() {
        let db = table_db().await;
        #[allow(clippy::panic)]
        let panicked = db
            .write(|c| -> rusqlite::Result<()> {
                c.execute("INSERT INTO t (k) VALUES (7)", [])?;
                panic!("a bug in a write")
            })
            .await;
        assert!(panicked.is_err());
        // The writer lives on, and the panicking write left nothing.
        db.write(|c| c.execute("INSERT INTO t (k) VALUES (8)", []))
            .await
            .unwrap();
        let keys = keys(&db).await;
        assert_eq!(keys, vec![8]);
    }

    #[tokio::test]
    async fn writes_before_a_transaction_wide_rollback_are_not_reported_stored() {
        let db = table_db().await;
        // Keep the writer busy so that the next three writes form one batch.
        let busy = keep_writer_busy(&db).await;
        let first = db.write(|c| c.execute("INSERT INTO t (k) VALUES (1)", []));
        // Ends the whole transaction, as SQLite does itself on a full disk or an I/O error.
        let breaker = db.write(|c| c.execute_batch("ROLLBACK"));
        let last = db.write(|c| c.execute("INSERT INTO t (k) VALUES (3)", []));
        let (busy, first, breaker, last) = tokio::join!(busy, first, breaker, last);
        busy.unwrap().unwrap();
        assert!(first.is_err(), "its transaction was rolled back: {first:?}");
        assert!(breaker.is_err());
        assert_eq!(last.unwrap(), 1);
        let keys = keys(&db).await;
        assert_eq!(keys, vec![3]);
    }

    fn temp_url(name: &str) -> (PathBuf, String) {
        let dir = std::env::temp_dir().join(format!("palaver-embedded-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/{name}", dir.display());
        (dir, url)
    }

    /// Writes ~400 KB into a fresh database opened with `policy`; returns by how many bytes
    /// the database file grew within `within` (stopping early once it grew by `enough`). The
    /// writer's own backstop is far away, so only the checkpoint thread can have copied them.
    async fn checkpointed_within(policy: Checkpoints, enough: u64, within: Duration) -> u64 {
        let (dir, url) = temp_url("c.db");
        let db = Db::open_with(&url, policy).await.unwrap();
        db.write(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)"))
            .await
            .unwrap();
        let file = dir.join("c.db");
        let before = std::fs::metadata(&file).unwrap().len();
        for k in 0..200 {
            db.write(move |c| c.execute("INSERT INTO t VALUES (?1, zeroblob(2000))", [k]))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + within;
        let grown = loop {
            let grown = std::fs::metadata(&file)
                .unwrap()
                .len()
                .saturating_sub(before);
            if grown >= enough || Instant::now() > deadline {
                break grown;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
        grown
    }

    const WRITTEN: u64 = 200 * 2000;

    #[tokio::test]
    async fn the_checkpoint_thread_copies_the_wal_into_the_file_on_time() {
        let timed = Checkpoints {
            every: Duration::from_millis(50),
            soon_pages: c_int::MAX,
        };
        let grown = checkpointed_within(timed, WRITTEN, Duration::from_secs(10)).await;
        assert!(grown >= WRITTEN, "{grown} bytes");
    }

    #[tokio::test]
    async fn a_long_wal_is_checkpointed_without_waiting_for_the_interval() {
        let never_on_time = Checkpoints {
            every: Duration::from_secs(3600),
            soon_pages: 16,
        };
        // What was written after the last request (fewer pages than asked at) may stay in
        // the WAL, and so may up to that much again if the WAL started over.
        let enough = WRITTEN - 2 * 16 * PAGE_SIZE as u64;
        let grown = checkpointed_within(never_on_time, enough, Duration::from_secs(10)).await;
        assert!(grown >= enough, "{grown} bytes");
        // And with neither the interval nor the length reached, nothing is copied.
        let never = Checkpoints {
            every: Duration::from_secs(3600),
            soon_pages: c_int::MAX,
        };
        let grown = checkpointed_within(never, 1, Duration::from_millis(300)).await;
        assert_eq!(grown, 0);
    }

    #[tokio::test]
    async fn new_databases_get_small_pages_and_old_ones_keep_theirs() {
        let page_size = |db: Db| async move {
            db.write(|c| c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)))
                .await
                .unwrap()
        };
        let (dir, url) = temp_url("new.db");
        let db = Db::open(&url).await.unwrap();
        db.write(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
            .await
            .unwrap();
        assert_eq!(page_size(db).await, PAGE_SIZE);

        let old = dir.join("old.db");
        let made = Connection::open(&old).unwrap();
        made.execute_batch("PRAGMA page_size = 4096; CREATE TABLE t (k INTEGER PRIMARY KEY);")
            .unwrap();
        drop(made);
        let db = Db::open(&format!("sqlite://{}", old.display()))
            .await
            .unwrap();
        assert_eq!(page_size(db).await, 4096);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_database_migrated_by_a_newer_build_is_refused() {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
        let (dir, url) = temp_url("m.db");
        let db = Db::open(&url).await.unwrap();
        db.migrate(&MIGRATOR).await.unwrap();
        db.migrate(&MIGRATOR).await.unwrap();
        db.write(|c| {
            c.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (99990101000000, 'from the future', TRUE, x'00', 0)",
                [],
            )
        })
        .await
        .unwrap();
        let refused = db.migrate(&MIGRATOR).await.unwrap_err();
        assert!(
            matches!(
                refused,
                DbError::Migrate {
                    version: 99990101000000,
                    ..
                }
            ),
            "{refused}"
        );
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn in_memory_reads_see_writes() {
        let db = Db::open("sqlite::memory:").await.unwrap();
        db.write(|c| c.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')"))
            .await
            .unwrap();
        let v: String = db
            .read(|c| c.query_row("SELECT v FROM t", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(v, "x");
    }
}
