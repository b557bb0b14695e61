use crate::error::{ApiError, FieldError};
use crate::limits::QuotaError;
use crate::providers::{ProviderError, RouteError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("conversation is already streaming a reply")]
    Busy,
    #[error("token quota exceeded")]
    QuotaExceeded { retry_after_secs: u64 },
    #[error("limits backend: {0}")]
    Limits(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<QuotaError> for ServiceError {
    fn from(err: QuotaError) -> Self {
        match err {
            QuotaError::Exceeded { retry_after_secs } => {
                ServiceError::QuotaExceeded { retry_after_secs }
            }
            QuotaError::Backend(detail) => ServiceError::Limits(detail),
        }
    }
}

impl From<RouteError> for ServiceError {
    fn from(err: RouteError) -> Self {
        ServiceError::Invalid {
            field: "model",
            message: err.to_string(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            ServiceError::Invalid { field, message } => ApiError::Validation(vec![FieldError {
                field: field.to_owned(),
                message,
            }]),
            ServiceError::Busy => {
                ApiError::Conflict("Conversation is already streaming a reply".into())
            }
            ServiceError::QuotaExceeded { retry_after_secs } => ApiError::QuotaExceeded {
                retry_after_secs: Some(retry_after_secs),
            },
            ServiceError::Limits(detail) => ApiError::internal(detail),
            ServiceError::Provider(e) if e.is_timeout() => {
                ApiError::UpstreamTimeout(format!("{e}: {}", e.detail()))
            }
            ServiceError::Provider(e) => ApiError::Upstream(format!("{e}: {}", e.detail())),
            ServiceError::Store(StoreError::NotFound) => ApiError::NotFound("Not found".into()),
            ServiceError::Store(other) => ApiError::internal(other),
        }
    }
}
