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

mod attach;
mod cached;
mod complete;
mod context;
mod exchange;
mod input;
mod reply;
mod run;
pub mod runs;
mod scope;
mod stream;
mod template;
mod turn;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::{Admission, AutoTitle, ConversationService, NewConversationInput, ServiceError};
use crate::config::DisconnectPolicy;
use crate::pricing::PriceTable;
use crate::providers::{Providers, Usage};
use crate::store::{Conversation, Message, Role, Store};
use runs::{EventEncoder, Logged, RunLog};

pub use complete::{Completion, CompletionEvent, CompletionInput, CompletionStream};
pub use input::ChatInput;
pub use scope::{JobScope, ReplyGuard, is_from_job, job_reply_id};
pub use stream::StreamHandle;

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

/// Where a transport receives events, each with its encoded form (`logged`: the run's
/// sequence number, the event's name and JSON payload). Emitting must not block.
pub trait ChatSink: Send + Sync + 'static {
    fn emit(&self, event: ChatEvent<'_>, logged: &Logged);

    /// Resolves once the client behind the sink has gone away; with
    /// `STREAM_ON_DISCONNECT=stop` that stops the exchange. Never, by default.
    fn closed(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// A sink that ignores everything (plain REST).
pub struct NoSink;

impl ChatSink for NoSink {
    fn emit(&self, _: ChatEvent<'_>, _: &Logged) {}
}

#[derive(Debug, Clone)]
pub struct ChatOutcome {
    /// The run this exchange was.
    pub run_id: Uuid,
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
    /// Where in the conversation's tree the exchange writes.
    pub anchor: Anchor,
}

/// Where an exchange writes in its conversation's tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Anchor {
    /// A new user message after `ChatInput::parent_message_id`, else after the active leaf.
    #[default]
    Latest,
    /// A new first user message, beside the conversation's first (an edit of it, rerun).
    Root,
    /// No new user message: a new reply to this stored one (a regenerate; a job's retry).
    Reply(Uuid),
}

/// An admitted exchange: its conversation, claimed for it, and where it writes. A new
/// conversation (`created`) is not stored yet: it is stored with the exchange's first
/// message, in the same transaction, so a refused exchange leaves nothing behind.
struct Admitted {
    conversation: Conversation,
    created: bool,
    claim: super::StreamClaim,
    place: Place,
    /// The run this exchange is (stored once its user message is).
    run_id: Uuid,
    /// The prompt template it applies (`templateId`), rendered.
    template: Option<super::AppliedTemplate>,
}

/// Where an admitted exchange writes, resolved.
enum Place {
    /// A new user message after this one (`None`: a first message).
    After(Option<Uuid>),
    /// A new reply to this stored user message.
    Reply(Message),
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
    /// The streamed runs' events, for clients that resume.
    pub runs: Arc<RunLog>,
    /// How events are encoded (the protocol layer's wire form).
    pub encoder: Arc<dyn EventEncoder>,
    /// How long a run's producer holds it without renewing (`RUN_LEASE_SECS`).
    pub lease: Duration,
    /// How often a streaming reply is checkpointed to its row (`RUN_CHECKPOINT_MS`); `None`:
    /// never, only its last write stores it.
    pub checkpoint_every: Option<Duration>,
    /// Cancelled when this process gives up its exchanges still running (shutdown, past
    /// `SHUTDOWN_GRACE_SECS`): they end `interrupted`, their partial replies stored.
    pub interrupt: CancellationToken,
    /// The response cache (`RESPONSE_CACHE`); `None` when it is off.
    pub cache: Option<Arc<super::cache::ResponseCache>>,
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

    /// Gives up the exchanges still running in this process (shutdown past its grace): each
    /// stores its partial reply and ends `interrupted`.
    pub fn interrupt_all(&self) {
        self.interrupt.cancel();
        self.admission.streams().stop_all();
    }

    /// One exchange, answered in one piece. It runs in a tracked task of its own: a client
    /// that goes away mid-call does not cancel it, so the reply (or the failure) and its
    /// usage are still stored.
    pub async fn chat(
        &self,
        user_id: &str,
        input: ChatInput,
        options: ExchangeOptions,
    ) -> Result<ChatOutcome, ChatFailure> {
        let admitted = self.admit(user_id, &input, options.anchor).await?;
        let chat = self.clone();
        let user = user_id.to_owned();
        self.tasks
            .spawn(async move {
                let (run_id, conversation_id) = (admitted.run_id, admitted.conversation.id);
                let exchange = chat.exchange(&user, admitted, input, options, stream::Mode::Plain);
                let interruptible = async {
                    tokio::select! {
                        result = exchange => result,
                        () = chat.interrupt.cancelled() => Err(ChatFailure {
                            error: ServiceError::Interrupted,
                            conversation_id: Some(conversation_id),
                        }),
                    }
                };
                let result = chat.leased(run_id, interruptible).await;
                chat.end_run(run_id, &result, 0).await;
                result
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
        let admitted = self.admit(user_id, &input, options.anchor).await?;
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
    /// drafts a new one) and where in it the exchange writes, and claims it, so that one
    /// exchange at a time writes into it. Nothing is stored here.
    async fn admit(
        &self,
        user_id: &str,
        input: &ChatInput,
        anchor: Anchor,
    ) -> Result<Admitted, ChatFailure> {
        let attribution = &input.attribution;
        self.admission.quota_open_for(user_id, attribution).await?;
        let template = self.template_of(user_id, input).await?;
        let (mut conversation, created, place) = self.place(user_id, input, anchor).await?;
        let run_id = Uuid::now_v7();
        let conversation_id = Some(conversation.id);
        let failed = move |error| ChatFailure {
            error,
            conversation_id,
        };
        let claim = self
            .admission
            .claim(conversation.id, user_id, run_id)
            .map_err(failed)?;
        if let Some(template) = &template {
            self.record_template(user_id, &mut conversation, created, template)
                .await
                .map_err(failed)?;
        }
        Ok(Admitted {
            conversation,
            created,
            claim,
            place,
            run_id,
            template,
        })
    }

    /// The conversation of an exchange (drafted when it names none) and where it writes.
    /// A message named as the parent or the one to answer must be the caller's, and in the
    /// conversation named (404 otherwise).
    async fn place(
        &self,
        user_id: &str,
        input: &ChatInput,
        anchor: Anchor,
    ) -> Result<(Conversation, bool, Place), ServiceError> {
        let conversations = ConversationService::new(self.store.clone());
        let named = match anchor {
            Anchor::Reply(id) => Some(id),
            Anchor::Latest => input.parent_message_id,
            Anchor::Root => None,
        };
        let anchor_message = match named {
            Some(id) => {
                let message = self.store.get_message(user_id, id).await?;
                let message = message
                    .filter(|m| input.conversation_id.is_none_or(|c| c == m.conversation_id))
                    .ok_or(ServiceError::NotFound("Message"))?;
                Some(message)
            }
            None => None,
        };
        let conversation_id = input
            .conversation_id
            .or(anchor_message.as_ref().map(|m| m.conversation_id));
        let Some(conversation_id) = conversation_id else {
            let new = exchange::untitled(input);
            let drafted = ConversationService::draft(user_id, new).created();
            return Ok((drafted, true, Place::After(None)));
        };
        let conversation = conversations.get(user_id, conversation_id).await?;
        let place = match (anchor, anchor_message) {
            (Anchor::Reply(_), Some(message)) if message.role == Role::User => {
                Place::Reply(message)
            }
            (Anchor::Reply(_), _) => {
                return Err(ServiceError::Invalid {
                    field: "messageId".into(),
                    message: "only a user message can be answered again".to_owned(),
                });
            }
            (Anchor::Root, _) => Place::After(None),
            (Anchor::Latest, Some(parent)) => Place::After(Some(parent.id)),
            (Anchor::Latest, None) => Place::After(conversation.active_leaf_id),
        };
        Ok((conversation, false, place))
    }
}
