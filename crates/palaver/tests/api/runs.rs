//! Runs: every exchange is one; a streamed run's events carry `runId` and `seq` and can be
//! read again after a cursor, replayed then live, over SSE and Socket.IO.

use std::time::Duration;

use futures::StreamExt;
use mock_llm::{MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::db::{Backend, backends};
use crate::support::node::SocketDriver;

/// Palaver on mock-llm streaming `tokens_per_sec`.
pub(crate) async fn spawn(backend: Backend, tokens_per_sec: f64) -> (TestApp, MockLlm) {
    let mock = MockLlm::start(MockConfig {
        tokens_per_sec: Some(tokens_per_sec),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let base = format!("{}/v1", mock.base_url());
    let vars = [
        ("OPENAI_API_KEY", "sk-test-runs"),
        ("OPENAI_BASE_URL", base.as_str()),
    ];
    (TestApp::spawn_with(backend, &vars).await, mock)
}

/// An SSE event: `(id, name, payload)`.
pub(crate) type Sse = (Option<u64>, String, Value);

/// Parses complete SSE frames (comments and keep-alives left out).
pub(crate) fn frames(text: &str) -> Vec<Sse> {
    let mut out = Vec::new();
    for frame in text.split("\n\n") {
        let (mut id, mut name, mut data) = (None, None, String::new());
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if let Some(name) = name {
            out.push((id, name, serde_json::from_str(&data).unwrap_or(Value::Null)));
        }
    }
    out
}

/// Reads an SSE response until `enough` holds for the events so far (or it ends).
pub(crate) async fn read_until(
    response: reqwest::Response,
    enough: impl Fn(&[Sse]) -> bool,
) -> Vec<Sse> {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    loop {
        let complete = &text[..text.rfind("\n\n").map_or(0, |i| i + 2)];
        let events = frames(complete);
        if enough(&events) {
            return events;
        }
        match tokio::time::timeout(Duration::from_secs(20), body.next()).await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk.unwrap())),
            Ok(None) => return frames(&text),
            Err(_) => panic!("no event in 20 s; so far: {text}"),
        }
    }
}

pub(crate) fn ended(events: &[Sse]) -> bool {
    events.iter().any(|(_, n, _)| {
        matches!(
            n.as_str(),
            "chat:end" | "chat:error" | "chat:stopped" | "run:snapshot"
        )
    })
}

pub(crate) fn chunks(events: &[Sse]) -> String {
    events
        .iter()
        .filter(|(_, n, _)| n == "chat:message")
        .map(|(_, _, v)| v["content"].as_str().unwrap())
        .collect()
}

pub(crate) async fn open_stream(app: &TestApp, user: &str, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/ai/chat", app.base))
        .bearer_auth(app.token(user))
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn resume(
    app: &TestApp,
    user: &str,
    run: &str,
    query: &str,
    last_event_id: Option<u64>,
) -> reqwest::Response {
    let mut req = app
        .client
        .get(format!("{}/api/v1/ai/runs/{run}/events{query}", app.base))
        .bearer_auth(app.token(user));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    req.send().await.unwrap()
}

pub(crate) async fn get(app: &TestApp, user: &str, path: &str) -> Value {
    let r = app
        .request(
            Method::GET,
            &format!("/api/v1/ai{path}"),
            Some(&app.token(user)),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.body
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_after_its_cursor_without_a_gap() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, 40.0).await;
        let first = open_stream(
            &app,
            "rui",
            json!({"message": "go [[mock:words=30]]", "stream": true}),
        )
        .await;
        let head = read_until(first, |e| {
            e.iter().filter(|(_, n, _)| n == "chat:message").count() >= 3
        })
        .await;
        // The client went away here (the response is dropped); the run goes on.
        let run = head[0].2["runId"].as_str().unwrap().to_owned();
        for (i, (id, _, payload)) in head.iter().enumerate() {
            assert_eq!(*id, Some(i as u64 + 1), "{backend}: ids count from 1");
            assert_eq!(payload["seq"], i as u64 + 1);
            assert_eq!(payload["runId"], run.as_str());
        }
        let conversation = head[0].2["conversationId"].as_str().unwrap().to_owned();
        let live = get(&app, "rui", "/runs?status=in_progress").await;
        assert!(
            live["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == run.as_str()),
            "{backend}: {live}"
        );
        let c = get(&app, "rui", &format!("/conversations/{conversation}")).await;
        assert_eq!(c["activeRunId"], run.as_str(), "{backend}");

        let cursor = head.last().unwrap().0.unwrap();
        let rest = read_until(
            resume(&app, "rui", &run, &format!("?after={cursor}"), None).await,
            ended,
        )
        .await;
        assert_eq!(
            rest[0].0,
            Some(cursor + 1),
            "{backend}: the next event, none missing"
        );
        for pair in rest.windows(2) {
            assert_eq!(
                pair[1].0.unwrap(),
                pair[0].0.unwrap() + 1,
                "{backend}: no gap, no repeat"
            );
        }
        let (_, last, end) = rest.last().unwrap();
        assert_eq!(last, "chat:end", "{backend}");
        let whole = chunks(&head) + &chunks(&rest);
        assert_eq!(
            whole,
            end["content"].as_str().unwrap(),
            "{backend}: the chunks make the reply"
        );

        let stored = get(&app, "rui", &format!("/runs/{run}")).await;
        assert_eq!(stored["status"], "completed", "{backend}");
        assert_eq!(
            stored["lastSeq"],
            rest.last().unwrap().0.unwrap(),
            "{backend}"
        );
        let c = get(&app, "rui", &format!("/conversations/{conversation}")).await;
        assert_eq!(c["activeRunId"], Value::Null, "{backend}");
        assert_eq!(c["messages"][1]["content"], whole.as_str());

        // After its end: replayed in full from `Last-Event-ID`, identical.
        let again = read_until(resume(&app, "rui", &run, "", Some(2)).await, ended).await;
        assert_eq!(again[0].0, Some(3));
        assert_eq!(again.last(), rest.last(), "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_run_is_stopped_by_its_id_and_its_readers_hear_it() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, 20.0).await;
        let first = open_stream(
            &app,
            "sam",
            json!({"message": "go [[mock:words=200]]", "stream": true}),
        )
        .await;
        let head = read_until(first, |e| e.iter().any(|(_, n, _)| n == "chat:message")).await;
        let run = head[0].2["runId"].as_str().unwrap().to_owned();
        let reader = resume(&app, "sam", &run, "?after=0", None).await;
        let r = app
            .request(
                Method::POST,
                &format!("/api/v1/ai/runs/{run}/cancel"),
                Some(&app.token("sam")),
                None,
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        let events = read_until(reader, ended).await;
        let (_, last, stopped) = events.last().unwrap();
        assert_eq!(last, "chat:stopped", "{backend}: {events:?}");
        let stored = get(&app, "sam", &format!("/runs/{run}")).await;
        assert_eq!(stored["status"], "stopped", "{backend}");
        assert_eq!(stopped["content"], chunks(&events).as_str());
        // Another user's run is not theirs to read or stop.
        let r = app
            .request(
                Method::POST,
                &format!("/api/v1/ai/runs/{run}/cancel"),
                Some(&app.token("eve")),
                None,
            )
            .await;
        r.assert_error(404, "not_found");
        let r = app
            .request(
                Method::GET,
                &format!("/api/v1/ai/runs/{run}"),
                Some(&app.token("eve")),
                None,
            )
            .await;
        r.assert_error(404, "not_found");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_plain_chat_is_a_run_too_and_resumes_as_a_snapshot() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, 1000.0).await;
        let chat = app.chat("pat", json!({"message": "hello"})).await;
        assert_eq!(chat.status, 200, "{}", chat.body);
        let run = chat.body["runId"].as_str().unwrap().to_owned();
        let stored = get(&app, "pat", &format!("/runs/{run}")).await;
        assert_eq!(stored["status"], "completed", "{backend}");
        assert_eq!(stored["messageId"], chat.body["messageId"]);
        assert_eq!(stored["userMessageId"], chat.body["userMessageId"]);
        let events = read_until(resume(&app, "pat", &run, "", None).await, ended).await;
        assert_eq!(events.len(), 1, "{backend}: {events:?}");
        let (_, name, snapshot) = &events[0];
        assert_eq!(name, "run:snapshot");
        assert_eq!(snapshot["run"]["id"], run.as_str());
        assert_eq!(
            snapshot["message"]["content"], chat.body["content"],
            "{backend}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn chat_resume_on_a_new_connection_continues_where_the_old_one_stopped() {
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    for backend in backends() {
        let (app, _mock) = spawn(backend, 40.0).await;
        io.connect("old", &app.base, &app.token("ria")).await;
        let ack = io
            .emit_ack(
                "old",
                "chat:start",
                json!({"message": "go [[mock:words=30]]"}),
            )
            .await;
        let run = ack["runId"]
            .as_str()
            .unwrap_or_else(|| panic!("{ack}"))
            .to_owned();
        let mut head = Vec::new();
        while head.len() < 3 {
            let chunk = io.event("old", "chat:message").await;
            assert_eq!(chunk["runId"], run.as_str());
            head.push(chunk);
        }
        io.disconnect("old").await;
        let cursor = head.last().unwrap()["seq"].as_u64().unwrap();

        io.connect("new", &app.base, &app.token("ria")).await;
        let ack = io
            .emit_ack(
                "new",
                "chat:resume",
                json!({"runId": run, "afterSeq": cursor}),
            )
            .await;
        assert_eq!(ack, json!({"runId": run}), "{backend}");
        let rest = io.events_until("new", &["chat:end", "chat:error"]).await;
        for (expected, (_, payload)) in (cursor + 1..).zip(rest.iter()) {
            assert_eq!(
                payload["seq"].as_u64(),
                Some(expected),
                "{backend}: {rest:?}"
            );
        }
        let text: String = head
            .iter()
            .chain(
                rest.iter()
                    .filter(|(n, _)| n == "chat:message")
                    .map(|(_, v)| v),
            )
            .map(|v| v["content"].as_str().unwrap())
            .collect();
        let (_, end) = rest.last().unwrap();
        assert_eq!(text, end["content"].as_str().unwrap(), "{backend}");

        let ack = io
            .emit_ack("new", "chat:resume", json!({"runId": uuid::Uuid::now_v7()}))
            .await;
        assert_eq!(ack["error"]["code"], "not_found", "{backend}: {ack}");
        io.event("new", "chat:error").await;
        io.disconnect("new").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn silent_streams_get_keep_alive_comments() {
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let base = format!("{}/v1", mock.base_url());
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("OPENAI_API_KEY", "sk-test-runs"),
            ("OPENAI_BASE_URL", base.as_str()),
            ("SSE_KEEPALIVE_SECS", "1"),
        ],
    )
    .await;
    // The upstream is silent for 2.5 s before its first token.
    let chat = open_stream(
        &app,
        "kai",
        json!({"message": "wait [[mock:delay=2500]]", "stream": true}),
    )
    .await;
    let mut body = chat.bytes_stream();
    let mut text = String::new();
    while !text.contains(": keep-alive") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("a keep-alive within the silence");
        let Some(chunk) = chunk else {
            panic!("the stream ended without a keep-alive: {text}");
        };
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(
        !text.contains("chat:message"),
        "it came during the silence: {text}"
    );
    let live = get(&app, "kai", "/runs?status=in_progress").await;
    let run = live["data"][0]["id"].as_str().unwrap().to_owned();
    // A resumed reader of the same silence gets them too.
    let resumed = resume(&app, "kai", &run, "?after=0", None).await;
    let mut body = resumed.bytes_stream();
    let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("a keep-alive within the silence")
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&chunk).into_owned();
    assert!(first.starts_with(": keep-alive"), "{first}");
    app.stop().await;
}

/// While a reply streams its text is written to its row every `RUN_CHECKPOINT_MS` (the
/// conversation shows it, marked `streaming`); with `RUN_CHECKPOINT_MS=0` only its last write
/// stores it.
#[tokio::test]
async fn a_streaming_reply_is_checkpointed_unless_checkpoints_are_off() {
    for (every, checkpointed) in [("200", true), ("0", false)] {
        let mock = MockLlm::start(MockConfig {
            tokens_per_sec: Some(40.0),
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let base = format!("{}/v1", mock.base_url());
        let vars = [
            ("OPENAI_API_KEY", "sk-test-runs"),
            ("OPENAI_BASE_URL", base.as_str()),
            ("RUN_CHECKPOINT_MS", every),
        ];
        let app = TestApp::spawn_with(Backend::Sqlite, &vars).await;
        let body = json!({"message": "go [[mock:words=400]]", "stream": true});
        // The client stays until 20 words are in (half a second), so the run goes on for
        // about ten seconds more: several checkpoint periods.
        let response = open_stream(&app, "cato", body).await;
        let head = read_until(response, |e| chunks(e).split_whitespace().count() >= 20).await;
        let conversation = head[0].2["conversationId"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let c = get(&app, "cato", &format!("/conversations/{conversation}")).await;
        let messages = c["messages"].as_array().unwrap();
        let run = &c["activeRunId"];
        assert!(
            !run.is_null(),
            "RUN_CHECKPOINT_MS={every}: still streaming: {c}"
        );
        if checkpointed {
            assert_eq!(messages.len(), 2, "RUN_CHECKPOINT_MS={every}: {c}");
            let reply = &messages[1];
            assert_eq!(reply["metadata"]["streaming"], Value::Bool(true), "{reply}");
            let text = reply["content"].as_str().unwrap();
            assert!(
                text.split_whitespace().count() >= 20,
                "the checkpoint holds what was streamed by then: {reply}"
            );
        } else {
            assert_eq!(
                messages.len(),
                1,
                "RUN_CHECKPOINT_MS={every}: no reply row yet: {c}"
            );
        }
    }
}
