//! What the transports share: cheap to clone, one per process (or per nested router). Built
//! by `server::build_state`; it names services and their parts, never a transport.

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::service::chat::runs::RunService;
use crate::service::{
    Admission, ChatService, ConversationService, EmbeddingService, JobService, KeyService,
    ModelService, Notifier, TemplateService, TitleService, TransferService, TreeService,
    UsageService,
};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// Who is calling (REST middleware and Socket.IO handshake alike).
    pub auth: Arc<Authenticator>,
    /// Rate limit, quota and the busy rule.
    pub admission: Admission,
    pub conversations: ConversationService,
    /// Runs: their state and events, for clients that resume.
    pub runs: RunService,
    /// Branches, paths, edits and deletes of messages.
    pub tree: TreeService,
    /// Forks and imports: conversations copied whole, under new ids.
    pub transfer: TransferService,
    pub chat: ChatService,
    /// The users' prompt templates.
    pub templates: TemplateService,
    pub embeddings: EmbeddingService,
    /// API keys: minted, listed, revoked.
    pub keys: KeyService,
    /// Every configured provider's models (`GET /v1/models`).
    pub models: ModelService,
    /// Conversation titles (the `generate-title` job's work).
    pub titles: TitleService,
    pub usage: UsageService,
    pub jobs: JobService,
    /// Events for users' connections (the gateway's emitter, once attached).
    pub notifier: Notifier,
    /// Work that outlives a request (exchanges whose client left); shutdown waits for it.
    pub tasks: TaskTracker,
}
