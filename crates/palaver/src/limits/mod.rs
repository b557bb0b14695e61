//! Per-user rate limits (GCRA: exact, no window-edge bursts) and token quotas.
//! In-process by default; with Redis, one atomic script per decision shared by every instance.

mod local;
mod quota;
mod redis;

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

pub use local::LocalGcra;
pub use quota::{QuotaError, QuotaGuard, Quotas};
pub use redis::RedisGcra;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate limiter backend: {0}")]
    Backend(String),
}

/// The outcome of one rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// When refused: how long until one request is allowed.
    pub retry_after: Duration,
}

impl Decision {
    /// The IETF `RateLimit-*` headers (draft 7 fields and the combined draft 8+ forms).
    pub fn apply_headers(&self, headers: &mut HeaderMap, window: Duration) {
        let reset = self.reset_after.as_secs_f64().ceil() as u64;
        let pairs = [
            (
                HeaderName::from_static("ratelimit-limit"),
                self.limit.to_string(),
            ),
            (
                HeaderName::from_static("ratelimit-remaining"),
                self.remaining.to_string(),
            ),
            (
                HeaderName::from_static("ratelimit-reset"),
                reset.to_string(),
            ),
            (
                HeaderName::from_static("ratelimit-policy"),
                format!("{};w={}", self.limit, window.as_secs()),
            ),
            (
                HeaderName::from_static("ratelimit"),
                format!(
                    "limit={}, remaining={}, reset={reset}",
                    self.limit, self.remaining
                ),
            ),
        ];
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }

    pub fn retry_after_secs(&self) -> u64 {
        (self.retry_after.as_secs_f64().ceil() as u64).max(1)
    }
}

/// GCRA parameters: `limit` requests per `period`, all of them usable as a burst.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub limit: u32,
    pub period: Duration,
}

impl Rate {
    pub fn per_minute(limit: u32) -> Rate {
        Rate {
            limit: limit.max(1),
            period: Duration::from_secs(60),
        }
    }

    /// The emission interval: one request's worth of time.
    pub fn interval(&self) -> Duration {
        self.period / self.limit
    }
}

pub enum RateLimiter {
    Local(LocalGcra),
    Redis(RedisGcra),
}

impl RateLimiter {
    pub fn rate(&self) -> Rate {
        match self {
            RateLimiter::Local(l) => l.rate(),
            RateLimiter::Redis(r) => r.rate(),
        }
    }

    /// Counts one request for `key` and says whether it may proceed.
    pub async fn check(&self, key: &str) -> Result<Decision, LimitError> {
        match self {
            RateLimiter::Local(l) => Ok(l.check(key, true)),
            RateLimiter::Redis(r) => r.check(key, true).await,
        }
    }

    /// Counts one request for `key` at its own `rate` (the limiter's is ignored).
    pub async fn check_at(&self, key: &str, rate: Rate) -> Result<Decision, LimitError> {
        match self {
            RateLimiter::Local(l) => Ok(l.check_at(key, rate, true)),
            RateLimiter::Redis(r) => r.check_at(key, rate, true).await,
        }
    }

    /// Says whether a request for `key` would be allowed, counting nothing.
    pub async fn peek(&self, key: &str) -> Result<Decision, LimitError> {
        match self {
            RateLimiter::Local(l) => Ok(l.check(key, false)),
            RateLimiter::Redis(r) => r.check(key, false).await,
        }
    }
}

/// Pure GCRA step, shared by the in-process limiter and the tests of the Redis script.
/// Times are microseconds; returns the decision and the new theoretical arrival time.
pub fn gcra(rate: Rate, now_us: u64, tat_us: Option<u64>) -> (Decision, Option<u64>) {
    let interval = rate.interval().as_micros() as u64;
    let burst = interval * u64::from(rate.limit);
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(burst);
    if now_us < allow_at {
        let decision = Decision {
            allowed: false,
            limit: rate.limit,
            remaining: 0,
            reset_after: Duration::from_micros(tat - now_us),
            retry_after: Duration::from_micros(allow_at - now_us),
        };
        return (decision, None);
    }
    let remaining = ((burst - (new_tat - now_us)) / interval) as u32;
    let decision = Decision {
        allowed: true,
        limit: rate.limit,
        remaining,
        reset_after: Duration::from_micros(new_tat - now_us),
        retry_after: Duration::ZERO,
    };
    (decision, Some(new_tat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_exactly_the_limit_then_one_per_interval() {
        let rate = Rate::per_minute(20);
        let mut tat = None;
        let now = 1_000_000_000;
        for i in 0..20 {
            let (d, new) = gcra(rate, now, tat);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 19 - i);
            tat = new;
        }
        let (d, new) = gcra(rate, now, tat);
        assert!(!d.allowed);
        assert!(new.is_none());
        assert_eq!(d.retry_after, Duration::from_secs(3));
        // One interval later exactly one more is allowed.
        let later = now + 3_000_000;
        let (d, new) = gcra(rate, later, tat);
        assert!(d.allowed);
        let (d, _) = gcra(rate, later, new);
        assert!(!d.allowed);
    }
}
