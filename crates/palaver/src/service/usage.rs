use std::sync::Arc;

use super::{Admission, ServiceError};
use crate::store::{self, Store, Timestamp, UsageTotals};

#[derive(Clone)]
pub struct UsageService {
    store: Arc<dyn Store>,
    admission: Admission,
}

/// A user's usage and the limits that apply to them.
#[derive(Debug, Clone)]
pub struct UsageReport {
    pub totals: UsageTotals,
    /// The latest message or usage; before any, now (API.md types it as a date: never null).
    pub last_used: Timestamp,
    pub rate_limit_per_minute: u32,
    pub token_quota: Option<i64>,
    pub tokens_remaining: Option<i64>,
}

impl UsageService {
    pub fn new(store: Arc<dyn Store>, admission: Admission) -> Self {
        Self { store, admission }
    }

    pub async fn report(
        &self,
        user_id: &str,
        rate_limit_per_minute: u32,
    ) -> Result<UsageReport, ServiceError> {
        let totals = self.store.usage_stats(user_id).await?;
        let (token_quota, tokens_remaining) = self.admission.quota(user_id).await?;
        Ok(UsageReport {
            last_used: totals.last_used.unwrap_or_else(store::now),
            totals,
            rate_limit_per_minute,
            token_quota,
            tokens_remaining,
        })
    }
}
