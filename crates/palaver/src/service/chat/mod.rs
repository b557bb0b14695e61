//! The chat pipeline, shared by REST, SSE, Socket.IO and jobs: admit the exchange (quota,
//! conversation and its ownership, one exchange per conversation at a time), store the user
//! message, build the context within the token budget, call the provider, emit chunks to a
//! sink, store the reply and its usage.
//!
//! Two entries: [`ChatService::chat`] answers in one piece (`POST /ai/chat`), and
//! [`ChatService::start_stream`] streams into a [`ChatSink`] (SSE, Socket.IO, and the
//! `generate-completion` job). Both run the exchange in a tracked task of its own, so a
//! client that goes away does not lose the reply. The first reply of an untitled
//! conversation queues its `generate-title` job (`AUTO_TITLE`).

mod context;
mod exchange;
mod reply;
mod scope;
mod stream;

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::{Admission, AutoTitle, ConversationService, NewConversationInput, ServiceError};
use crate::config::DisconnectPolicy;
use crate::pricing::PriceTable;
use crate::providers::{Providers, Usage};
use crate::store::{Conversation, Message, Store};

pub use scope::{JobScope, ReplyGuard, is_from_job, job_reply_id};
pub use stream::StreamHandle;

/// One exchange as every transport asks for it (API.md's ChatRequest, validated). Also the
/// stored `data` of a `generate-completion` job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatInput {
    pub conversation_id: Option<Uuid>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
}

/// What the pipeline tells a transport, in order: the conversation (when created), the
/// stored user message, the chunks, then exactly one of `Finished` or `Failed`.
#[derive(Debug)]
pub enum ChatEvent<'a> {
    /// Only when the exchange created the conversation.
    ConversationCreated(&'a Conversation),
    UserMessage(&'a Message),
    /// One non-empty delta of the reply; `content` is the new text only.
    Chunk {
        conversation_id: Uuid,
        message_id: Uuid,
        index: u32,
        content: &'a str,
    },
    /// The reply is stored (complete, or partial when the stream was stopped).
    Finished(&'a ChatOutcome),
    Failed(&'a ChatFailure),
}

/// Where a transport receives events. Emitting must not block.
pub trait ChatSink: Send + Sync + 'static {
    fn emit(&self, event: ChatEvent<'_>);

    /// Resolves once the client behind the sink has gone away; with
    /// `STREAM_ON_DISCONNECT=stop` that stops the exchange. Never, by default.
    fn closed(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// A sink that ignores everything (plain REST).
pub struct NoSink;

impl ChatSink for NoSink {
    fn emit(&self, _: ChatEvent<'_>) {}
}

#[derive(Debug, Clone)]
pub struct ChatOutcome {
    pub conversation: Conversation,
    pub created_conversation: bool,
    pub user_message: Message,
    pub reply: Message,
    pub model: String,
    pub finish_reason: String,
    pub usage: Usage,
    /// True when the stream was cancelled and the reply is partial.
    pub stopped: bool,
}

impl ChatOutcome {
    pub fn total_tokens(&self) -> u32 {
        self.usage.prompt_tokens + self.usage.completion_tokens
    }
}

/// A failed exchange, with the conversation it concerned when one was resolved.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ChatFailure {
    pub error: ServiceError,
    pub conversation_id: Option<Uuid>,
}

impl<E: Into<ServiceError>> From<E> for ChatFailure {
    fn from(error: E) -> Self {
        ChatFailure {
            error: error.into(),
            conversation_id: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChatDefaults {
    pub model: String,
    pub max_tokens: u32,
    pub temperature: f32,
}

/// How an exchange is run beyond its input.
#[derive(Clone, Default)]
pub struct ExchangeOptions {
    /// The exchange of a `generate-completion` job: idempotent across its attempts.
    pub job: Option<JobScope>,
}

/// An admitted exchange: its conversation, claimed for it. A new conversation (`created`) is
/// not stored yet: it is stored with the exchange's first message, in the same transaction,
/// so a refused exchange leaves nothing behind.
struct Admitted {
    conversation: Conversation,
    created: bool,
    claim: super::StreamClaim,
}

/// The chat pipeline. Cheap to clone: its parts are shared.
#[derive(Clone)]
pub struct ChatService {
    parts: Arc<ChatParts>,
}

/// What the pipeline is built from.
pub struct ChatParts {
    pub store: Arc<dyn Store>,
    pub providers: Arc<Providers>,
    pub prices: Arc<PriceTable>,
    pub admission: Admission,
    pub defaults: ChatDefaults,
    /// Exchanges outlive their requests; shutdown waits for them.
    pub tasks: TaskTracker,
    pub on_disconnect: DisconnectPolicy,
    /// Queues a title job after the first exchange of an untitled conversation; `None` with
    /// `AUTO_TITLE=false`.
    pub titles: Option<AutoTitle>,
}

impl std::ops::Deref for ChatService {
    type Target = ChatParts;

    fn deref(&self) -> &ChatParts {
        &self.parts
    }
}

impl ChatService {
    pub fn new(parts: ChatParts) -> ChatService {
        ChatService {
            parts: Arc::new(parts),
        }
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    pub fn defaults(&self) -> &ChatDefaults {
        &self.defaults
    }

    /// One exchange, answered in one piece. It runs in a tracked task of its own: a client
    /// that goes away mid-call does not cancel it, so the reply (or the failure) and its
    /// usage are still stored.
    pub async fn chat(&self, user_id: &str, input: ChatInput) -> Result<ChatOutcome, ChatFailure> {
        let admitted = self.admit(user_id, &input).await?;
        let chat = self.clone();
        let user = user_id.to_owned();
        self.tasks
            .spawn(async move {
                let options = ExchangeOptions::default();
                chat.exchange(&user, admitted, input, options, stream::Mode::Plain)
                    .await
            })
            .await
            .map_err(|e| ServiceError::Internal(format!("chat task: {e}")))?
    }

    /// The streaming entry of every transport: admits the exchange (an `Err` means nothing
    /// was started or stored), then streams it into `sink` from a tracked task of its own,
    /// ending with `Finished` or `Failed`. The handle stops it or waits for its end.
    pub async fn start_stream(
        &self,
        user_id: &str,
        input: ChatInput,
        sink: Arc<dyn ChatSink>,
        options: ExchangeOptions,
    ) -> Result<StreamHandle, ChatFailure> {
        let admitted = self.admit(user_id, &input).await?;
        Ok(stream::launch(
            self.clone(),
            user_id,
            admitted,
            input,
            sink,
            options,
        ))
    }

    /// Admits an exchange: refuses a user whose quota is spent, resolves the conversation (or
    /// drafts a new one) and claims it, so that one exchange at a time writes into it.
    /// Nothing is stored here.
    async fn admit(&self, user_id: &str, input: &ChatInput) -> Result<Admitted, ChatFailure> {
        self.admission.quota_open(user_id).await?;
        let conversations = ConversationService::new(self.store.clone());
        let (conversation, created) = match input.conversation_id {
            Some(id) => (conversations.get(user_id, id).await?, false),
            None => {
                let new = exchange::untitled(input);
                (ConversationService::draft(user_id, new).created(), true)
            }
        };
        let claim = self
            .admission
            .claim(conversation.id, user_id)
            .map_err(|error| ChatFailure {
                error,
                conversation_id: Some(conversation.id),
            })?;
        Ok(Admitted {
            conversation,
            created,
            claim,
        })
    }
}
