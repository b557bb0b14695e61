//! Usage records: owned rows ready to insert, and the per-user aggregates.

use rusqlite::params;

use super::super::to_sqlite_text as ts;
use super::super::{ModelUsage, Timestamp, UsageRecord, UsageSpan, UsageTotals};
use super::conversations::opt_ts_at;

/// The user's totals, from the rollup (a row per day and model) and the conversations' own
/// counters: the cost grows with the days and conversations a user has, not with records.
pub(super) fn usage_stats(
    c: &rusqlite::Connection,
    user_id: &str,
) -> rusqlite::Result<UsageTotals> {
    let mut last_usage: Option<Timestamp> = None;
    let by_model = c
        .prepare_cached(
            "SELECT model, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), \
             SUM(cost_usd), MAX(last_at) \
             FROM usage_daily WHERE user_id = ?1 GROUP BY model ORDER BY model",
        )?
        .query_map([user_id], |r| {
            let model = ModelUsage {
                model: r.get(0)?,
                requests: r.get(1)?,
                prompt_tokens: r.get(2)?,
                completion_tokens: r.get(3)?,
                cost_usd: r.get(4)?,
            };
            Ok((model, opt_ts_at(r, 5)?))
        })?
        .map(|row| {
            let (model, last) = row?;
            last_usage = last_usage.max(last);
            Ok(model)
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (conversations_count, messages_count, last_activity): (i64, i64, Option<Timestamp>) = c
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(message_count), 0), MAX(updated_at) \
             FROM conversations WHERE user_id = ?1",
        )?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?, opt_ts_at(r, 2)?)))?;
    Ok(UsageTotals::from_models(
        by_model,
        conversations_count,
        messages_count,
        last_usage.max(last_activity),
    ))
}

/// Tokens used from `since` on: whole days from the rollup, a partial first day from the
/// records (see [`UsageSpan`]).
pub(super) fn tokens_used_since(
    c: &rusqlite::Connection,
    user_id: &str,
    since: Timestamp,
) -> rusqlite::Result<i64> {
    let span = UsageSpan::since(since);
    c.prepare_cached(
        "SELECT (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_daily \
                  WHERE user_id = ?1 AND day >= ?2) \
              + (SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_records \
                  WHERE user_id = ?1 AND created_at >= ?3 AND created_at < ?4)",
    )?
    .query_row(
        params![
            user_id,
            span.days_from.format("%Y-%m-%d").to_string(),
            ts(span.partial_from),
            ts(span.partial_until)
        ],
        |r| r.get(0),
    )
}

/// Deletes up to `limit` of the oldest usage records created before `before` (the rollup
/// keeps what they counted); returns how many.
pub(super) fn prune(c: &rusqlite::Connection, before: &str, limit: u32) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "DELETE FROM usage_records WHERE rowid IN \
         (SELECT rowid FROM usage_records WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)",
    )?
    .execute(params![before, limit])
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
    api_key_id: Option<String>,
    end_user: Option<String>,
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
            api_key_id: u.api_key_id.map(|id| id.to_string()),
            end_user: u.end_user.clone(),
        }
    }
}

impl UsageRow {
    pub(super) fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
        c.prepare_cached(
            "INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, \
             completion_tokens, cost_usd, created_at, api_key_id, end_user) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
            self.created_at,
            self.api_key_id,
            self.end_user
        ])
    }
}
