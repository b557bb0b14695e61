//! Streams running in this process: one per conversation at a time, stoppable by their owner.
//! (A live stream's own task is the one state that belongs to one process.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Default)]
pub struct ActiveStreams {
    /// By conversation: the owner, the run, and what stops it.
    inner: Mutex<HashMap<Uuid, (String, Uuid, CancellationToken)>>,
}

/// Holds a conversation's stream slot; released on drop.
pub struct StreamClaim {
    streams: Arc<ActiveStreams>,
    conversation_id: Uuid,
    pub cancel: CancellationToken,
}

impl Drop for StreamClaim {
    fn drop(&mut self) {
        if let Ok(mut map) = self.streams.inner.lock() {
            map.remove(&self.conversation_id);
        }
    }
}

impl ActiveStreams {
    /// Claims the conversation for a new stream (run `run_id`); `None` when one is already
    /// running.
    pub fn claim(
        self: &Arc<Self>,
        conversation_id: Uuid,
        user_id: &str,
        run_id: Uuid,
    ) -> Option<StreamClaim> {
        let mut map = self.inner.lock().ok()?;
        if map.contains_key(&conversation_id) {
            return None;
        }
        let cancel = CancellationToken::new();
        map.insert(
            conversation_id,
            (user_id.to_owned(), run_id, cancel.clone()),
        );
        Some(StreamClaim {
            streams: self.clone(),
            conversation_id,
            cancel,
        })
    }

    /// Stops the user's streams (one conversation, or all of them); returns how many.
    pub fn stop(&self, user_id: &str, conversation_id: Option<Uuid>) -> usize {
        let Ok(map) = self.inner.lock() else { return 0 };
        let mut stopped = 0;
        for (id, (owner, _, cancel)) in map.iter() {
            if owner == user_id && conversation_id.is_none_or(|c| c == *id) {
                cancel.cancel();
                stopped += 1;
            }
        }
        stopped
    }

    /// Stops every stream of this process (shutdown).
    pub fn stop_all(&self) {
        if let Ok(map) = self.inner.lock() {
            map.values().for_each(|(_, _, cancel)| cancel.cancel());
        }
    }

    /// Stops the user's run `run_id` if it runs in this process; false when it does not.
    pub fn stop_run(&self, user_id: &str, run_id: Uuid) -> bool {
        let Ok(map) = self.inner.lock() else {
            return false;
        };
        map.values()
            .find(|(owner, run, _)| owner == user_id && *run == run_id)
            .map(|(_, _, cancel)| cancel.cancel())
            .is_some()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_per_conversation_and_owner_only_stops() {
        let streams = Arc::new(ActiveStreams::default());
        let (a, run) = (Uuid::now_v7(), Uuid::now_v7());
        let claim = streams.claim(a, "alice", run).unwrap();
        assert!(streams.claim(a, "alice", Uuid::now_v7()).is_none());
        assert!(!streams.stop_run("mallory", run));
        assert_eq!(streams.stop("mallory", None), 0);
        assert!(!claim.cancel.is_cancelled());
        assert_eq!(streams.stop("alice", Some(a)), 1);
        assert!(claim.cancel.is_cancelled());
        drop(claim);
        let again = streams.claim(a, "alice", run).unwrap();
        assert!(streams.stop_run("alice", run), "a run is stopped by its id");
        assert!(again.cancel.is_cancelled());
        drop(again);
        assert!(streams.is_empty());
    }
}
