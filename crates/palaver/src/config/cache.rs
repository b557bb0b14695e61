//! The response cache (`RESPONSE_CACHE`, `CACHE_MAX_ENTRIES`, `CACHE_TTL_SECS`).

use std::time::Duration;

use super::ConfigError;
use super::env::Env;

/// The response cache of deterministic requests (`temperature: 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `RESPONSE_CACHE`, default `false`: an operator turns it on (identical requests of
    /// different users then share a reply).
    pub enabled: bool,
    /// The most replies the in-process cache keeps (`CACHE_MAX_ENTRIES`, default 10000); with
    /// Redis, Redis's own memory policy bounds it.
    pub max_entries: usize,
    /// How long a reply is kept (`CACHE_TTL_SECS`, default 3600).
    pub ttl: Duration,
}

pub(super) fn cache(env: &Env) -> Result<CacheConfig, ConfigError> {
    Ok(CacheConfig {
        enabled: env.parse("RESPONSE_CACHE", false)?,
        max_entries: env.parse_range(&["CACHE_MAX_ENTRIES"], 10_000, 1..=10_000_000)? as usize,
        ttl: Duration::from_secs(u64::from(env.parse_range(
            &["CACHE_TTL_SECS"],
            3600,
            1..=30 * 86_400,
        )?)),
    })
}
