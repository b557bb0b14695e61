//! API keys on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::super::to_sqlite_text as ts;
use super::super::{ApiKey, KeyStore, StoreError, StoreResult, Timestamp};
use super::SqliteStore;
use super::conversations::{corrupt, opt_ts_at, ts_at, uuid_at};

/// Selects the columns [`key`] reads.
macro_rules! select_keys {
    () => {
        "SELECT id, user_id, name, prefix, secret_hash, models, expires_at, \
         rate_limit_per_minute, token_quota_per_day, created_at, revoked_at FROM api_keys"
    };
}

fn key(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let models: Option<String> = row.get(5)?;
    let models = models
        .map(|text| serde_json::from_str::<Vec<String>>(&text))
        .transpose()
        .map_err(|e| corrupt(5, format!("bad models list: {e}")))?;
    Ok(ApiKey {
        id: uuid_at(row, 0)?,
        user_id: row.get(1)?,
        name: row.get(2)?,
        prefix: row.get(3)?,
        secret_hash: row.get(4)?,
        models,
        expires_at: opt_ts_at(row, 6)?,
        rate_limit_per_minute: row.get(7)?,
        token_quota_per_day: row.get(8)?,
        created_at: ts_at(row, 9)?,
        revoked_at: opt_ts_at(row, 10)?,
    })
}

fn insert(c: &Connection, k: &ApiKey, models: Option<String>) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, models, expires_at, \
         rate_limit_per_minute, token_quota_per_day, created_at, revoked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        k.id.to_string(),
        k.user_id,
        k.name,
        k.prefix,
        k.secret_hash,
        models,
        k.expires_at.map(ts),
        k.rate_limit_per_minute,
        k.token_quota_per_day,
        ts(k.created_at),
        k.revoked_at.map(ts),
    ])
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let models = key
            .models
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(StoreError::other)?;
        let key = key.clone();
        self.db.write(move |c| insert(c, &key, models)).await?;
        Ok(())
    }

    async fn list_api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKey>> {
        let user_id = user_id.to_owned();
        let sql = concat!(
            select_keys!(),
            " WHERE user_id = ?1 ORDER BY created_at DESC, id DESC"
        );
        Ok(self
            .db
            .read(move |c| c.prepare_cached(sql)?.query_map([user_id], key)?.collect())
            .await?)
    }

    async fn revoke_api_key(&self, user_id: &str, id: Uuid, at: Timestamp) -> StoreResult<bool> {
        let (user_id, id, at) = (user_id.to_owned(), id.to_string(), ts(at));
        let changed = self
            .db
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE api_keys SET revoked_at = ?3 \
                     WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
                )?
                .execute(params![id, user_id, at])
            })
            .await?;
        Ok(changed == 1)
    }

    async fn tokens_used_by_key_since(&self, key_id: Uuid, since: Timestamp) -> StoreResult<i64> {
        let (key_id, since) = (key_id.to_string(), ts(since));
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) \
                     FROM usage_records WHERE api_key_id = ?1 AND created_at >= ?2",
                )?
                .query_row(params![key_id, since], |r| r.get(0))
            })
            .await?)
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>> {
        let hash = secret_hash.to_owned();
        let sql = concat!(select_keys!(), " WHERE secret_hash = ?1");
        Ok(self
            .db
            .read(move |c| c.prepare_cached(sql)?.query_row([hash], key).optional())
            .await?)
    }
}
