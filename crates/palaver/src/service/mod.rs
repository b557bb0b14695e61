//! The service layer: the one place that creates ids and timestamps, decides what is stored
//! and admits what costs money. REST, SSE, Socket.IO and the job workers all call into it;
//! it knows none of them.

mod admission;
pub mod cache;
pub mod chat;
mod conversations;
pub mod embeddings;
mod error;
pub mod jobs;
mod keys;
mod models;
mod notify;
pub mod streams;
mod templates;
mod titles;
mod transfer;
mod tree;
mod usage;

pub use admission::Admission;
pub use chat::{
    Anchor, ChatDefaults, ChatEvent, ChatFailure, ChatInput, ChatOutcome, ChatParts, ChatService,
    ChatSink, Completion, CompletionEvent, CompletionInput, CompletionStream, ExchangeOptions,
    JobScope, NoSink, ReplyGuard, StreamHandle,
};
pub use conversations::{ConversationService, DEFAULT_TITLE, NewConversationInput, Page};
pub use embeddings::{EmbedInput, EmbeddingOutcome, EmbeddingService};
pub use error::ServiceError;
pub use jobs::{JobRequest, JobService};
pub use keys::{Attribution, KeyService, NewKeyInput};
pub use models::{ModelInfo, ModelService};
pub use notify::{Emitter, Notifier, UserEvent};
pub use streams::{ActiveStreams, StreamClaim};
pub use templates::{AppliedTemplate, TemplatePatch, TemplateService};
pub use titles::{AutoTitle, TITLE_MAX_CHARS, TitleQueue, TitleService, clean_title};
pub use transfer::{ImportInput, ImportMessage, TransferService};
pub use tree::{CONVERSATION_BRANCH, PathMessage, PathPage, Regeneration, TreeService};
pub use usage::{UsageReport, UsageService};
