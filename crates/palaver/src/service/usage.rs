use std::sync::Arc;

use super::ServiceError;
use crate::store::{Store, UsageTotals};

#[derive(Clone)]
pub struct UsageService {
    store: Arc<dyn Store>,
}

impl UsageService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn totals(&self, user_id: &str) -> Result<UsageTotals, ServiceError> {
        Ok(self.store.usage_stats(user_id).await?)
    }
}
