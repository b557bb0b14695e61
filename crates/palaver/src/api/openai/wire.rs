//! OpenAI's wire shapes for `/v1`: chat completions (plain and chunks), models, embeddings.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::providers::Usage;

/// `POST /v1/chat/completions`. Other fields are accepted, ignored and named in the
/// `x-palaver-ignored-params` header.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[garde(allow_unvalidated)]
pub struct ChatCompletionRequest {
    #[garde(length(min = 1, max = 200))]
    pub model: String,
    #[garde(length(min = 1, max = 10_000))]
    pub messages: Vec<WireMessage>,
    #[garde(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// Wins over `max_tokens`.
    #[garde(range(min = 1))]
    pub max_completion_tokens: Option<u32>,
    #[garde(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// The end user behind a shared key (kept with the usage).
    #[garde(length(max = 256))]
    pub user: Option<String>,
    /// `conversationId` stores the exchange in that Palaver conversation.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Only 1.
    #[garde(range(min = 1, max = 1))]
    pub n: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// A last chunk with `choices: []` and the usage.
    pub include_usage: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct WireMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    pub content: Option<WireContent>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WireContent {
    Text(String),
    /// Text parts (`{type: "text", text}`) only.
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WireUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl From<Usage> for WireUsage {
    fn from(u: Usage) -> Self {
        WireUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

/// A chat completion in one piece.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    /// `chat.completion`
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: WireUsage,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    pub finish_reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// `assistant`
    pub role: String,
    pub content: String,
    pub refusal: Option<String>,
}

/// One chunk of a streamed completion (`data:` of the event stream).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// `chat.completion.chunk`
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Present (null but in the last chunk) with `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<WireUsage>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelList {
    /// `list`
    pub object: String,
    pub data: Vec<ModelObject>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelObject {
    pub id: String,
    /// `model`
    pub object: String,
    /// Unix seconds; 0: not known.
    pub created: i64,
    /// The provider that serves it.
    pub owned_by: String,
    /// Tokens, when Palaver knows the model's family.
    #[serde(rename = "contextWindow", skip_serializing_if = "Option::is_none")]
    pub context_window: Option<usize>,
    /// USD per million tokens, when the price table has the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<ModelPrice>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[garde(allow_unvalidated)]
pub struct EmbeddingsRequest {
    pub input: EmbeddingsInput,
    /// Default `text-embedding-3-small`.
    #[garde(length(min = 1, max = 200))]
    pub model: Option<String>,
    /// `float` or `base64` (little-endian f32; the openai-python default).
    pub encoding_format: Option<String>,
    #[garde(range(min = 1, max = 100_000))]
    pub dimensions: Option<u32>,
    #[garde(length(max = 256))]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingsInput {
    Text(String),
    Texts(Vec<String>),
    /// Token ids in the model's encoding.
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    /// `list`
    pub object: String,
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingObject {
    /// `embedding`
    pub object: String,
    pub index: usize,
    pub embedding: EmbeddingValue,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingValue {
    Floats(Vec<f32>),
    /// Base64 of the little-endian f32s.
    Base64(String),
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}
