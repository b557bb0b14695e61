//! `POST /ai/embeddings`: the old `{text}` form and the OpenAI-like `{input}` form.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiJson;
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::service::{Attribution, EmbedInput};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(embeddings))
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
#[garde(allow_unvalidated)]
pub struct EmbeddingRequest {
    /// One text; answered as `{embedding, model, tokens}`.
    #[garde(length(chars, min = 1, max = 100000))]
    pub text: Option<String>,
    /// One text or 1 to 256 texts; answered as `{model, data, usage}`.
    #[garde(custom(valid_input))]
    pub input: Option<EmbeddingInput>,
    /// Default `text-embedding-3-small`.
    #[garde(length(min = 1, max = 200))]
    pub model: Option<String>,
}

fn valid_input(input: &Option<EmbeddingInput>, _: &()) -> garde::Result {
    let texts: &[String] = match input {
        None => return Ok(()),
        Some(EmbeddingInput::One(t)) => std::slice::from_ref(t),
        Some(EmbeddingInput::Many(v)) => v,
    };
    if texts.is_empty() || texts.len() > 256 {
        return Err(garde::Error::new("must hold 1 to 256 texts"));
    }
    if texts
        .iter()
        .any(|t| t.is_empty() || t.chars().count() > 100_000)
    {
        return Err(garde::Error::new(
            "each text must have 1 to 100000 characters",
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SingleEmbeddingResponse {
    pub embedding: Vec<f32>,
    pub model: String,
    pub tokens: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingItem {
    pub index: usize,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchEmbeddingResponse {
    pub model: String,
    pub data: Vec<EmbeddingItem>,
    pub usage: EmbeddingUsage,
}

/// Embed text: `{text}` answers `{embedding, model, tokens}`; `{input}` answers `{model, data, usage}`.
#[utoipa::path(post, path = "/ai/embeddings", tag = "chat", request_body = EmbeddingRequest,
    responses(
        (status = 200, body = SingleEmbeddingResponse, description = "For `text`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody),
    ))]
async fn embeddings(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    match (body.text, body.input) {
        (Some(text), None) => {
            let out = state
                .embeddings
                .embed(&user.id, embed_input(&user, body.model, vec![text]))
                .await?;
            let embedding = out.vectors.into_iter().next().unwrap_or_default();
            Ok(Json(SingleEmbeddingResponse {
                embedding,
                model: out.model,
                tokens: out.prompt_tokens,
            })
            .into_response())
        }
        (None, Some(input)) => {
            let texts = match input {
                EmbeddingInput::One(t) => vec![t],
                EmbeddingInput::Many(v) => v,
            };
            let input = embed_input(&user, body.model, texts);
            let out = state.embeddings.embed(&user.id, input).await?;
            let data = out
                .vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| EmbeddingItem { index, embedding })
                .collect();
            let usage = EmbeddingUsage {
                prompt_tokens: out.prompt_tokens,
                total_tokens: out.prompt_tokens,
            };
            Ok(Json(BatchEmbeddingResponse {
                model: out.model,
                data,
                usage,
            })
            .into_response())
        }
        (Some(_), Some(_)) => Err(ApiError::validation(
            "input",
            "give either `text` or `input`, not both",
        )),
        (None, None) => Err(ApiError::validation(
            "text",
            "`text` or `input` is required",
        )),
    }
}

/// The service's input for texts embedded by `user` (with the key it authenticated with).
fn embed_input(user: &AuthUser, model: Option<String>, texts: Vec<String>) -> EmbedInput {
    EmbedInput {
        attribution: Attribution::of(user, None),
        ..EmbedInput::texts(model, texts)
    }
}
