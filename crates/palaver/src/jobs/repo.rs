//! The `jobs` table (migrations `*_jobs.sql`), in SQLite or PostgreSQL: the state of every
//! job, readable from every instance.
//!
//! Writes by a running attempt are guarded by its lease token (`locked_by`): a worker that
//! lost its lease (presumed dead, job handed over) can no longer change the job.

use rusqlite::OptionalExtension;
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use super::{Job, JobKind, JobStatus};
use crate::store::embedded::{Db, DbError};
use crate::store::{SharedPool, Timestamp, from_sqlite_text, to_sqlite_text};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("jobs table: {0}")]
    Database(#[from] sqlx::Error),
    #[error("jobs table: {0}")]
    Embedded(#[from] DbError),
    #[error("jobs table: unreadable row: {0}")]
    Corrupt(String),
}

pub type RepoResult<T> = Result<T, RepoError>;

/// How an attempt ends.
#[derive(Debug, Clone)]
pub enum Finish<'a> {
    /// With the result as JSON text.
    Completed {
        result: &'a RawValue,
    },
    Failed {
        error: String,
    },
    /// Failed, with another attempt due at `run_at`.
    Delayed {
        error: String,
        run_at: Timestamp,
    },
}

/// A job that nobody seems to be taking care of (see [`JobRepo::stranded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stranded {
    pub id: Uuid,
    pub status: JobStatus,
    pub attempts: i32,
}

/// A job claimed by [`JobRepo::claim_due`] whose row could not be read back.
#[derive(Debug)]
pub struct Unreadable {
    pub id: Option<Uuid>,
    pub error: String,
}

#[derive(Clone)]
pub enum JobRepo {
    Sqlite(Db),
    Postgres(PgPool),
}

/// The columns of a [`Job`], in the order of `insert`.
macro_rules! columns {
    () => {
        "id, user_id, kind, data, status, progress, attempts, max_attempts, result, error, \
         conversation_id, run_at, locked_by, locked_until, created_at, updated_at"
    };
}

/// The jobs of queue `$queue` that are due at `$now` (placeholders of the dialect): waiting,
/// delayed past `run_at`, or active under an expired lease. The `status IN` term lets the
/// partial index `jobs_queued` serve the search.
macro_rules! due {
    ($queue:literal, $now:literal) => {
        concat!(
            "queue = ",
            $queue,
            " AND status IN ('waiting', 'active', 'delayed')
             AND (status = 'waiting' OR (status = 'delayed' AND run_at <= ",
            $now,
            ")
                  OR (status = 'active' AND locked_until < ",
            $now,
            "))"
        )
    };
}

/// An update of the attempt holding the lease: `?1`/`$1` is the value, then id, token, now.
macro_rules! guarded {
    ($set_sqlite:literal, $set_pg:literal) => {
        (
            concat!(
                "UPDATE jobs SET ",
                $set_sqlite,
                ", updated_at = ?4 WHERE id = ?2 AND locked_by = ?3 AND status = 'active'"
            ),
            concat!(
                "UPDATE jobs SET ",
                $set_pg,
                ", updated_at = $4 WHERE id = $2 AND locked_by = $3 AND status = 'active'"
            ),
        )
    };
}

impl JobRepo {
    /// The `jobs` table on the store's own pool (the table comes with the store's migrations).
    pub fn new(pool: SharedPool) -> JobRepo {
        match pool {
            SharedPool::Sqlite(pool) => JobRepo::Sqlite(pool),
            SharedPool::Postgres(pool) => JobRepo::Postgres(pool),
        }
    }

    /// Stores a new job in `queue` (the name of `JOB_QUEUE`).
    pub async fn insert(&self, job: &Job, queue: &str) -> RepoResult<()> {
        match self {
            JobRepo::Sqlite(db) => {
                let queue = queue.to_owned();
                let row = (
                    job.id.to_string(),
                    job.user_id.clone(),
                    job.kind.as_str(),
                    job.data.to_string(),
                    job.status.as_str(),
                    job.progress,
                    job.attempts,
                    job.max_attempts,
                    job.result.as_ref().map(Value::to_string),
                    job.error.clone(),
                    job.conversation_id.map(|c| c.to_string()),
                    job.run_at.as_ref().map(ts),
                    job.locked_by.clone(),
                    job.locked_until.as_ref().map(ts),
                    ts(&job.created_at),
                    ts(&job.updated_at),
                );
                db.write(move |c| {
                    c.prepare_cached(concat!(
                        "INSERT INTO jobs (",
                        columns!(),
                        ", queue) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"
                    ))?
                    .execute(rusqlite::params![
                        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9,
                        row.10, row.11, row.12, row.13, row.14, row.15, queue
                    ])
                })
                .await?;
            }
            JobRepo::Postgres(pool) => {
                sqlx::query(concat!(
                    "INSERT INTO jobs (",
                    columns!(),
                    ", queue) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)"
                ))
                .bind(job.id)
                .bind(&job.user_id)
                .bind(job.kind.as_str())
                .bind(&job.data)
                .bind(job.status.as_str())
                .bind(job.progress)
                .bind(job.attempts)
                .bind(job.max_attempts)
                .bind(&job.result)
                .bind(&job.error)
                .bind(job.conversation_id)
                .bind(job.run_at)
                .bind(&job.locked_by)
                .bind(job.locked_until)
                .bind(job.created_at)
                .bind(job.updated_at)
                .bind(queue)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    pub async fn get(&self, id: Uuid) -> RepoResult<Option<Job>> {
        match self {
            JobRepo::Sqlite(db) => {
                let id = id.to_string();
                db.read(move |c| {
                    c.prepare_cached(concat!("SELECT ", columns!(), " FROM jobs WHERE id = ?1"))?
                        .query_row([id], sqlite_job)
                        .optional()
                })
                .await
                .map_err(RepoError::from)
            }
            JobRepo::Postgres(pool) => {
                sqlx::query(concat!("SELECT ", columns!(), " FROM jobs WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                    .map(|row| pg_job(&row))
                    .transpose()
            }
        }
    }

    /// Starts attempt `attempt` under the lease `token` when the job is due for it: waiting or
    /// delayed (and due) with fewer attempts, or active under a lease that has expired (its
    /// worker died). `None` when it is not due (see [`Job`] for why).
    pub async fn claim(
        &self,
        id: Uuid,
        attempt: i32,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> RepoResult<Option<Job>> {
        match self {
            JobRepo::Sqlite(db) => {
                let (id, token, now, lease_until) =
                    (id.to_string(), token.to_owned(), ts(&now), ts(&lease_until));
                db.write(move |c| {
                    c.prepare_cached(concat!(
                        "UPDATE jobs SET status = 'active', attempts = ?2, locked_by = ?3, locked_until = ?5, run_at = NULL,
                         updated_at = ?4 WHERE id = ?1
                         AND ((status IN ('waiting', 'delayed') AND attempts < ?2 AND (run_at IS NULL OR run_at <= ?4))
                              OR (status = 'active' AND attempts <= ?2 AND locked_until < ?4))
                         RETURNING ",
                        columns!()
                    ))?
                    .query_row(rusqlite::params![id, attempt, token, now, lease_until], sqlite_job)
                    .optional()
                })
                .await
                .map_err(RepoError::from)
            }
            JobRepo::Postgres(pool) => sqlx::query(concat!(
                "UPDATE jobs SET status = 'active', attempts = $2, locked_by = $3, locked_until = $5, run_at = NULL,
                 updated_at = $4 WHERE id = $1
                 AND ((status IN ('waiting', 'delayed') AND attempts < $2 AND (run_at IS NULL OR run_at <= $4))
                      OR (status = 'active' AND attempts <= $2 AND locked_until < $4))
                 RETURNING ",
                columns!()
            ))
            .bind(id)
            .bind(attempt)
            .bind(token)
            .bind(now)
            .bind(lease_until)
            .fetch_optional(pool)
            .await?
            .map(|row| pg_job(&row))
            .transpose(),
        }
    }

    /// The table as the queue: starts, under the lease `token`, up to `limit` due jobs of
    /// `queue`, oldest first. Due: waiting, delayed past `run_at`, or active under a lease that
    /// expired before `now` (its worker died: the same attempt runs again, as a re-delivered
    /// envelope would). Each job is claimed by one caller only, across processes.
    pub async fn claim_due(
        &self,
        queue: &str,
        limit: usize,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> RepoResult<Vec<Result<Job, Unreadable>>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match self {
            JobRepo::Sqlite(db) => {
                let (queue, token, now, lease_until) = (
                    queue.to_owned(),
                    token.to_owned(),
                    ts(&now),
                    ts(&lease_until),
                );
                Ok(db.write(move |c| {
                    c.prepare_cached(concat!(
                        "UPDATE jobs SET status = 'active', attempts = attempts + (status <> 'active'),
                         locked_by = ?3, locked_until = ?5, run_at = NULL, updated_at = ?4
                         WHERE id IN (SELECT id FROM jobs WHERE ",
                        due!("?1", "?4"),
                        " ORDER BY created_at LIMIT ?2) RETURNING ",
                        columns!()
                    ))?
                    .query_map(
                        rusqlite::params![queue, limit, token, now, lease_until],
                        |row| {
                            // One bad row must not undo (and so block) the claim of the others.
                            Ok(sqlite_job(row).map_err(|e| Unreadable {
                                id: row
                                    .get::<_, String>(0)
                                    .ok()
                                    .and_then(|id| Uuid::parse_str(&id).ok()),
                                error: e.to_string(),
                            }))
                        },
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?)
            }
            JobRepo::Postgres(pool) => Ok(sqlx::query(concat!(
                "WITH due AS (SELECT id FROM jobs WHERE ",
                due!("$1", "$4"),
                " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 UPDATE jobs SET status = 'active',
                     attempts = attempts + CASE WHEN status = 'active' THEN 0 ELSE 1 END,
                     locked_by = $3, locked_until = $5, run_at = NULL, updated_at = $4
                 WHERE id IN (SELECT id FROM due)
                 RETURNING ",
                columns!()
            ))
            .bind(queue)
            .bind(limit)
            .bind(token)
            .bind(now)
            .bind(lease_until)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| {
                pg_job(row).map_err(|e| Unreadable {
                    id: row.try_get("id").ok(),
                    error: e.to_string(),
                })
            })
            .collect()),
        }
    }

    /// Puts the unfinished jobs stored before jobs had a queue (migration 0004) into `queue`;
    /// returns how many. Idempotent, so every process may run it at start-up.
    pub async fn adopt_unassigned(&self, queue: &str) -> RepoResult<u64> {
        let adopted = match self {
            JobRepo::Sqlite(db) => {
                let queue = queue.to_owned();
                db.write(move |c| {
                    c.prepare_cached(
                        "UPDATE jobs SET queue = ?1
                         WHERE queue IS NULL AND status IN ('waiting', 'active', 'delayed')",
                    )?
                    .execute([queue])
                })
                .await? as u64
            }
            JobRepo::Postgres(pool) => sqlx::query(
                "UPDATE jobs SET queue = $1
                 WHERE queue IS NULL AND status IN ('waiting', 'active', 'delayed')",
            )
            .bind(queue)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(adopted)
    }

    /// Whether [`JobRepo::claim_due`] would find a job now (a read: an idle worker asks this
    /// before it takes the write lock).
    pub async fn any_due(&self, queue: &str, now: Timestamp) -> RepoResult<bool> {
        match self {
            JobRepo::Sqlite(db) => {
                let (queue, now) = (queue.to_owned(), ts(&now));
                db.read(move |c| {
                    c.prepare_cached(concat!(
                        "SELECT EXISTS (SELECT 1 FROM jobs WHERE ",
                        due!("?1", "?2"),
                        ")"
                    ))?
                    .query_row(rusqlite::params![queue, now], |row| row.get(0))
                })
                .await
                .map_err(RepoError::from)
            }
            JobRepo::Postgres(pool) => Ok(sqlx::query_scalar(concat!(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE ",
                due!("$1", "$2"),
                ")"
            ))
            .bind(queue)
            .bind(now)
            .fetch_one(pool)
            .await?),
        }
    }

    /// Extends the lease; false when it was lost.
    pub async fn renew(&self, id: Uuid, token: &str, until: Timestamp) -> RepoResult<bool> {
        self.guarded(
            id,
            token,
            guarded!("locked_until = ?1", "locked_until = $1"),
            Bind::Time(until),
        )
        .await
    }

    pub async fn set_progress(&self, id: Uuid, token: &str, progress: i32) -> RepoResult<bool> {
        self.guarded(
            id,
            token,
            guarded!("progress = ?1", "progress = $1"),
            Bind::Int(progress),
        )
        .await
    }

    pub async fn set_conversation(
        &self,
        id: Uuid,
        token: &str,
        conversation_id: Uuid,
    ) -> RepoResult<bool> {
        self.guarded(
            id,
            token,
            guarded!("conversation_id = ?1", "conversation_id = $1"),
            Bind::Uuid(conversation_id),
        )
        .await
    }

    /// Keeps a completion's result before its reply is stored (see `scoped`).
    pub async fn stash_result(&self, id: Uuid, token: &str, result: &Value) -> RepoResult<bool> {
        self.guarded(
            id,
            token,
            guarded!("result = ?1", "result = $1"),
            Bind::Json(result.clone()),
        )
        .await
    }

    /// Ends the attempt holding `token` and releases the lease; false when it was lost.
    pub async fn finish(&self, id: Uuid, token: &str, finish: &Finish<'_>) -> RepoResult<bool> {
        let (status, progress, result, error, run_at) = match *finish {
            Finish::Completed { result } => {
                (JobStatus::Completed, Some(100), Some(result), None, None)
            }
            Finish::Failed { ref error } => {
                (JobStatus::Failed, None, None, Some(error.clone()), None)
            }
            Finish::Delayed { ref error, run_at } => (
                JobStatus::Delayed,
                Some(0),
                None,
                Some(error.clone()),
                Some(run_at),
            ),
        };
        let now = crate::store::now();
        let rows = match self {
            JobRepo::Sqlite(db) => {
                let row = (
                    id.to_string(),
                    token.to_owned(),
                    status.as_str(),
                    progress,
                    result.map(|r| r.get().to_owned()),
                    error,
                    run_at.as_ref().map(ts),
                    ts(&now),
                );
                db.write(move |c| {
                    c.prepare_cached(
                        "UPDATE jobs SET status = ?3, progress = COALESCE(?4, progress), result = ?5, error = ?6, run_at = ?7,
                         locked_by = NULL, locked_until = NULL, updated_at = ?8
                         WHERE id = ?1 AND locked_by = ?2 AND status = 'active'",
                    )?
                    .execute(rusqlite::params![
                        row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7
                    ])
                })
                .await? as u64
            }
            JobRepo::Postgres(pool) => sqlx::query(
                "UPDATE jobs SET status = $3, progress = COALESCE($4, progress), result = $5, error = $6, run_at = $7,
                 locked_by = NULL, locked_until = NULL, updated_at = $8
                 WHERE id = $1 AND locked_by = $2 AND status = 'active'",
            )
            .bind(id)
            .bind(token)
            .bind(status.as_str())
            .bind(progress)
            .bind(result.map(sqlx::types::Json))
            .bind(error)
            .bind(run_at)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(rows == 1)
    }

    /// Fails a job that never ran (it could not be queued).
    pub async fn abandon(&self, id: Uuid, error: &str) -> RepoResult<()> {
        let now = crate::store::now();
        match self {
            JobRepo::Sqlite(db) => {
                let (id, error, now) = (id.to_string(), error.to_owned(), ts(&now));
                db.write(move |c| {
                    c.prepare_cached("UPDATE jobs SET status = 'failed', error = ?2, updated_at = ?3 WHERE id = ?1 AND status = 'waiting'")?
                        .execute([id, error, now])
                })
                .await?;
            }
            JobRepo::Postgres(pool) => {
                sqlx::query("UPDATE jobs SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1 AND status = 'waiting'")
                    .bind(id)
                    .bind(error)
                    .bind(now)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Jobs not finished and not looked after since `before`: waiting since then, delayed
    /// and due since then, or active under a lease that expired then. Their deliveries were
    /// probably lost (an instance's local queue gone, a Redis without persistence restarted).
    pub async fn stranded(&self, before: Timestamp, limit: i64) -> RepoResult<Vec<Stranded>> {
        let rows = match self {
            JobRepo::Sqlite(db) => {
                let before = ts(&before);
                db.read(move |c| {
                    c.prepare_cached(
                        "SELECT id, status, attempts FROM jobs
                         WHERE (status = 'waiting' AND updated_at < ?1) OR (status = 'delayed' AND run_at < ?1)
                            OR (status = 'active' AND locked_until < ?1)
                         ORDER BY updated_at LIMIT ?2",
                    )?
                    .query_map(rusqlite::params![before, limit], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i32>(2)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?
                .into_iter()
                .map(|(id, status, attempts)| Ok((parse_uuid(&id)?, status, attempts)))
                .collect::<RepoResult<Vec<_>>>()?
            }
            JobRepo::Postgres(pool) => sqlx::query(
                "SELECT id, status, attempts FROM jobs
                 WHERE (status = 'waiting' AND updated_at < $1) OR (status = 'delayed' AND run_at < $1)
                    OR (status = 'active' AND locked_until < $1)
                 ORDER BY updated_at LIMIT $2",
            )
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get::<String, _>("status")?, row.try_get::<i32, _>("attempts")?)))
            .collect::<RepoResult<Vec<_>>>()?,
        };
        rows.into_iter()
            .map(|(id, status, attempts)| {
                Ok(Stranded {
                    id,
                    status: parse_status(&status)?,
                    attempts,
                })
            })
            .collect()
    }

    /// Runs one of the [`guarded!`] updates; false when the lease was lost.
    async fn guarded(
        &self,
        id: Uuid,
        token: &str,
        sql: (&'static str, &'static str),
        value: Bind,
    ) -> RepoResult<bool> {
        let now = crate::store::now();
        let rows = match self {
            JobRepo::Sqlite(db) => {
                let value = match value {
                    Bind::Time(t) => rusqlite::types::Value::Text(ts(&t)),
                    Bind::Int(i) => rusqlite::types::Value::Integer(i64::from(i)),
                    Bind::Uuid(u) => rusqlite::types::Value::Text(u.to_string()),
                    Bind::Json(v) => rusqlite::types::Value::Text(v.to_string()),
                };
                let (id, token, now) = (id.to_string(), token.to_owned(), ts(&now));
                db.write(move |c| {
                    c.prepare_cached(sql.0)?
                        .execute(rusqlite::params![value, id, token, now])
                })
                .await? as u64
            }
            JobRepo::Postgres(pool) => {
                let query = match value {
                    Bind::Time(t) => sqlx::query(sql.1).bind(t),
                    Bind::Int(i) => sqlx::query(sql.1).bind(i),
                    Bind::Uuid(u) => sqlx::query(sql.1).bind(u),
                    Bind::Json(v) => sqlx::query(sql.1).bind(v),
                };
                query
                    .bind(id)
                    .bind(token)
                    .bind(now)
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        Ok(rows == 1)
    }
}

enum Bind {
    Time(Timestamp),
    Int(i32),
    Uuid(Uuid),
    Json(Value),
}

/// SQLite keeps times as fixed-width RFC 3339 text, so that they compare as text.
fn ts(t: &Timestamp) -> String {
    to_sqlite_text(*t)
}

fn parse_ts(s: &str) -> RepoResult<Timestamp> {
    from_sqlite_text(s).map_err(|e| RepoError::Corrupt(format!("time `{s}`: {e}")))
}

fn parse_uuid(s: &str) -> RepoResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| RepoError::Corrupt(format!("uuid `{s}`: {e}")))
}

fn parse_status(s: &str) -> RepoResult<JobStatus> {
    JobStatus::parse(s).ok_or_else(|| RepoError::Corrupt(format!("status `{s}`")))
}

fn parse_kind(s: &str) -> RepoResult<JobKind> {
    JobKind::parse(s).ok_or_else(|| RepoError::Corrupt(format!("kind `{s}`")))
}

fn parse_json(s: &str) -> RepoResult<Value> {
    serde_json::from_str(s).map_err(|e| RepoError::Corrupt(format!("json: {e}")))
}

fn sqlite_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    fn bad(i: usize, e: RepoError) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    }
    let text = |i: usize| row.get::<_, String>(i);
    let opt_text = |i: usize| row.get::<_, Option<String>>(i);
    let opt_ts = |i: usize| -> rusqlite::Result<Option<Timestamp>> {
        opt_text(i)?
            .as_deref()
            .map(|s| parse_ts(s).map_err(|e| bad(i, e)))
            .transpose()
    };
    Ok(Job {
        id: parse_uuid(&text(0)?).map_err(|e| bad(0, e))?,
        user_id: row.get(1)?,
        kind: parse_kind(&text(2)?).map_err(|e| bad(2, e))?,
        data: parse_json(&text(3)?).map_err(|e| bad(3, e))?,
        status: parse_status(&text(4)?).map_err(|e| bad(4, e))?,
        progress: row.get(5)?,
        attempts: row.get(6)?,
        max_attempts: row.get(7)?,
        result: opt_text(8)?
            .as_deref()
            .map(|s| parse_json(s).map_err(|e| bad(8, e)))
            .transpose()?,
        error: row.get(9)?,
        conversation_id: opt_text(10)?
            .as_deref()
            .map(|s| parse_uuid(s).map_err(|e| bad(10, e)))
            .transpose()?,
        run_at: opt_ts(11)?,
        locked_by: row.get(12)?,
        locked_until: opt_ts(13)?,
        created_at: parse_ts(&text(14)?).map_err(|e| bad(14, e))?,
        updated_at: parse_ts(&text(15)?).map_err(|e| bad(15, e))?,
    })
}

fn pg_job(row: &PgRow) -> RepoResult<Job> {
    Ok(Job {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: parse_kind(&row.try_get::<String, _>("kind")?)?,
        data: row.try_get("data")?,
        status: parse_status(&row.try_get::<String, _>("status")?)?,
        progress: row.try_get("progress")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        result: row.try_get("result")?,
        error: row.try_get("error")?,
        conversation_id: row.try_get("conversation_id")?,
        run_at: row.try_get("run_at")?,
        locked_by: row.try_get("locked_by")?,
        locked_until: row.try_get("locked_until")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    #[test]
    fn sqlite_times_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + chrono::Duration::microseconds(1);
        let c = a + chrono::Duration::milliseconds(1500);
        assert!(ts(&a) < ts(&b) && ts(&b) < ts(&c));
        assert_eq!(ts(&a), "2026-01-01T00:00:00.000000Z");
        assert_eq!(parse_ts(&ts(&b)).unwrap(), b);
    }
}
