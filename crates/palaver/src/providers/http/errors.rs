//! Failures as [`ProviderError`]s: a failed send, and the start of an error body kept
//! for `detail` (never for `Display`).

use std::time::Duration;

use futures::StreamExt;
use reqwest::Response;

use super::ProviderError;

/// Characters of an upstream error body kept in `detail`.
pub(super) const DETAIL_CHARS: usize = 500;
/// Bytes of an upstream error body read at most.
const ERROR_BODY_BYTES: usize = 8 * 1024;
/// How long reading an upstream error body may take at most.
pub(super) const ERROR_BODY_TIME: Duration = Duration::from_secs(5);

/// The start of an error body, read for at most `limit`.
pub(super) async fn error_body(response: Response, limit: Duration) -> String {
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
pub(super) fn truncate(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

pub(super) fn send_error(e: reqwest::Error) -> ProviderError {
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
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
