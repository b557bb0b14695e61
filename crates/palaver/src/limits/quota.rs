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

/// A user's reservations in this process: tokens in flight, and how many reservations have
/// been released so far (see [`Quotas::reserve`]).
#[derive(Debug, Default, Clone, Copy)]
struct InFlight {
    tokens: i64,
    releases: u64,
}

type LocalMap = Arc<Mutex<HashMap<String, InFlight>>>;

enum Reservations {
    Local(LocalMap),
    Redis(ConnectionManager),
}

/// KEYS: in-flight tokens, release count. ARGV: usage read, limit, tokens, release count
/// seen before the usage was read. Returns 1 (admitted), 0 (over quota) or -1 (a reservation
/// was released meanwhile: read the usage again).
const RESERVE: &str = r#"
if tonumber(redis.call('GET', KEYS[2]) or 0) ~= tonumber(ARGV[4]) then return -1 end
local inflight = tonumber(redis.call('GET', KEYS[1]) or 0)
local used = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if used + inflight >= limit then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], 900)
return 1
"#;

/// KEYS: in-flight tokens, release count. ARGV: tokens.
const RELEASE: &str = r#"
redis.call('DECRBY', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 90000)
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
    Local(LocalMap),
    Redis(ConnectionManager),
}

impl Drop for QuotaGuard {
    fn drop(&mut self) {
        match &self.reservations {
            ReservationHandle::Local(map) => {
                // The entry stays (with its release count) so that a reservation that read
                // the usage before this release notices it.
                if let Ok(mut map) = map.lock()
                    && let Some(entry) = map.get_mut(&self.user)
                {
                    entry.tokens -= self.tokens;
                    entry.releases += 1;
                }
            }
            ReservationHandle::Redis(conn) => {
                let mut conn = conn.clone();
                let user = self.user.clone();
                let tokens = self.tokens;
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _: Result<i64, _> = redis::Script::new(RELEASE)
                            .key(reservation_key(&user))
                            .key(releases_key(&user))
                            .arg(tokens)
                            .invoke_async(&mut conn)
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

fn releases_key(user: &str) -> String {
    format!("palaver:quota:released:{user}")
}

/// A user's reservations in this process (zero when there are none).
fn local_entry(map: &LocalMap, user: &str) -> Result<InFlight, QuotaError> {
    let guard = map
        .lock()
        .map_err(|_| QuotaError::Backend("poisoned".into()))?;
    Ok(guard.get(user).copied().unwrap_or_default())
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
        let exceeded = || QuotaError::Exceeded {
            retry_after_secs: secs_to_midnight(),
        };
        // The usage read and the in-flight check must see the same world: a reservation
        // released in between (its usage stored after our read) would be counted nowhere.
        // So the release count is taken before the read and checked with the reservation.
        let handle = loop {
            match &self.reservations {
                Reservations::Local(map) => {
                    let seen = local_entry(map, user)?.releases;
                    let used = self.used_today(user).await?;
                    let mut guard = map
                        .lock()
                        .map_err(|_| QuotaError::Backend("poisoned".into()))?;
                    let entry = guard.entry(user.to_owned()).or_default();
                    if entry.releases != seen {
                        continue;
                    }
                    if used + entry.tokens >= limit {
                        return Err(exceeded());
                    }
                    entry.tokens += tokens;
                    break ReservationHandle::Local(map.clone());
                }
                Reservations::Redis(conn) => {
                    let mut c = conn.clone();
                    let seen: Option<u64> = redis::cmd("GET")
                        .arg(releases_key(user))
                        .query_async(&mut c)
                        .await
                        .map_err(|e| QuotaError::Backend(e.to_string()))?;
                    let used = self.used_today(user).await?;
                    let admitted: i64 = redis::Script::new(RESERVE)
                        .key(reservation_key(user))
                        .key(releases_key(user))
                        .arg(used)
                        .arg(limit)
                        .arg(tokens)
                        .arg(seen.unwrap_or(0))
                        .invoke_async(&mut c)
                        .await
                        .map_err(|e| QuotaError::Backend(e.to_string()))?;
                    match admitted {
                        1 => break ReservationHandle::Redis(conn.clone()),
                        0 => return Err(exceeded()),
                        _ => continue,
                    }
                }
            }
        };
        Ok(Some(QuotaGuard {
            user: user.to_owned(),
            tokens,
            reservations: handle,
        }))
    }
}
