//! Issue #21, the response cache: a deterministic request (`temperature: 0`) is answered
//! upstream once, then from the cache (plain, streamed, and by a job), its usage recorded at
//! no cost; `cache: false` and `Cache-Control: no-cache` skip it; with Redis, instances share it.

use std::time::Duration;

use mock_llm::{MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::chat::parse_sse;
use crate::support::app::TestApp;
use crate::support::db::{Backend, backends, postgres_url, redis_url};

async fn spawn(backend: Backend, mock: &MockLlm, extra: &[(&str, &str)]) -> TestApp {
    let base = format!("{}/v1", mock.base_url());
    let mut vars = vec![
        ("OPENAI_API_KEY", "sk-test-cache"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("RESPONSE_CACHE", "true"),
        ("JOB_BACKOFF_MS", "50"),
    ];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(backend, &vars).await
}

/// Chat requests the upstream received.
fn upstream_calls(mock: &MockLlm) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// A message no other test sends (the cache may be shared through Redis).
fn unique(text: &str) -> String {
    format!("{text} {}", Uuid::now_v7())
}

async fn usage(app: &TestApp, user: &str) -> Value {
    app.request(
        Method::GET,
        "/api/v1/ai/usage",
        Some(&app.token(user)),
        None,
    )
    .await
    .body
}

async fn reply_of(app: &TestApp, user: &str, chat: &Value) -> Value {
    let conversation = chat["conversationId"].as_str().unwrap();
    let stored = app.get_conversation(user, conversation).await.body;
    stored["messages"][1].clone()
}

/// Lets a streamed reply reach the cache (it is kept from a task of its own, just after
/// the stream's end).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_deterministic_request_is_answered_upstream_once() {
    for backend in backends() {
        let mock = MockLlm::start(MockConfig::default()).await.unwrap();
        let app = spawn(backend, &mock, &[]).await;
        let message = unique("what is two plus two?");
        let ask = json!({"message": message, "model": "gpt-4o-mini", "temperature": 0});
        let first = app.chat("cal", ask.clone()).await;
        assert_eq!(first.status, 200, "{backend}: {}", first.body);
        assert_eq!(upstream_calls(&mock), 1);
        let after_first = usage(&app, "cal").await;
        assert!(
            after_first["costUsd"].as_f64().unwrap() > 0.0,
            "{after_first}"
        );
        assert_eq!(
            reply_of(&app, "cal", &first.body).await["metadata"].get("cached"),
            None
        );

        let second = app.chat("cal", ask.clone()).await;
        assert_eq!(second.status, 200, "{}", second.body);
        assert_eq!(
            upstream_calls(&mock),
            1,
            "{backend}: a hit asks no provider"
        );
        assert_eq!(second.body["content"], first.body["content"]);
        assert_ne!(second.body["conversationId"], first.body["conversationId"]);
        assert_eq!(
            second.body["usage"], first.body["usage"],
            "tokens are recorded"
        );
        let reply = reply_of(&app, "cal", &second.body).await;
        assert_eq!(reply["metadata"]["cached"], true, "{reply}");
        assert_eq!(
            reply["content"], first.body["content"],
            "the exchange is stored"
        );
        let after_second = usage(&app, "cal").await;
        assert_eq!(after_second["requests"], 2);
        assert_eq!(
            after_second["totalTokens"].as_i64().unwrap(),
            2 * after_first["totalTokens"].as_i64().unwrap()
        );
        assert_eq!(
            after_second["costUsd"], after_first["costUsd"],
            "a hit costs nothing"
        );

        // Skipped by `cache: false` and by `Cache-Control: no-cache`.
        let skipped = app.chat("cal", json!({"message": message, "model": "gpt-4o-mini", "temperature": 0, "cache": false})).await;
        assert_eq!(skipped.status, 200);
        assert_eq!(upstream_calls(&mock), 2);
        let with_header = app
            .raw(
                app.client
                    .post(format!("{}/api/v1/ai/chat", app.base))
                    .bearer_auth(app.token("cal"))
                    .header("cache-control", "no-cache")
                    .json(&ask),
            )
            .await;
        assert_eq!(with_header.status, 200, "{}", with_header.body);
        assert_eq!(upstream_calls(&mock), 3);
        assert_eq!(
            reply_of(&app, "cal", &with_header.body).await["metadata"].get("cached"),
            None
        );

        // Not deterministic: never cached.
        let warm = json!({"message": message, "model": "gpt-4o-mini", "temperature": 0.5});
        app.chat("cal", warm.clone()).await;
        app.chat("cal", warm).await;
        assert_eq!(upstream_calls(&mock), 5);

        // A job goes through the same pipeline: a hit too.
        let job = app
            .request(
                Method::POST,
                "/api/v1/ai/jobs",
                Some(&app.token("cal")),
                Some(json!({"type": "generate-completion", "data": ask})),
            )
            .await;
        assert_eq!(job.status, 202, "{}", job.body);
        let id = job.body["id"].as_str().unwrap();
        let mut got = Value::Null;
        for _ in 0..200 {
            got = app
                .request(
                    Method::GET,
                    &format!("/api/v1/ai/jobs/{id}"),
                    Some(&app.token("cal")),
                    None,
                )
                .await
                .body;
            if got["status"] == "completed" || got["status"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(got["status"], "completed", "{got}");
        assert_eq!(got["result"]["content"], first.body["content"]);
        assert_eq!(
            upstream_calls(&mock),
            5,
            "{backend}: the job's answer came from the cache"
        );

        let metrics = app
            .client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("response_cache_lookups_total{result=\"hit\"}"),
            "{metrics}"
        );
        assert!(metrics.contains("response_cache_lookups_total{result=\"miss\"}"));
        app.stop().await;
    }
}

async fn sse(app: &TestApp, user: &str, body: Value) -> Vec<(String, Value)> {
    let response = app
        .client
        .post(format!("{}/api/v1/ai/chat", app.base))
        .bearer_auth(app.token(user))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    parse_sse(&response.text().await.unwrap())
}

#[tokio::test]
async fn a_streamed_hit_replays_the_reply_in_chunks() {
    for backend in backends() {
        let mock = MockLlm::start(MockConfig::default()).await.unwrap();
        let app = spawn(backend, &mock, &[]).await;
        let message = unique("tell me a story [[mock:words=12]]");
        let ask =
            json!({"message": message, "model": "gpt-4o-mini", "temperature": 0, "stream": true});
        let first = sse(&app, "sol", ask.clone()).await;
        let end = &first.last().unwrap().1;
        assert_eq!(first.last().unwrap().0, "chat:end", "{first:?}");
        settle().await;
        assert_eq!(upstream_calls(&mock), 1);

        let again = sse(&app, "sol", ask).await;
        assert_eq!(
            upstream_calls(&mock),
            1,
            "{backend}: replayed from the cache"
        );
        let names: Vec<&str> = again.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "chat:conversation");
        assert_eq!(names[1], "chat:user-message");
        assert_eq!(*names.last().unwrap(), "chat:end");
        let chunks: Vec<&str> = again
            .iter()
            .filter(|(n, _)| n == "chat:message")
            .map(|(_, p)| p["content"].as_str().unwrap())
            .collect();
        assert!(chunks.len() > 1, "in chunks: {chunks:?}");
        let replayed = &again.last().unwrap().1;
        assert_eq!(chunks.concat(), replayed["content"].as_str().unwrap());
        assert_eq!(replayed["content"], end["content"]);
        let stored = reply_of(&app, "sol", replayed).await;
        assert_eq!(stored["metadata"]["cached"], true, "{stored}");

        // And a plain request is answered by what the stream left in the cache.
        let plain = app
            .chat(
                "sol",
                json!({"message": message, "model": "gpt-4o-mini", "temperature": 0}),
            )
            .await;
        assert_eq!(plain.body["content"], end["content"]);
        assert_eq!(upstream_calls(&mock), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn instances_share_the_cache_on_redis() {
    let (Some(redis), Some(_)) = (redis_url(), postgres_url()) else {
        eprintln!("SKIP: needs PALAVER_TEST_REDIS_URL and PALAVER_TEST_DATABASE_URL");
        return;
    };
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let base = format!("{}/v1", mock.base_url());
    let vars = [
        ("OPENAI_API_KEY", "sk-test-cache"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("RESPONSE_CACHE", "true"),
        ("REDIS_URL", redis.as_str()),
    ];
    let a = TestApp::spawn_with(Backend::Postgres, &vars).await;
    let b = TestApp::spawn_with_db(&a, &vars).await;
    let ask = json!({"message": unique("shared?"), "model": "gpt-4o-mini", "temperature": 0});
    let first = a.chat("rae", ask.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = b.chat("rae", ask.clone()).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(
        upstream_calls(&mock),
        1,
        "the second instance answered from Redis"
    );
    assert_eq!(second.body["content"], first.body["content"]);
    assert_eq!(
        reply_of(&b, "rae", &second.body).await["metadata"]["cached"],
        true
    );
    // A process without the cache configured asks the provider.
    let off = TestApp::spawn_with_db(
        &a,
        &[vars[0], vars[1], ("RESPONSE_CACHE", "false"), vars[3]],
    )
    .await;
    off.chat("rae", ask).await;
    assert_eq!(upstream_calls(&mock), 2);
    off.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn chat_start_is_answered_from_the_cache() {
    let Some(mut io) = crate::support::node::SocketDriver::start().await else {
        return;
    };
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let app = spawn(Backend::Sqlite, &mock, &[]).await;
    let message = unique("over the socket [[mock:words=8]]");
    let first = app
        .chat("ivy", json!({"message": message, "temperature": 0}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    io.connect("i", &app.base, &app.token("ivy")).await;
    io.emit(
        "i",
        "chat:start",
        json!({"message": message, "temperature": 0}),
    )
    .await;
    let events = io.events_until("i", &["chat:end", "chat:error"]).await;
    let (name, end) = events.last().unwrap();
    assert_eq!(name, "chat:end", "{events:?}");
    assert_eq!(end["content"], first.body["content"]);
    let chunks = events.iter().filter(|(n, _)| n == "chat:message").count();
    assert!(chunks > 1, "replayed in chunks: {events:?}");
    assert_eq!(upstream_calls(&mock), 1, "chat:start was a hit");
    io.disconnect("i").await;
}
