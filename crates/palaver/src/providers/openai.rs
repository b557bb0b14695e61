//! OpenAI, and OpenAI-compatible servers (Ollama, vLLM, llama.cpp) through `OPENAI_BASE_URL`.

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::http::{Call, HttpSettings, secret_header, wire_temperature};
use super::sse::{SseDecoder, SseEvent};
use super::{
    ChatCompletion, ChatRequest, ChatRole, ChatStream, EmbeddingRequest, Embeddings, ProviderError,
    StreamEvent, Usage,
};

const ORGANIZATION: HeaderName = HeaderName::from_static("openai-organization");

pub struct OpenAi {
    name: &'static str,
    /// Including `/v1`, without a trailing slash.
    base_url: String,
    /// None for local servers that need no key: then no `Authorization` is sent.
    api_key: Option<SecretString>,
    org_id: Option<String>,
    http: HttpSettings,
}

// Wire types.

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    max_tokens: u32,
    temperature: f64,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireUsage {
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
struct WireCompletion {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireContent {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    /// Some compatible servers report a failure inside the stream.
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    delta: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Serialize)]
struct WireEmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct WireEmbeddings {
    data: Vec<WireEmbedding>,
    usage: Option<WireEmbeddingUsage>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WireEmbeddingUsage {
    prompt_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct WireModels {
    data: Vec<WireModel>,
}

#[derive(Deserialize)]
struct WireModel {
    id: String,
}

fn role(role: ChatRole) -> &'static str {
    match role {
        ChatRole::System => "system",
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    }
}

fn wire_request(request: &ChatRequest, stream: bool) -> WireRequest<'_> {
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

impl OpenAi {
    pub fn new(
        name: &'static str,
        base_url: String,
        api_key: Option<SecretString>,
        org_id: Option<String>,
        http: HttpSettings,
    ) -> OpenAi {
        let base_url = base_url.trim_end_matches('/').to_owned();
        OpenAi {
            name,
            base_url,
            api_key,
            org_id,
            http,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.api_key {
            headers.insert(
                AUTHORIZATION,
                secret_header(&format!("Bearer {}", key.expose_secret()))?,
            );
        }
        if let Some(org) = &self.org_id {
            let value = HeaderValue::from_str(org).map_err(|_| ProviderError::Protocol {
                detail: "the organization id is not a valid header value".into(),
            })?;
            headers.insert(ORGANIZATION, value);
        }
        Ok(headers)
    }

    fn chat_call(&self, request: &ChatRequest, stream: bool) -> Result<Call, ProviderError> {
        let url = format!("{}/chat/completions", self.base_url);
        Call::post_json(
            self.name,
            url,
            self.headers()?,
            &wire_request(request, stream),
        )
    }

    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let reply: WireCompletion = self.http.json(&self.chat_call(request, false)?).await?;
        completion(reply)
    }

    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let response = self.http.stream(&self.chat_call(request, true)?).await?;
        Ok(self.http.sse_stream(response, StreamDecoder::default()))
    }

    pub async fn embed(&self, request: &EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        if request.inputs.is_empty() {
            return Ok(Embeddings {
                vectors: Vec::new(),
                prompt_tokens: Some(0),
            });
        }
        let url = format!("{}/embeddings", self.base_url);
        let body = WireEmbeddingRequest {
            model: &request.model,
            input: &request.inputs,
        };
        let reply: WireEmbeddings = self
            .http
            .json(&Call::post_json(self.name, url, self.headers()?, &body)?)
            .await?;
        embeddings(reply, request.inputs.len())
    }

    pub async fn list_models(&self) -> Result<Vec<String>, ProviderError> {
        let url = format!("{}/models", self.base_url);
        let reply: WireModels = self
            .http
            .json(&Call::get(self.name, url, self.headers()?))
            .await?;
        Ok(reply.data.into_iter().map(|m| m.id).collect())
    }
}

fn completion(reply: WireCompletion) -> Result<ChatCompletion, ProviderError> {
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
fn embeddings(reply: WireEmbeddings, inputs: usize) -> Result<Embeddings, ProviderError> {
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
struct StreamDecoder {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::providers::ChatMessage;
    use crate::providers::sse::decode_in_pieces;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![
                ChatMessage {
                    role: ChatRole::System,
                    content: "Be brief.".into(),
                },
                ChatMessage {
                    role: ChatRole::User,
                    content: "hello".into(),
                },
                ChatMessage {
                    role: ChatRole::Assistant,
                    content: "hi".into(),
                },
                ChatMessage {
                    role: ChatRole::User,
                    content: "again".into(),
                },
            ],
            max_tokens: 50,
            temperature: 0.0,
        }
    }

    #[test]
    fn request_body() {
        let body = serde_json::to_value(wire_request(&request(), false)).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "hi"},
                    {"role": "user", "content": "again"},
                ],
                "max_tokens": 50,
                "temperature": 0.0,
                "stream": false,
            })
        );
        let mut warm = request();
        warm.temperature = 0.7;
        let body = serde_json::to_value(wire_request(&warm, true)).unwrap();
        assert_eq!(body["temperature"], json!(0.7));
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    fn http() -> HttpSettings {
        HttpSettings::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
            1,
            Duration::ZERO,
        )
        .unwrap()
    }

    #[test]
    fn headers_with_and_without_key() {
        let with = OpenAi::new(
            "openai",
            "https://x/v1/".into(),
            Some("sk-k".into()),
            Some("org-1".into()),
            http(),
        );
        assert_eq!(with.base_url, "https://x/v1");
        let h = with.headers().unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer sk-k");
        assert!(h[AUTHORIZATION].is_sensitive());
        assert_eq!(h["OpenAI-Organization"], "org-1");
        let without = OpenAi::new(
            "openai-compatible",
            "http://127.0.0.1:1/v1".into(),
            None,
            None,
            http(),
        );
        assert!(without.headers().unwrap().is_empty());
        assert_eq!(without.name(), "openai-compatible");
    }

    #[test]
    fn plain_completion() {
        let reply: WireCompletion = serde_json::from_value(json!({
            "id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        }))
        .unwrap();
        let c = completion(reply).unwrap();
        assert_eq!(c.content, "Hi!");
        assert_eq!(c.finish_reason, "length");
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 2
            })
        );
        let empty: WireCompletion = serde_json::from_value(json!({"choices": []})).unwrap();
        assert!(matches!(
            completion(empty),
            Err(ProviderError::Protocol { .. })
        ));
    }

    #[test]
    fn embeddings_in_input_order() {
        let reply: WireEmbeddings = serde_json::from_value(json!({
            "data": [
                {"index": 2, "embedding": [2.0]},
                {"index": 0, "embedding": [0.0]},
                {"index": 1, "embedding": [1.0]},
            ],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}
        }))
        .unwrap();
        let e = embeddings(reply, 3).unwrap();
        assert_eq!(e.vectors, vec![vec![0.0], vec![1.0], vec![2.0]]);
        assert_eq!(e.prompt_tokens, Some(3));
        let missing: WireEmbeddings =
            serde_json::from_value(json!({"data": [{"index": 0, "embedding": [0.0]}]})).unwrap();
        assert!(embeddings(missing, 2).is_err());
        let out_of_range: WireEmbeddings =
            serde_json::from_value(json!({"data": [{"index": 5, "embedding": [0.0]}]})).unwrap();
        assert!(embeddings(out_of_range, 1).is_err());
    }

    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wörld 😀\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n",
        "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n",
        "data: [DONE]\n\n",
    );

    fn expected() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Delta("Héllo".into()),
            StreamEvent::Delta(" wörld 😀".into()),
            StreamEvent::Finish {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    prompt_tokens: 7,
                    completion_tokens: 3,
                }),
            },
        ]
    }

    #[tokio::test]
    async fn stream_in_any_pieces() {
        for piece in [1, 2, 3, 5, 7, 13, 64, 1000] {
            let events = decode_in_pieces(STREAM.as_bytes(), piece, StreamDecoder::default()).await;
            let events: Vec<StreamEvent> = events.into_iter().map(|e| e.unwrap()).collect();
            assert_eq!(events, expected(), "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn stream_without_done_finishes_at_eof_after_a_finish_reason() {
        let body = STREAM.replace("data: [DONE]\n\n", "");
        let events = decode_in_pieces(body.as_bytes(), 11, StreamDecoder::default()).await;
        let events: Vec<StreamEvent> = events.into_iter().map(|e| e.unwrap()).collect();
        assert_eq!(events, expected());
    }

    #[tokio::test]
    async fn stream_cut_before_finish() {
        let cut = STREAM
            .split("data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{},")
            .next()
            .unwrap();
        let events = decode_in_pieces(cut.as_bytes(), 9, StreamDecoder::default()).await;
        assert_eq!(events.len(), 3);
        assert!(matches!(events[2], Err(ProviderError::StreamCut { .. })));
    }

    #[tokio::test]
    async fn error_inside_the_stream() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\n";
        let events = decode_in_pieces(body.as_bytes(), 4, StreamDecoder::default()).await;
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[1], Err(ProviderError::Protocol { detail }) if detail.contains("boom"))
        );
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let events = decode_in_pieces(b"data: {not json\n\n", 4, StreamDecoder::default()).await;
        assert!(matches!(events[..], [Err(ProviderError::Protocol { .. })]));
    }
}
