use std::time::{Duration, SystemTime};

use futures::StreamExt;
use reqwest::header::HeaderMap;

use super::errors::{DETAIL_CHARS, truncate};
use super::retry::{MAX_BACKOFF, MAX_RETRY_AFTER, backoff, parse_retry_after, retry_delay};
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
#[expect(
    clippy::disallowed_methods,
    reason = "a test upstream serves until the test ends"
)]
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
