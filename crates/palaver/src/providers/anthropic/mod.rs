//! Anthropic's Messages API.

#[cfg(test)]
mod tests;
mod wire;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::http::{Call, HttpSettings, secret_header};
use super::{ChatCompletion, ChatRequest, ChatStream, ProviderError};
use wire::{StreamDecoder, WireMessageReply, WireModels, completion, wire_request};

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const API_VERSION: &str = "2023-06-01";

/// Pages of the model list read at most.
const MAX_MODEL_PAGES: usize = 20;

pub struct Anthropic {
    /// Without `/v1` and without a trailing slash.
    base_url: String,
    api_key: SecretString,
    http: HttpSettings,
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
