//! Google's Gemini API (`generateContent`, `streamGenerateContent?alt=sse`).

#[cfg(test)]
mod tests;
mod wire;

use reqwest::header::{HeaderMap, HeaderName};
use secrecy::{ExposeSecret, SecretString};

use super::http::{Call, HttpSettings, secret_header};
use super::{ChatCompletion, ChatRequest, ChatStream, ProviderError};
use wire::{StreamDecoder, WireModels, WireResponse, completion, model_segment, wire_request};

const API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
/// Pages of the model list read at most.
const MAX_MODEL_PAGES: usize = 20;

pub struct Gemini {
    /// Without `/v1beta` and without a trailing slash.
    base_url: String,
    api_key: SecretString,
    http: HttpSettings,
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
