//! `POST /v1/embeddings`: strings or token arrays in, float or base64 vectors out.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::errors::OpenAiErrorBody;
use super::wire::{
    EmbeddingObject, EmbeddingValue, EmbeddingsInput, EmbeddingsRequest, EmbeddingsResponse,
    EmbeddingsUsage,
};
use crate::api::extract::ApiJson;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::providers::tokens;
use crate::service::embeddings::DEFAULT_EMBEDDING_MODEL;
use crate::service::{Attribution, EmbedInput};
use crate::state::AppState;

/// The most inputs of one request (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

/// Create embeddings (OpenAI-compatible): `input` a string, strings, token ids or lists of
/// token ids (read as text in the model's encoding); `encoding_format` `float` or `base64`
/// (little-endian f32s); `dimensions` for models that shorten their vectors.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingsRequest,
    responses(
        (status = 200, body = EmbeddingsResponse),
        (status = 400, body = OpenAiErrorBody), (status = 401, body = OpenAiErrorBody),
        (status = 404, body = OpenAiErrorBody), (status = 429, body = OpenAiErrorBody),
        (status = 502, body = OpenAiErrorBody),
    ))]
pub(super) async fn embeddings(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(ApiError::validation(
                "encoding_format",
                "must be `float` or `base64`",
            ));
        }
    };
    let model = body.model.clone();
    let inputs = texts(
        body.input,
        model.as_deref().unwrap_or(DEFAULT_EMBEDDING_MODEL),
    )?;
    let end_user = body.user.or_else(|| {
        headers
            .get("x-openwebui-user-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let input = EmbedInput {
        model,
        inputs,
        dimensions: body.dimensions,
        attribution: Attribution::of(&user, end_user),
    };
    let out = state.embeddings.embed(&user.id, input).await?;
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingObject {
            object: "embedding".to_owned(),
            index,
            embedding: if base64 {
                EmbeddingValue::Base64(encode(&vector))
            } else {
                EmbeddingValue::Floats(vector)
            },
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list".to_owned(),
        data,
        model: out.model,
        usage: EmbeddingsUsage {
            prompt_tokens: out.prompt_tokens,
            total_tokens: out.prompt_tokens,
        },
    }))
}

/// The texts of the input: 1 to 2048, none empty; token ids read in `model`'s encoding.
fn texts(input: EmbeddingsInput, model: &str) -> Result<Vec<String>, ApiError> {
    let decode = |ids: &[u32]| {
        tokens::decode(model, ids)
            .ok_or_else(|| ApiError::validation("input", "holds a token id the model lacks"))
    };
    let texts = match input {
        EmbeddingsInput::Text(text) => vec![text],
        EmbeddingsInput::Texts(texts) => texts,
        EmbeddingsInput::Tokens(ids) => vec![decode(&ids)?],
        EmbeddingsInput::TokenLists(lists) => lists
            .iter()
            .map(|ids| decode(ids))
            .collect::<Result<_, _>>()?,
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::validation("input", "must hold 1 to 2048 inputs"));
    }
    if texts.iter().any(String::is_empty) {
        return Err(ApiError::validation(
            "input",
            "must not hold an empty input",
        ));
    }
    Ok(texts)
}

/// The little-endian bytes of the f32s, in base64 (what openai-python decodes by default).
fn encode(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(
            encode(&[1.0, -2.5]),
            STANDARD.encode([0, 0, 128, 63, 0, 0, 32, 192])
        );
    }

    #[test]
    fn token_ids_are_read_as_text() {
        let ids = [15339_u32, 1917];
        let text = texts(
            EmbeddingsInput::Tokens(ids.to_vec()),
            "text-embedding-3-small",
        )
        .unwrap();
        assert_eq!(text, vec!["hello world".to_owned()]);
        assert!(texts(EmbeddingsInput::Texts(vec![]), "text-embedding-3-small").is_err());
    }
}
