//! API keys on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use uuid::Uuid;

use super::super::{ApiKey, KeyStore, StoreResult, Timestamp};
use super::PgStore;
use super::writes::write_error;

/// Selects the columns [`key`] reads.
macro_rules! select_keys {
    () => {
        "SELECT id, user_id, name, prefix, secret_hash, models, expires_at, \
         rate_limit_per_minute, token_quota_per_day, created_at, revoked_at FROM api_keys"
    };
}

fn key(row: &PgRow) -> StoreResult<ApiKey> {
    let models: Option<Json<Vec<String>>> = row.try_get("models")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        secret_hash: row.try_get("secret_hash")?,
        models: models.map(|m| m.0),
        expires_at: row.try_get("expires_at")?,
        rate_limit_per_minute: row.try_get("rate_limit_per_minute")?,
        token_quota_per_day: row.try_get("token_quota_per_day")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

#[async_trait]
impl KeyStore for PgStore {
    async fn create_api_key(&self, k: &ApiKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, models, expires_at, \
             rate_limit_per_minute, token_quota_per_day, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(k.id)
        .bind(&k.user_id)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.secret_hash)
        .bind(k.models.as_ref().map(Json))
        .bind(k.expires_at)
        .bind(k.rate_limit_per_minute)
        .bind(k.token_quota_per_day)
        .bind(k.created_at)
        .bind(k.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn list_api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(concat!(
            select_keys!(),
            " WHERE user_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key).collect()
    }

    async fn revoke_api_key(&self, user_id: &str, id: Uuid, at: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(user_id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn tokens_used_by_key_since(&self, key_id: Uuid, since: Timestamp) -> StoreResult<i64> {
        let used: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0)::BIGINT \
             FROM usage_records WHERE api_key_id = $1 AND created_at >= $2",
        )
        .bind(key_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(used)
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query(concat!(select_keys!(), " WHERE secret_hash = $1"))
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key).transpose()
    }
}
