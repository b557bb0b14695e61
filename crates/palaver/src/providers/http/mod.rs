//! HTTP plumbing shared by the provider adapters: one client, retries with backoff,
//! timeouts, and the mapping of failures to [`ProviderError`].
//!
//! Nothing here logs a key or a body: attempts are logged with the provider's name, the
//! status and the sanitised error only.

mod errors;
mod retry;
#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sse::{self, BodyChunks, SseDecoder};
use super::{ChatStream, ProviderError};
use errors::{chain, truncate};

/// The largest non-streamed body accepted (embedding batches are big).
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// The HTTP client and timeouts every HTTP provider shares. Cheap to clone.
#[derive(Clone)]
pub struct HttpSettings {
    client: reqwest::Client,
    first_byte: Duration,
    idle: Duration,
    max_attempts: u32,
    backoff_base: Duration,
}

/// One upstream call, replayable for retries.
pub(super) struct Call {
    /// For logs.
    pub provider: &'static str,
    pub method: Method,
    pub url: String,
    /// Keys in here should be marked sensitive (`HeaderValue::set_sensitive`).
    pub headers: HeaderMap,
    /// A serialised JSON body.
    pub body: Option<Bytes>,
}

impl Call {
    pub fn get(provider: &'static str, url: String, headers: HeaderMap) -> Call {
        Call {
            provider,
            method: Method::GET,
            url,
            headers,
            body: None,
        }
    }

    pub fn post_json<T: Serialize>(
        provider: &'static str,
        url: String,
        headers: HeaderMap,
        body: &T,
    ) -> Result<Call, ProviderError> {
        let body = serde_json::to_vec(body).map_err(|e| ProviderError::Protocol {
            detail: format!("serialising the request: {e}"),
        })?;
        Ok(Call {
            provider,
            method: Method::POST,
            url,
            headers,
            body: Some(Bytes::from(body)),
        })
    }
}

/// A temperature as the shortest decimal that reads back as the same `f32` (0.7, not
/// 0.699999988079071), for wire types that hold it as `f64`.
pub(super) fn wire_temperature(temperature: f32) -> f64 {
    temperature
        .to_string()
        .parse()
        .unwrap_or(f64::from(temperature))
}

/// A header value holding a key: marked sensitive so it never shows in debug output.
pub(super) fn secret_header(value: &str) -> Result<HeaderValue, ProviderError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| ProviderError::Protocol {
        detail: "the API key is not a valid HTTP header value".into(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl HttpSettings {
    pub fn new(
        connect: Duration,
        first_byte: Duration,
        idle: Duration,
        max_attempts: u32,
        backoff_base: Duration,
    ) -> Result<HttpSettings, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            // Key headers other than `Authorization` would follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("palaver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Connect {
                detail: format!("building the HTTP client: {}", chain(&e)),
            })?;
        Ok(HttpSettings {
            client,
            first_byte,
            idle,
            max_attempts: max_attempts.max(1),
            backoff_base,
        })
    }

    /// Sends `call` (with retries) and reads its JSON answer.
    pub(super) async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T, ProviderError> {
        let response = self.send(call, false).await?;
        let mut chunks = self.body_chunks(response);
        let mut body = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ProviderError::Protocol {
                    detail: format!("a body larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| ProviderError::Protocol {
            detail: format!(
                "{} answered JSON Palaver could not read: {e}: {}",
                call.provider,
                truncate(&body)
            ),
        })
    }

    /// Sends `call` (with retries until the response headers arrive with a success status)
    /// and returns the response whose body is the event stream.
    pub(super) async fn stream(&self, call: &Call) -> Result<Response, ProviderError> {
        self.send(call, true).await
    }

    /// A server-sent-event response as chat events, with the idle timeout between chunks.
    pub(super) fn sse_stream<D: SseDecoder>(&self, response: Response, decoder: D) -> ChatStream {
        sse::decode(self.body_chunks(response), decoder)
    }

    /// The body's chunks: a pause longer than the idle timeout is `Timeout`, a failing body
    /// `StreamCut`. The body is owned by the stream, so dropping it closes the connection.
    pub(super) fn body_chunks(&self, response: Response) -> BodyChunks {
        let idle = self.idle;
        let body: BodyChunks = Box::pin(response.bytes_stream().map(|r| {
            r.map_err(|e| ProviderError::StreamCut {
                detail: chain(&e.without_url()),
            })
        }));
        Box::pin(futures::stream::unfold(
            Some(body),
            move |state| async move {
                let mut body = state?;
                match tokio::time::timeout(idle, body.next()).await {
                    Err(_) => Some((
                        Err(ProviderError::Timeout {
                            detail: format!("no data for {} ms", idle.as_millis()),
                        }),
                        None,
                    )),
                    Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(body))),
                    Ok(Some(Err(e))) => Some((Err(e), None)),
                    Ok(None) => None,
                }
            },
        ))
    }
}
