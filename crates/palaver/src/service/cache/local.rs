//! The in-process cache: a bounded LRU (`CACHE_MAX_ENTRIES`) whose entries expire
//! (`CACHE_TTL_SECS`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::CachedReply;

struct Entry {
    reply: CachedReply,
    expires: Instant,
    /// When it was last used (a counter): the smallest is evicted first.
    used: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    /// The keys by last use, oldest first.
    order: BTreeMap<u64, String>,
    clock: u64,
}

impl Lru {
    fn touch(&mut self, key: &str) -> u64 {
        self.clock += 1;
        let now = self.clock;
        if let Some(entry) = self.entries.get_mut(key) {
            self.order.remove(&entry.used);
            entry.used = now;
            self.order.insert(now, key.to_owned());
        }
        now
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.used);
        }
    }
}

pub struct LocalCache {
    lru: Mutex<Lru>,
    max_entries: usize,
    ttl: Duration,
}

impl LocalCache {
    pub fn new(max_entries: usize, ttl: Duration) -> LocalCache {
        LocalCache {
            lru: Mutex::new(Lru::default()),
            max_entries: max_entries.max(1),
            ttl,
        }
    }

    pub fn get(&self, key: &str) -> Option<CachedReply> {
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        let expired = lru.entries.get(key)?.expires <= Instant::now();
        if expired {
            lru.remove(key);
            return None;
        }
        lru.touch(key);
        lru.entries.get(key).map(|e| e.reply.clone())
    }

    pub fn put(&self, key: &str, reply: CachedReply) {
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        lru.remove(key);
        let used = lru.touch(key);
        let expires = Instant::now() + self.ttl;
        lru.entries.insert(
            key.to_owned(),
            Entry {
                reply,
                expires,
                used,
            },
        );
        lru.order.insert(used, key.to_owned());
        while lru.entries.len() > self.max_entries {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.entries.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.lru.lock().map_or(0, |l| l.entries.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> CachedReply {
        CachedReply {
            content: text.into(),
            finish_reason: "stop".into(),
            prompt_tokens: None,
            completion_tokens: None,
        }
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = LocalCache::new(2, Duration::from_secs(60));
        cache.put("a", reply("A"));
        cache.put("b", reply("B"));
        assert_eq!(cache.get("a").unwrap().content, "A");
        cache.put("c", reply("C"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert_eq!(cache.get("a").unwrap().content, "A");
        assert_eq!(cache.get("c").unwrap().content, "C");
        cache.put("c", reply("C2"));
        assert_eq!(cache.get("c").unwrap().content, "C2");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn entries_expire() {
        let cache = LocalCache::new(10, Duration::ZERO);
        cache.put("a", reply("A"));
        assert!(cache.get("a").is_none());
        assert!(cache.is_empty());
    }
}
