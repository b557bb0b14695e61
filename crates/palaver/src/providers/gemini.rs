//! Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`).

use reqwest::header::{HeaderMap, HeaderName};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::http::{Call, HttpSettings, secret_header, wire_temperature};
use super::sse::{SseDecoder, SseEvent};
use super::{ChatCompletion, ChatRequest, ChatRole, ChatStream, ProviderError, StreamEvent, Usage};

const API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
/// Pages of the model list read at most.
const MAX_MODEL_PAGES: usize = 20;

pub struct Gemini {
    /// Without `/v1beta` and without a trailing slash.
    base_url: String,
    api_key: SecretString,
    http: HttpSettings,
}

// Wire types.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    contents: Vec<WireContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireSystem>,
    generation_config: WireGenerationConfig,
}

#[derive(Serialize, Debug, PartialEq)]
struct WireContent {
    role: &'static str,
    parts: Vec<WirePart>,
}

#[derive(Serialize, Debug, PartialEq)]
struct WirePart {
    text: String,
}

#[derive(Serialize)]
struct WireSystem {
    parts: Vec<WirePart>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireGenerationConfig {
    temperature: f64,
    max_output_tokens: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
    prompt_feedback: Option<WirePromptFeedback>,
    /// An error reported inside a stream.
    error: Option<WireError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    content: Option<WireReplyContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireReplyContent {
    #[serde(default)]
    parts: Vec<WireReplyPart>,
}

#[derive(Deserialize)]
struct WireReplyPart {
    text: Option<String>,
    /// Thought summaries are not part of the answer.
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u32,
    #[serde(default)]
    candidates_token_count: u32,
    /// Thinking tokens, billed as output.
    #[serde(default)]
    thoughts_token_count: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_token_count,
            completion_tokens: u
                .candidates_token_count
                .saturating_add(u.thoughts_token_count),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireModels {
    #[serde(default)]
    models: Vec<WireModel>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct WireModel {
    name: String,
}

/// The system instruction (system messages joined) and the turns, consecutive same-role
/// turns merged into one part.
fn wire_request(request: &ChatRequest) -> WireRequest {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == ChatRole::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut contents: Vec<WireContent> = Vec::new();
    for m in &request.messages {
        let role = match m.role {
            ChatRole::System => continue,
            ChatRole::User => "user",
            ChatRole::Assistant => "model",
        };
        if m.content.is_empty() {
            continue;
        }
        match contents.last_mut().and_then(|c| {
            (c.role == role)
                .then_some(c)
                .and_then(|c| c.parts.last_mut())
        }) {
            Some(part) => {
                part.text.push_str("\n\n");
                part.text.push_str(&m.content);
            }
            None => contents.push(WireContent {
                role,
                parts: vec![WirePart {
                    text: m.content.clone(),
                }],
            }),
        }
    }
    WireRequest {
        contents,
        system_instruction: (!system.is_empty()).then(|| WireSystem {
            parts: vec![WirePart {
                text: system.join("\n\n"),
            }],
        }),
        generation_config: WireGenerationConfig {
            temperature: wire_temperature(request.temperature),
            max_output_tokens: request.max_tokens,
        },
    }
}

/// Normalised: `stop`, `length`, `content_filter`, or Gemini's word in lower case.
fn finish_reason(reason: &str) -> String {
    match reason {
        "STOP" => "stop".to_owned(),
        "MAX_TOKENS" => "length".to_owned(),
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter".to_owned()
        }
        other => other.to_ascii_lowercase(),
    }
}

/// The path segment of a model: `models/` dropped, anything but unreserved characters
/// percent-encoded (model names come from clients).
fn model_segment(model: &str) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn error(error: WireError) -> ProviderError {
    let detail = format!("{} {}: {}", error.code, error.status, error.message);
    match error.code {
        429 => ProviderError::RateLimited {
            retry_after: None,
            detail,
        },
        400..=599 => ProviderError::Status {
            status: error.code,
            detail,
        },
        _ => ProviderError::Protocol { detail },
    }
}

/// The text of the first candidate (thoughts left out).
fn text(response: &mut WireResponse) -> String {
    response
        .candidates
        .first_mut()
        .and_then(|c| c.content.take())
        .map(|c| {
            c.parts
                .into_iter()
                .filter(|p| !p.thought)
                .filter_map(|p| p.text)
                .collect::<Vec<_>>()
                .concat()
        })
        .unwrap_or_default()
}

/// The finish reason of the first candidate, or `content_filter` when the prompt itself
/// was blocked (no candidates, a block reason).
fn response_finish(response: &WireResponse) -> Option<String> {
    if let Some(reason) = response
        .candidates
        .first()
        .and_then(|c| c.finish_reason.as_deref())
    {
        return Some(finish_reason(reason));
    }
    response
        .prompt_feedback
        .as_ref()
        .and_then(|f| f.block_reason.as_ref())
        .map(|_| "content_filter".to_owned())
}

impl Gemini {
    pub fn new(base_url: String, api_key: SecretString, http: HttpSettings) -> Gemini {
        let base_url = base_url.trim_end_matches('/').to_owned();
        Gemini {
            base_url,
            api_key,
            http,
        }
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY, secret_header(self.api_key.expose_secret())?);
        Ok(headers)
    }

    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let url = format!(
            "{}/v1beta/models/{}:generateContent",
            self.base_url,
            model_segment(&request.model)
        );
        let call = Call::post_json("gemini", url, self.headers()?, &wire_request(request))?;
        let reply: WireResponse = self.http.json(&call).await?;
        completion(reply)
    }

    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let url = format!(
            "{}/v1beta/models/{}:streamGenerateContent?alt=sse",
            self.base_url,
            model_segment(&request.model)
        );
        let call = Call::post_json("gemini", url, self.headers()?, &wire_request(request))?;
        let response = self.http.stream(&call).await?;
        Ok(self.http.sse_stream(response, StreamDecoder::default()))
    }

    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        let mut models = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_MODEL_PAGES {
            let mut url = format!("{}/v1beta/models?pageSize=1000", self.base_url);
            if let Some(token) = &token {
                url.push_str("&pageToken=");
                url.extend(form_urlencoded::byte_serialize(token.as_bytes()));
            }
            let page: WireModels = self
                .http
                .json(&Call::get("gemini", url, self.headers()?))
                .await?;
            models.extend(
                page.models
                    .into_iter()
                    .map(|m| match m.name.strip_prefix("models/") {
                        Some(bare) => bare.to_owned(),
                        None => m.name,
                    }),
            );
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        Ok(models)
    }
}

fn completion(mut reply: WireResponse) -> Result<ChatCompletion, ProviderError> {
    if let Some(e) = reply.error.take() {
        return Err(error(e));
    }
    let finish = response_finish(&reply);
    if reply.candidates.is_empty() && finish.is_none() {
        return Err(ProviderError::Protocol {
            detail: "a response without candidates".into(),
        });
    }
    Ok(ChatCompletion {
        content: text(&mut reply),
        finish_reason: finish.unwrap_or_else(|| "stop".to_owned()),
        usage: reply.usage_metadata.map(Usage::from),
    })
}

/// Each event is a whole response carrying the new text; the one with a finish reason is
/// the last, and the stream then ends (usage: the last seen).
#[derive(Default)]
struct StreamDecoder {
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl SseDecoder for StreamDecoder {
    fn event(
        &mut self,
        event: SseEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        if event.data.trim().is_empty() {
            return Ok(false);
        }
        let mut response: WireResponse =
            serde_json::from_str(&event.data).map_err(|e| ProviderError::Protocol {
                detail: format!("unreadable stream event: {e}"),
            })?;
        if let Some(e) = response.error.take() {
            return Err(error(e));
        }
        if let Some(usage) = response.usage_metadata.take() {
            self.usage = Some(usage.into());
        }
        if let Some(reason) = response_finish(&response) {
            self.finish_reason = Some(reason);
        }
        let text = text(&mut response);
        if !text.is_empty() {
            out.push(StreamEvent::Delta(text));
        }
        // The finish comes at the end of the body: usage may still follow the finish reason.
        Ok(false)
    }

    fn end(&mut self) -> Result<StreamEvent, ProviderError> {
        match self.finish_reason.take() {
            Some(finish_reason) => Ok(StreamEvent::Finish {
                finish_reason,
                usage: self.usage.take(),
            }),
            None => Err(ProviderError::StreamCut {
                detail: "the stream ended without a finish reason".into(),
            }),
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
    fn request_body() {
        let request = ChatRequest {
            model: "gemini-2.0-flash".into(),
            messages: vec![
                msg(ChatRole::System, "Be brief."),
                msg(ChatRole::User, "hello"),
                msg(ChatRole::User, "there"),
                msg(ChatRole::Assistant, "hi"),
                msg(ChatRole::User, "again"),
            ],
            max_tokens: 50,
            temperature: 0.0,
        };
        let body = serde_json::to_value(wire_request(&request)).unwrap();
        assert_eq!(
            body,
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "hello\n\nthere"}]},
                    {"role": "model", "parts": [{"text": "hi"}]},
                    {"role": "user", "parts": [{"text": "again"}]},
                ],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "generationConfig": {"temperature": 0.0, "maxOutputTokens": 50},
            })
        );
        let no_system = ChatRequest {
            messages: vec![msg(ChatRole::User, "x")],
            ..request
        };
        assert!(
            serde_json::to_value(wire_request(&no_system))
                .unwrap()
                .get("systemInstruction")
                .is_none()
        );
    }

    #[test]
    fn model_paths() {
        assert_eq!(model_segment("gemini-2.0-flash"), "gemini-2.0-flash");
        assert_eq!(model_segment("models/gemini-1.5-pro"), "gemini-1.5-pro");
        assert_eq!(model_segment("../x?key=1#"), "..%2Fx%3Fkey%3D1%23");
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason("STOP"), "stop");
        assert_eq!(finish_reason("MAX_TOKENS"), "length");
        assert_eq!(finish_reason("SAFETY"), "content_filter");
        assert_eq!(finish_reason("RECITATION"), "content_filter");
        assert_eq!(
            finish_reason("MALFORMED_FUNCTION_CALL"),
            "malformed_function_call"
        );
    }

    #[test]
    fn plain_reply() {
        let reply: WireResponse = serde_json::from_value(json!({
            "candidates": [{
                "content": {"role": "model", "parts": [{"text": "thinking…", "thought": true}, {"text": "Hello"}, {"text": " there"}]},
                "finishReason": "MAX_TOKENS",
                "index": 0
            }],
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10},
            "modelVersion": "gemini-2.0-flash"
        }))
        .unwrap();
        let c = completion(reply).unwrap();
        assert_eq!(c.content, "Hello there");
        assert_eq!(c.finish_reason, "length");
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: 8,
                completion_tokens: 2
            })
        );

        let blocked: WireResponse = serde_json::from_value(json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}
        }))
        .unwrap();
        let c = completion(blocked).unwrap();
        assert_eq!(
            (c.content.as_str(), c.finish_reason.as_str()),
            ("", "content_filter")
        );

        let empty: WireResponse = serde_json::from_value(json!({})).unwrap();
        assert!(matches!(
            completion(empty),
            Err(ProviderError::Protocol { .. })
        ));
    }

    const STREAM: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Héllo\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 6,\"totalTokenCount\": 6},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" wörld\"}, {\"text\": \" 😀\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 6,\"candidatesTokenCount\": 4,\"totalTokenCount\": 10},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
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
                            prompt_tokens: 6,
                            completion_tokens: 4
                        }),
                    },
                ],
                "pieces of {piece}"
            );
        }
    }

    #[tokio::test]
    async fn stream_cut_without_finish_reason() {
        let cut = STREAM
            .split("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}]")
            .next()
            .unwrap();
        let events = decode_in_pieces(cut.as_bytes(), 17, StreamDecoder::default()).await;
        assert_eq!(events.len(), 3);
        assert!(matches!(events[2], Err(ProviderError::StreamCut { .. })));
    }

    #[tokio::test]
    async fn error_in_the_stream() {
        let body = "data: {\"error\": {\"code\": 503, \"message\": \"overloaded\", \"status\": \"UNAVAILABLE\"}}\n\n";
        let events = decode_in_pieces(body.as_bytes(), 5, StreamDecoder::default()).await;
        assert!(matches!(
            events[..],
            [Err(ProviderError::Status { status: 503, .. })]
        ));
    }
}
