//! Checkpoints: a thread of their own copies the WAL into the database file, on time or when
//! the writer finds the WAL long, so that no commit pays for it (a backstop aside).

use std::cell::Cell;
use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

use super::{BUSY_TIMEOUT, DbResult};

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
    pub(super) static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer's WAL hook: notes the WAL's length and, past the backstop, checkpoints there and
/// then (as SQLite's own autocheckpoint would). Never fails: an error here would make COMMIT
/// report a failure for a transaction that is committed.
pub(super) fn note_wal_pages(wal: &rusqlite::hooks::Wal, pages: c_int) -> rusqlite::Result<()> {
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

pub(super) fn open_checkpointer(path: &PathBuf) -> DbResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// A passive checkpoint every `every`, or at once when the writer asks: it copies what it can
/// without waiting for, or blocking, readers and the writer. Ends when every sender is gone.
pub(super) fn checkpoint_loop(conn: &Connection, nudged: &mpsc::Receiver<()>, every: Duration) {
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
