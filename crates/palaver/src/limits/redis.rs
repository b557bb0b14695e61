//! GCRA in Redis: one Lua script per decision, using the server's clock, so every
//! instance shares one exact limit with no read-then-write race.

use redis::aio::ConnectionManager;

use super::{Decision, LimitError, Rate};

const SCRIPT: &str = r#"
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * limit
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
local remaining = math.floor((interval * limit - (new_tat - now)) / interval)
return {1, remaining, new_tat - now, 0}
"#;

pub struct RedisGcra {
    rate: Rate,
    prefix: String,
    conn: ConnectionManager,
    script: redis::Script,
}

impl RedisGcra {
    pub async fn connect(url: &str, rate: Rate, prefix: &str) -> Result<RedisGcra, LimitError> {
        let client = redis::Client::open(url).map_err(|e| LimitError::Backend(e.to_string()))?;
        let conn = ConnectionManager::new(client)
            .await
            .map_err(|e| LimitError::Backend(e.to_string()))?;
        Ok(RedisGcra {
            rate,
            prefix: prefix.to_owned(),
            conn,
            script: redis::Script::new(SCRIPT),
        })
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Decides for `key`; counts the request only when `consume` is true.
    pub async fn check(&self, key: &str, consume: bool) -> Result<Decision, LimitError> {
        self.check_at(key, self.rate, consume).await
    }

    /// Decides for `key` at its own `rate` (an API key's limit) instead of the limiter's.
    pub async fn check_at(
        &self,
        key: &str,
        rate: Rate,
        consume: bool,
    ) -> Result<Decision, LimitError> {
        let mut conn = self.conn.clone();
        let (allowed, remaining, reset_us, retry_us): (i64, i64, i64, i64) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(rate.interval().as_micros() as u64)
            .arg(rate.limit)
            .arg(if consume { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(|e| LimitError::Backend(e.to_string()))?;
        Ok(Decision {
            allowed: allowed == 1,
            limit: rate.limit,
            remaining: remaining.max(0) as u32,
            reset_after: std::time::Duration::from_micros(reset_us.max(0) as u64),
            retry_after: std::time::Duration::from_micros(retry_us.max(0) as u64),
        })
    }
}
