//! The per-user usage aggregates.

use sqlx::Row;
use sqlx::postgres::PgPool;

use super::super::{ModelUsage, StoreResult, Timestamp, UsageTotals};

pub(super) async fn usage_stats(pool: &PgPool, user_id: &str) -> StoreResult<UsageTotals> {
    let totals = sqlx::query(
        "SELECT COALESCE(SUM(prompt_tokens), 0)::BIGINT AS prompt, COALESCE(SUM(completion_tokens), 0)::BIGINT AS completion, \
         COUNT(*) AS requests, COALESCE(SUM(cost_usd), 0)::DOUBLE PRECISION AS cost, MAX(created_at) AS last \
         FROM usage_records WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?;
    let by_model = sqlx::query(
        "SELECT model, COUNT(*) AS requests, SUM(prompt_tokens)::BIGINT AS prompt, \
         SUM(completion_tokens)::BIGINT AS completion, SUM(cost_usd)::DOUBLE PRECISION AS cost \
         FROM usage_records WHERE user_id = $1 GROUP BY model ORDER BY model",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    let conversations_count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM conversations WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await?;
    let messages = sqlx::query(
        "SELECT COUNT(*) AS n, MAX(m.created_at) AS last FROM messages m \
         JOIN conversations c ON c.id = m.conversation_id WHERE c.user_id = $1",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?;

    let prompt_tokens: i64 = totals.try_get("prompt")?;
    let completion_tokens: i64 = totals.try_get("completion")?;
    let last_usage: Option<Timestamp> = totals.try_get("last")?;
    let last_message: Option<Timestamp> = messages.try_get("last")?;
    Ok(UsageTotals {
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens,
        completion_tokens,
        requests: totals.try_get("requests")?,
        cost_usd: totals.try_get("cost")?,
        conversations_count,
        messages_count: messages.try_get("n")?,
        last_used: last_usage.max(last_message),
        by_model: by_model
            .iter()
            .map(|row| {
                Ok(ModelUsage {
                    model: row.try_get("model")?,
                    requests: row.try_get("requests")?,
                    prompt_tokens: row.try_get("prompt")?,
                    completion_tokens: row.try_get("completion")?,
                    cost_usd: row.try_get("cost")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?,
    })
}
