//! Daily token quotas, counted from recorded usage (UTC day) plus the reservations of
//! requests in flight, so a parallel burst overshoots by at most one request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use redis::aio::ConnectionManager;
use uuid::Uuid;

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

/// The in-process reservations. An entry is removed once its user has nothing in flight, so
/// the map holds only users with requests running; `pruned` counts removals, so that a
/// reservation that read the usage before one (its entry's release count gone with it)
/// still notices that a release happened.
#[derive(Debug, Default)]
struct Local {
    users: HashMap<String, InFlight>,
    pruned: u64,
}

type LocalMap = Arc<Mutex<Local>>;

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
                if let Ok(mut local) = map.lock()
                    && let Some(entry) = local.users.get_mut(&self.user)
                {
                    entry.tokens -= self.tokens;
                    entry.releases += 1;
                    if entry.tokens <= 0 {
                        local.users.remove(&self.user);
                        local.pruned += 1;
                    }
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

/// A user's reservations in this process (zero when there are none), and the map's count
/// of removals: together, what a reservation checks has not moved while it read the usage.
fn local_entry(map: &LocalMap, user: &str) -> Result<(InFlight, u64), QuotaError> {
    let local = map
        .lock()
        .map_err(|_| QuotaError::Backend("poisoned".into()))?;
    Ok((
        local.users.get(user).copied().unwrap_or_default(),
        local.pruned,
    ))
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

    /// Refuses a user whose usage today plus the reservations in flight reach the quota; a
    /// check that reserves nothing (admission before the request's cost is known).
    pub async fn check(&self, user: &str) -> Result<(), QuotaError> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let used = self.used_today(user).await?;
        let in_flight = match &self.reservations {
            Reservations::Local(map) => local_entry(map, user)?.0.tokens,
            Reservations::Redis(conn) => {
                let mut c = conn.clone();
                let tokens: Option<i64> = redis::cmd("GET")
                    .arg(reservation_key(user))
                    .query_async(&mut c)
                    .await
                    .map_err(|e| QuotaError::Backend(e.to_string()))?;
                tokens.unwrap_or(0)
            }
        };
        if used + in_flight >= limit {
            return Err(QuotaError::Exceeded {
                retry_after_secs: secs_to_midnight(),
            });
        }
        Ok(())
    }

    /// Refuses a request made with an API key whose own daily quota (`limit` tokens per UTC
    /// day) is spent. Recorded usage only: requests in flight are not reserved per key, so a
    /// parallel burst may overshoot it by what those requests spend.
    pub async fn check_key(&self, key_id: Uuid, limit: i64) -> Result<(), QuotaError> {
        let used = self
            .store
            .tokens_used_by_key_since(key_id, start_of_day())
            .await
            .map_err(|e| QuotaError::Backend(e.to_string()))?;
        if used >= limit {
            return Err(QuotaError::Exceeded {
                retry_after_secs: secs_to_midnight(),
            });
        }
        Ok(())
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
                    let (seen, pruned) = local_entry(map, user)?;
                    let used = self.used_today(user).await?;
                    let mut guard = map
                        .lock()
                        .map_err(|_| QuotaError::Backend("poisoned".into()))?;
                    let local = &mut *guard;
                    if local.pruned != pruned {
                        continue;
                    }
                    let entry = local.users.entry(user.to_owned()).or_default();
                    if entry.releases != seen.releases {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    async fn quotas(limit: i64) -> (Quotas, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let quotas = Quotas::new(Some(limit), Arc::new(store), None)
            .await
            .unwrap();
        (quotas, dir)
    }

    fn local(quotas: &Quotas) -> (usize, u64, u64) {
        let Reservations::Local(map) = &quotas.reservations else {
            panic!("not in-process")
        };
        let local = map.lock().unwrap();
        let releases = local.users.values().map(|e| e.releases).sum();
        (local.users.len(), local.pruned, releases)
    }

    /// Admission checks the quota without reserving: nothing is counted, so reservations
    /// running beside it are not sent round their retry loop (issue #14 item 8).
    #[tokio::test]
    async fn a_check_reserves_and_releases_nothing() {
        let (quotas, _dir) = quotas(100).await;
        quotas.check("ann").await.unwrap();
        assert_eq!(local(&quotas), (0, 0, 0));
    }

    /// The in-process map keeps only users with reservations in flight (issue #14 item 8).
    #[tokio::test]
    async fn released_users_leave_the_map() {
        let (quotas, _dir) = quotas(100).await;
        let first = quotas.reserve("ann", 10).await.unwrap();
        let second = quotas.reserve("ann", 20).await.unwrap();
        let other = quotas.reserve("bob", 5).await.unwrap();
        assert_eq!(local(&quotas).0, 2);
        drop(first);
        assert_eq!(local(&quotas), (2, 0, 1));
        drop(second);
        drop(other);
        assert_eq!(local(&quotas), (0, 2, 0));
    }

    /// What is in flight still counts against a check and a reservation.
    #[tokio::test]
    async fn reservations_in_flight_count_until_released() {
        let (quotas, _dir) = quotas(100).await;
        let held = quotas.reserve("ann", 100).await.unwrap();
        assert!(matches!(
            quotas.check("ann").await,
            Err(QuotaError::Exceeded { .. })
        ));
        assert!(quotas.reserve("ann", 1).await.is_err());
        drop(held);
        quotas.check("ann").await.unwrap();
        assert!(quotas.reserve("ann", 1).await.unwrap().is_some());
    }
}
