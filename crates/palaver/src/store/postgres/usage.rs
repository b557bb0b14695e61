//! The per-user usage aggregates, read from the rollup (`usage_daily`), and the retention
//! of raw records.

use sqlx::Row;
use sqlx::postgres::PgPool;

use super::super::{ModelUsage, StoreResult, Timestamp, UsageSpan, UsageTotals};

/// The user's totals, from the rollup (a row per day and model) and the conversations' own
/// counters: the cost grows with the days and conversations a user has, not with records.
pub(super) async fn usage_stats(pool: &PgPool, user_id: &str) -> StoreResult<UsageTotals> {
    let rows = sqlx::query(
        "SELECT model, SUM(requests)::BIGINT AS requests, SUM(prompt_tokens)::BIGINT AS prompt, \
         SUM(completion_tokens)::BIGINT AS completion, SUM(cost_usd)::DOUBLE PRECISION AS cost, \
         MAX(last_at) AS last \
         FROM usage_daily WHERE user_id = $1 GROUP BY model ORDER BY model",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    let conversations = sqlx::query(
        "SELECT COUNT(*) AS n, COALESCE(SUM(message_count), 0)::BIGINT AS messages, \
         MAX(updated_at) AS last FROM conversations WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?;

    let mut last_used: Option<Timestamp> = conversations.try_get("last")?;
    let mut by_model = Vec::with_capacity(rows.len());
    for row in &rows {
        last_used = last_used.max(row.try_get("last")?);
        by_model.push(ModelUsage {
            model: row.try_get("model")?,
            requests: row.try_get("requests")?,
            prompt_tokens: row.try_get("prompt")?,
            completion_tokens: row.try_get("completion")?,
            cost_usd: row.try_get("cost")?,
        });
    }
    Ok(UsageTotals::from_models(
        by_model,
        conversations.try_get("n")?,
        conversations.try_get("messages")?,
        last_used,
    ))
}

/// Tokens used from `since` on: whole days from the rollup, a partial first day from the
/// records (see [`UsageSpan`]).
pub(super) async fn tokens_used_since(
    pool: &PgPool,
    user_id: &str,
    since: Timestamp,
) -> StoreResult<i64> {
    let span = UsageSpan::since(since);
    let used: i64 = sqlx::query_scalar(
        "SELECT (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_daily \
                  WHERE user_id = $1 AND day >= $2)::BIGINT \
              + (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_records \
                  WHERE user_id = $1 AND created_at >= $3 AND created_at < $4)::BIGINT",
    )
    .bind(user_id)
    .bind(span.days_from)
    .bind(span.partial_from)
    .bind(span.partial_until)
    .fetch_one(pool)
    .await?;
    Ok(used)
}

/// Deletes up to `limit` of the oldest usage records created before `before` (the rollup
/// keeps what they counted); returns how many.
pub(super) async fn prune(pool: &PgPool, before: Timestamp, limit: u32) -> StoreResult<u64> {
    let done = sqlx::query(
        "DELETE FROM usage_records WHERE id IN \
         (SELECT id FROM usage_records WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
    )
    .bind(before)
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
