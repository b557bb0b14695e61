//! Daily token quotas, counted from recorded usage (UTC day) plus the reservations of
//! requests in flight, so a parallel burst overshoots by at most one request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use redis::aio::ConnectionManager;

use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("token quota exceeded")]
    Exceeded { retry_after_secs: u64 },
    #[error("quota backend: {0}")]
    Backend(String),
}

enum Reservations {
    Local(Arc<Mutex<HashMap<String, i64>>>),
    Redis(ConnectionManager),
}

const RESERVE: &str = r#"
local inflight = tonumber(redis.call('GET', KEYS[1]) or 0)
local used = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if used + inflight >= limit then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], 900)
return 1
"#;

pub struct Quotas {
    limit: Option<i64>,
    store: Arc<dyn Store>,
    reservations: Reservations,
}

/// A reservation of tokens for one request in flight; released on drop.
pub struct QuotaGuard {
    user: String,
    tokens: i64,
    reservations: ReservationHandle,
}

#[derive(Clone)]
enum ReservationHandle {
    Local(Arc<Mutex<HashMap<String, i64>>>),
    Redis(ConnectionManager),
}

impl Drop for QuotaGuard {
    fn drop(&mut self) {
        match &self.reservations {
            ReservationHandle::Local(map) => {
                if let Ok(mut map) = map.lock()
                    && let Some(v) = map.get_mut(&self.user)
                {
                    *v -= self.tokens;
                    if *v <= 0 {
                        map.remove(&self.user);
                    }
                }
            }
            ReservationHandle::Redis(conn) => {
                let mut conn = conn.clone();
                let key = reservation_key(&self.user);
                let tokens = self.tokens;
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _: Result<i64, _> = redis::cmd("DECRBY")
                            .arg(key)
                            .arg(tokens)
                            .query_async(&mut conn)
                            .await;
                    });
                }
            }
        }
    }
}

fn reservation_key(user: &str) -> String {
    format!("palaver:quota:inflight:{user}")
}

fn start_of_day() -> chrono::DateTime<Utc> {
    let today = Utc::now().date_naive();
    Utc.from_utc_datetime(&today.and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn secs_to_midnight() -> u64 {
    let next = start_of_day() + ChronoDuration::days(1);
    (next - Utc::now()).num_seconds().max(1) as u64
}

impl Quotas {
    pub async fn new(
        limit: Option<i64>,
        store: Arc<dyn Store>,
        redis_url: Option<&str>,
    ) -> Result<Quotas, QuotaError> {
        let reservations = match redis_url {
            None => Reservations::Local(Arc::default()),
            Some(url) => {
                let client =
                    redis::Client::open(url).map_err(|e| QuotaError::Backend(e.to_string()))?;
                Reservations::Redis(
                    ConnectionManager::new(client)
                        .await
                        .map_err(|e| QuotaError::Backend(e.to_string()))?,
                )
            }
        };
        Ok(Quotas {
            limit,
            store,
            reservations,
        })
    }

    pub fn limit(&self) -> Option<i64> {
        self.limit
    }

    /// Tokens left today (recorded usage only), when a quota is set.
    pub async fn remaining(&self, user: &str) -> Result<Option<i64>, QuotaError> {
        let Some(limit) = self.limit else {
            return Ok(None);
        };
        let used = self.used_today(user).await?;
        Ok(Some((limit - used).max(0)))
    }

    async fn used_today(&self, user: &str) -> Result<i64, QuotaError> {
        self.store
            .tokens_used_since(user, start_of_day())
            .await
            .map_err(|e| QuotaError::Backend(e.to_string()))
    }

    /// Admits a request that may spend up to `tokens` when the user's usage today plus the
    /// reservations in flight are still under the quota. `None` when no quota is set.
    pub async fn reserve(&self, user: &str, tokens: i64) -> Result<Option<QuotaGuard>, QuotaError> {
        let Some(limit) = self.limit else {
            return Ok(None);
        };
        let used = self.used_today(user).await?;
        let exceeded = || QuotaError::Exceeded {
            retry_after_secs: secs_to_midnight(),
        };
        let handle = match &self.reservations {
            Reservations::Local(map) => {
                let mut guard = map
                    .lock()
                    .map_err(|_| QuotaError::Backend("poisoned".into()))?;
                let inflight = guard.get(user).copied().unwrap_or(0);
                if used + inflight >= limit {
                    return Err(exceeded());
                }
                *guard.entry(user.to_owned()).or_default() += tokens;
                ReservationHandle::Local(map.clone())
            }
            Reservations::Redis(conn) => {
                let mut c = conn.clone();
                let admitted: i64 = redis::Script::new(RESERVE)
                    .key(reservation_key(user))
                    .arg(used)
                    .arg(limit)
                    .arg(tokens)
                    .invoke_async(&mut c)
                    .await
                    .map_err(|e| QuotaError::Backend(e.to_string()))?;
                if admitted == 0 {
                    return Err(exceeded());
                }
                ReservationHandle::Redis(conn.clone())
            }
        };
        Ok(Some(QuotaGuard {
            user: user.to_owned(),
            tokens,
            reservations: handle,
        }))
    }
}
