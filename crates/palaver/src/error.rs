//! The one API error type and its mapping to HTTP.
//!
//! `ApiError` knows its status and stable code. Its response carries an [`ErrorPayload`]
//! extension; the [`error_envelope`] middleware, which knows the request, writes the
//! final JSON of API.md (`statusCode`, `timestamp`, `path`, `method`, `message`, `code`,
//! `errors`). Internal details are logged here once and never sent.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthRefusal;
use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Validation failed")]
    Validation(Vec<FieldError>),
    #[error("Request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("Too many requests: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("Token quota exceeded")]
    QuotaExceeded { retry_after_secs: Option<u64> },
    #[error("{0}")]
    Conflict(String),
    /// An `Idempotency-Key` (or `clientRequestId`) that names a run the request cannot
    /// attach to.
    #[error("{0}")]
    IdempotencyConflict(String),
    #[error("The AI provider failed to answer")]
    Upstream(String),
    #[error("The AI provider did not answer in time")]
    UpstreamTimeout(String),
    #[error("{0}")]
    Unavailable(String),
    /// The exchange's instance shut down or died before it ended (its partial reply is kept).
    #[error("The reply was interrupted before it ended; its partial text is stored")]
    Interrupted,
    #[error("Internal server error")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        ApiError::Internal(err.to_string())
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } | ApiError::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Conflict(_) | ApiError::IdempotencyConflict(_) => StatusCode::CONFLICT,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) | ApiError::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code of API.md.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::Validation(_) => "validation_failed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::QuotaExceeded { .. } => "quota_exceeded",
            ApiError::Conflict(_) => "conversation_busy",
            ApiError::IdempotencyConflict(_) => "idempotency_conflict",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::UpstreamTimeout(_) => "upstream_timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Interrupted => "interrupted",
            ApiError::Internal(_) => "internal",
        }
    }

    /// What a client may see: never internals or upstream bodies.
    pub fn public_message(&self) -> String {
        self.to_string()
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::QuotaExceeded { retry_after_secs } => *retry_after_secs,
            _ => None,
        }
    }

    /// Logs what operators need (internals at error, upstream detail at debug only).
    pub fn log(&self) {
        match self {
            ApiError::Internal(detail) => tracing::error!(detail = %detail, "internal error"),
            ApiError::Upstream(detail) | ApiError::UpstreamTimeout(detail) => {
                tracing::warn!(code = self.code(), "upstream failure");
                tracing::debug!(detail = %detail, "upstream failure detail");
            }
            _ => {}
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("Not found".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        ApiError::from(&err)
    }
}

impl From<&ServiceError> for ApiError {
    fn from(err: &ServiceError) -> Self {
        match err {
            ServiceError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            ServiceError::Invalid { field, message } => {
                ApiError::validation(field.clone(), message)
            }
            ServiceError::Busy => {
                ApiError::Conflict("Conversation is already streaming a reply".into())
            }
            ServiceError::RateLimited { retry_after_secs } => ApiError::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            ServiceError::QuotaExceeded { retry_after_secs } => ApiError::QuotaExceeded {
                retry_after_secs: Some(*retry_after_secs),
            },
            ServiceError::Queue(detail) => {
                tracing::error!(detail = %detail, "job queue unavailable");
                ApiError::Unavailable("The job queue is unavailable".into())
            }
            ServiceError::Limits(detail)
            | ServiceError::Corrupt(detail)
            | ServiceError::Internal(detail) => ApiError::Internal(detail.clone()),
            ServiceError::Cancelled => ApiError::internal(err),
            ServiceError::Interrupted => ApiError::Interrupted,
            ServiceError::KeyReused(message) => ApiError::IdempotencyConflict(message.clone()),
            ServiceError::Provider(e) if e.is_timeout() => {
                ApiError::UpstreamTimeout(format!("{e}: {}", e.detail()))
            }
            ServiceError::Provider(e) => ApiError::Upstream(format!("{e}: {}", e.detail())),
            ServiceError::Store(StoreError::NotFound) => ApiError::NotFound("Not found".into()),
            ServiceError::Store(other) => ApiError::internal(other),
        }
    }
}

impl From<AuthRefusal> for ApiError {
    fn from(refusal: AuthRefusal) -> Self {
        match refusal {
            AuthRefusal::Throttled { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            AuthRefusal::Unauthorized(message) => ApiError::Unauthorized(message),
            AuthRefusal::Unavailable(detail) => ApiError::Internal(detail),
        }
    }
}

impl IntoResponse for AuthRefusal {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// The JSON error body of API.md.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub status_code: u16,
    pub code: String,
    pub message: String,
    /// RFC 3339 time of the error.
    pub timestamp: String,
    pub path: String,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// What an error response carries until [`error_envelope`] writes it with the request's details.
#[derive(Debug, Clone)]
pub struct ErrorPayload {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub errors: Option<Vec<FieldError>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let payload = ErrorPayload {
            status: self.status_code(),
            code: self.code(),
            message: self.public_message(),
            errors: match &self {
                ApiError::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        };
        let mut response = payload.clone().render("", "");
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(payload);
        response
    }
}

impl ErrorPayload {
    fn render(self, path: &str, method: &str) -> Response {
        let body = ErrorBody {
            status_code: self.status.as_u16(),
            code: self.code.to_owned(),
            message: self.message,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            path: path.to_owned(),
            method: method.to_owned(),
            errors: self.errors,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// Middleware: writes every error response in the API.md shape, with the request's path and method.
pub async fn error_envelope(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().to_string();
    let response = next.run(request).await;
    match response.extensions().get::<ErrorPayload>().cloned() {
        Some(payload) => {
            let (mut parts, _) = response.into_parts();
            let rendered = payload.render(&path, &method);
            let (new_parts, body) = rendered.into_parts();
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.status = new_parts.status;
            Response::from_parts(parts, body)
        }
        None => response,
    }
}
