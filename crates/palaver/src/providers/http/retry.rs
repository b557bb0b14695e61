//! Retries: attempts until one succeeds or may not be repeated, with a backoff between
//! them (or the provider's `Retry-After`), and one attempt's mapping of a failed status.

use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Response, StatusCode};

use super::errors::{ERROR_BODY_TIME, error_body, send_error};
use super::{Call, HttpSettings, ProviderError};

/// The longest `Retry-After` honoured; longer ones are cut to it.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest computed backoff.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl HttpSettings {
    pub(super) async fn send(&self, call: &Call, sse: bool) -> Result<Response, ProviderError> {
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self.attempt(call, sse).await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            if attempt >= self.max_attempts || !error.is_retryable() {
                if error.is_retryable() {
                    tracing::warn!(provider = call.provider, attempt, error = %error, "provider call failed; no attempt left");
                } else {
                    tracing::debug!(provider = call.provider, attempt, error = %error, "provider call failed; not retryable");
                }
                return Err(error);
            }
            let delay = retry_delay(
                self.backoff_base,
                attempt,
                retry_after,
                rand::random::<f64>(),
            );
            tracing::warn!(
                provider = call.provider,
                attempt,
                max_attempts = self.max_attempts,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "provider call failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt: the response when its status is a success, else the error and the
    /// `Retry-After` delay the provider asked for.
    async fn attempt(
        &self,
        call: &Call,
        sse: bool,
    ) -> Result<Response, (ProviderError, Option<Duration>)> {
        let mut request = self
            .client
            .request(call.method.clone(), &call.url)
            .headers(call.headers.clone());
        if sse {
            request = request.header(ACCEPT, "text/event-stream");
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = match tokio::time::timeout(self.first_byte, request.send()).await {
            Err(_) => {
                let detail = format!(
                    "no response headers within {} ms",
                    self.first_byte.as_millis()
                );
                return Err((ProviderError::Timeout { detail }, None));
            }
            Ok(Err(e)) => return Err((send_error(e), None)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        tracing::debug!(
            provider = call.provider,
            status = status.as_u16(),
            "provider answered"
        );
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::SERVICE_UNAVAILABLE
        {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        let detail = error_body(response, self.idle.min(ERROR_BODY_TIME)).await;
        let error = if status == StatusCode::TOO_MANY_REQUESTS {
            ProviderError::RateLimited {
                retry_after,
                detail,
            }
        } else {
            ProviderError::Status {
                status: status.as_u16(),
                detail,
            }
        };
        Err((error, retry_after))
    }
}

/// The pause after `failed` failed attempts (1 for the first): `Retry-After` when the
/// provider sent one (capped), else the exponential backoff with full jitter
/// (`jitter` in `[0, 1)`).
pub(super) fn retry_delay(
    base: Duration,
    failed: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    match retry_after {
        Some(delay) => delay.min(MAX_RETRY_AFTER),
        None => backoff(base, failed, jitter),
    }
}

/// `base * 2^(failed-1)`, capped, scaled by `jitter`.
pub(super) fn backoff(base: Duration, failed: u32, jitter: f64) -> Duration {
    let exponent = failed.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(MAX_BACKOFF);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A `Retry-After` value: delay-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
/// A date in the past is no delay.
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// IMF-fixdate, and the obsolete RFC 850 and asctime forms HTTP still allows.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc2822(value) {
        return Some(at.into());
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .into_iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())
        .map(|at| at.and_utc().into())
}
