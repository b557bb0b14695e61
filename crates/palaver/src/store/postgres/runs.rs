//! Runs on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use super::super::{
    Checkpoint, Message, NewConversation, Run, RunEnd, RunStatus, RunStore, StoreError,
    StoreResult, Timestamp, UsageRecord,
};
use super::PgStore;
use super::writes::{
    PgQuery, bind_attribution, bind_conversation, bind_message, bind_usage, write_error,
};

/// The columns [`run`] reads.
macro_rules! run_columns_read {
    () => {
        "id, user_id, conversation_id, message_id, user_message_id, status, last_seq, \
         error_code, lease_until, request_key, created_at, updated_at"
    };
}

/// Selects the columns [`run`] reads.
macro_rules! select_runs {
    () => {
        concat!("SELECT ", run_columns_read!(), " FROM runs")
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
        lease_until: row.try_get("lease_until")?,
        request_key: row.try_get("request_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The columns of a run insert.
macro_rules! run_columns {
    () => {
        "INSERT INTO runs (id, user_id, conversation_id, message_id, user_message_id, status, \
         last_seq, error_code, lease_until, request_key, created_at, updated_at) "
    };
}

/// Binds a run's columns (12 parameters) after those already bound.
fn bind_run<'q>(query: PgQuery<'q>, r: &'q Run) -> PgQuery<'q> {
    query
        .bind(r.id)
        .bind(&r.user_id)
        .bind(r.conversation_id)
        .bind(r.message_id)
        .bind(r.user_message_id)
        .bind(r.status.as_str())
        .bind(r.last_seq)
        .bind(&r.error_code)
        .bind(r.lease_until)
        .bind(&r.request_key)
        .bind(r.created_at)
        .bind(r.updated_at)
}

pub(super) async fn create(pool: &PgPool, r: &Run) -> StoreResult<()> {
    let query = sqlx::query(concat!(
        run_columns!(),
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ));
    bind_run(query, r)
        .execute(pool)
        .await
        .map_err(write_error)?;
    Ok(())
}

/// A conversation (`$1`..`$7`), its first message (`$8`..`$17`) and its run (`$18`..`$29`).
const START_WITH_RUN: &str = concat!(
    "WITH conversation AS (
    INSERT INTO conversations (id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) RETURNING id
), run AS (",
    run_columns!(),
    "SELECT $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29 FROM conversation)
INSERT INTO messages (id, conversation_id, role, content, tokens, model, metadata, created_at, parent_id, edited_at)
    SELECT $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 FROM conversation"
);

/// A user message (`$1`..`$10`, appended as `APPEND` does) and, if it was, its run
/// (`$11`..`$22`).
const APPEND_WITH_RUN: &str = concat!(
    "WITH message AS (INSERT INTO messages ",
    message_insert!(),
    " ",
    append_where!(),
    " RETURNING id) ",
    run_columns!(),
    "SELECT $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22 FROM message"
);

pub(super) async fn begin_exchange(
    pool: &PgPool,
    new: Option<&NewConversation>,
    message: Option<&Message>,
    run: &Run,
) -> StoreResult<()> {
    let query = match (new, message) {
        (Some(new), Some(first)) => bind_run(
            bind_message(bind_conversation(sqlx::query(START_WITH_RUN), new), first),
            run,
        ),
        (None, Some(message)) => bind_run(bind_message(sqlx::query(APPEND_WITH_RUN), message), run),
        _ => return create(pool, run).await,
    };
    match query.execute(pool).await.map_err(write_error)? {
        done if done.rows_affected() == 0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

/// A reply (`$1`..`$10`), its usage (`$11`..`$19`, attribution `$25`, `$26`) and the end of
/// its run (`$20`..`$24`), the latter two only if the reply was stored; returns how many
/// replies were.
const END_WITH_RUN: &str = concat!(
    "WITH message AS (INSERT INTO messages ",
    message_insert!(),
    " ",
    append_where!(),
    " RETURNING id), usage AS (
INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, completion_tokens, cost_usd, created_at, api_key_id, end_user)
    SELECT $11, $12, $13, $14, $15, $16, $17, $18, $19, $25, $26 FROM message RETURNING 1
), run AS (
UPDATE runs SET status = $21, last_seq = $22, error_code = $23, updated_at = $24
 WHERE id = $20 AND status IN ('queued', 'in_progress') AND EXISTS (SELECT 1 FROM message)
 RETURNING 1)
SELECT COUNT(*) FROM message"
);

pub(super) async fn end_exchange(
    pool: &PgPool,
    reply: &Message,
    usage: &UsageRecord,
    run_id: Uuid,
    end: &RunEnd,
) -> StoreResult<()> {
    let stored = bind_usage(bind_message(sqlx::query(END_WITH_RUN), reply), usage)
        .bind(run_id)
        .bind(end.status.as_str())
        .bind(end.last_seq)
        .bind(&end.error_code)
        .bind(end.at);
    let stored: i64 = bind_attribution(stored, usage)
        .try_map(|row: sqlx::postgres::PgRow| row.try_get::<i64, _>(0))
        .fetch_one(pool)
        .await
        .map_err(write_error)?;
    if stored == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

async fn finish(pool: &PgPool, id: Uuid, end: &RunEnd) -> StoreResult<bool> {
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

async fn get(pool: &PgPool, user_id: &str, id: Uuid) -> StoreResult<Option<Run>> {
    let row = sqlx::query(concat!(select_runs!(), " WHERE id = $1 AND user_id = $2"))
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(run).transpose()
}

async fn list(
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

/// Renews a live run's lease (`$1` id, `$2` until, `$3` last seq or null).
const RENEW: &str = "UPDATE runs SET lease_until = $2, last_seq = COALESCE($3, last_seq) \
     WHERE id = $1 AND status IN ('queued', 'in_progress')";

/// A checkpoint: the run renewed (`$11` id, `$12` until, `$13` last seq) and, if it is live,
/// its reply (`$1`..`$10`) inserted (first) or its text updated; returns (renewed, written).
const CHECKPOINT_FIRST: &str = concat!(
    "WITH run AS (UPDATE runs SET lease_until = $12, last_seq = $13 \
     WHERE id = $11 AND status IN ('queued', 'in_progress') RETURNING 1), \
     message AS (INSERT INTO messages ",
    message_insert!(),
    " ",
    append_where!(),
    " AND EXISTS (SELECT 1 FROM run) RETURNING 1) \
     SELECT (SELECT COUNT(*) FROM run), (SELECT COUNT(*) FROM message)"
);

const CHECKPOINT_NEXT: &str = "WITH run AS (UPDATE runs SET lease_until = $12, last_seq = $13 \
     WHERE id = $11 AND status IN ('queued', 'in_progress') RETURNING 1), \
     message AS (UPDATE messages SET content = $4, tokens = $5, model = $6, metadata = $7 \
     WHERE id = $1 AND conversation_id = $2 AND EXISTS (SELECT 1 FROM run) RETURNING 1) \
     SELECT (SELECT COUNT(*) FROM run), (SELECT COUNT(*) FROM message)";

/// The final text of a checkpointed reply (`$1` id, `$2` content, `$3` tokens, `$4` model,
/// `$5` metadata), its usage (`$6`..`$14`, attribution `$20`, `$21`) and, when `$15` is not
/// null, the end of its run (`$15`..`$19`); returns how many replies were updated.
const REPLACE: &str = "WITH message AS (UPDATE messages SET content = $2, tokens = $3, model = $4, \
     metadata = $5 WHERE id = $1 RETURNING 1), usage AS (
INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, completion_tokens, cost_usd, created_at, api_key_id, end_user)
    SELECT $6, $7, $8, $9, $10, $11, $12, $13, $14, $20, $21 FROM message RETURNING 1
), run AS (
UPDATE runs SET status = $16, last_seq = $17, error_code = $18, updated_at = $19
 WHERE id = $15 AND status IN ('queued', 'in_progress') AND EXISTS (SELECT 1 FROM message)
 RETURNING 1)
SELECT COUNT(*) FROM message";

const INTERRUPT: &str = concat!(
    "WITH expired AS (UPDATE runs SET status = 'interrupted', error_code = 'interrupted', \
     updated_at = $1 WHERE id IN (SELECT id FROM runs WHERE status IN ('queued', 'in_progress') \
     AND lease_until < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING ",
    run_columns_read!(),
    "), marked AS (UPDATE messages \
     SET metadata = (metadata - 'streaming') || '{\"interrupted\": true}'::jsonb \
     WHERE id IN (SELECT message_id FROM expired)) SELECT * FROM expired"
);

#[async_trait]
impl RunStore for PgStore {
    async fn finish_run(&self, id: Uuid, end: &RunEnd) -> StoreResult<bool> {
        finish(&self.pool, id, end).await
    }

    async fn get_run(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Run>> {
        get(&self.pool, user_id, id).await
    }

    async fn run_by_request_key(&self, user_id: &str, key: &str) -> StoreResult<Option<Run>> {
        let row = sqlx::query(concat!(
            select_runs!(),
            " WHERE user_id = $1 AND request_key = $2"
        ))
        .bind(user_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run).transpose()
    }

    async fn list_runs(
        &self,
        user_id: &str,
        status: Option<RunStatus>,
        limit: u64,
    ) -> StoreResult<Vec<Run>> {
        list(&self.pool, user_id, status, limit).await
    }

    async fn renew_run(&self, id: Uuid, lease_until: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(RENEW)
            .bind(id)
            .bind(lease_until)
            .bind(None::<i64>)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn checkpoint_reply(&self, checkpoint: &Checkpoint<'_>) -> StoreResult<bool> {
        let sql = if checkpoint.first {
            CHECKPOINT_FIRST
        } else {
            CHECKPOINT_NEXT
        };
        let (renewed, written): (i64, i64) = bind_message(sqlx::query(sql), checkpoint.reply)
            .bind(checkpoint.run_id)
            .bind(checkpoint.lease_until)
            .bind(checkpoint.last_seq)
            .try_map(|row: PgRow| Ok((row.try_get(0)?, row.try_get(1)?)))
            .fetch_one(&self.pool)
            .await
            .map_err(write_error)?;
        match (renewed, written) {
            (0, _) => Ok(false),
            (_, 0) => Err(StoreError::NotFound),
            _ => Ok(true),
        }
    }

    async fn replace_reply(
        &self,
        reply: &Message,
        usage: &UsageRecord,
        run_id: Uuid,
        end: Option<&RunEnd>,
    ) -> StoreResult<()> {
        let query = sqlx::query(REPLACE)
            .bind(reply.id)
            .bind(&reply.content)
            .bind(reply.tokens)
            .bind(&reply.model)
            .bind(&reply.metadata);
        let stored = bind_usage(query, usage)
            .bind(end.map(|_| run_id))
            .bind(end.map(|e| e.status.as_str()))
            .bind(end.map(|e| e.last_seq))
            .bind(end.and_then(|e| e.error_code.clone()))
            .bind(end.map(|e| e.at));
        let stored: i64 = bind_attribution(stored, usage)
            .try_map(|row: PgRow| row.try_get::<i64, _>(0))
            .fetch_one(&self.pool)
            .await
            .map_err(write_error)?;
        if stored == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn interrupt_expired_runs(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Run>> {
        let rows = sqlx::query(INTERRUPT)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run).collect()
    }
}
