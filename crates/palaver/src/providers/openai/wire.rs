//! OpenAI's wire types (chat completions, stream chunks, embeddings, models) and their
//! conversions to and from the provider-neutral types.

use serde::{Deserialize, Serialize};

use crate::providers::http::wire_temperature;
use crate::providers::sse::{SseDecoder, SseEvent};
use crate::providers::{
    ChatCompletion, ChatRequest, ChatRole, Embeddings, ProviderError, StreamEvent, Usage,
};

#[derive(Serialize)]
pub(super) struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    temperature: f64,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
pub(super) struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
pub(super) struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireCompletion {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(super) struct WireChoice {
    message: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireContent {
    content: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    /// Some compatible servers report a failure inside the stream.
    error: Option<WireError>,
}

#[derive(Deserialize)]
pub(super) struct WireChunkChoice {
    delta: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WireError {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Serialize)]
pub(super) struct WireEmbeddingRequest<'a> {
    pub(super) model: &'a str,
    pub(super) input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dimensions: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct WireEmbeddings {
    data: Vec<WireEmbedding>,
    usage: Option<WireEmbeddingUsage>,
}

#[derive(Deserialize)]
pub(super) struct WireEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub(super) struct WireEmbeddingUsage {
    prompt_tokens: Option<u32>,
}

#[derive(Deserialize)]
pub(super) struct WireModels {
    pub(super) data: Vec<WireModel>,
}

#[derive(Deserialize)]
pub(super) struct WireModel {
    pub(super) id: String,
}

pub(super) fn role(role: ChatRole) -> &'static str {
    match role {
        ChatRole::System => "system",
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    }
}

pub(super) fn wire_request(request: &ChatRequest, stream: bool) -> WireRequest<'_> {
    WireRequest {
        model: &request.model,
        messages: request
            .messages
            .iter()
            .map(|m| WireMessage {
                role: role(m.role),
                content: &m.content,
            })
            .collect(),
        max_tokens: request.max_tokens,
        temperature: wire_temperature(request.temperature),
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    }
}

pub(super) fn completion(reply: WireCompletion) -> Result<ChatCompletion, ProviderError> {
    let choice = reply
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::Protocol {
            detail: "a completion without choices".into(),
        })?;
    Ok(ChatCompletion {
        content: choice.message.and_then(|m| m.content).unwrap_or_default(),
        finish_reason: choice.finish_reason.unwrap_or_else(|| "stop".to_owned()),
        usage: reply.usage.map(Usage::from),
    })
}

/// Vectors in input order, whatever order the server listed them in.
pub(super) fn embeddings(
    reply: WireEmbeddings,
    inputs: usize,
) -> Result<Embeddings, ProviderError> {
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for item in reply.data {
        let slot = vectors
            .get_mut(item.index)
            .ok_or_else(|| ProviderError::Protocol {
                detail: format!("embedding index {} out of range", item.index),
            })?;
        if slot.replace(item.embedding).is_some() {
            return Err(ProviderError::Protocol {
                detail: format!("embedding index {} twice", item.index),
            });
        }
    }
    let vectors = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| ProviderError::Protocol {
                detail: format!("no embedding for input {i}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Embeddings {
        vectors,
        prompt_tokens: reply.usage.and_then(|u| u.prompt_tokens),
    })
}

/// `data: {chunk}` lines until `data: [DONE]`; the usage chunk may follow the finish chunk.
#[derive(Default)]
pub(super) struct StreamDecoder {
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl StreamDecoder {
    fn finish(&mut self) -> StreamEvent {
        StreamEvent::Finish {
            finish_reason: self
                .finish_reason
                .take()
                .unwrap_or_else(|| "stop".to_owned()),
            usage: self.usage.take(),
        }
    }
}

impl SseDecoder for StreamDecoder {
    fn event(
        &mut self,
        event: SseEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            out.push(self.finish());
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|e| ProviderError::Protocol {
            detail: format!("unreadable stream chunk: {e}"),
        })?;
        if let Some(error) = chunk.error {
            return Err(ProviderError::Protocol {
                detail: format!("error in the stream: {}", error.message.unwrap_or_default()),
            });
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        if let Some(choice) = chunk.choices.into_iter().next() {
            if let Some(text) = choice.delta.and_then(|d| d.content)
                && !text.is_empty()
            {
                out.push(StreamEvent::Delta(text));
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        Ok(false)
    }

    fn end(&mut self) -> Result<StreamEvent, ProviderError> {
        if self.finish_reason.is_some() {
            Ok(self.finish())
        } else {
            Err(ProviderError::StreamCut {
                detail: "the stream ended without a finish reason or [DONE]".into(),
            })
        }
    }
}
