//! Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, for every
//! `/v1` answer: the route layer rewrites what the shared [`ApiError`] mapping produced (its
//! status and `Retry-After` stay), so `/api/v1` keeps the API.md shape untouched.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorPayload, FieldError};

/// OpenAI's error body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpenAiError {
    pub message: String,
    /// `invalid_request_error`, `requests` (rate limit), `insufficient_quota`,
    /// `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault (validation), else null.
    pub param: Option<String>,
    /// `invalid_api_key`, `model_not_found`, `not_found`, `rate_limit_exceeded`,
    /// `insufficient_quota`, or Palaver's own code.
    pub code: Option<String>,
}

impl OpenAiError {
    fn new(status: StatusCode, code: &str, message: String, errors: Option<&[FieldError]>) -> Self {
        let first = errors.and_then(|e| e.first());
        let message = match first {
            Some(field) => format!("{}: {}", field.field, field.message),
            None => message,
        };
        let (kind, code) = match (status.as_u16(), code) {
            (401, _) => ("invalid_request_error", Some("invalid_api_key")),
            (404, _) if message.starts_with("Model") => {
                ("invalid_request_error", Some("model_not_found"))
            }
            (429, "quota_exceeded") => ("insufficient_quota", Some("insufficient_quota")),
            (429, _) => ("requests", Some("rate_limit_exceeded")),
            (400, "validation_failed") => ("invalid_request_error", None),
            (s, code) if s < 500 => ("invalid_request_error", Some(code)),
            (_, code) => ("server_error", Some(code)),
        };
        OpenAiError {
            message,
            kind: kind.to_owned(),
            param: first.map(|f| f.field.clone()),
            code: code.map(str::to_owned),
        }
    }

    /// The error of an [`ApiError`] (a stream that fails after its headers were sent).
    pub fn of(error: &ApiError) -> OpenAiError {
        error.log();
        let errors = match error {
            ApiError::Validation(errors) => Some(errors.as_slice()),
            _ => None,
        };
        OpenAiError::new(
            error.status_code(),
            error.code(),
            error.public_message(),
            errors,
        )
    }

    fn of_payload(payload: &ErrorPayload) -> OpenAiError {
        OpenAiError::new(
            payload.status,
            payload.code,
            payload.message.clone(),
            payload.errors.as_deref(),
        )
    }
}

/// Middleware of the `/v1` routes: an error response is rewritten in OpenAI's shape (and
/// no longer carries the payload the API.md envelope would render). A quota refusal says
/// `x-should-retry: false`, so the SDKs do not retry it.
pub async fn openai_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let Some(payload) = response.extensions().get::<ErrorPayload>().cloned() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    parts.extensions.remove::<ErrorPayload>();
    let body = OpenAiErrorBody {
        error: OpenAiError::of_payload(&payload),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let headers = &mut parts.headers;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    if payload.code == "quota_exceeded" {
        headers.insert("x-should-retry", HeaderValue::from_static("false"));
    }
    Response::from_parts(parts, Body::from(json))
}
