//! The response cache a process starts with.

use std::sync::Arc;

use secrecy::ExposeSecret;

use super::StartupError;
use crate::config::{Config, ConfigError};
use crate::service::cache::{LocalCache, ResponseCache};

/// The response cache, when `RESPONSE_CACHE` is on: on Redis when it is configured (shared
/// by every instance), else in this process.
pub(super) async fn build(config: &Config) -> Result<Option<Arc<ResponseCache>>, StartupError> {
    if !config.cache.enabled {
        return Ok(None);
    }
    let cache = match &config.redis_url {
        Some(url) => ResponseCache::redis(url.expose_secret(), config.cache.ttl)
            .await
            .map_err(|e| ConfigError::new("REDIS_URL", format!("response cache: {e}")))?,
        None => ResponseCache::Local(LocalCache::new(config.cache.max_entries, config.cache.ttl)),
    };
    Ok(Some(Arc::new(cache)))
}
