//! The `jobs` table in PostgreSQL, on the store's own pool. `claim_due` takes its rows with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers (in any process) never share a job.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use super::super::jobs::{
    Finish, Job, JobStore, JobStoreError, JobStoreResult, Stranded, Unreadable, claim_set, columns,
    due, parse_kind, parse_status,
};
use super::super::{Timestamp, now};

/// The `jobs` table of a [`PgStore`](super::PgStore) (see `PgStore::jobs`).
#[derive(Clone)]
pub struct PgJobStore {
    pool: PgPool,
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl PgJobStore {
    pub(super) fn new(pool: PgPool) -> PgJobStore {
        PgJobStore { pool }
    }

    /// Runs one of the [`guarded!`] updates (its value bound already); false when the lease
    /// was lost.
    async fn guarded(&self, query: PgQuery<'_>, id: Uuid, token: &str) -> JobStoreResult<bool> {
        let done = query
            .bind(id)
            .bind(token)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(done.rows_affected() == 1)
    }
}

/// An update of the attempt holding the lease: `$1` is the value, then id, token, now.
macro_rules! guarded {
    ($set:literal) => {
        concat!(
            "UPDATE jobs SET ",
            $set,
            ", updated_at = $4 WHERE id = $2 AND locked_by = $3 AND status = 'active'"
        )
    };
}

const INSERT: &str = concat!(
    "INSERT INTO jobs (",
    columns!(),
    ", queue) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)"
);

const CLAIM: &str = concat!(
    "UPDATE jobs SET ",
    claim_set!("$2", "$3", "$4", "$5"),
    " WHERE id = $1
     AND ((status IN ('waiting', 'delayed') AND attempts < $2 AND (run_at IS NULL OR run_at <= $4))
          OR (status = 'active' AND attempts <= $2 AND locked_until < $4))
     RETURNING ",
    columns!()
);

const CLAIM_DUE: &str = concat!(
    "WITH due AS (SELECT id FROM jobs WHERE ",
    due!("$1", "$4"),
    " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
     UPDATE jobs SET ",
    claim_set!(
        "attempts + CASE WHEN status = 'active' THEN 0 ELSE 1 END",
        "$3",
        "$4",
        "$5"
    ),
    " WHERE id IN (SELECT id FROM due)
     RETURNING ",
    columns!()
);

const FINISH: &str = "UPDATE jobs SET status = $3, progress = COALESCE($4, progress), result = $5, error = $6, run_at = $7,
     locked_by = NULL, locked_until = NULL, updated_at = $8
     WHERE id = $1 AND locked_by = $2 AND status = 'active'";

const STRANDED: &str = "SELECT id, status, attempts FROM jobs
     WHERE (status = 'waiting' AND updated_at < $1) OR (status = 'delayed' AND run_at < $1)
        OR (status = 'active' AND locked_until < $1)
     ORDER BY updated_at LIMIT $2";

/// Served by the partial index `jobs_finished` (migration 0006).
const PRUNE: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
     WHERE status IN ('completed', 'failed') AND updated_at < $1 ORDER BY updated_at LIMIT $2)";

#[async_trait]
impl JobStore for PgJobStore {
    async fn insert(&self, job: &Job, queue: &str) -> JobStoreResult<()> {
        sqlx::query(INSERT)
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
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn get(&self, id: Uuid) -> JobStoreResult<Option<Job>> {
        sqlx::query(concat!("SELECT ", columns!(), " FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?
            .map(|row| job(&row))
            .transpose()
    }

    async fn claim(
        &self,
        id: Uuid,
        attempt: i32,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> JobStoreResult<Option<Job>> {
        sqlx::query(CLAIM)
            .bind(id)
            .bind(attempt)
            .bind(token)
            .bind(now)
            .bind(lease_until)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)?
            .map(|row| job(&row))
            .transpose()
    }

    async fn claim_due(
        &self,
        queue: &str,
        limit: usize,
        token: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> JobStoreResult<Vec<Result<Job, Unreadable>>> {
        let rows = sqlx::query(CLAIM_DUE)
            .bind(queue)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(token)
            .bind(now)
            .bind(lease_until)
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| {
                // One bad row must not block the claim of the others.
                job(row).map_err(|e| Unreadable {
                    id: row.try_get("id").ok(),
                    error: e.to_string(),
                })
            })
            .collect())
    }

    async fn adopt_unassigned(&self, queue: &str) -> JobStoreResult<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET queue = $1
             WHERE queue IS NULL AND status IN ('waiting', 'active', 'delayed')",
        )
        .bind(queue)
        .execute(&self.pool)
        .await
        .map_err(pg_error)?;
        Ok(done.rows_affected())
    }

    async fn any_due(&self, queue: &str, now: Timestamp) -> JobStoreResult<bool> {
        sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE ",
            due!("$1", "$2"),
            ")"
        ))
        .bind(queue)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(pg_error)
    }

    async fn renew(&self, id: Uuid, token: &str, until: Timestamp) -> JobStoreResult<bool> {
        let query = sqlx::query(guarded!("locked_until = $1")).bind(until);
        self.guarded(query, id, token).await
    }

    async fn set_progress(&self, id: Uuid, token: &str, progress: i32) -> JobStoreResult<bool> {
        let query = sqlx::query(guarded!("progress = $1")).bind(progress);
        self.guarded(query, id, token).await
    }

    async fn set_conversation(
        &self,
        id: Uuid,
        token: &str,
        conversation_id: Uuid,
    ) -> JobStoreResult<bool> {
        let query = sqlx::query(guarded!("conversation_id = $1")).bind(conversation_id);
        self.guarded(query, id, token).await
    }

    async fn stash_result(&self, id: Uuid, token: &str, result: &Value) -> JobStoreResult<bool> {
        let query = sqlx::query(guarded!("result = $1")).bind(result);
        self.guarded(query, id, token).await
    }

    async fn finish(&self, id: Uuid, token: &str, finish: &Finish<'_>) -> JobStoreResult<bool> {
        let f = finish.columns();
        let done = sqlx::query(FINISH)
            .bind(id)
            .bind(token)
            .bind(f.status.as_str())
            .bind(f.progress)
            .bind(f.result.map(sqlx::types::Json))
            .bind(f.error)
            .bind(f.run_at)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn abandon(&self, id: Uuid, error: &str) -> JobStoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET status = 'failed', error = $2, updated_at = $3 \
             WHERE id = $1 AND status = 'waiting'",
        )
        .bind(id)
        .bind(error)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(pg_error)?;
        Ok(())
    }

    async fn stranded(&self, before: Timestamp, limit: i64) -> JobStoreResult<Vec<Stranded>> {
        let rows = sqlx::query(STRANDED)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
        rows.iter()
            .map(|row| {
                Ok(Stranded {
                    id: row.try_get("id").map_err(pg_error)?,
                    status: parse_status(row.try_get("status").map_err(pg_error)?)?,
                    attempts: row.try_get("attempts").map_err(pg_error)?,
                })
            })
            .collect()
    }

    async fn prune_finished(&self, finished_before: Timestamp, limit: u32) -> JobStoreResult<u64> {
        let done = sqlx::query(PRUNE)
            .bind(finished_before)
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(done.rows_affected())
    }
}

/// A unique violation is a conflict; a column that does not decode is a corrupt row.
fn pg_error(e: sqlx::Error) -> JobStoreError {
    match e {
        sqlx::Error::Database(e) if e.is_unique_violation() => JobStoreError::Conflict,
        e @ (sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => {
            JobStoreError::Corrupt(e.to_string())
        }
        other => JobStoreError::Other(Box::new(other)),
    }
}

/// Reads a row of [`columns!`].
fn job(row: &PgRow) -> JobStoreResult<Job> {
    Ok(Job {
        id: row.try_get("id").map_err(pg_error)?,
        user_id: row.try_get("user_id").map_err(pg_error)?,
        kind: parse_kind(row.try_get("kind").map_err(pg_error)?)?,
        data: row.try_get("data").map_err(pg_error)?,
        status: parse_status(row.try_get("status").map_err(pg_error)?)?,
        progress: row.try_get("progress").map_err(pg_error)?,
        attempts: row.try_get("attempts").map_err(pg_error)?,
        max_attempts: row.try_get("max_attempts").map_err(pg_error)?,
        result: row.try_get("result").map_err(pg_error)?,
        error: row.try_get("error").map_err(pg_error)?,
        conversation_id: row.try_get("conversation_id").map_err(pg_error)?,
        run_at: row.try_get("run_at").map_err(pg_error)?,
        locked_by: row.try_get("locked_by").map_err(pg_error)?,
        locked_until: row.try_get("locked_until").map_err(pg_error)?,
        created_at: row.try_get("created_at").map_err(pg_error)?,
        updated_at: row.try_get("updated_at").map_err(pg_error)?,
    })
}
