//! Runs across instances sharing PostgreSQL and Redis: a run produced on one is resumed (SSE
//! and Socket.IO) and stopped from the other, and a run whose producer was killed is marked
//! `interrupted` with its partial reply stored.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mock_llm::{MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};

use crate::runs::{Sse, chunks, ended, get, open_stream, read_until, resume};
use crate::support::app::{SECRET, TestApp};
use crate::support::db::{Backend, postgres_url, redis_url};
use crate::support::node::SocketDriver;

/// Two instances on one PostgreSQL database and one Redis, on mock-llm streaming
/// `tokens_per_sec`; `None` (skipped) without both.
async fn two_instances(
    tokens_per_sec: f64,
    extra: &[(&str, &str)],
) -> Option<(TestApp, TestApp, MockLlm)> {
    let (Some(redis), Some(_)) = (redis_url(), postgres_url()) else {
        return None;
    };
    let mock = MockLlm::start(MockConfig {
        tokens_per_sec: Some(tokens_per_sec),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let base = format!("{}/v1", mock.base_url());
    let mut vars = vec![
        ("OPENAI_API_KEY", "sk-test-runs"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("REDIS_URL", redis.as_str()),
    ];
    vars.extend_from_slice(extra);
    let a = TestApp::spawn_with(Backend::Postgres, &vars).await;
    let b = TestApp::spawn_with_db(&a, &vars).await;
    Some((a, b, mock))
}

fn chunk_count(events: &[Sse]) -> usize {
    events
        .iter()
        .filter(|(_, n, _)| n == "chat:message")
        .count()
}

/// Each event's seq follows the one before, from `first`.
fn assert_consecutive(events: &[Sse], first: u64) {
    for (expected, (id, _, payload)) in (first..).zip(events) {
        assert_eq!(*id, Some(expected), "{events:?}");
        assert_eq!(payload["seq"], expected);
    }
}

#[tokio::test]
async fn a_run_produced_on_one_instance_is_resumed_on_the_other() {
    let Some((a, b, _mock)) = two_instances(40.0, &[]).await else {
        return;
    };
    let first = open_stream(
        &a,
        "uma",
        json!({"message": "go [[mock:words=40]]", "stream": true}),
    )
    .await;
    let head = read_until(first, |e| chunk_count(e) >= 3).await;
    // The connection to A dropped here; the client comes back through B.
    let run = head[0].2["runId"].as_str().unwrap().to_owned();
    let cursor = head.last().unwrap().0.unwrap();
    let rest = read_until(
        resume(&b, "uma", &run, &format!("?after={cursor}"), None).await,
        ended,
    )
    .await;
    assert_consecutive(&rest, cursor + 1);
    let (_, last, end) = rest.last().unwrap();
    assert_eq!(last, "chat:end", "{rest:?}");
    let whole = chunks(&head) + &chunks(&rest);
    assert_eq!(whole, end["content"].as_str().unwrap());
    let conversation = end["conversationId"].as_str().unwrap();
    let c = get(&b, "uma", &format!("/conversations/{conversation}")).await;
    assert_eq!(
        c["messages"][1]["content"],
        whole.as_str(),
        "the chunks are the stored reply"
    );

    // After its end, from the start, on B again, over Socket.IO: the same events.
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    io.connect("late", &b.base, &b.token("uma")).await;
    let ack = io
        .emit_ack("late", "chat:resume", json!({"runId": run, "afterSeq": 0}))
        .await;
    assert_eq!(ack, json!({"runId": run}));
    let replay = io.events_until("late", &["chat:end", "chat:error"]).await;
    let seqs: Vec<u64> = replay
        .iter()
        .map(|(_, p)| p["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=rest.last().unwrap().0.unwrap()).collect();
    assert_eq!(seqs, expected, "every event once, in order");
    let text: String = replay
        .iter()
        .filter(|(n, _)| n == "chat:message")
        .map(|(_, p)| p["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, whole);
    // Another user cannot read it from either instance.
    let r = b
        .request(
            Method::GET,
            &format!("/api/v1/ai/runs/{run}/events"),
            Some(&b.token("eve")),
            None,
        )
        .await;
    r.assert_error(404, "not_found");
}

#[tokio::test]
async fn a_socket_dropped_on_one_instance_resumes_mid_stream_on_the_other() {
    let Some((a, b, _mock)) = two_instances(40.0, &[]).await else {
        return;
    };
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    io.connect("on-a", &a.base, &a.token("xia")).await;
    let ack = io
        .emit_ack(
            "on-a",
            "chat:start",
            json!({"message": "go [[mock:words=40]]"}),
        )
        .await;
    let run = ack["runId"].as_str().unwrap().to_owned();
    let mut head = Vec::new();
    while head.len() < 3 {
        head.push(io.event("on-a", "chat:message").await);
    }
    io.disconnect("on-a").await;
    let cursor = head.last().unwrap()["seq"].as_u64().unwrap();
    io.connect("on-b", &b.base, &b.token("xia")).await;
    let ack = io
        .emit_ack(
            "on-b",
            "chat:resume",
            json!({"runId": run, "afterSeq": cursor}),
        )
        .await;
    assert_eq!(ack, json!({"runId": run}));
    let rest = io.events_until("on-b", &["chat:end", "chat:error"]).await;
    let seqs: Vec<u64> = rest
        .iter()
        .map(|(_, p)| p["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (cursor + 1..cursor + 1 + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "none missing, none repeated");
    let (last, end) = rest.last().unwrap();
    assert_eq!(last, "chat:end", "{rest:?}");
    let text: String = head
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .chain(
            rest.iter()
                .filter(|(n, _)| n == "chat:message")
                .map(|(_, p)| p["content"].as_str().unwrap()),
        )
        .collect();
    assert_eq!(text, end["content"].as_str().unwrap());
    let conversation = end["conversationId"].as_str().unwrap();
    let c = get(&b, "xia", &format!("/conversations/{conversation}")).await;
    assert_eq!(
        c["messages"][1]["content"],
        text.as_str(),
        "the stored reply"
    );
}

#[tokio::test]
async fn a_run_produced_on_one_instance_is_stopped_from_the_other() {
    let Some((a, b, _mock)) = two_instances(20.0, &[]).await else {
        return;
    };
    // By its id, over REST.
    let first = open_stream(
        &a,
        "vic",
        json!({"message": "go [[mock:words=300]]", "stream": true}),
    )
    .await;
    let head = read_until(first, |e| chunk_count(e) >= 1).await;
    let run = head[0].2["runId"].as_str().unwrap().to_owned();
    let reader = resume(&b, "vic", &run, "?after=0", None).await;
    let r = b
        .request(
            Method::POST,
            &format!("/api/v1/ai/runs/{run}/cancel"),
            Some(&b.token("vic")),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let events = read_until(reader, ended).await;
    let (_, last, stopped) = events.last().unwrap();
    assert_eq!(last, "chat:stopped", "{events:?}");
    assert_consecutive(&events, 1);
    assert_eq!(stopped["content"], chunks(&events).as_str());
    assert_eq!(
        get(&a, "vic", &format!("/runs/{run}")).await["status"],
        "stopped"
    );

    // By its conversation, with `chat:stop` on a connection to B.
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    let second = open_stream(
        &a,
        "vic",
        json!({"message": "go [[mock:words=300]]", "stream": true}),
    )
    .await;
    let head = read_until(second, |e| chunk_count(e) >= 1).await;
    let (run, conversation) = (
        head[0].2["runId"].as_str().unwrap().to_owned(),
        head[0].2["conversationId"].as_str().unwrap().to_owned(),
    );
    io.connect("b", &b.base, &b.token("vic")).await;
    io.emit("b", "chat:stop", json!({"conversationId": conversation}))
        .await;
    let reader = resume(&b, "vic", &run, "?after=0", None).await;
    let events = read_until(reader, ended).await;
    assert_eq!(events.last().unwrap().1, "chat:stopped", "{events:?}");
    assert_eq!(
        get(&b, "vic", &format!("/runs/{run}")).await["status"],
        "stopped"
    );
}

/// `palaver serve` as its own process, on the database and Redis of `app`.
struct ServeProcess {
    child: Child,
    base: String,
}

impl ServeProcess {
    fn start(app: &TestApp, extra: &[(&str, &str)]) -> ServeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_palaver"));
        command
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", app.db.url())
            .env("PALAVER_DATA_DIR", app.data_dir())
            .env("JWT_SECRET", SECRET)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("AUTO_TITLE", "false")
            .env("WORKER_CONCURRENCY", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra {
            command.env(k, v);
        }
        ServeProcess {
            child: command.spawn().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn ready(&self, client: &reqwest::Client) {
        for _ in 0..200 {
            let url = format!("{}/health", self.base);
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("palaver serve did not come up on {}", self.base);
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_run_whose_producer_is_killed_ends_interrupted_with_its_partial_reply() {
    let lease = [("RUN_LEASE_SECS", "2")];
    let Some((a, _b, mock)) = two_instances(20.0, &lease).await else {
        return;
    };
    let base = format!("{}/v1", mock.base_url());
    let redis = redis_url().unwrap();
    let mut producer = ServeProcess::start(
        &a,
        &[
            ("OPENAI_API_KEY", "sk-test-runs"),
            ("OPENAI_BASE_URL", base.as_str()),
            ("REDIS_URL", redis.as_str()),
            ("RUN_LEASE_SECS", "2"),
        ],
    );
    producer.ready(&a.client).await;
    let response = a
        .client
        .post(format!("{}/api/v1/ai/chat", producer.base))
        .bearer_auth(a.token("wyn"))
        .json(&json!({"message": "go [[mock:words=400]]", "stream": true}))
        .send()
        .await
        .unwrap();
    // Past the first checkpoint (about a second in).
    let head = read_until(response, |e| chunk_count(e) >= 30).await;
    let run = head[0].2["runId"].as_str().unwrap().to_owned();
    let conversation = head[0].2["conversationId"].as_str().unwrap().to_owned();
    let reader = resume(&a, "wyn", &run, "?after=0", None).await;
    producer.kill();

    let events = read_until(reader, ended).await;
    let (_, last, error) = events.last().unwrap();
    assert_eq!(last, "chat:error", "{events:?}");
    assert_eq!(error["code"], "interrupted", "{error}");
    assert_consecutive(&events, 1);
    let run_row = get(&a, "wyn", &format!("/runs/{run}")).await;
    assert_eq!(run_row["status"], "interrupted", "{run_row}");
    let c = get(&a, "wyn", &format!("/conversations/{conversation}")).await;
    let reply = &c["messages"][1];
    let stored = reply["content"].as_str().unwrap();
    let seen = chunks(&events);
    assert!(!stored.is_empty(), "a checkpoint was stored: {c}");
    assert!(
        seen.starts_with(stored),
        "the stored partial reply is what was streamed up to its checkpoint"
    );
    assert_eq!(
        reply["metadata"]["interrupted"],
        Value::Bool(true),
        "{reply}"
    );
    assert_eq!(c["activeRunId"], Value::Null);
}
