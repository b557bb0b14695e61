//! Events for a user's connections (`job:*`, and later others), on whichever instance they
//! are. The Socket.IO gateway provides the emitter once it is attached; until then (and in a
//! process without a gateway, such as tests), events reach only in-process observers.

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::value::{RawValue, to_raw_value};
use tokio::sync::broadcast;

/// Delivers an event to every connection of a user (the gateway's rooms).
pub trait Emitter: Send + Sync + 'static {
    fn to_user<'a>(
        &'a self,
        user_id: &'a str,
        event: &'static str,
        payload: &'a RawValue,
    ) -> BoxFuture<'a, ()>;
}

/// A user event, as in-process observers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEvent {
    pub user_id: String,
    pub name: &'static str,
    pub payload: serde_json::Value,
}

/// The late-bound emitter and the in-process observers. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    emitter: Arc<OnceLock<Arc<dyn Emitter>>>,
    observers: broadcast::Sender<UserEvent>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            emitter: Arc::default(),
            observers: broadcast::channel(256).0,
        }
    }
}

impl Notifier {
    /// Sets the emitter (once; later calls are ignored).
    pub fn attach(&self, emitter: Arc<dyn Emitter>) {
        let _ = self.emitter.set(emitter);
    }

    /// The attached emitter, if any.
    pub fn emitter(&self) -> Option<&Arc<dyn Emitter>> {
        self.emitter.get()
    }

    /// Every event this process emits, for in-process observers (tests, operators).
    pub fn subscribe(&self) -> broadcast::Receiver<UserEvent> {
        self.observers.subscribe()
    }

    /// Emits `event` to `user_id`'s connections and observers.
    pub async fn to_user<T: Serialize + ?Sized>(
        &self,
        user_id: &str,
        event: &'static str,
        payload: &T,
    ) {
        let Ok(raw) = to_raw_value(payload) else {
            tracing::warn!(event, "could not serialize an event");
            return;
        };
        if let Some(emitter) = self.emitter.get() {
            emitter.to_user(user_id, event, &raw).await;
        }
        // Observers get a `Value`, built only when there is one.
        if self.observers.receiver_count() > 0
            && let Ok(payload) = serde_json::from_str(raw.get())
        {
            let _ = self.observers.send(UserEvent {
                user_id: user_id.to_owned(),
                name: event,
                payload,
            });
        }
    }
}
