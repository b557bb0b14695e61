//! A streamed chat completion as OpenAI sends it: a first chunk with the role, a chunk per
//! delta, a last chunk with the finish reason, with `stream_options.include_usage` a chunk
//! with `choices: []` and the usage, then `data: [DONE]`. Every `data:` line is JSON but
//! the last. A failure after the headers is `data: {"error": {…}}`, then `[DONE]`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::errors::{OpenAiError, OpenAiErrorBody};
use super::wire::{ChatCompletionChunk, ChunkChoice, Delta, WireUsage};
use crate::error::ApiError;
use crate::providers::Usage;
use crate::service::chat::runs::Logged;
use crate::service::{ChatEvent, ChatSink, CompletionEvent};
use crate::state::AppState;

/// What a completion's stream carries, from either entry of the pipeline.
pub(super) enum Out {
    Delta(String),
    Finished { finish_reason: String, usage: Usage },
    Failed(ApiError),
}

/// What every chunk of one completion repeats.
#[derive(Debug, Clone)]
pub(super) struct Meta {
    pub id: String,
    pub model: String,
    pub created: i64,
    pub include_usage: bool,
}

impl Meta {
    pub fn new(model: String, include_usage: bool) -> Meta {
        Meta {
            id: String::new(),
            model,
            created: chrono::Utc::now().timestamp(),
            include_usage,
        }
    }

    /// The completion's id (`chatcmpl-` and a Palaver id) and the model that answers.
    pub fn named(self, id: Uuid, model: String) -> Meta {
        Meta {
            id: format!("chatcmpl-{}", id.simple()),
            model,
            ..self
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish_reason.map(str::to_owned),
            }],
            usage: self.include_usage.then_some(None),
        }
    }
}

/// OpenAI's finish reasons: Palaver's own (`stopped`, a provider's word) read as `stop`.
pub(super) fn finish_reason(reason: &str) -> &str {
    match reason {
        "length" | "content_filter" | "tool_calls" => reason,
        _ => "stop",
    }
}

/// A stateless completion's events, translated.
pub(super) fn completion_events(
    events: mpsc::UnboundedReceiver<CompletionEvent>,
) -> impl Stream<Item = Out> + Send + 'static {
    futures::stream::unfold(events, |mut events| async move {
        let out = match events.recv().await? {
            CompletionEvent::Delta(text) => Out::Delta(text),
            CompletionEvent::Finished {
                finish_reason,
                usage,
            } => Out::Finished {
                finish_reason,
                usage,
            },
            CompletionEvent::Failed(error) => Out::Failed(ApiError::from(error)),
        };
        Some((out, events))
    })
}

/// The sink of an exchange streamed as a completion (with a conversation).
pub(super) struct ExchangeSink(mpsc::UnboundedSender<Out>);

impl ExchangeSink {
    pub fn new() -> (Arc<ExchangeSink>, impl Stream<Item = Out> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded_channel();
        let events =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|out| (out, rx)) },
            );
        (Arc::new(ExchangeSink(tx)), events)
    }
}

impl ChatSink for ExchangeSink {
    fn emit(&self, event: ChatEvent<'_>, _: &Logged) {
        let out = match event {
            ChatEvent::Chunk { content, .. } => Out::Delta(content.to_owned()),
            ChatEvent::Finished(outcome) => Out::Finished {
                finish_reason: outcome.finish_reason.clone(),
                usage: outcome.usage,
            },
            ChatEvent::Failed(failure) => Out::Failed(ApiError::from(&failure.error)),
            ChatEvent::ConversationCreated(_) | ChatEvent::UserMessage(_) => return,
        };
        let _ = self.0.send(out);
    }

    /// The response body is dropped when the client goes away.
    fn closed(&self) -> BoxFuture<'static, ()> {
        let tx = self.0.clone();
        Box::pin(async move { tx.closed().await })
    }
}

/// The event stream of a completion.
pub(super) fn respond(
    state: &AppState,
    meta: Meta,
    events: impl Stream<Item = Out> + Send + 'static,
) -> Response {
    let first = data(&meta.chunk(
        Delta {
            role: Some("assistant".to_owned()),
            content: Some(String::new()),
        },
        None,
    ));
    let rest = events
        .scan(false, move |ended, out| {
            // Nothing follows the end (an exchange's sink sends nothing after it anyway).
            if *ended {
                return futures::future::ready(None);
            }
            let events = match out {
                Out::Delta(text) => vec![data(&meta.chunk(
                    Delta {
                        content: Some(text),
                        ..Delta::default()
                    },
                    None,
                ))],
                Out::Finished {
                    finish_reason: reason,
                    usage,
                } => {
                    *ended = true;
                    finished(&meta, finish_reason(&reason), usage)
                }
                Out::Failed(error) => {
                    *ended = true;
                    let body = OpenAiErrorBody {
                        error: OpenAiError::of(&error),
                    };
                    vec![data(&body), Event::default().data("[DONE]")]
                }
            };
            futures::future::ready(Some(futures::stream::iter(events)))
        })
        .flatten();
    let stream = futures::stream::once(async move { first })
        .chain(rest)
        .map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(crate::api::sse::keep_alive(state))
        .into_response()
}

/// The last chunk, the usage chunk when asked for, and `[DONE]`.
fn finished(meta: &Meta, reason: &str, usage: Usage) -> Vec<Event> {
    let mut events = vec![data(&meta.chunk(Delta::default(), Some(reason)))];
    if meta.include_usage {
        let mut chunk = meta.chunk(Delta::default(), None);
        chunk.choices.clear();
        chunk.usage = Some(Some(WireUsage::from(usage)));
        events.push(data(&chunk));
    }
    events.push(Event::default().data("[DONE]"));
    events
}

fn data(value: &impl serde::Serialize) -> Event {
    Event::default()
        .json_data(value)
        .unwrap_or_else(|_| Event::default().comment("unserializable chunk"))
}
