//! Per-user limits that need more than a range check.

use super::ConfigError;
use super::env::Env;

/// `QUOTA_TOKENS_PER_DAY`: tokens per user per UTC day; unset: no quota.
pub(super) fn quota_tokens_per_day(env: &Env) -> Result<Option<i64>, ConfigError> {
    if env.get("QUOTA_TOKENS_PER_DAY").is_none() {
        return Ok(None);
    }
    let quota = env.parse_range(&["QUOTA_TOKENS_PER_DAY"], 0, 1..=u32::MAX)?;
    Ok(Some(i64::from(quota)))
}
