//! Shared application state: cheap to clone, one per process (or per nested router).

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::auth::{JwtVerifier, KnownUsers};
use crate::config::Config;
use crate::gateway::BroadcasterSlot;
use crate::limits::{Quotas, RateLimiter};
use crate::service::{
    ActiveStreams, ChatService, ConversationService, EmbeddingService, UsageService,
};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub verifier: Arc<JwtVerifier>,
    pub known_users: Arc<KnownUsers>,
    pub conversations: ConversationService,
    pub chat: ChatService,
    pub embeddings: EmbeddingService,
    pub usage: UsageService,
    /// Streams running in this process (busy conversations, `chat:stop`).
    pub streams: Arc<ActiveStreams>,
    /// Work that outlives a request (streams whose client left); shutdown waits for it.
    pub tasks: TaskTracker,
    /// Emits to users' Socket.IO rooms (set once the gateway is attached).
    pub broadcaster: BroadcasterSlot,
    /// Per-user limit on the AI endpoints that cost money.
    pub limiter: Arc<RateLimiter>,
    /// Per-IP limit on failed authentications.
    pub auth_failures: Arc<RateLimiter>,
    pub quotas: Arc<Quotas>,
    /// Background jobs: enqueue and read (`crate::jobs`). \[jobs\]
    pub jobs: crate::jobs::Jobs,
}
