//! Anthropic's Messages API.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::http::{Call, HttpSettings, secret_header, wire_temperature};
use super::sse::{SseDecoder, SseEvent};
use super::{ChatCompletion, ChatRequest, ChatRole, ChatStream, ProviderError, StreamEvent, Usage};

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const API_VERSION: &str = "2023-06-01";
/// Anthropic's temperature range is 0 to 1 (OpenAI's goes to 2).
const MAX_TEMPERATURE: f32 = 1.0;
/// Pages of the model list read at most.
const MAX_MODEL_PAGES: usize = 20;

pub struct Anthropic {
    /// Without `/v1` and without a trailing slash.
    base_url: String,
    api_key: SecretString,
    http: HttpSettings,
}

// Wire types.

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage>,
    max_tokens: u32,
    temperature: f64,
    stream: bool,
}

#[derive(Serialize, Debug, PartialEq)]
struct WireMessage {
    role: &'static str,
    content: String,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct WireMessageReply {
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
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
struct WireStartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    /// Tool input, thinking and signatures: not text for the user.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireMessageDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct WireErrorEvent {
    error: WireError,
}

#[derive(Deserialize)]
struct WireModels {
    data: Vec<WireModel>,
    #[serde(default)]
    has_more: bool,
    last_id: Option<String>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
}

/// The system prompt (system messages joined) and the turns, consecutive same-role turns
/// merged and leading assistant turns dropped: Anthropic wants alternation from a user turn.
fn wire_messages(request: &ChatRequest) -> (Option<String>, Vec<WireMessage>) {
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

fn wire_request(request: &ChatRequest, stream: bool) -> WireRequest<'_> {
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
fn finish_reason(stop_reason: Option<String>) -> String {
    match stop_reason.as_deref() {
        None | Some("end_turn") | Some("stop_sequence") => "stop".to_owned(),
        Some("max_tokens") => "length".to_owned(),
        Some("refusal") => "content_filter".to_owned(),
        Some(other) => other.to_owned(),
    }
}

/// An `error` event inside a stream.
fn stream_error(error: WireError) -> ProviderError {
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

impl Anthropic {
    pub fn new(base_url: String, api_key: SecretString, http: HttpSettings) -> Anthropic {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Anthropic {
            base_url,
            api_key,
            http,
        }
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY, secret_header(self.api_key.expose_secret())?);
        headers.insert(VERSION, HeaderValue::from_static(API_VERSION));
        Ok(headers)
    }

    fn chat_call(&self, request: &ChatRequest, stream: bool) -> Result<Call, ProviderError> {
        let url = format!("{}/v1/messages", self.base_url);
        Call::post_json(
            "anthropic",
            url,
            self.headers()?,
            &wire_request(request, stream),
        )
    }

    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let reply: WireMessageReply = self.http.json(&self.chat_call(request, false)?).await?;
        Ok(completion(reply))
    }

    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let response = self.http.stream(&self.chat_call(request, true)?).await?;
        Ok(self.http.sse_stream(response, StreamDecoder::default()))
    }

    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        let mut models = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let mut url = format!("{}/v1/models?limit=1000", self.base_url);
            if let Some(id) = &after {
                url.push_str("&after_id=");
                url.extend(form_urlencoded::byte_serialize(id.as_bytes()));
            }
            let page: WireModels = self
                .http
                .json(&Call::get("anthropic", url, self.headers()?))
                .await?;
            models.extend(page.data.into_iter().map(|m| m.id));
            match page.last_id {
                Some(last) if page.has_more => after = Some(last),
                _ => break,
            }
        }
        Ok(models)
    }
}

fn completion(reply: WireMessageReply) -> ChatCompletion {
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
struct StreamDecoder {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::ChatMessage;
    use crate::providers::sse::decode_in_pieces;

    fn msg(role: ChatRole, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn request_body_with_system_and_merged_turns() {
        let request = ChatRequest {
            model: "claude-3-5-haiku-latest".into(),
            messages: vec![
                msg(ChatRole::System, "Be brief."),
                msg(ChatRole::System, "Be kind."),
                msg(ChatRole::Assistant, "Welcome!"),
                msg(ChatRole::User, "hello"),
                msg(ChatRole::User, "are you there?"),
                msg(ChatRole::Assistant, "yes"),
                msg(ChatRole::Assistant, ""),
                msg(ChatRole::User, "good"),
            ],
            max_tokens: 50,
            temperature: 0.0,
        };
        let body = serde_json::to_value(wire_request(&request, false)).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "claude-3-5-haiku-latest",
                "system": "Be brief.\n\nBe kind.",
                "messages": [
                    {"role": "user", "content": "hello\n\nare you there?"},
                    {"role": "assistant", "content": "yes"},
                    {"role": "user", "content": "good"},
                ],
                "max_tokens": 50,
                "temperature": 0.0,
                "stream": false,
            })
        );
    }

    #[test]
    fn no_system_no_field_and_temperature_clamped() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![msg(ChatRole::User, "hi")],
            max_tokens: 5,
            temperature: 1.7,
        };
        let body = serde_json::to_value(wire_request(&request, true)).unwrap();
        assert!(body.get("system").is_none());
        assert_eq!(body["temperature"], json!(1.0));
        assert_eq!(body["stream"], json!(true));
    }

    #[test]
    fn plain_reply() {
        let reply: WireMessageReply = serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "Hello"},
                {"type": "text", "text": " there"},
            ],
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 12, "output_tokens": 2}
        }))
        .unwrap();
        let c = completion(reply);
        assert_eq!(c.content, "Hello there");
        assert_eq!(c.finish_reason, "length");
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 2
            })
        );
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(finish_reason(Some("end_turn".into())), "stop");
        assert_eq!(finish_reason(Some("stop_sequence".into())), "stop");
        assert_eq!(finish_reason(Some("max_tokens".into())), "length");
        assert_eq!(finish_reason(Some("tool_use".into())), "tool_use");
        assert_eq!(finish_reason(None), "stop");
    }

    const STREAM: &str = concat!(
        "event: message_start\r\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" wörld 😀\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    #[tokio::test]
    async fn stream_in_any_pieces() {
        for piece in [1, 2, 3, 5, 7, 13, 64, 1000] {
            let events = decode_in_pieces(STREAM.as_bytes(), piece, StreamDecoder::default()).await;
            let events: Vec<StreamEvent> = events.into_iter().map(|e| e.unwrap()).collect();
            assert_eq!(
                events,
                vec![
                    StreamEvent::Delta("Héllo".into()),
                    StreamEvent::Delta(" wörld 😀".into()),
                    StreamEvent::Finish {
                        finish_reason: "stop".into(),
                        usage: Some(Usage {
                            prompt_tokens: 25,
                            completion_tokens: 15
                        }),
                    },
                ],
                "pieces of {piece}"
            );
        }
    }

    #[tokio::test]
    async fn stream_cut_before_the_end() {
        let cut = STREAM.split("event: content_block_stop").next().unwrap();
        let events = decode_in_pieces(cut.as_bytes(), 10, StreamDecoder::default()).await;
        assert_eq!(events.len(), 3);
        assert!(matches!(events[2], Err(ProviderError::StreamCut { .. })));
    }

    #[tokio::test]
    async fn error_events() {
        let body = concat!(
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n",
            "event: error\n",
            "data: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
        );
        let events = decode_in_pieces(body.as_bytes(), 6, StreamDecoder::default()).await;
        assert_eq!(events.len(), 2);
        assert!(matches!(
            events[1],
            Err(ProviderError::Status { status: 529, .. })
        ));
        let unknown = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"new_error\",\"message\":\"x\"}}\n\n";
        let events = decode_in_pieces(unknown.as_bytes(), 6, StreamDecoder::default()).await;
        assert!(matches!(events[..], [Err(ProviderError::Protocol { .. })]));
        let limited = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"x\"}}\n\n";
        let events = decode_in_pieces(limited.as_bytes(), 6, StreamDecoder::default()).await;
        assert!(matches!(
            events[..],
            [Err(ProviderError::RateLimited { .. })]
        ));
    }
}
