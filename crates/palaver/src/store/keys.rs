//! API keys: a user's long-lived bearer secrets (`pal_…`), kept as the SHA-256 of the
//! secret, never the secret itself.

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, Timestamp};

/// One API key, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: String,
    pub name: String,
    /// The secret's first characters (`pal_` and a few more), to tell keys apart in lists.
    pub prefix: String,
    /// Lower-case hex SHA-256 of the whole secret.
    pub secret_hash: String,
    /// The models the key may use; `None`: every model.
    pub models: Option<Vec<String>>,
    pub expires_at: Option<Timestamp>,
    pub rate_limit_per_minute: Option<i32>,
    pub token_quota_per_day: Option<i64>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// Whether the key authenticates at `now`: not revoked, not expired.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key; `Conflict` when its id or its hash exists already.
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;

    /// The user's keys, revoked ones included, newest first.
    async fn list_api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKey>>;

    /// Revokes a key of `user_id` at `at`; false when the user has no such key or it was
    /// revoked already.
    async fn revoke_api_key(&self, user_id: &str, id: Uuid, at: Timestamp) -> StoreResult<bool>;

    /// The key whose secret hashes to `secret_hash` (revoked or expired ones too: the caller
    /// decides), by the unique index.
    async fn api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>>;

    /// Tokens (prompt and completion) of the usage records made with a key since `since`:
    /// the raw records, so `since` must be within the usage retention (a day is).
    async fn tokens_used_by_key_since(&self, key_id: Uuid, since: Timestamp) -> StoreResult<i64>;
}
