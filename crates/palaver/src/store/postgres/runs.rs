//! Runs on PostgreSQL.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use super::super::{Run, RunEnd, RunStatus, StoreError, StoreResult};

/// Selects the columns [`run`] reads.
macro_rules! select_runs {
    () => {
        "SELECT id, user_id, conversation_id, message_id, user_message_id, status, last_seq, \
         error_code, created_at, updated_at FROM runs"
    };
}

fn run(row: &PgRow) -> StoreResult<Run> {
    let status: &str = row.try_get("status")?;
    Ok(Run {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        conversation_id: row.try_get("conversation_id")?,
        message_id: row.try_get("message_id")?,
        user_message_id: row.try_get("user_message_id")?,
        status: RunStatus::parse(status)
            .ok_or_else(|| StoreError::other(format!("bad run status `{status}`")))?,
        last_seq: row.try_get("last_seq")?,
        error_code: row.try_get("error_code")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) async fn create(pool: &PgPool, r: &Run) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO runs (id, user_id, conversation_id, message_id, user_message_id, status, \
         last_seq, error_code, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(r.id)
    .bind(&r.user_id)
    .bind(r.conversation_id)
    .bind(r.message_id)
    .bind(r.user_message_id)
    .bind(r.status.as_str())
    .bind(r.last_seq)
    .bind(&r.error_code)
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(pool)
    .await
    .map_err(super::writes::write_error)?;
    Ok(())
}

pub(super) async fn finish(pool: &PgPool, id: Uuid, end: &RunEnd) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE runs SET status = $2, last_seq = $3, error_code = $4, updated_at = $5 \
         WHERE id = $1 AND status IN ('queued', 'in_progress')",
    )
    .bind(id)
    .bind(end.status.as_str())
    .bind(end.last_seq)
    .bind(&end.error_code)
    .bind(end.at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn get(pool: &PgPool, user_id: &str, id: Uuid) -> StoreResult<Option<Run>> {
    let row = sqlx::query(concat!(select_runs!(), " WHERE id = $1 AND user_id = $2"))
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(run).transpose()
}

pub(super) async fn list(
    pool: &PgPool,
    user_id: &str,
    status: Option<RunStatus>,
    limit: u64,
) -> StoreResult<Vec<Run>> {
    let rows = sqlx::query(concat!(
        select_runs!(),
        " WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .bind(user_id)
    .bind(status.map(RunStatus::as_str))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(run).collect()
}
