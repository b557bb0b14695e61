//! API keys: minted (the secret shown once, its hash stored), listed, revoked; and what a
//! request made with one is attributed to and allowed.

use std::sync::Arc;

use uuid::Uuid;

use super::ServiceError;
use crate::auth::AuthUser;
use crate::auth::keys::{hash_secret, mint_secret, shown_prefix};
use crate::store::{self, ApiKey, Store, Timestamp};

/// What a request is attributed to beyond its user, and what its credentials allow: the API
/// key it came with (its usage records name it) and the end user named behind a shared key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub api_key_id: Option<Uuid>,
    /// The models the key may use; `None`: every model (a JWT, or a key without a list).
    pub allowed_models: Option<Vec<String>>,
    /// The `user` field or `X-OpenWebUI-User-Id` header: who is behind a shared key.
    pub end_user: Option<String>,
    /// The key's own daily token quota, on top of its user's.
    pub token_quota_per_day: Option<i64>,
}

impl Attribution {
    /// A request of `user` (with the key it authenticated with, if any), on behalf of
    /// `end_user` when one is named.
    pub fn of(user: &AuthUser, end_user: Option<String>) -> Attribution {
        Attribution {
            api_key_id: user.key.as_ref().map(|k| k.id),
            allowed_models: user.key.as_ref().and_then(|k| k.models.clone()),
            end_user,
            token_quota_per_day: user.key.as_ref().and_then(|k| k.token_quota_per_day),
        }
    }

    /// `NotFound("Model")` for a model the key may not use (as if it did not exist).
    pub fn permits(&self, model: &str) -> Result<(), ServiceError> {
        match &self.allowed_models {
            Some(models) if !models.iter().any(|m| m == model) => {
                Err(ServiceError::NotFound("Model"))
            }
            _ => Ok(()),
        }
    }
}

/// A key to mint, validated by the transport.
#[derive(Debug, Clone, Default)]
pub struct NewKeyInput {
    pub name: String,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<Timestamp>,
    pub rate_limit_per_minute: Option<i32>,
    pub token_quota_per_day: Option<i64>,
}

#[derive(Clone)]
pub struct KeyService {
    store: Arc<dyn Store>,
}

impl KeyService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        KeyService { store }
    }

    /// Mints a key for `user_id`: the stored key and its secret, which is never stored and
    /// cannot be read again.
    pub async fn create(
        &self,
        user_id: &str,
        input: NewKeyInput,
    ) -> Result<(ApiKey, String), ServiceError> {
        let now = store::now();
        if input.expires_at.is_some_and(|at| at <= now) {
            return Err(ServiceError::Invalid {
                field: "expiresAt".into(),
                message: "must be in the future".to_owned(),
            });
        }
        let secret = mint_secret();
        let key = ApiKey {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            name: input.name,
            prefix: shown_prefix(&secret),
            secret_hash: hash_secret(&secret),
            models: input.models,
            expires_at: input.expires_at,
            rate_limit_per_minute: input.rate_limit_per_minute,
            token_quota_per_day: input.token_quota_per_day,
            created_at: now,
            revoked_at: None,
        };
        self.store.create_api_key(&key).await?;
        Ok((key, secret))
    }

    /// The user's keys (revoked ones too), newest first.
    pub async fn list(&self, user_id: &str) -> Result<Vec<ApiKey>, ServiceError> {
        Ok(self.store.list_api_keys(user_id).await?)
    }

    /// Revokes a key of `user_id`: its next request is refused. `NotFound` when the user
    /// has no such live key.
    pub async fn revoke(&self, user_id: &str, id: Uuid) -> Result<(), ServiceError> {
        if self.store.revoke_api_key(user_id, id, store::now()).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound("API key"))
        }
    }
}
