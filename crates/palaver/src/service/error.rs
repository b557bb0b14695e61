//! The service layer's error. Its mapping to HTTP (and to Socket.IO and job errors) is
//! `crate::error`'s, the one place that decides what a client sees.

use std::borrow::Cow;

use crate::limits::QuotaError;
use crate::providers::{ProviderError, RouteError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path in the request, camelCase (`messages[3].parentId`).
        field: Cow<'static, str>,
        message: String,
    },
    #[error("conversation is already streaming a reply")]
    Busy,
    #[error("rate limited: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("token quota exceeded")]
    QuotaExceeded { retry_after_secs: u64 },
    /// The rate limiter or the quota's backend failed (Redis down, say).
    #[error("limits backend: {0}")]
    Limits(String),
    /// The job queue could not take the job.
    #[error("job queue: {0}")]
    Queue(String),
    /// Stored data that cannot be read back (a corrupt row): retrying cannot help.
    #[error("unreadable stored data: {0}")]
    Corrupt(String),
    /// The exchange was given up (a job whose lease was lost): nothing more is stored.
    #[error("the exchange was given up")]
    Cancelled,
    /// The exchange's instance is shutting down (past `SHUTDOWN_GRACE_SECS`), or its run was
    /// taken for lost: it ended `interrupted`, its partial reply stored.
    #[error("the exchange was interrupted")]
    Interrupted,
    /// A request's key (`Idempotency-Key`) names a run it cannot attach to.
    #[error("{0}")]
    KeyReused(String),
    #[error("{0}")]
    Internal(String),
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
            field: "model".into(),
            message: err.to_string(),
        }
    }
}
