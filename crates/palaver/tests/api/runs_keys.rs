//! `Idempotency-Key` (and `clientRequestId` on `chat:start`): a request sent again with the
//! key of an earlier one attaches to the run that one started; the provider is asked once.

use mock_llm::MockLlm;
use reqwest::Method;
use serde_json::{Value, json};

use crate::runs::{chunks, ended, get, read_until, spawn};
use crate::support::app::TestApp;
use crate::support::db::backends;
use crate::support::node::SocketDriver;

/// How many chat completions the upstream was asked for.
fn upstream_calls(mock: &MockLlm) -> usize {
    mock.requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count()
}

async fn keyed(app: &TestApp, user: &str, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/ai/chat", app.base))
        .bearer_auth(app.token(user))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_plain_chat_sent_again_with_its_key_answers_from_the_first_run() {
    for backend in backends() {
        let (app, mock) = spawn(backend, 1000.0).await;
        let body = json!({"message": "hello [[mock:words=12]]"});
        let first = keyed(&app, "kim", "order-1", body.clone()).await;
        assert_eq!(first.status(), 200);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first: Value = first.json().await.unwrap();
        let again = keyed(&app, "kim", "order-1", body.clone()).await;
        assert_eq!(again.status(), 200, "{backend}");
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again, first, "{backend}: the same answer, usage and all");
        assert_eq!(upstream_calls(&mock), 1, "{backend}: paid once");
        let conversation = first["conversationId"].as_str().unwrap();
        let c = get(&app, "kim", &format!("/conversations/{conversation}")).await;
        assert_eq!(c["messageCount"], 2, "{backend}: stored once");

        // The key is the caller's own: another user's request with it is a new one.
        let theirs = keyed(&app, "lee", "order-1", body.clone()).await;
        assert_eq!(theirs.status(), 200);
        let theirs: Value = theirs.json().await.unwrap();
        assert_ne!(theirs["runId"], first["runId"]);
        assert_eq!(upstream_calls(&mock), 2);

        // In the body as `clientRequestId`, the same.
        let mut with_id = body.clone();
        with_id["clientRequestId"] = json!("order-1");
        let r = app.chat("kim", with_id).await;
        assert_eq!(r.body["runId"], first["runId"], "{backend}");
        assert_eq!(upstream_calls(&mock), 2);

        for bad in ["", "has space", &"k".repeat(201)] {
            let r = app
                .raw(
                    app.client
                        .post(format!("{}/api/v1/ai/chat", app.base))
                        .bearer_auth(app.token("kim"))
                        .header("Idempotency-Key", bad)
                        .json(&body),
                )
                .await;
            r.assert_error(400, "validation_failed");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_stream_sent_again_with_its_key_replays_the_run_from_its_first_event() {
    for backend in backends() {
        let (app, mock) = spawn(backend, 40.0).await;
        let body = json!({"message": "go [[mock:words=30]]", "stream": true});
        let first = keyed(&app, "mo", "tab-7", body.clone()).await;
        let head = read_until(first, |e| {
            e.iter().filter(|(_, n, _)| n == "chat:message").count() >= 3
        })
        .await;
        // The page was refreshed: the same request again, mid-stream.
        let again = keyed(&app, "mo", "tab-7", body.clone()).await;
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let replay = read_until(again, ended).await;
        for (expected, (id, _, payload)) in (1..).zip(&replay) {
            assert_eq!(*id, Some(expected), "{backend}: {replay:?}");
            assert_eq!(payload["runId"], head[0].2["runId"]);
        }
        let (_, last, end) = replay.last().unwrap();
        assert_eq!(last, "chat:end", "{backend}");
        assert_eq!(chunks(&replay), end["content"].as_str().unwrap());
        assert!(chunks(&replay).starts_with(&chunks(&head)));
        assert_eq!(upstream_calls(&mock), 1, "{backend}: paid once");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_start_sent_again_with_its_client_request_id_follows_the_first_run() {
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    for backend in backends() {
        let (app, mock) = spawn(backend, 40.0).await;
        io.connect("one", &app.base, &app.token("nia")).await;
        let start = json!({"message": "go [[mock:words=20]]", "clientRequestId": "msg-42"});
        let ack = io.emit_ack("one", "chat:start", start.clone()).await;
        let run = ack["runId"].as_str().unwrap().to_owned();
        io.event("one", "chat:message").await;
        io.disconnect("one").await;

        io.connect("two", &app.base, &app.token("nia")).await;
        let ack = io.emit_ack("two", "chat:start", start.clone()).await;
        assert_eq!(ack["runId"], run.as_str(), "{backend}: {ack}");
        assert_eq!(ack["attached"], true);
        let events = io.events_until("two", &["chat:end", "chat:error"]).await;
        let seqs: Vec<u64> = events
            .iter()
            .map(|(_, p)| p["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{backend}"
        );
        assert_eq!(events.last().unwrap().0, "chat:end", "{events:?}");
        assert_eq!(upstream_calls(&mock), 1, "{backend}: paid once");
        io.disconnect("two").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_keyed_request_whose_run_failed_says_so() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, 1000.0).await;
        let failing = json!({"message": "x [[mock:500]]"});
        let first = keyed(&app, "ola", "try-1", failing.clone()).await;
        assert_eq!(first.status(), 502, "{backend}");
        let again = app
            .raw(
                app.client
                    .post(format!("{}/api/v1/ai/chat", app.base))
                    .bearer_auth(app.token("ola"))
                    .header("Idempotency-Key", "try-1")
                    .json(&failing),
            )
            .await;
        again.assert_error(409, "idempotency_conflict");
        let r = app
            .request(
                Method::GET,
                "/api/v1/ai/runs?status=failed",
                Some(&app.token("ola")),
                None,
            )
            .await;
        assert_eq!(r.body["data"].as_array().unwrap().len(), 1, "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn shutdown_interrupts_a_run_still_going_after_the_grace_period() {
    for backend in backends() {
        let (mut app, mock) = spawn(backend, 20.0).await;
        app.restart_with(&[
            ("OPENAI_API_KEY", "sk-test-runs"),
            ("OPENAI_BASE_URL", &format!("{}/v1", mock.base_url())),
            ("SHUTDOWN_GRACE_SECS", "1"),
        ])
        .await;
        let response = app
            .client
            .post(format!("{}/api/v1/ai/chat", app.base))
            .bearer_auth(app.token("pia"))
            .json(&json!({"message": "go [[mock:words=400]]", "stream": true}))
            .send()
            .await
            .unwrap();
        let head = read_until(response, |e| {
            e.iter().filter(|(_, n, _)| n == "chat:message").count() >= 2
        })
        .await;
        let run = head[0].2["runId"].as_str().unwrap().to_owned();
        let conversation = head[0].2["conversationId"].as_str().unwrap().to_owned();
        // A restart: the old process shuts down (1 s of grace), the new one reads the store.
        let stopping = std::time::Instant::now();
        app.restart_with(&[]).await;
        assert!(
            stopping.elapsed() < std::time::Duration::from_secs(10),
            "{backend}: shutdown is bounded by the grace period"
        );
        let stored = get(&app, "pia", &format!("/runs/{run}")).await;
        assert_eq!(stored["status"], "interrupted", "{backend}: {stored}");
        assert_eq!(stored["errorCode"], "interrupted");
        let c = get(&app, "pia", &format!("/conversations/{conversation}")).await;
        let reply = &c["messages"][1];
        assert_eq!(reply["metadata"]["interrupted"], true, "{backend}: {reply}");
        assert!(
            reply["content"]
                .as_str()
                .unwrap()
                .starts_with(&chunks(&head)),
            "{backend}: the partial reply holds what was streamed"
        );
        app.stop().await;
    }
}
