//! Admission, decided here for every transport: the per-user rate limit on what costs money
//! (chat, embeddings, jobs), the daily token quota, and one exchange per conversation at a
//! time (the busy rule: REST, SSE, Socket.IO and jobs alike).

use std::sync::Arc;

use uuid::Uuid;

use super::{ActiveStreams, Attribution, ServiceError, StreamClaim};
use crate::limits::{Decision, QuotaGuard, Quotas, RateLimiter};

#[derive(Clone)]
pub struct Admission {
    limiter: Arc<RateLimiter>,
    /// API keys' own limits (`rateLimitPerMinute`), each key at its own rate.
    key_limiter: Arc<RateLimiter>,
    quotas: Arc<Quotas>,
    streams: Arc<ActiveStreams>,
}

impl Admission {
    pub fn new(
        limiter: Arc<RateLimiter>,
        key_limiter: Arc<RateLimiter>,
        quotas: Arc<Quotas>,
        streams: Arc<ActiveStreams>,
    ) -> Self {
        Admission {
            limiter,
            key_limiter,
            quotas,
            streams,
        }
    }

    /// Counts one metered request of `user_id` against the rate limit and returns the
    /// decision (for a transport that reports it, as REST does in `RateLimit-*` headers);
    /// [`Admission::verdict`] turns it into the refusal.
    pub async fn decide(&self, user_id: &str) -> Result<Decision, ServiceError> {
        self.limiter
            .check(user_id)
            .await
            .map_err(|e| ServiceError::Limits(e.to_string()))
    }

    /// Like [`Admission::decide`] for a request made with an API key that has a limit of its
    /// own (`(key id, per minute)`): the key's bucket is counted first (a refused key does
    /// not spend its user's), then the user's; the refusal, else the tighter decision, is
    /// returned.
    pub async fn decide_with_key(
        &self,
        user_id: &str,
        key: Option<(Uuid, u32)>,
    ) -> Result<Decision, ServiceError> {
        let Some((key_id, per_minute)) = key else {
            return self.decide(user_id).await;
        };
        let rate = crate::limits::Rate::per_minute(per_minute);
        let keyed = self
            .key_limiter
            .check_at(&key_id.to_string(), rate)
            .await
            .map_err(|e| ServiceError::Limits(e.to_string()))?;
        if !keyed.allowed {
            return Ok(keyed);
        }
        let user = self.decide(user_id).await?;
        Ok(if !user.allowed || user.remaining <= keyed.remaining {
            user
        } else {
            keyed
        })
    }

    /// `Err(RateLimited)` when `decision` refuses.
    pub fn verdict(decision: &Decision) -> Result<(), ServiceError> {
        if decision.allowed {
            Ok(())
        } else {
            Err(ServiceError::RateLimited {
                retry_after_secs: decision.retry_after_secs(),
            })
        }
    }

    /// Counts one metered request and refuses it when over the limit.
    pub async fn rate(&self, user_id: &str) -> Result<(), ServiceError> {
        Self::verdict(&self.decide(user_id).await?)
    }

    /// The window the rate limit is counted over.
    pub fn rate_window(&self) -> std::time::Duration {
        self.limiter.rate().period
    }

    /// Refuses a user whose quota is spent (reserves nothing).
    pub async fn quota_open(&self, user_id: &str) -> Result<(), ServiceError> {
        Ok(self.quotas.check(user_id).await?)
    }

    /// Refuses a request whose user's quota, or whose API key's own daily quota, is spent
    /// (reserves nothing).
    pub async fn quota_open_for(
        &self,
        user_id: &str,
        attribution: &Attribution,
    ) -> Result<(), ServiceError> {
        self.quota_open(user_id).await?;
        if let (Some(key_id), Some(limit)) =
            (attribution.api_key_id, attribution.token_quota_per_day)
        {
            self.quotas.check_key(key_id, limit).await?;
        }
        Ok(())
    }

    /// Reserves the most a request can spend until its usage is stored (the guard).
    pub async fn reserve(
        &self,
        user_id: &str,
        tokens: i64,
    ) -> Result<Option<QuotaGuard>, ServiceError> {
        Ok(self.quotas.reserve(user_id, tokens).await?)
    }

    /// The daily quota and what is left of it today, when one is set.
    pub async fn quota(&self, user_id: &str) -> Result<(Option<i64>, Option<i64>), ServiceError> {
        let remaining = self.quotas.remaining(user_id).await?;
        Ok((self.quotas.limit(), remaining))
    }

    /// Claims the conversation for one exchange; `Busy` while another one runs in it.
    pub fn claim(
        &self,
        conversation_id: Uuid,
        user_id: &str,
        run_id: Uuid,
    ) -> Result<StreamClaim, ServiceError> {
        self.streams
            .claim(conversation_id, user_id, run_id)
            .ok_or(ServiceError::Busy)
    }

    /// Exchanges running in this process.
    pub fn streams(&self) -> &ActiveStreams {
        &self.streams
    }
}
