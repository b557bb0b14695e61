//! Stateless completions (the OpenAI-compatible `/v1/chat/completions` without a
//! conversation): the caller sends the whole context, nothing but usage is stored. The same
//! admission (quota, a key's models), routing, token counting, pricing and usage records as
//! an exchange; run in a tracked task, so a client that goes away does not lose the record.

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::ChatService;
use crate::config::DisconnectPolicy;
use crate::limits::QuotaGuard;
use crate::providers::{ChatMessage, ChatRequest, ChatStream, Provider, ProviderError};
use crate::providers::{StreamEvent, Usage, tokens};
use crate::service::{Attribution, ServiceError};
use crate::store::UsageRecord;

/// One stateless completion as a transport asks for it (validated).
#[derive(Debug, Clone)]
pub struct CompletionInput {
    pub model: String,
    /// System messages first or anywhere, then the conversation so far, as the client keeps it.
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub attribution: Attribution,
}

/// A completion answered in one piece.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: Uuid,
    /// The model that answered (`mock` for the built-in mock).
    pub model: String,
    pub content: String,
    pub finish_reason: String,
    pub usage: Usage,
}

/// What a streamed completion tells its transport: deltas, then one `Finished` or `Failed`.
#[derive(Debug)]
pub enum CompletionEvent {
    Delta(String),
    Finished { finish_reason: String, usage: Usage },
    Failed(ServiceError),
}

/// A streamed completion: its id and model, known before the first delta, and its events.
pub struct CompletionStream {
    pub id: Uuid,
    pub model: String,
    pub events: mpsc::UnboundedReceiver<CompletionEvent>,
}

/// A completion admitted and ready to send.
struct Call<'a> {
    provider: &'a Provider,
    model: String,
    request: ChatRequest,
    counted_prompt: u32,
    attribution: Attribution,
    /// The worst case reserved against the quota until the usage is recorded.
    _quota: Option<QuotaGuard>,
}

impl ChatService {
    /// A completion in one piece.
    pub async fn complete(
        &self,
        user_id: &str,
        input: CompletionInput,
    ) -> Result<Completion, ServiceError> {
        let (chat, user) = (self.clone(), user_id.to_owned());
        self.tasks
            .spawn(async move {
                let call = chat.admit_call(&user, input).await?;
                let answered = call.provider.chat(&call.request).await;
                let done = match answered {
                    Ok(done) => done,
                    Err(err) => return Err(chat.call_failed(&user, &call, err).await),
                };
                let usage = done.usage.unwrap_or_else(|| counted(&call, &done.content));
                chat.store
                    .record_usage(&chat.call_usage(&user, &call, usage))
                    .await?;
                Ok(Completion {
                    id: Uuid::now_v7(),
                    model: call.model,
                    content: done.content,
                    finish_reason: done.finish_reason,
                    usage,
                })
            })
            .await
            .map_err(|e| ServiceError::Internal(format!("completion task: {e}")))?
    }

    /// A streamed completion: `Err` when it could not start (nothing was sent upstream, or
    /// the provider refused before any text); then its events, from a tracked task that
    /// records the usage at the end. A client that goes away stops it only under
    /// `STREAM_ON_DISCONNECT=stop`.
    pub async fn complete_stream(
        &self,
        user_id: &str,
        input: CompletionInput,
    ) -> Result<CompletionStream, ServiceError> {
        let (chat, user) = (self.clone(), user_id.to_owned());
        let (started_tx, started) = oneshot::channel();
        let (tx, events) = mpsc::unbounded_channel();
        self.tasks.spawn(async move {
            let call = match chat.admit_call(&user, input).await {
                Ok(call) => call,
                Err(err) => return drop(started_tx.send(Err(err))),
            };
            let stream = match call.provider.chat_stream(&call.request).await {
                Ok(stream) => stream,
                Err(err) => {
                    let failed = chat.call_failed(&user, &call, err).await;
                    return drop(started_tx.send(Err(failed)));
                }
            };
            let (id, model) = (Uuid::now_v7(), call.model.clone());
            if started_tx.send(Ok((id, model))).is_err() {
                tracing::debug!("completion: the request went away before its stream started");
            }
            chat.relay(&user, &call, stream, tx).await;
        });
        let (id, model) = started
            .await
            .map_err(|_| ServiceError::Internal("completion task ended early".into()))??;
        Ok(CompletionStream { id, model, events })
    }

    /// Admits a completion: the quota is open, the key may use the model, the prompt fits
    /// the model's window with `max_tokens`; the worst case is reserved.
    async fn admit_call(
        &self,
        user_id: &str,
        input: CompletionInput,
    ) -> Result<Call<'_>, ServiceError> {
        input.attribution.permits(&input.model)?;
        self.admission
            .quota_open_for(user_id, &input.attribution)
            .await?;
        let routed = self.providers.route(&input.model)?;
        let model = self.stored_model(&input.model);
        let max_tokens = input.max_tokens.unwrap_or(self.defaults.max_tokens);
        let counted_prompt = tokens::count_messages(&model, &input.messages);
        let budget = tokens::context_window(&model).saturating_sub(max_tokens as usize);
        if counted_prompt > budget {
            return Err(ServiceError::Invalid {
                field: "messages".into(),
                message: format!(
                    "the messages take {counted_prompt} tokens; {model} allows {budget} with max_tokens {max_tokens}"
                ),
            });
        }
        let counted_prompt = u32::try_from(counted_prompt).unwrap_or(u32::MAX);
        let worst_case = i64::from(counted_prompt) + i64::from(max_tokens);
        let quota = self.admission.reserve(user_id, worst_case).await?;
        Ok(Call {
            provider: routed.provider,
            request: ChatRequest {
                model: routed.model.to_owned(),
                messages: input.messages,
                max_tokens,
                temperature: input.temperature.unwrap_or(self.defaults.temperature),
            },
            model,
            counted_prompt,
            attribution: input.attribution,
            _quota: quota,
        })
    }

    /// Relays a started stream's deltas to `tx` until it ends (or is stopped), then records
    /// the usage and says how it ended.
    async fn relay(
        &self,
        user_id: &str,
        call: &Call<'_>,
        mut stream: ChatStream,
        tx: mpsc::UnboundedSender<CompletionEvent>,
    ) {
        let stop_when_gone = self.on_disconnect == DisconnectPolicy::Stop;
        let mut content = String::new();
        let ended = loop {
            let next = tokio::select! {
                biased;
                () = self.interrupt.cancelled() => break Err(ServiceError::Interrupted),
                () = tx.closed(), if stop_when_gone => break Ok(("stopped".to_owned(), None)),
                next = stream.next() => next,
            };
            match next {
                Some(Ok(StreamEvent::Delta(text))) => {
                    content.push_str(&text);
                    let _ = tx.send(CompletionEvent::Delta(text));
                }
                Some(Ok(StreamEvent::Finish {
                    finish_reason,
                    usage,
                })) => break Ok((finish_reason, usage)),
                Some(Err(err)) => break Err(ServiceError::Provider(err)),
                None => {
                    let detail = "the provider's stream ended without a finish".to_owned();
                    break Err(ServiceError::Provider(ProviderError::StreamCut { detail }));
                }
            }
        };
        let reported = ended.as_ref().ok().and_then(|(_, usage)| *usage);
        let usage = reported.unwrap_or_else(|| counted(call, &content));
        if let Err(err) = self
            .store
            .record_usage(&self.call_usage(user_id, call, usage))
            .await
        {
            tracing::error!(error = %err, "completion: could not record the usage");
        }
        let last = match ended {
            Ok((finish_reason, _)) => CompletionEvent::Finished {
                finish_reason,
                usage,
            },
            Err(err) => CompletionEvent::Failed(err),
        };
        let _ = tx.send(last);
    }

    fn call_usage(&self, user_id: &str, call: &Call<'_>, usage: Usage) -> UsageRecord {
        self.priced_usage(user_id, &call.model, &call.attribution, usage)
    }

    /// Records a failed upstream call (no tokens, no cost) and returns the error.
    async fn call_failed(
        &self,
        user_id: &str,
        call: &Call<'_>,
        err: ProviderError,
    ) -> ServiceError {
        tracing::warn!(error = %err, model = call.model, "completion: provider failed");
        tracing::debug!(detail = err.detail(), "completion: provider failure detail");
        let mut record = self.call_usage(user_id, call, Usage::default());
        record.kind = "chat_failed".to_owned();
        if let Err(store_err) = self.store.record_usage(&record).await {
            tracing::error!(error = %store_err, "completion: could not record the failed call");
        }
        ServiceError::Provider(err)
    }
}

/// Our own count of a call's usage, when the provider reported none.
fn counted(call: &Call<'_>, content: &str) -> Usage {
    Usage {
        prompt_tokens: call.counted_prompt,
        completion_tokens: tokens::count_text(&call.model, content) as u32,
    }
}
