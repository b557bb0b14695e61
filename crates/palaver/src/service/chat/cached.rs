//! The response cache at the point where the provider is asked: a deterministic request
//! (`temperature: 0`) that the cache knows is answered from it, in one piece or replayed as
//! chunks through the normal stream (so every transport sees the usual events); a reply
//! that ended normally (`stop`) is kept for the next one. A regenerate (the user message is
//! stored already) asks the provider again, and keeps its reply. `cache: false` on the
//! request (`Cache-Control: no-cache` on REST) skips the cache both ways.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;

use super::ChatService;
use super::turn::Turn;
use crate::providers::{ChatCompletion, ChatStream, ProviderError, StreamEvent};
use crate::service::cache::{self, CachedReply, ResponseCache};

impl ChatService {
    /// The cache and the turn's key in it, when the cache may serve or keep its reply.
    fn cache_for(&self, turn: &Turn<'_>) -> Option<(Arc<ResponseCache>, String)> {
        let cache = self.cache.as_ref().filter(|_| turn.cache)?;
        let key = cache::key(turn.provider.name(), &turn.request)?;
        Some((cache.clone(), key))
    }

    /// The cached reply of the turn, when reading the cache is allowed and it has one.
    async fn hit(&self, turn: &Turn<'_>, cache: &ResponseCache, key: &str) -> Option<CachedReply> {
        if !turn.new_user_message {
            return None;
        }
        let hit = cache.get(key).await?;
        turn.cached.store(true, Ordering::Relaxed);
        Some(hit)
    }

    /// The provider's answer in one piece, or the cache's.
    pub(super) async fn complete_turn(
        &self,
        turn: &Turn<'_>,
    ) -> Result<ChatCompletion, ProviderError> {
        let Some((cache, key)) = self.cache_for(turn) else {
            return turn.provider.chat(&turn.request).await;
        };
        if let Some(hit) = self.hit(turn, &cache, &key).await {
            return Ok(ChatCompletion {
                usage: hit.usage(),
                content: hit.content,
                finish_reason: hit.finish_reason,
            });
        }
        let done = turn.provider.chat(&turn.request).await?;
        if done.finish_reason == "stop" {
            cache.put(&key, CachedReply::of(&done)).await;
        }
        Ok(done)
    }

    /// The provider's stream, or the cache's reply replayed as one.
    pub(super) async fn open_stream(&self, turn: &Turn<'_>) -> Result<ChatStream, ProviderError> {
        let Some((cache, key)) = self.cache_for(turn) else {
            return turn.provider.chat_stream(&turn.request).await;
        };
        if let Some(hit) = self.hit(turn, &cache, &key).await {
            return Ok(replay(hit));
        }
        let stream = turn.provider.chat_stream(&turn.request).await?;
        let tasks = self.tasks.clone();
        let mut text = String::new();
        Ok(Box::pin(stream.map(move |item| {
            match &item {
                Ok(StreamEvent::Delta(delta)) => text.push_str(delta),
                Ok(StreamEvent::Finish {
                    finish_reason,
                    usage,
                }) if finish_reason == "stop" => {
                    let reply = CachedReply {
                        content: std::mem::take(&mut text),
                        finish_reason: finish_reason.clone(),
                        prompt_tokens: usage.map(|u| u.prompt_tokens),
                        completion_tokens: usage.map(|u| u.completion_tokens),
                    };
                    let (cache, key) = (cache.clone(), key.clone());
                    tasks.spawn(async move { cache.put(&key, reply).await });
                }
                Ok(StreamEvent::Finish { .. }) | Err(_) => {}
            }
            item
        })))
    }
}

/// A cached reply as a stream: a chunk per word (with the space after it), then its end.
fn replay(hit: CachedReply) -> ChatStream {
    let usage = hit.usage();
    let chunks: Vec<_> = hit
        .content
        .split_inclusive(char::is_whitespace)
        .map(|piece| Ok(StreamEvent::Delta(piece.to_owned())))
        .collect();
    let end = Ok(StreamEvent::Finish {
        finish_reason: hit.finish_reason,
        usage,
    });
    Box::pin(futures::stream::iter(chunks).chain(futures::stream::once(async { end })))
}
