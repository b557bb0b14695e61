//! The response cache: an exact-match cache of the replies to deterministic requests
//! (`temperature: 0`; Palaver sends no tools), keyed by the SHA-256 of a canonical encoding
//! of the provider, the upstream model, the full message list and the parameters. In this
//! process (a bounded LRU with a TTL) or, when Redis is configured, shared by every instance.
//! A cache that fails is a miss (logged): it never fails an exchange.

mod local;

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use local::LocalCache;

use crate::providers::{ChatCompletion, ChatRequest, ChatRole, Usage};

/// A cached reply: what the provider answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedReply {
    pub content: String,
    pub finish_reason: String,
    /// The provider's reported usage, when it reported it.
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

impl CachedReply {
    pub fn of(completion: &ChatCompletion) -> CachedReply {
        CachedReply {
            content: completion.content.clone(),
            finish_reason: completion.finish_reason.clone(),
            prompt_tokens: completion.usage.map(|u| u.prompt_tokens),
            completion_tokens: completion.usage.map(|u| u.completion_tokens),
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: self.prompt_tokens?,
            completion_tokens: self.completion_tokens?,
        })
    }
}

/// The key of a request's reply: `None` when the request is not deterministic
/// (`temperature` above 0), whose replies are never cached.
pub fn key(provider: &str, request: &ChatRequest) -> Option<String> {
    if request.temperature != 0.0 {
        return None;
    }
    let messages: Vec<(&str, &str)> = request
        .messages
        .iter()
        .map(|m| {
            let role = match m.role {
                ChatRole::System => "system",
                ChatRole::User => "user",
                ChatRole::Assistant => "assistant",
            };
            (role, m.content.as_str())
        })
        .collect();
    // A JSON array of fixed shape: every string escaped, so no two requests encode alike.
    let canonical = serde_json::json!([
        1,
        provider,
        request.model,
        request.max_tokens,
        request.temperature,
        messages
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where cached replies are kept.
pub enum ResponseCache {
    Local(LocalCache),
    Redis {
        conn: ConnectionManager,
        ttl: Duration,
    },
}

/// The prefix of the cache's Redis keys.
const REDIS_PREFIX: &str = "palaver:cache:";

impl ResponseCache {
    /// The cache on Redis at `url`.
    pub async fn redis(url: &str, ttl: Duration) -> Result<ResponseCache, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(ResponseCache::Redis { conn, ttl })
    }

    /// The reply cached under `key`, counted as a hit or a miss.
    pub async fn get(&self, key: &str) -> Option<CachedReply> {
        let found = match self {
            ResponseCache::Local(local) => local.get(key),
            ResponseCache::Redis { conn, .. } => {
                let got: Result<Option<String>, _> =
                    conn.clone().get(format!("{REDIS_PREFIX}{key}")).await;
                match got {
                    Ok(text) => text.and_then(|t| serde_json::from_str(&t).ok()),
                    Err(err) => {
                        tracing::warn!(error = %err, "response cache: could not read");
                        None
                    }
                }
            }
        };
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("response_cache_lookups_total", "result" => result).increment(1);
        found
    }

    /// Keeps `reply` under `key` (for the TTL).
    pub async fn put(&self, key: &str, reply: CachedReply) {
        match self {
            ResponseCache::Local(local) => local.put(key, reply),
            ResponseCache::Redis { conn, ttl } => {
                let Ok(text) = serde_json::to_string(&reply) else {
                    return;
                };
                let stored: Result<(), _> = conn
                    .clone()
                    .set_ex(format!("{REDIS_PREFIX}{key}"), text, ttl.as_secs().max(1))
                    .await;
                if let Err(err) = stored {
                    tracing::warn!(error = %err, "response cache: could not write");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatMessage;

    fn request(temperature: f32, text: &str) -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![ChatMessage {
                role: ChatRole::User,
                content: text.into(),
            }],
            max_tokens: 100,
            temperature,
        }
    }

    #[test]
    fn only_deterministic_requests_have_a_key_and_every_part_counts() {
        assert_eq!(key("openai", &request(0.7, "hi")), None);
        let base = key("openai", &request(0.0, "hi")).unwrap();
        assert_eq!(base.len(), 64);
        assert_eq!(key("openai", &request(0.0, "hi")).as_ref(), Some(&base));
        assert_ne!(key("anthropic", &request(0.0, "hi")).unwrap(), base);
        assert_ne!(key("openai", &request(0.0, "hi ")).unwrap(), base);
        let mut longer = request(0.0, "hi");
        longer.max_tokens = 101;
        assert_ne!(key("openai", &longer).unwrap(), base);
        let mut other = request(0.0, "hi");
        other.messages[0].role = ChatRole::System;
        assert_ne!(key("openai", &other).unwrap(), base);
    }
}
