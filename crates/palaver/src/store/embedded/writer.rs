//! The writer thread: takes every write waiting at that moment into one transaction (group
//! commit), each in a savepoint of its own, and answers each after the COMMIT.

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::Instant;

use rusqlite::Connection;

use super::checkpoint::WAL_PAGES;
use super::{DbError, DbResult};

/// Writes taken into one transaction at most.
const MAX_BATCH: usize = 256;

/// Called once the batch a write ran in is committed (or not).
pub(super) type Deliver = Box<dyn FnOnce(Result<(), &str>) + Send>;
/// A write: runs on the writer inside the batch's transaction, or is told why it cannot.
pub(super) type WriteJob = Box<dyn FnOnce(Result<&Connection, &str>) -> Deliver + Send>;
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub(super) enum Job {
    Write(WriteJob),
    /// Reads go through the writer only when the database is in memory (one connection).
    Read(ReadJob),
}

/// Runs `f` between `SAVEPOINT` and `RELEASE`, undoing its changes when it fails (or panics).
pub(super) fn in_savepoint<T>(
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
pub(super) fn write_loop(
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
