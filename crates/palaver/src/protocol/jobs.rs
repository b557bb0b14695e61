//! `POST /ai/jobs`: the request and its `data`, validated per job type.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{ChatRequest, from_value};
use crate::error::{ApiError, FieldError};
use crate::service::JobRequest;

#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
pub struct CreateJobRequest {
    /// `generate-completion` or `generate-embeddings` (`generate-title` jobs are Palaver's
    /// own: readable, not accepted here).
    #[serde(rename = "type")]
    #[garde(skip)]
    #[schema(example = "generate-completion")]
    pub kind: Option<String>,
    /// `generate-completion`: `{conversationId?, message, model?, maxTokens?, temperature?}`
    /// (validated as `POST /ai/chat`); `generate-embeddings`: `{text, model?}`.
    #[garde(skip)]
    #[schema(value_type = Object)]
    pub data: Option<Value>,
}

/// `generate-embeddings` data: `{text, model?}`, with the limits of `POST /ai/embeddings`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingJobData {
    #[garde(length(chars, min = 1, max = 100000))]
    pub text: String,
    /// Default `text-embedding-3-small`.
    #[garde(length(min = 1, max = 200))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl CreateJobRequest {
    /// The job to queue, its `data` validated for its type (field paths under `data.`).
    pub fn into_job(self) -> Result<JobRequest, ApiError> {
        let kind = self
            .kind
            .ok_or_else(|| ApiError::validation("type", "is required"))?;
        let completion = match kind.as_str() {
            "generate-completion" => true,
            "generate-embeddings" => false,
            "generate-title" => {
                return Err(ApiError::validation(
                    "type",
                    "`generate-title` jobs are queued by Palaver after a conversation's first exchange",
                ));
            }
            _ => {
                return Err(ApiError::validation(
                    "type",
                    "must be `generate-completion` or `generate-embeddings`",
                ));
            }
        };
        let data = self
            .data
            .ok_or_else(|| ApiError::validation("data", "is required"))?;
        if completion {
            let request: ChatRequest = from_value(data).map_err(in_data)?;
            return Ok(JobRequest::Completion(Box::new(request.into_input())));
        }
        let data: EmbeddingJobData = from_value(data).map_err(in_data)?;
        Ok(JobRequest::Embeddings {
            text: data.text,
            model: data.model,
        })
    }
}

/// Field paths of a job's data are reported under `data.` (a missing field by its name).
fn in_data(err: ApiError) -> ApiError {
    let field = |e: &FieldError| {
        let missing = e
            .message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        match (e.field.as_str(), missing) {
            ("body", Some(name)) => format!("data.{name}"),
            ("body", None) => "data".to_owned(),
            (path, _) => format!("data.{path}"),
        }
    };
    match err {
        ApiError::Validation(errors) => ApiError::Validation(
            errors
                .into_iter()
                .map(|e| FieldError {
                    field: field(&e),
                    message: e.message,
                })
                .collect(),
        ),
        other => other,
    }
}
