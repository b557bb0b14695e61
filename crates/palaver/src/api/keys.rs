//! API keys: `POST /ai/keys` mints one (its secret answered once), `GET` lists the caller's,
//! `DELETE /ai/keys/{id}` revokes one. Managed with a JWT only: a key cannot mint keys.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, IdPath};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::dto::rfc3339;
use crate::service::NewKeyInput;
use crate::state::AppState;
use crate::store::ApiKey;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// What the key is for (1 to 100 characters).
    #[garde(length(chars, min = 1, max = 100), custom(not_blank))]
    pub name: String,
    /// The only models the key may use (1 to 100 names); absent: every model.
    #[garde(length(min = 1, max = 100), inner(length(min = 1, max = 200)))]
    pub models: Option<Vec<String>>,
    /// RFC 3339; the key stops working then. Absent: it never expires.
    #[garde(skip)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Requests per minute with this key (1..100000) on the metered routes, on top of its
    /// user's limit.
    #[garde(range(min = 1, max = 100_000))]
    pub rate_limit_per_minute: Option<i32>,
    /// Tokens per UTC day with this key (at least 1), on top of its user's quota.
    #[garde(range(min = 1))]
    pub token_quota_per_day: Option<i64>,
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyDto {
    pub id: Uuid,
    pub name: String,
    /// The secret's first 12 characters, to tell keys apart.
    pub prefix: String,
    pub models: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub rate_limit_per_minute: Option<i32>,
    pub token_quota_per_day: Option<i64>,
    pub created_at: String,
    /// Set once the key is revoked: it is refused from then on.
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyDto {
    fn from(k: ApiKey) -> Self {
        ApiKeyDto {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            models: k.models,
            expires_at: k.expires_at.as_ref().map(rfc3339),
            rate_limit_per_minute: k.rate_limit_per_minute,
            token_quota_per_day: k.token_quota_per_day,
            created_at: rfc3339(&k.created_at),
            revoked_at: k.revoked_at.as_ref().map(rfc3339),
        }
    }
}

/// A new key: its fields and, this once, its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// The secret (`pal_…`): shown only in this answer, stored only as its hash.
    pub key: String,
    #[serde(flatten)]
    pub api_key: ApiKeyDto,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<ApiKeyDto>,
}

fn not_blank(value: &str, _: &()) -> garde::Result {
    if value.trim().is_empty() {
        return Err(garde::Error::new("must not be blank"));
    }
    Ok(())
}

/// Refuses key management with an API key: only the user's own JWT manages keys.
fn jwt_only(user: &AuthUser) -> Result<(), ApiError> {
    match user.key {
        Some(_) => Err(ApiError::Unauthorized(
            "API keys are managed with a JWT, not with an API key".into(),
        )),
        None => Ok(()),
    }
}

/// Mint an API key (`pal_…`) for OpenAI-compatible clients; the secret is in this answer only.
#[utoipa::path(post, path = "/ai/keys", tag = "keys", request_body = CreateKeyRequest,
    responses(
        (status = 201, body = CreatedKey),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ))]
async fn create_key(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    jwt_only(&user)?;
    let input = NewKeyInput {
        name: body.name.trim().to_owned(),
        models: body.models,
        expires_at: body.expires_at,
        rate_limit_per_minute: body.rate_limit_per_minute,
        token_quota_per_day: body.token_quota_per_day,
    };
    let (key, secret) = state.keys.create(&user.id, input).await?;
    let created = CreatedKey {
        key: secret,
        api_key: key.into(),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// The caller's API keys, newest first, revoked ones included (without their secrets).
#[utoipa::path(get, path = "/ai/keys", tag = "keys",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody)))]
async fn list_keys(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<KeyList>, ApiError> {
    jwt_only(&user)?;
    let keys = state.keys.list(&user.id).await?;
    Ok(Json(KeyList {
        data: keys.into_iter().map(ApiKeyDto::from).collect(),
    }))
}

/// Revoke an API key: its next request is refused, on every instance.
#[utoipa::path(delete, path = "/ai/keys/{id}", tag = "keys",
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn revoke_key(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    jwt_only(&user)?;
    state.keys.revoke(&user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
