//! Gemini's wire types (contents, responses, stream events, models) and their conversions
//! to and from the provider-neutral types.

use serde::{Deserialize, Serialize};

use crate::providers::http::wire_temperature;
use crate::providers::sse::{SseDecoder, SseEvent};
use crate::providers::{ChatCompletion, ChatRequest, ChatRole, ProviderError, StreamEvent, Usage};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireRequest {
    contents: Vec<WireContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<WireSystem>,
    generation_config: WireGenerationConfig,
}

#[derive(Serialize, Debug, PartialEq)]
pub(super) struct WireContent {
    role: &'static str,
    parts: Vec<WirePart>,
}

#[derive(Serialize, Debug, PartialEq)]
pub(super) struct WirePart {
    text: String,
}

#[derive(Serialize)]
pub(super) struct WireSystem {
    parts: Vec<WirePart>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireGenerationConfig {
    temperature: f64,
    max_output_tokens: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    usage_metadata: Option<WireUsage>,
    prompt_feedback: Option<WirePromptFeedback>,
    /// An error reported inside a stream.
    error: Option<WireError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireCandidate {
    content: Option<WireReplyContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireReplyContent {
    #[serde(default)]
    parts: Vec<WireReplyPart>,
}

#[derive(Deserialize)]
pub(super) struct WireReplyPart {
    text: Option<String>,
    /// Thought summaries are not part of the answer.
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireUsage {
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
pub(super) struct WirePromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireModels {
    #[serde(default)]
    pub(super) models: Vec<WireModel>,
    pub(super) next_page_token: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireModel {
    pub(super) name: String,
}

/// The system instruction (system messages joined) and the turns, consecutive same-role
/// turns merged into one part.
pub(super) fn wire_request(request: &ChatRequest) -> WireRequest {
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
pub(super) fn finish_reason(reason: &str) -> String {
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
pub(super) fn model_segment(model: &str) -> String {
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

pub(super) fn error(error: WireError) -> ProviderError {
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
pub(super) fn text(response: &mut WireResponse) -> String {
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
pub(super) fn response_finish(response: &WireResponse) -> Option<String> {
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

pub(super) fn completion(mut reply: WireResponse) -> Result<ChatCompletion, ProviderError> {
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
pub(super) struct StreamDecoder {
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
