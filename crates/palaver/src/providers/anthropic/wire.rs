//! Anthropic's wire types (messages, stream events, models) and their conversions to and
//! from the provider-neutral types.

use serde::{Deserialize, Serialize};

use crate::providers::http::wire_temperature;
use crate::providers::sse::{SseDecoder, SseEvent};
use crate::providers::{ChatCompletion, ChatRequest, ChatRole, ProviderError, StreamEvent, Usage};

/// Anthropic's temperature range is 0 to 1 (OpenAI's goes to 2).
pub(super) const MAX_TEMPERATURE: f32 = 1.0;

#[derive(Serialize)]
pub(super) struct WireRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage>,
    max_tokens: u32,
    temperature: f64,
    stream: bool,
}

#[derive(Serialize, Debug, PartialEq)]
pub(super) struct WireMessage {
    role: &'static str,
    content: String,
}

#[derive(Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct WireMessageReply {
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(super) struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        delta: WireMessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    /// `ping`, `content_block_start`, `content_block_stop`, and whatever comes next.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(super) struct WireStartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WireDelta {
    TextDelta {
        text: String,
    },
    /// Tool input, thinking and signatures: not text for the user.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
pub(super) struct WireMessageDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
pub(super) struct WireErrorEvent {
    error: WireError,
}

#[derive(Deserialize)]
pub(super) struct WireModels {
    pub(super) data: Vec<WireModel>,
    #[serde(default)]
    pub(super) has_more: bool,
    pub(super) last_id: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireModel {
    pub(super) id: String,
}

/// The system prompt (system messages joined) and the turns, consecutive same-role turns
/// merged and leading assistant turns dropped: Anthropic wants alternation from a user turn.
pub(super) fn wire_messages(request: &ChatRequest) -> (Option<String>, Vec<WireMessage>) {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == ChatRole::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut messages: Vec<WireMessage> = Vec::new();
    for m in &request.messages {
        let role = match m.role {
            ChatRole::System => continue,
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        };
        if m.content.is_empty() || (messages.is_empty() && role == "assistant") {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => messages.push(WireMessage {
                role,
                content: m.content.clone(),
            }),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    (system, messages)
}

pub(super) fn wire_request(request: &ChatRequest, stream: bool) -> WireRequest<'_> {
    let (system, messages) = wire_messages(request);
    WireRequest {
        model: &request.model,
        system,
        messages,
        max_tokens: request.max_tokens,
        temperature: wire_temperature(request.temperature.clamp(0.0, MAX_TEMPERATURE)),
        stream,
    }
}

/// Normalised: `stop`, `length`, or Anthropic's own word.
pub(super) fn finish_reason(stop_reason: Option<String>) -> String {
    match stop_reason.as_deref() {
        None | Some("end_turn") | Some("stop_sequence") => "stop".to_owned(),
        Some("max_tokens") => "length".to_owned(),
        Some("refusal") => "content_filter".to_owned(),
        Some(other) => other.to_owned(),
    }
}

/// An `error` event inside a stream.
pub(super) fn stream_error(error: WireError) -> ProviderError {
    let detail = format!("{}: {}", error.kind, error.message);
    let status = match error.kind.as_str() {
        "rate_limit_error" => {
            return ProviderError::RateLimited {
                retry_after: None,
                detail,
            };
        }
        "overloaded_error" => 529,
        "api_error" => 500,
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "timeout_error" => 504,
        _ => return ProviderError::Protocol { detail },
    };
    ProviderError::Status { status, detail }
}

pub(super) fn completion(reply: WireMessageReply) -> ChatCompletion {
    let content = reply
        .content
        .into_iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text)
        .collect::<Vec<_>>()
        .concat();
    let usage = reply.usage.map(|u| Usage {
        prompt_tokens: u.input_tokens.unwrap_or(0),
        completion_tokens: u.output_tokens.unwrap_or(0),
    });
    ChatCompletion {
        content,
        finish_reason: finish_reason(reply.stop_reason),
        usage,
    }
}

/// `message_start` (input tokens), `content_block_delta` (text), `message_delta` (stop
/// reason, output tokens), `message_stop` (the end).
#[derive(Default)]
pub(super) struct StreamDecoder {
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
    stop_reason: Option<String>,
}

impl StreamDecoder {
    fn finish(&mut self) -> StreamEvent {
        let usage = (self.input_tokens.is_some() || self.output_tokens.is_some()).then(|| Usage {
            prompt_tokens: self.input_tokens.unwrap_or(0),
            completion_tokens: self.output_tokens.unwrap_or(0),
        });
        StreamEvent::Finish {
            finish_reason: finish_reason(self.stop_reason.take()),
            usage,
        }
    }

    fn usage(&mut self, usage: Option<WireUsage>) {
        if let Some(u) = usage {
            self.input_tokens = u.input_tokens.or(self.input_tokens);
            self.output_tokens = u.output_tokens.or(self.output_tokens);
        }
    }
}

impl SseDecoder for StreamDecoder {
    fn event(
        &mut self,
        event: SseEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        if event.event.as_deref() == Some("error") {
            return Err(match serde_json::from_str::<WireErrorEvent>(&event.data) {
                Ok(e) => stream_error(e.error),
                Err(_) => ProviderError::Protocol {
                    detail: "an error event Palaver could not read".into(),
                },
            });
        }
        let wire: WireEvent =
            serde_json::from_str(&event.data).map_err(|e| ProviderError::Protocol {
                detail: format!("unreadable stream event: {e}"),
            })?;
        match wire {
            WireEvent::MessageStart { message } => self.usage(message.usage),
            WireEvent::ContentBlockDelta {
                delta: WireDelta::TextDelta { text },
            } => {
                if !text.is_empty() {
                    out.push(StreamEvent::Delta(text));
                }
            }
            WireEvent::ContentBlockDelta {
                delta: WireDelta::Other,
            }
            | WireEvent::Other => {}
            WireEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                self.usage(usage);
            }
            WireEvent::MessageStop => {
                out.push(self.finish());
                return Ok(true);
            }
            WireEvent::Error { error } => return Err(stream_error(error)),
        }
        Ok(false)
    }

    fn end(&mut self) -> Result<StreamEvent, ProviderError> {
        if self.stop_reason.is_some() {
            Ok(self.finish())
        } else {
            Err(ProviderError::StreamCut {
                detail: "the stream ended before message_stop".into(),
            })
        }
    }
}
