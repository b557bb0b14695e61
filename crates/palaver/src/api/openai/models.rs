//! `GET /v1/models` and `GET /v1/models/{model}`: every configured provider's models.

use axum::Json;
use axum::extract::{Path, State};

use super::errors::OpenAiErrorBody;
use super::wire::{ModelList, ModelObject, ModelPrice};
use crate::error::ApiError;
use crate::service::ModelInfo;
use crate::state::AppState;

impl From<&ModelInfo> for ModelObject {
    fn from(m: &ModelInfo) -> Self {
        ModelObject {
            id: m.id.clone(),
            object: "model".to_owned(),
            created: 0,
            owned_by: m.provider.to_owned(),
            context_window: m.context_window,
            price: m.price.map(|p| ModelPrice {
                input: p.input,
                output: p.output,
            }),
        }
    }
}

/// List the models of every configured provider (OpenAI-compatible), with `contextWindow`
/// and `price` (USD per million tokens) where Palaver knows them.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList), (status = 401, body = OpenAiErrorBody)))]
pub(super) async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    let models = state.models.list().await;
    Json(ModelList {
        object: "list".to_owned(),
        data: models.iter().map(ModelObject::from).collect(),
    })
}

/// One model of the list.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai",
    params(("model" = String, Path)),
    responses(
        (status = 200, body = ModelObject),
        (status = 401, body = OpenAiErrorBody), (status = 404, body = OpenAiErrorBody),
    ))]
pub(super) async fn get_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<ModelObject>, ApiError> {
    let found = state.models.get(&model).await;
    found
        .as_ref()
        .map(|m| Json(ModelObject::from(m)))
        .ok_or_else(|| ApiError::NotFound(format!("Model `{model}` does not exist")))
}
