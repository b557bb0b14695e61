//! The chat pipeline, shared by REST, SSE, Socket.IO and jobs: resolve the conversation and
//! its ownership, store the user message, build the context within the token budget, call
//! the provider, emit chunks to a sink, store the reply and its usage.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{ConversationService, DEFAULT_TITLE, NewConversationInput, ServiceError};
use crate::limits::Quotas;
use crate::pricing::PriceTable;
use crate::providers::tokens;
use crate::providers::{
    ChatMessage, ChatRequest, ChatRole, ProviderError, Providers, StreamEvent, Usage,
};
use crate::store::{self, Conversation, Message, Role, Store, StoreError, UsageRecord};

/// How many stored messages are considered for the context before trimming by tokens.
const HISTORY_WINDOW: u64 = 500;

#[derive(Debug, Clone, Default)]
pub struct ChatInput {
    pub conversation_id: Option<Uuid>,
    pub message: String,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub system_prompt: Option<String>,
}

/// What the pipeline tells a transport while it runs. The end of an exchange is the
/// returned [`ChatOutcome`] or [`ChatFailure`].
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
}

/// Where a transport receives events. Emitting must not block.
pub trait ChatSink: Send + Sync {
    fn emit(&self, event: ChatEvent<'_>);
}

/// A sink that ignores everything (plain REST, jobs).
pub struct NoSink;

impl ChatSink for NoSink {
    fn emit(&self, _: ChatEvent<'_>) {}
}

pub enum ChatMode<'a> {
    /// One upstream call, one answer.
    Plain,
    /// Streamed upstream; chunks go to the sink; cancelling stops upstream at once and
    /// stores the partial reply with `metadata.stopped = true`.
    Stream {
        sink: &'a dyn ChatSink,
        cancel: CancellationToken,
    },
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

/// An admitted exchange and its conversation. A new conversation (`created`) is not stored
/// yet: it is stored with the exchange's first message, in the same transaction, so a
/// refused exchange leaves nothing behind.
pub struct Prepared {
    pub conversation: Conversation,
    pub created: bool,
}

#[derive(Clone)]
pub struct ChatService {
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    prices: Arc<PriceTable>,
    quotas: Arc<Quotas>,
    conversations: ConversationService,
    defaults: ChatDefaults,
}

impl ChatService {
    pub fn new(
        store: Arc<dyn Store>,
        providers: Arc<Providers>,
        prices: Arc<PriceTable>,
        quotas: Arc<Quotas>,
        defaults: ChatDefaults,
    ) -> ChatService {
        let conversations = ConversationService::new(store.clone());
        ChatService {
            store,
            providers,
            prices,
            quotas,
            conversations,
            defaults,
        }
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// Admits an exchange: refuses a user whose quota is spent and resolves the conversation,
    /// or drafts a new one. Split from [`Self::run`] so transports can claim the conversation
    /// before streaming into it. Nothing is stored here.
    pub async fn prepare(&self, user_id: &str, input: &ChatInput) -> Result<Prepared, ChatFailure> {
        drop(
            self.quotas
                .reserve(user_id, 0)
                .await
                .map_err(ServiceError::from)?,
        );
        let (conversation, created) = match input.conversation_id {
            Some(id) => (self.conversations.get(user_id, id).await?, false),
            None => {
                let new = NewConversationInput {
                    title: Some(DEFAULT_TITLE.to_owned()),
                    system_prompt: input.system_prompt.clone(),
                    model: input.model.clone(),
                    metadata: None,
                };
                (ConversationService::draft(user_id, new).created(), true)
            }
        };
        Ok(Prepared {
            conversation,
            created,
        })
    }

    /// Runs one exchange admitted by [`Self::prepare`].
    pub async fn run(
        &self,
        user_id: &str,
        prepared: Prepared,
        input: ChatInput,
        mode: ChatMode<'_>,
    ) -> Result<ChatOutcome, ChatFailure> {
        let Prepared {
            conversation,
            created,
        } = prepared;
        let conversation_id = conversation.id;
        let result = self
            .exchange(user_id, conversation, created, input, mode)
            .await;
        result.map_err(|error| ChatFailure {
            error,
            conversation_id: Some(conversation_id),
        })
    }

    /// Admits and runs one exchange.
    pub async fn chat(
        &self,
        user_id: &str,
        input: ChatInput,
        mode: ChatMode<'_>,
    ) -> Result<ChatOutcome, ChatFailure> {
        let prepared = self.prepare(user_id, &input).await?;
        self.run(user_id, prepared, input, mode).await
    }

    async fn exchange(
        &self,
        user_id: &str,
        conversation: Conversation,
        created: bool,
        input: ChatInput,
        mode: ChatMode<'_>,
    ) -> Result<ChatOutcome, ServiceError> {
        let requested = input
            .model
            .clone()
            .or_else(|| conversation.model.clone())
            .unwrap_or_else(|| self.defaults.model.clone());
        let routed = self.providers.route(&requested)?;
        let provider = routed.provider;
        // The model that really answers: the mock says so rather than pretending to be gpt-4.
        let model = if self.providers.is_mock() {
            "mock".to_owned()
        } else {
            requested.clone()
        };
        let max_tokens = input.max_tokens.unwrap_or(self.defaults.max_tokens);
        let temperature = input.temperature.unwrap_or(self.defaults.temperature);
        let system_prompt = input
            .system_prompt
            .clone()
            .or_else(|| conversation.system_prompt.clone());

        // A conversation created for this exchange has no history to read.
        let history = if created {
            Vec::new()
        } else {
            self.store
                .recent_messages(conversation.id, HISTORY_WINDOW)
                .await?
        };
        let user_message = Message {
            id: Uuid::now_v7(),
            conversation_id: conversation.id,
            role: Role::User,
            tokens: tokens::count_text(&model, &input.message) as i64,
            content: input.message,
            model: None,
            metadata: json!({}),
            created_at: store::now(),
        };
        let messages = build_context(
            &model,
            system_prompt.as_deref(),
            &history,
            &user_message,
            max_tokens,
        )?;
        let counted_prompt = tokens::count_messages(&model, &messages) as u32;
        // Reserve the most this exchange can cost, so a parallel burst cannot overshoot the
        // quota by more than one request; held until the reply and its usage are stored.
        let _quota = self
            .quotas
            .reserve(user_id, i64::from(counted_prompt) + i64::from(max_tokens))
            .await?;
        // The user message is stored while the provider is asked (its write and the upstream
        // call overlap), and the exchange goes on only once it is: a reply or a failure is
        // never recorded without it, and a stream's events start with it (see `alongside`).
        let store_user_message = async {
            if created {
                self.store
                    .start_conversation(&conversation.as_new(), &user_message)
                    .await
            } else {
                self.store.append_message(&user_message, None).await
            }
        };
        let announce = |sink: &dyn ChatSink| {
            // Only now is the new conversation sure to stay.
            if created {
                sink.emit(ChatEvent::ConversationCreated(&conversation));
            }
            sink.emit(ChatEvent::UserMessage(&user_message));
        };

        let request = ChatRequest {
            model: routed.model.to_owned(),
            messages,
            max_tokens,
            temperature,
        };
        let reply_id = Uuid::now_v7();

        let (content, finish_reason, reported, stopped) = match mode {
            ChatMode::Plain => {
                match alongside(store_user_message, provider.chat(&request)).await? {
                    Ok(done) => (done.content, done.finish_reason, done.usage, false),
                    Err(err) => {
                        return Err(self
                            .upstream_failed(user_id, &conversation, &model, err)
                            .await);
                    }
                }
            }
            ChatMode::Stream { sink, cancel } => {
                let started = async {
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => None,
                        started = provider.chat_stream(&request) => Some(started),
                    }
                };
                let started = alongside(store_user_message, started).await?;
                announce(sink);
                let mut stream = match started {
                    None => None,
                    Some(Ok(stream)) => Some(stream),
                    Some(Err(err)) => {
                        return Err(self
                            .upstream_failed(user_id, &conversation, &model, err)
                            .await);
                    }
                };
                let mut content = String::new();
                let mut index = 0u32;
                let mut outcome: Result<(String, Option<Usage>), ProviderError> =
                    Ok(("stop".to_owned(), None));
                let mut stopped = stream.is_none();
                while let Some(s) = stream.as_mut() {
                    let next = tokio::select! {
                        biased;
                        () = cancel.cancelled() => { stopped = true; break; }
                        next = s.next() => next,
                    };
                    match next {
                        Some(Ok(StreamEvent::Delta(text))) => {
                            content.push_str(&text);
                            sink.emit(ChatEvent::Chunk {
                                conversation_id: conversation.id,
                                message_id: reply_id,
                                index,
                                content: &text,
                            });
                            index += 1;
                        }
                        Some(Ok(StreamEvent::Finish {
                            finish_reason,
                            usage,
                        })) => {
                            outcome = Ok((finish_reason, usage));
                            break;
                        }
                        Some(Err(err)) => {
                            outcome = Err(err);
                            break;
                        }
                        None => {
                            outcome = Err(ProviderError::StreamCut {
                                detail: "stream ended without a finish event".into(),
                            });
                            break;
                        }
                    }
                }
                // Dropping the stream closes the upstream connection: no more tokens are paid for.
                drop(stream);
                match outcome {
                    _ if stopped => (content, "stopped".to_owned(), None, true),
                    Ok((finish_reason, usage)) => (content, finish_reason, usage, false),
                    Err(err) if content.is_empty() => {
                        return Err(self
                            .upstream_failed(user_id, &conversation, &model, err)
                            .await);
                    }
                    Err(err) => {
                        // Keep what arrived: the partial reply is stored, then the failure is reported.
                        let usage = self.usage_of(&model, counted_prompt, &content, None);
                        let metadata = json!({"partial": true, "error": "upstream_error"});
                        self.store_reply(
                            user_id,
                            &conversation,
                            reply_id,
                            &model,
                            &content,
                            usage,
                            metadata,
                        )
                        .await?;
                        return Err(ServiceError::Provider(err));
                    }
                }
            }
        };

        let usage = self.usage_of(&model, counted_prompt, &content, reported);
        let mut metadata = json!({"finishReason": finish_reason, "provider": provider.name()});
        if stopped {
            metadata["stopped"] = json!(true);
        }
        let reply = self
            .store_reply(
                user_id,
                &conversation,
                reply_id,
                &model,
                &content,
                usage,
                metadata,
            )
            .await?;
        let mut conversation = conversation;
        conversation.message_count += 2;
        conversation.updated_at = reply.created_at;
        Ok(ChatOutcome {
            conversation,
            created_conversation: created,
            user_message,
            reply,
            model,
            finish_reason,
            usage,
            stopped,
        })
    }

    /// The provider's reported usage when present, else our exact count.
    fn usage_of(
        &self,
        model: &str,
        counted_prompt: u32,
        content: &str,
        reported: Option<Usage>,
    ) -> Usage {
        reported.unwrap_or_else(|| Usage {
            prompt_tokens: counted_prompt,
            completion_tokens: tokens::count_text(model, content) as u32,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_reply(
        &self,
        user_id: &str,
        conversation: &Conversation,
        id: Uuid,
        model: &str,
        content: &str,
        usage: Usage,
        metadata: serde_json::Value,
    ) -> Result<Message, ServiceError> {
        let now = store::now();
        let reply = Message {
            id,
            conversation_id: conversation.id,
            role: Role::Assistant,
            content: content.to_owned(),
            tokens: i64::from(usage.completion_tokens),
            model: Some(model.to_owned()),
            metadata,
            created_at: now,
        };
        let record = UsageRecord {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            conversation_id: Some(conversation.id),
            kind: "chat".to_owned(),
            model: model.to_owned(),
            prompt_tokens: i64::from(usage.prompt_tokens),
            completion_tokens: i64::from(usage.completion_tokens),
            cost_usd: self.prices.cost(
                model,
                i64::from(usage.prompt_tokens),
                i64::from(usage.completion_tokens),
            ),
            created_at: now,
        };
        match self.store.append_message(&reply, Some(&record)).await {
            Ok(()) => Ok(reply),
            // The conversation was deleted while the reply was being generated: the tokens
            // were still spent, so they still count against the user.
            Err(StoreError::NotFound) => {
                self.store.record_usage(&record).await?;
                Err(ServiceError::NotFound("Conversation"))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Records a failed upstream call (the user message stays stored) and returns the error.
    async fn upstream_failed(
        &self,
        user_id: &str,
        conversation: &Conversation,
        model: &str,
        err: ProviderError,
    ) -> ServiceError {
        tracing::warn!(error = %err, model, "chat: provider failed");
        tracing::debug!(detail = err.detail(), "chat: provider failure detail");
        let record = UsageRecord {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            conversation_id: Some(conversation.id),
            kind: "chat_failed".to_owned(),
            model: model.to_owned(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_usd: 0.0,
            created_at: store::now(),
        };
        if let Err(store_err) = self.store.record_usage(&record).await {
            tracing::error!(error = %store_err, "chat: could not record the failed call");
        }
        ServiceError::Provider(err)
    }
}

/// System prompt, then history oldest first, then the new message; history is trimmed from
/// the oldest end so that the prompt fits the model's window minus `max_tokens`.
fn build_context(
    model: &str,
    system_prompt: Option<&str>,
    history: &[Message],
    user_message: &Message,
    max_tokens: u32,
) -> Result<Vec<ChatMessage>, ServiceError> {
    let window = tokens::context_window(model);
    let budget = window.saturating_sub(max_tokens as usize);
    let overhead = tokens::message_overhead();
    let system = system_prompt.filter(|s| !s.trim().is_empty());
    let mut used = 3 + overhead + user_message.tokens as usize;
    if let Some(system) = system {
        used += overhead + tokens::count_text(model, system);
    }
    if used > budget {
        return Err(ServiceError::Invalid {
            field: "message",
            message: format!(
                "the message and system prompt take {used} tokens; {model} allows {budget} with maxTokens {max_tokens}"
            ),
        });
    }
    let mut kept = 0;
    for message in history.iter().rev() {
        let cost = overhead + message.tokens.max(0) as usize;
        if used + cost > budget {
            break;
        }
        used += cost;
        kept += 1;
    }
    let mut messages = Vec::with_capacity(kept + 2);
    if let Some(system) = system {
        messages.push(ChatMessage {
            role: ChatRole::System,
            content: system.to_owned(),
        });
    }
    for message in &history[history.len() - kept..] {
        let role = match message.role {
            Role::User => ChatRole::User,
            Role::Assistant => ChatRole::Assistant,
            Role::System => ChatRole::System,
        };
        messages.push(ChatMessage {
            role,
            content: message.content.clone(),
        });
    }
    messages.push(ChatMessage {
        role: ChatRole::User,
        content: user_message.content.clone(),
    });
    Ok(messages)
}

/// Runs the write of the user message and the upstream call together, and returns the call's
/// outcome once both are done. When the write fails, the call is dropped at once (which
/// closes its upstream connection: no reply is generated, and paid for, that could not be
/// stored); when the call ends first, the write is still awaited.
async fn alongside<T>(
    store: impl Future<Output = Result<(), StoreError>>,
    call: impl Future<Output = T>,
) -> Result<T, StoreError> {
    tokio::pin!(store, call);
    tokio::select! {
        stored = &mut store => {
            stored?;
            Ok(call.await)
        }
        answered = &mut call => {
            store.await?;
            Ok(answered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets its flag when dropped (an upstream call given up).
    struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_failed_user_message_write_drops_the_upstream_call_at_once() {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let call = async move {
            let _flag = flag;
            std::future::pending::<()>().await
        };
        let failed = async { Err(StoreError::NotFound) };
        let outcome =
            tokio::time::timeout(std::time::Duration::from_secs(5), alongside(failed, call))
                .await
                .expect("did not wait for the call");
        assert!(matches!(outcome, Err(StoreError::NotFound)));
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_call_that_ends_first_still_waits_for_the_write() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = {
            let written = written.clone();
            async move {
                let _ = rx.await;
                written.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
        };
        let call = async move {
            let _ = tx.send(());
            "answer"
        };
        assert_eq!(alongside(store, call).await.unwrap(), "answer");
        assert!(written.load(std::sync::atomic::Ordering::SeqCst));
    }

    fn message(role: Role, content: &str, tokens: i64) -> Message {
        Message {
            id: Uuid::now_v7(),
            conversation_id: Uuid::nil(),
            role,
            content: content.into(),
            tokens,
            model: None,
            metadata: json!({}),
            created_at: store::now(),
        }
    }

    #[test]
    fn context_keeps_order_and_trims_oldest_first() {
        // gpt-4: 8192 window; maxTokens 8000 leaves 192 tokens of prompt.
        let history: Vec<Message> = (0..10)
            .map(|i| {
                message(
                    if i % 2 == 0 {
                        Role::User
                    } else {
                        Role::Assistant
                    },
                    &format!("m{i}"),
                    40,
                )
            })
            .collect();
        let new = message(Role::User, "now", 1);
        let messages = build_context("gpt-4", Some("be brief"), &history, &new, 8000).unwrap();
        assert_eq!(
            messages[0],
            ChatMessage {
                role: ChatRole::System,
                content: "be brief".into()
            }
        );
        assert_eq!(messages.last().unwrap().content, "now");
        let kept: Vec<&str> = messages[1..messages.len() - 1]
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        // Each kept message costs 44; 192 - (3 + 4 + 1) - (4 + 2) = 178 → 4 messages fit.
        assert_eq!(kept, vec!["m6", "m7", "m8", "m9"]);
        assert_eq!(messages[1].role, ChatRole::User);
        assert_eq!(messages[2].role, ChatRole::Assistant);
    }

    #[test]
    fn everything_fits_in_a_large_window() {
        let history: Vec<Message> = (0..3)
            .map(|i| message(Role::User, &format!("m{i}"), 10))
            .collect();
        let messages =
            build_context("gpt-4o", None, &history, &message(Role::User, "x", 1), 4096).unwrap();
        assert_eq!(messages.len(), 4);
    }

    #[test]
    fn a_message_that_cannot_fit_is_refused() {
        let big = message(Role::User, "x", 9000);
        let err = build_context("gpt-4", None, &[], &big, 100).unwrap_err();
        assert!(matches!(
            err,
            ServiceError::Invalid {
                field: "message",
                ..
            }
        ));
    }
}
