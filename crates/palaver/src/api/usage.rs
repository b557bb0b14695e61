//! `GET /ai/usage`: the caller's usage, cost and limits.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::dto::rfc3339;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(usage))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelUsage {
    pub model: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub rate_limit_per_minute: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_remaining: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageStats {
    pub total_tokens: i64,
    pub conversations_count: i64,
    pub messages_count: i64,
    /// Time of the latest usage or conversation activity; the time of the request before any (never null:
    /// the old module typed it as a date).
    pub last_used: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub requests: i64,
    pub cost_usd: f64,
    pub by_model: Vec<ModelUsage>,
    pub limits: Limits,
}

/// The caller's usage statistics.
#[utoipa::path(get, path = "/ai/usage", tag = "usage",
    responses((status = 200, body = UsageStats), (status = 401, body = ErrorBody)))]
async fn usage(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<UsageStats>, ApiError> {
    let report = state
        .usage
        .report(&user.id, state.config.rate_limit_per_minute)
        .await?;
    let t = report.totals;
    Ok(Json(UsageStats {
        total_tokens: t.total_tokens,
        conversations_count: t.conversations_count,
        messages_count: t.messages_count,
        last_used: rfc3339(&report.last_used),
        prompt_tokens: t.prompt_tokens,
        completion_tokens: t.completion_tokens,
        requests: t.requests,
        cost_usd: t.cost_usd,
        by_model: t
            .by_model
            .into_iter()
            .map(|m| ModelUsage {
                model: m.model,
                requests: m.requests,
                prompt_tokens: m.prompt_tokens,
                completion_tokens: m.completion_tokens,
                cost_usd: m.cost_usd,
            })
            .collect(),
        limits: Limits {
            rate_limit_per_minute: report.rate_limit_per_minute,
            token_quota: report.token_quota,
            tokens_remaining: report.tokens_remaining,
        },
    }))
}
