//! OpenAI, and OpenAI-compatible servers (Ollama, vLLM, llama.cpp) through `OPENAI_BASE_URL`.

#[cfg(test)]
mod tests;
mod wire;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::http::{Call, HttpSettings, secret_header};
use super::{ChatCompletion, ChatRequest, ChatStream, EmbeddingRequest, Embeddings, ProviderError};
use wire::{
    StreamDecoder, WireCompletion, WireEmbeddingRequest, WireEmbeddings, WireModels, completion,
    embeddings, wire_request,
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
            dimensions: request.dimensions,
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
