//! AI providers: one enum, one variant per provider, each module owning its wire types.
//!
//! Dispatch is an exhaustive `match`, so a new provider does not compile until every
//! capability (chat, streaming, embeddings, model list) is decided for it.

pub mod anthropic;
pub mod gemini;
mod http;
pub mod mock;
pub mod openai;
mod routing;
mod sse;
pub mod tokens;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;

pub use http::HttpSettings;
pub use routing::{Providers, RouteError, Routed};

/// The system prompt of a title request (`generate-title`). Its user message is
/// [`TITLE_MESSAGE_LABEL`] and the conversation's first message on one line, then the reply's
/// beginning; the built-in mock recognises the prompt and answers with a title made from that
/// first message.
pub const TITLE_PROMPT: &str = "You name conversations. Reply with a title of 3 to 6 words \
     for the conversation below, in its language: no quotes, no trailing punctuation, nothing \
     else.";

/// What the first line of a title request's user message starts with.
pub const TITLE_MESSAGE_LABEL: &str = "First message: ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

/// One chat call, already routed: `model` is the name the provider knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// System messages first, then the history oldest first, ending with the user's message.
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    pub temperature: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatCompletion {
    pub content: String,
    /// Normalised: `stop`, `length`, `content_filter`, or the provider's own word.
    pub finish_reason: String,
    /// What the provider reported, when it did.
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// New text only (never empty).
    Delta(String),
    /// The last event of a stream that ended normally.
    Finish {
        finish_reason: String,
        usage: Option<Usage>,
    },
}

pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    pub model: String,
    pub inputs: Vec<String>,
    /// The vectors' length, for models that can shorten them (`text-embedding-3-*`).
    pub dimensions: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: Option<u32>,
}

/// What went wrong upstream. `Display` never includes an upstream body or a key:
/// details are kept in `detail` fields for debug-level logs only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("provider rate limited the request")]
    RateLimited {
        retry_after: Option<Duration>,
        detail: String,
    },
    #[error("provider answered with status {status}")]
    Status { status: u16, detail: String },
    #[error("provider did not answer in time")]
    Timeout { detail: String },
    #[error("could not reach the provider")]
    Connect { detail: String },
    #[error("provider sent a response Palaver could not read")]
    Protocol { detail: String },
    #[error("the stream from the provider ended before it finished")]
    StreamCut { detail: String },
    #[error("{0} is not supported by this provider")]
    Unsupported(&'static str),
}

impl ProviderError {
    /// Whether a new attempt may succeed (429, 5xx, connection failures, timeouts before any byte).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::RateLimited { .. }
            | ProviderError::Connect { .. }
            | ProviderError::Timeout { .. } => true,
            ProviderError::Status { status, .. } => *status >= 500,
            ProviderError::Protocol { .. }
            | ProviderError::StreamCut { .. }
            | ProviderError::Unsupported(_) => false,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, ProviderError::Timeout { .. })
    }

    /// Upstream detail for debug logs (never for clients).
    pub fn detail(&self) -> &str {
        match self {
            ProviderError::RateLimited { detail, .. }
            | ProviderError::Status { detail, .. }
            | ProviderError::Timeout { detail }
            | ProviderError::Connect { detail }
            | ProviderError::Protocol { detail }
            | ProviderError::StreamCut { detail } => detail,
            ProviderError::Unsupported(what) => what,
        }
    }
}

/// A configured provider.
pub enum Provider {
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    Gemini(gemini::Gemini),
    Mock(mock::Mock),
}

impl Provider {
    pub fn name(&self) -> &'static str {
        match self {
            Provider::OpenAi(p) => p.name(),
            Provider::Anthropic(_) => "anthropic",
            Provider::Gemini(_) => "gemini",
            Provider::Mock(_) => "mock",
        }
    }

    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        match self {
            Provider::OpenAi(p) => p.chat(request).await,
            Provider::Anthropic(p) => p.chat(request).await,
            Provider::Gemini(p) => p.chat(request).await,
            Provider::Mock(p) => p.chat(request).await,
        }
    }

    /// Starts a stream. Retries happen only before the first event is returned; dropping
    /// the stream closes the upstream connection.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        match self {
            Provider::OpenAi(p) => p.chat_stream(request).await,
            Provider::Anthropic(p) => p.chat_stream(request).await,
            Provider::Gemini(p) => p.chat_stream(request).await,
            Provider::Mock(p) => p.chat_stream(request).await,
        }
    }

    pub async fn embed(&self, request: &EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        match self {
            Provider::OpenAi(p) => p.embed(request).await,
            Provider::Anthropic(_) => Err(ProviderError::Unsupported("embeddings")),
            Provider::Gemini(_) => Err(ProviderError::Unsupported("embeddings")),
            Provider::Mock(p) => p.embed(request).await,
        }
    }

    /// The model list, used by `palaver check`.
    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        match self {
            Provider::OpenAi(p) => p.list_models().await,
            Provider::Anthropic(p) => p.list_models().await,
            Provider::Gemini(p) => p.list_models().await,
            Provider::Mock(p) => Ok(p.list_models()),
        }
    }
}
