//! HTTP plumbing shared by the provider adapters: one client, retries with backoff,
//! timeouts, and the mapping of failures to [`ProviderError`].
//!
//! Nothing here logs a key or a body: attempts are logged with the provider's name, the
//! status and the sanitised error only.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sse::{self, BodyChunks, SseDecoder};
use super::{ChatStream, ProviderError};

/// The longest `Retry-After` honoured; longer ones are cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest computed backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Characters of an upstream error body kept in `detail`.
const DETAIL_CHARS: usize = 500;
/// Bytes of an upstream error body read at most.
const ERROR_BODY_BYTES: usize = 8 * 1024;
/// How long reading an upstream error body may take at most.
const ERROR_BODY_TIME: Duration = Duration::from_secs(5);
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

    async fn send(&self, call: &Call, sse: bool) -> Result<Response, ProviderError> {
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self.attempt(call, sse).await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            if attempt >= self.max_attempts || !error.is_retryable() {
                if error.is_retryable() {
                    tracing::warn!(provider = call.provider, attempt, error = %error, "provider call failed; no attempt left");
                } else {
                    tracing::debug!(provider = call.provider, attempt, error = %error, "provider call failed; not retryable");
                }
                return Err(error);
            }
            let delay = retry_delay(
                self.backoff_base,
                attempt,
                retry_after,
                rand::random::<f64>(),
            );
            tracing::warn!(
                provider = call.provider,
                attempt,
                max_attempts = self.max_attempts,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "provider call failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt: the response when its status is a success, else the error and the
    /// `Retry-After` delay the provider asked for.
    async fn attempt(
        &self,
        call: &Call,
        sse: bool,
    ) -> Result<Response, (ProviderError, Option<Duration>)> {
        let mut request = self
            .client
            .request(call.method.clone(), &call.url)
            .headers(call.headers.clone());
        if sse {
            request = request.header(ACCEPT, "text/event-stream");
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = match tokio::time::timeout(self.first_byte, request.send()).await {
            Err(_) => {
                let detail = format!(
                    "no response headers within {} ms",
                    self.first_byte.as_millis()
                );
                return Err((ProviderError::Timeout { detail }, None));
            }
            Ok(Err(e)) => return Err((send_error(e), None)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        tracing::debug!(
            provider = call.provider,
            status = status.as_u16(),
            "provider answered"
        );
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::SERVICE_UNAVAILABLE
        {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        let detail = error_body(response, self.idle.min(ERROR_BODY_TIME)).await;
        let error = if status == StatusCode::TOO_MANY_REQUESTS {
            ProviderError::RateLimited {
                retry_after,
                detail,
            }
        } else {
            ProviderError::Status {
                status: status.as_u16(),
                detail,
            }
        };
        Err((error, retry_after))
    }
}

/// The start of an error body, read for at most `limit`.
async fn error_body(response: Response, limit: Duration) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    let read = async {
        while body.len() < ERROR_BODY_BYTES {
            match chunks.next().await {
                Some(Ok(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(limit, read).await;
    truncate(&body)
}

/// At most [`DETAIL_CHARS`] characters of an upstream body.
fn truncate(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

fn send_error(e: reqwest::Error) -> ProviderError {
    let e = e.without_url();
    let detail = chain(&e);
    if e.is_timeout() {
        ProviderError::Timeout { detail }
    } else if e.is_builder() {
        ProviderError::Protocol { detail }
    } else {
        // Connection refused, TLS failure, connection reset before the headers.
        ProviderError::Connect { detail }
    }
}

/// An error and its sources, for `detail`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The pause after `failed` failed attempts (1 for the first): `Retry-After` when the
/// provider sent one (capped), else the exponential backoff with full jitter
/// (`jitter` in `[0, 1)`).
fn retry_delay(
    base: Duration,
    failed: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    match retry_after {
        Some(delay) => delay.min(MAX_RETRY_AFTER),
        None => backoff(base, failed, jitter),
    }
}

/// `base * 2^(failed-1)`, capped, scaled by `jitter`.
fn backoff(base: Duration, failed: u32, jitter: f64) -> Duration {
    let exponent = failed.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(MAX_BACKOFF);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A `Retry-After` value: delay-seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
/// A date in the past is no delay.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// IMF-fixdate, and the obsolete RFC 850 and asctime forms HTTP still allows.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc2822(value) {
        return Some(at.into());
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .into_iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())
        .map(|at| at.and_utc().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(250);
        assert_eq!(backoff(base, 1, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(base, 2, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(base, 3, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff(base, 4, 0.5), Duration::from_millis(1000));
        assert_eq!(backoff(base, 0, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(base, 40, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(base, u32::MAX, 1.0), MAX_BACKOFF);
        assert_eq!(
            backoff(Duration::from_secs(u64::MAX / 2), 5, 1.0),
            MAX_BACKOFF
        );
    }

    #[test]
    fn backoff_has_full_jitter() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 3, 0.0), Duration::ZERO);
        assert_eq!(backoff(base, 3, 0.25), Duration::from_millis(100));
        assert_eq!(
            backoff(base, 3, 7.0),
            Duration::from_millis(400),
            "jitter is clamped"
        );
        for _ in 0..100 {
            let d = backoff(base, 3, rand::random::<f64>());
            assert!(d <= Duration::from_millis(400));
        }
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        let base = Duration::from_millis(10);
        assert_eq!(
            retry_delay(base, 1, Some(Duration::from_secs(2)), 0.0),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(base, 1, Some(Duration::from_secs(3600)), 0.0),
            MAX_RETRY_AFTER
        );
        assert_eq!(retry_delay(base, 2, None, 1.0), Duration::from_millis(20));
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("120", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_dates() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let before = date - Duration::from_secs(5);
        for value in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(value, before),
                Some(Duration::from_secs(5)),
                "{value}"
            );
        }
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date + Duration::from_secs(60)
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date - Duration::from_secs(3600)
            ),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn truncate_keeps_whole_characters() {
        let long = "é".repeat(DETAIL_CHARS + 10);
        let t = truncate(long.as_bytes());
        assert_eq!(t.chars().count(), DETAIL_CHARS + 1);
        assert!(t.ends_with('…'));
        assert_eq!(truncate(b"short"), "short");
    }

    #[test]
    fn temperatures_keep_their_decimal_form() {
        assert_eq!(wire_temperature(0.0), 0.0);
        assert_eq!(wire_temperature(0.7), 0.7);
        assert_eq!(wire_temperature(1.0), 1.0);
        assert_eq!(wire_temperature(0.123_456_7), 0.123_456_7);
        assert_eq!(
            serde_json::to_string(&wire_temperature(0.7)).unwrap(),
            "0.7"
        );
    }

    #[test]
    fn secret_headers_are_sensitive() {
        let value = secret_header("Bearer sk-abc").unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("sk-abc"));
        assert!(secret_header("bad\nkey").is_err());
    }

    fn settings(first_byte: Duration, attempts: u32) -> HttpSettings {
        HttpSettings::new(
            Duration::from_millis(500),
            first_byte,
            Duration::from_secs(2),
            attempts,
            Duration::from_millis(1),
        )
        .unwrap()
    }

    /// A loopback server answering each connection with the next scripted raw response,
    /// then closing it, or holding it open for `(_, true)`. Returns its address and the
    /// connection count.
    async fn scripted(
        responses: Vec<(&'static str, bool)>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            for response in responses {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                seen.fetch_add(1, Ordering::SeqCst);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let (raw, hold) = response;
                let _ = socket.write_all(raw.as_bytes()).await;
                if hold {
                    held.push(socket);
                } else {
                    let _ = socket.shutdown().await;
                }
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        (addr, count)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}";

    #[tokio::test]
    async fn retries_429_with_retry_after_and_5xx_then_succeeds() {
        let (addr, count) = scripted(vec![
            ("HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow", false),
            ("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", false),
            (OK, false),
        ])
        .await;
        let call = Call::get("test", format!("{addr}/x"), HeaderMap::new());
        let value: serde_json::Value = settings(Duration::from_secs(2), 3)
            .json(&call)
            .await
            .unwrap();
        assert_eq!(value, serde_json::json!({"ok": true}));
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_keep_the_body_in_detail_only() {
        let (addr, count) = scripted(vec![
            ("HTTP/1.1 400 Bad Request\r\ncontent-length: 13\r\nconnection: close\r\n\r\nsecret-detail", false),
            (OK, false),
        ])
        .await;
        let call = Call::get("test", format!("{addr}/x"), HeaderMap::new());
        let error = settings(Duration::from_secs(2), 3)
            .json::<serde_json::Value>(&call)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ProviderError::Status { status: 400, detail } if detail == "secret-detail"),
            "{error:?}"
        );
        assert!(!error.to_string().contains("secret"));
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn rate_limit_after_the_last_attempt_carries_retry_after() {
        let (addr, _) = scripted(vec![(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            false,
        )])
        .await;
        let call = Call::get("test", format!("{addr}/x"), HeaderMap::new());
        let error = settings(Duration::from_secs(2), 1)
            .json::<serde_json::Value>(&call)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7))
        );
    }

    #[tokio::test]
    async fn first_byte_timeout_is_retried() {
        let (addr, count) = scripted(vec![("", true), ("", true)]).await;
        let call = Call::get("test", format!("{addr}/x"), HeaderMap::new());
        let error = settings(Duration::from_millis(200), 2)
            .json::<serde_json::Value>(&call)
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Timeout { .. }), "{error:?}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bad_json_is_a_protocol_error() {
        let (addr, _) = scripted(vec![(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n{nope",
            false,
        )])
        .await;
        let call = Call::get("test", format!("{addr}/x"), HeaderMap::new());
        let error = settings(Duration::from_secs(2), 3)
            .json::<serde_json::Value>(&call)
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Protocol { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn idle_body_is_a_timeout_and_a_cut_body_a_stream_cut() {
        let http = HttpSettings::new(
            Duration::from_millis(500),
            Duration::from_secs(2),
            Duration::from_millis(200),
            1,
            Duration::ZERO,
        )
        .unwrap();
        let chunk = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n";
        for (hold, idle) in [(false, false), (true, true)] {
            // Shut after the first chunk: the body is cut; held open: the idle timeout fires.
            let (addr, _) = scripted(vec![(chunk, hold)]).await;
            let response = http
                .stream(&Call::get("test", format!("{addr}/x"), HeaderMap::new()))
                .await
                .unwrap();
            let items: Vec<_> = http.body_chunks(response).collect().await;
            assert_eq!(items.len(), 2, "{items:?}");
            assert!(matches!(&items[0], Ok(b) if &b[..] == b"abc"), "{items:?}");
            if idle {
                assert!(
                    matches!(items[1], Err(ProviderError::Timeout { .. })),
                    "{items:?}"
                );
            } else {
                assert!(
                    matches!(items[1], Err(ProviderError::StreamCut { .. })),
                    "{items:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_connect_error_after_retries() {
        let http = HttpSettings::new(
            Duration::from_millis(500),
            Duration::from_secs(2),
            Duration::from_secs(2),
            2,
            Duration::from_millis(1),
        )
        .unwrap();
        // A port nothing listens on: bind one, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let call = Call::get(
            "test",
            format!("http://127.0.0.1:{port}/v1/models"),
            HeaderMap::new(),
        );
        let error = http.json::<serde_json::Value>(&call).await.unwrap_err();
        assert!(matches!(error, ProviderError::Connect { .. }), "{error:?}");
    }
}
