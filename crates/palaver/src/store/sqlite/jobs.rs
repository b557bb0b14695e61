//! The `jobs` table in SQLite, on the store's own [`Db`]: job writes share its one writer
//! thread and its group commit. Ids are hyphenated text, times fixed-width RFC 3339 text.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use serde_json::Value;
use uuid::Uuid;

use super::super::Timestamp;
use super::super::embedded::{Db, DbError};
use super::super::jobs::{
    Finish, Job, JobStore, JobStoreError, JobStoreResult, Stranded, Unreadable, claim_set, columns,
    due, parse_status,
};
use super::job_rows::{JobRow, job, parse_uuid, ts};

/// The `jobs` table of a [`SqliteStore`](super::SqliteStore) (see `SqliteStore::jobs`).
#[derive(Clone)]
pub struct SqliteJobStore {
    db: Db,
}

impl SqliteJobStore {
    pub(super) fn new(db: Db) -> SqliteJobStore {
        SqliteJobStore { db }
    }

    /// Runs one of the [`guarded!`] updates; false when the lease was lost.
    async fn guarded(
        &self,
        id: Uuid,
        token: &str,
        sql: &'static str,
        value: rusqlite::types::Value,
    ) -> JobStoreResult<bool> {
        let (id, token, now) = (id.to_string(), token.to_owned(), ts(&super::super::now()));
        let rows = self
            .db
            .write(move |c| {
                c.prepare_cached(sql)?
                    .execute(params![value, id, token, now])
            })
            .await
            .map_err(db_error)?;
        Ok(rows == 1)
    }
}

/// An update of the attempt holding the lease: `?1` is the value, then id, token, now.
macro_rules! guarded {
    ($set:literal) => {
        concat!(
            "UPDATE jobs SET ",
            $set,
            ", updated_at = ?4 WHERE id = ?2 AND locked_by = ?3 AND status = 'active'"
        )
    };
}

const CLAIM: &str = concat!(
    "UPDATE jobs SET ",
    claim_set!("?2", "?3", "?4", "?5"),
    " WHERE id = ?1
     AND ((status IN ('waiting', 'delayed') AND attempts < ?2 AND (run_at IS NULL OR run_at <= ?4))
          OR (status = 'active' AND attempts <= ?2 AND locked_until < ?4))
     RETURNING ",
    columns!()
);

const CLAIM_DUE: &str = concat!(
    "UPDATE jobs SET ",
    claim_set!(
        "attempts + CASE WHEN status = 'active' THEN 0 ELSE 1 END",
        "?3",
        "?4",
        "?5"
    ),
    " WHERE id IN (SELECT id FROM jobs WHERE ",
    due!("?1", "?4"),
    " ORDER BY created_at LIMIT ?2) RETURNING ",
    columns!()
);

const FINISH: &str = "UPDATE jobs SET status = ?3, progress = COALESCE(?4, progress), result = ?5, error = ?6, run_at = ?7,
     locked_by = NULL, locked_until = NULL, updated_at = ?8
     WHERE id = ?1 AND locked_by = ?2 AND status = 'active'";

const STRANDED: &str = "SELECT id, status, attempts FROM jobs
     WHERE (status = 'waiting' AND updated_at < ?1) OR (status = 'delayed' AND run_at < ?1)
        OR (status = 'active' AND locked_until < ?1)
     ORDER BY updated_at LIMIT ?2";

/// Served by the partial index `jobs_finished` (migration 0005).
const PRUNE: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
     WHERE status IN ('completed', 'failed') AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)";

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn insert(&self, job: &Job, queue: &str) -> JobStoreResult<()> {
        let row = JobRow::from(job);
        let queue = queue.to_owned();
        self.db
            .write(move |c| row.insert(c, &queue))
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get(&self, id: Uuid) -> JobStoreResult<Option<Job>> {
        let id = id.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached(concat!("SELECT ", columns!(), " FROM jobs WHERE id = ?1"))?
                    .query_row([id], job)
                    .optional()
            })
            .await
            .map_err(db_error)
    }

    async fn claim(
        &self,
        id: Uuid,
        attempt: i32,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> JobStoreResult<Option<Job>> {
        let (id, token, now, lease_until) =
            (id.to_string(), token.to_owned(), ts(&now), ts(&lease_until));
        self.db
            .write(move |c| {
                c.prepare_cached(CLAIM)?
                    .query_row(params![id, attempt, token, now, lease_until], job)
                    .optional()
            })
            .await
            .map_err(db_error)
    }

    async fn claim_due(
        &self,
        queue: &str,
        limit: usize,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> JobStoreResult<Vec<Result<Job, Unreadable>>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (queue, token, now, lease_until) = (
            queue.to_owned(),
            token.to_owned(),
            ts(&now),
            ts(&lease_until),
        );
        self.db
            .write(move |c| {
                c.prepare_cached(CLAIM_DUE)?
                    .query_map(params![queue, limit, token, now, lease_until], |row| {
                        // One bad row must not undo (and so block) the claim of the others.
                        Ok(job(row).map_err(|e| Unreadable {
                            id: row
                                .get::<_, String>(0)
                                .ok()
                                .and_then(|id| Uuid::parse_str(&id).ok()),
                            error: e.to_string(),
                        }))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(db_error)
    }

    async fn adopt_unassigned(&self, queue: &str) -> JobStoreResult<u64> {
        let queue = queue.to_owned();
        let adopted = self
            .db
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE jobs SET queue = ?1
                     WHERE queue IS NULL AND status IN ('waiting', 'active', 'delayed')",
                )?
                .execute([queue])
            })
            .await
            .map_err(db_error)?;
        Ok(adopted as u64)
    }

    async fn any_due(&self, queue: &str, now: Timestamp) -> JobStoreResult<bool> {
        let (queue, now) = (queue.to_owned(), ts(&now));
        self.db
            .read(move |c| {
                c.prepare_cached(concat!(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE ",
                    due!("?1", "?2"),
                    ")"
                ))?
                .query_row(params![queue, now], |row| row.get(0))
            })
            .await
            .map_err(db_error)
    }

    async fn renew(&self, id: Uuid, token: &str, until: Timestamp) -> JobStoreResult<bool> {
        let until = rusqlite::types::Value::Text(ts(&until));
        self.guarded(id, token, guarded!("locked_until = ?1"), until)
            .await
    }

    async fn set_progress(&self, id: Uuid, token: &str, progress: i32) -> JobStoreResult<bool> {
        let progress = rusqlite::types::Value::Integer(i64::from(progress));
        self.guarded(id, token, guarded!("progress = ?1"), progress)
            .await
    }

    async fn set_conversation(
        &self,
        id: Uuid,
        token: &str,
        conversation_id: Uuid,
    ) -> JobStoreResult<bool> {
        let conversation = rusqlite::types::Value::Text(conversation_id.to_string());
        self.guarded(id, token, guarded!("conversation_id = ?1"), conversation)
            .await
    }

    async fn stash_result(&self, id: Uuid, token: &str, result: &Value) -> JobStoreResult<bool> {
        let result = rusqlite::types::Value::Text(result.to_string());
        self.guarded(id, token, guarded!("result = ?1"), result)
            .await
    }

    async fn finish(&self, id: Uuid, token: &str, finish: &Finish<'_>) -> JobStoreResult<bool> {
        let f = finish.columns();
        let row = (
            id.to_string(),
            token.to_owned(),
            f.status.as_str(),
            f.progress,
            f.result.map(|r| r.get().to_owned()),
            f.error,
            f.run_at.as_ref().map(ts),
            ts(&super::super::now()),
        );
        let rows = self
            .db
            .write(move |c| {
                c.prepare_cached(FINISH)?.execute(params![
                    row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7
                ])
            })
            .await
            .map_err(db_error)?;
        Ok(rows == 1)
    }

    async fn abandon(&self, id: Uuid, error: &str) -> JobStoreResult<()> {
        let (id, error, now) = (id.to_string(), error.to_owned(), ts(&super::super::now()));
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE jobs SET status = 'failed', error = ?2, updated_at = ?3 \
                     WHERE id = ?1 AND status = 'waiting'",
                )?
                .execute([id, error, now])
            })
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn stranded(&self, before: Timestamp, limit: i64) -> JobStoreResult<Vec<Stranded>> {
        let before = ts(&before);
        let rows = self
            .db
            .read(move |c| {
                c.prepare_cached(STRANDED)?
                    .query_map(params![before, limit], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<(String, String, i32)>>>()
            })
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, status, attempts)| {
                Ok(Stranded {
                    id: parse_uuid(&id)?,
                    status: parse_status(&status)?,
                    attempts,
                })
            })
            .collect()
    }

    async fn prune_finished(&self, finished_before: Timestamp, limit: u32) -> JobStoreResult<u64> {
        let before = ts(&finished_before);
        let deleted = self
            .db
            .write(move |c| c.prepare_cached(PRUNE)?.execute(params![before, limit]))
            .await
            .map_err(db_error)?;
        Ok(deleted as u64)
    }
}

/// A unique violation is a conflict; a row that does not read as a job is corrupt.
fn db_error(e: DbError) -> JobStoreError {
    use rusqlite::Error as E;
    if e.is_unique_violation() {
        return JobStoreError::Conflict;
    }
    match e {
        DbError::Sqlite(
            e @ (E::FromSqlConversionFailure(..)
            | E::InvalidColumnType(..)
            | E::IntegralValueOutOfRange(..)),
        ) => JobStoreError::Corrupt(e.to_string()),
        other => JobStoreError::Other(Box::new(other)),
    }
}
