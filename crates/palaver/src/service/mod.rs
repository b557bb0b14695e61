//! The service layer: the one place that creates ids and timestamps and decides what is
//! stored. REST handlers, the Socket.IO gateway and jobs all call into it.

pub mod chat;
mod conversations;
pub mod embeddings;
mod error;
pub mod streams;
mod usage;

pub use chat::{
    ChatDefaults, ChatEvent, ChatFailure, ChatInput, ChatMode, ChatOutcome, ChatService, ChatSink,
    NoSink, Prepared,
};
pub use conversations::{ConversationService, DEFAULT_TITLE, NewConversationInput, Page};
pub use embeddings::{EmbeddingOutcome, EmbeddingService};
pub use error::ServiceError;
pub use streams::{ActiveStreams, StreamClaim};
pub use usage::UsageService;
