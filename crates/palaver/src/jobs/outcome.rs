//! What a failed attempt means: whether another may succeed, and what the job says.

use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::providers::ProviderError;
use crate::service::ServiceError;
use crate::store::StoreError;

/// How an attempt's work ended.
pub(super) enum Outcome {
    /// The job's result, as JSON text (an embedding is written once, not held as a `Value`).
    Done(Box<RawValue>),
    Failed(ServiceError),
    /// Another worker took the job over (this one was presumed dead): nothing more to write.
    LostLease,
    /// The attempt's code panicked.
    Panicked,
}

pub(super) fn invalid_result(err: serde_json::Error) -> ServiceError {
    ServiceError::Invalid {
        field: "result".into(),
        message: err.to_string(),
    }
}

/// Whether another attempt may succeed: upstream hiccups and infrastructure, not a refusal.
pub(super) fn is_transient(error: &ServiceError) -> bool {
    match error {
        ServiceError::Provider(e) => {
            e.is_retryable()
                || matches!(
                    e,
                    ProviderError::StreamCut { .. } | ProviderError::Protocol { .. }
                )
        }
        // The conversation is streaming another reply: this job queues behind it.
        ServiceError::Busy => true,
        ServiceError::RateLimited { .. } | ServiceError::Limits(_) | ServiceError::Queue(_) => true,
        ServiceError::Store(StoreError::NotFound) => false,
        ServiceError::Store(_) => true,
        // The lease was lost: the job's new holder decides. An attempt cut by shutdown runs
        // again elsewhere.
        ServiceError::Cancelled | ServiceError::Interrupted => true,
        // A row that cannot be read, or a bug: another attempt would meet it again.
        ServiceError::Corrupt(_) | ServiceError::Internal(_) => false,
        ServiceError::NotFound(_)
        | ServiceError::KeyReused(_)
        | ServiceError::Invalid { .. }
        | ServiceError::QuotaExceeded { .. } => false,
    }
}

/// The job's `error`: what `ApiError` lets a client see (never an upstream body), with the
/// fields of a validation failure.
pub(super) fn public_error(error: ServiceError) -> String {
    let error = ApiError::from(error);
    error.log();
    match &error {
        ApiError::Validation(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            format!("{}: {}", error.public_message(), fields.join("; "))
        }
        _ => error.public_message(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_not_retried() {
        assert!(is_transient(&ServiceError::Provider(
            ProviderError::Status {
                status: 503,
                detail: String::new()
            }
        )));
        assert!(is_transient(&ServiceError::Provider(
            ProviderError::Timeout {
                detail: String::new()
            }
        )));
        assert!(!is_transient(&ServiceError::Provider(
            ProviderError::Status {
                status: 400,
                detail: String::new()
            }
        )));
        assert!(!is_transient(&ServiceError::QuotaExceeded {
            retry_after_secs: 60
        }));
        assert!(!is_transient(&ServiceError::NotFound("conversation")));
    }

    /// A row that cannot be read fails its job at once, with what is wrong (issue #14
    /// item 7: it was reported as a limits failure and retried as transient).
    #[test]
    fn a_corrupt_row_is_not_retried() {
        let error = crate::service::jobs::job_error(crate::store::JobStoreError::Corrupt(
            "status `lost`".into(),
        ));
        assert!(matches!(&error, ServiceError::Corrupt(detail) if detail == "status `lost`"));
        assert!(!is_transient(&error));
        // The database being away is transient, as before.
        let away = crate::service::jobs::job_error(crate::store::JobStoreError::Other(
            "connection refused".into(),
        ));
        assert!(is_transient(&away));
    }

    #[test]
    fn public_errors_never_carry_upstream_detail() {
        let error = ServiceError::Provider(ProviderError::Status {
            status: 500,
            detail: "sk-secret body".into(),
        });
        let message = public_error(error);
        assert_eq!(message, "The AI provider failed to answer");
        let invalid = public_error(ServiceError::Invalid {
            field: "model".into(),
            message: "unknown model x".into(),
        });
        assert_eq!(invalid, "Validation failed: model: unknown model x");
    }
}
