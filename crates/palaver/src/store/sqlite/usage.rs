//! Usage records: owned rows ready to insert, and the per-user aggregates.

use rusqlite::params;

use super::super::to_sqlite_text as ts;
use super::super::{ModelUsage, Timestamp, UsageRecord, UsageTotals};
use super::conversations::opt_ts_at;

pub(super) fn usage_stats(
    c: &rusqlite::Connection,
    user_id: &str,
) -> rusqlite::Result<UsageTotals> {
    let (prompt_tokens, completion_tokens, requests, cost_usd, last_usage): (
        i64,
        i64,
        i64,
        f64,
        Option<Timestamp>,
    ) = c
        .prepare_cached(
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), \
             COUNT(*), COALESCE(SUM(cost_usd), 0.0), MAX(created_at) \
             FROM usage_records WHERE user_id = ?1",
        )?
        .query_row([user_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, opt_ts_at(r, 4)?))
        })?;
    let by_model = c
        .prepare_cached(
            "SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd) \
             FROM usage_records WHERE user_id = ?1 GROUP BY model ORDER BY model",
        )?
        .query_map([user_id], |r| {
            Ok(ModelUsage {
                model: r.get(0)?,
                requests: r.get(1)?,
                prompt_tokens: r.get(2)?,
                completion_tokens: r.get(3)?,
                cost_usd: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let conversations_count: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM conversations WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))?;
    let (messages_count, last_message): (i64, Option<Timestamp>) = c
        .prepare_cached(
            "SELECT COUNT(*), MAX(m.created_at) FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id WHERE c.user_id = ?1",
        )?
        .query_row([user_id], |r| Ok((r.get(0)?, opt_ts_at(r, 1)?)))?;
    Ok(UsageTotals {
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens,
        completion_tokens,
        requests,
        cost_usd,
        conversations_count,
        messages_count,
        last_used: last_usage.max(last_message),
        by_model,
    })
}

/// A usage record, owned, ready to insert (a trigger adds it to the user's total).
pub(super) struct UsageRow {
    id: String,
    user_id: String,
    conversation_id: Option<String>,
    kind: String,
    model: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_usd: f64,
    created_at: String,
}

impl From<&UsageRecord> for UsageRow {
    fn from(u: &UsageRecord) -> UsageRow {
        UsageRow {
            id: u.id.to_string(),
            user_id: u.user_id.clone(),
            conversation_id: u.conversation_id.map(|id| id.to_string()),
            kind: u.kind.clone(),
            model: u.model.clone(),
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cost_usd: u.cost_usd,
            created_at: ts(u.created_at),
        }
    }
}

impl UsageRow {
    pub(super) fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
        c.prepare_cached(
            "INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, completion_tokens, cost_usd, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            self.id,
            self.user_id,
            self.conversation_id,
            self.kind,
            self.model,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_usd,
            self.created_at
        ])
    }
}
