//! Conversation trees over the other transports: `chat:regenerate` and `conversation:branch`
//! on Socket.IO (the real `socket.io-client`, across two instances on Redis), and a
//! `generate-completion` job that starts a branch.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::db::{Backend, backends, postgres_url, redis_url};
use crate::support::node::SocketDriver;

async fn call(app: &TestApp, user: &str, method: Method, path: &str, body: Option<Value>) -> Value {
    let r = app
        .request(
            method,
            &format!("/api/v1/ai{path}"),
            Some(&app.token(user)),
            body,
        )
        .await;
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
    r.body
}

#[tokio::test]
async fn chat_regenerate_streams_a_sibling_reply_with_the_chat_events() {
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    for backend in backends() {
        let app = TestApp::spawn_with(backend, &[("MOCK_WORD_DELAY_MS", "0")]).await;
        let first = app.chat("sol", json!({"message": "tell me a story"})).await;
        assert_eq!(first.status, 200, "{}", first.body);
        let (c, user_message, reply) = (
            first.body["conversationId"].as_str().unwrap().to_owned(),
            first.body["userMessageId"].as_str().unwrap().to_owned(),
            first.body["messageId"].as_str().unwrap().to_owned(),
        );
        io.connect("a", &app.base, &app.token("sol")).await;
        let ack = io
            .emit_ack(
                "a",
                "chat:regenerate",
                json!({"messageId": reply, "maxTokens": 50}),
            )
            .await;
        assert_eq!(ack["conversationId"], c.as_str(), "{backend}: {ack}");
        assert!(ack["runId"].is_string(), "{backend}: {ack}");
        let events = io.events_until("a", &["chat:end", "chat:error"]).await;
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names.first(),
            Some(&"chat:user-message"),
            "{backend}: {names:?}"
        );
        assert_eq!(events[0].1["messageId"], user_message.as_str());
        let (last, end) = events.last().unwrap();
        assert_eq!(last, "chat:end", "{backend}: {end}");
        let new_reply = end["messageId"].as_str().unwrap();
        assert_ne!(new_reply, reply);
        assert_eq!(end["parentId"], user_message.as_str());
        let streamed: String = events
            .iter()
            .filter(|(n, _)| n == "chat:message")
            .map(|(_, v)| v["content"].as_str().unwrap())
            .collect();
        let got = call(
            &app,
            "sol",
            Method::GET,
            &format!("/conversations/{c}"),
            None,
        )
        .await;
        let path = got["messages"].as_array().unwrap();
        assert_eq!(path.len(), 2, "{backend}");
        assert_eq!(path[1]["id"], new_reply);
        assert_eq!(
            path[1]["content"],
            streamed.as_str(),
            "{backend}: chunks make the reply"
        );
        assert_eq!(path[1]["siblingIds"], json!([reply, new_reply]));

        // Refusals come back in the ack and as `chat:error`, like `chat:start`'s.
        for bad in [json!({}), json!({"messageId": uuid::Uuid::now_v7()})] {
            let ack = io.emit_ack("a", "chat:regenerate", bad).await;
            assert!(ack["error"]["code"].is_string(), "{backend}: {ack}");
            io.event("a", "chat:error").await;
        }
        io.disconnect("a").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_branch_chosen_on_one_device_is_heard_on_the_others() {
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let (c, first_reply) = branched(&app, "lu").await;
        io.connect("phone", &app.base, &app.token("lu")).await;
        io.connect("stranger", &app.base, &app.token("not-lu"))
            .await;
        call(
            &app,
            "lu",
            Method::PUT,
            &format!("/conversations/{c}/active-leaf"),
            Some(json!({"messageId": first_reply})),
        )
        .await;
        let event = io.event("phone", "conversation:branch").await;
        assert_eq!(
            event,
            json!({"conversationId": c, "activeLeafId": first_reply}),
            "{backend}"
        );
        let leaked = io
            .wait_for(Duration::from_millis(300), &|v| {
                v["id"] == "stranger" && v["kind"] == "event"
            })
            .await;
        assert!(leaked.is_none(), "{backend}: another user heard {leaked:?}");
        // Deleting the active leaf moves it (to the other reply), and the devices hear that too.
        let gone = call(
            &app,
            "lu",
            Method::DELETE,
            &format!("/messages/{first_reply}"),
            None,
        )
        .await;
        let event = io.event("phone", "conversation:branch").await;
        assert_eq!(event["conversationId"], c.as_str(), "{backend}");
        assert_eq!(
            event["activeLeafId"], gone["activeLeafId"],
            "{backend}: {event}"
        );
        assert_ne!(event["activeLeafId"], first_reply.as_str());
        io.disconnect("phone").await;
        io.disconnect("stranger").await;
        app.stop().await;
    }
}

/// A conversation of two branches after its first reply; returns it and that first reply.
async fn branched(app: &TestApp, user: &str) -> (String, String) {
    let first = app.chat(user, json!({"message": "one"})).await;
    let c = first.body["conversationId"].as_str().unwrap().to_owned();
    let user_message = first.body["userMessageId"].as_str().unwrap().to_owned();
    let reply = first.body["messageId"].as_str().unwrap().to_owned();
    call(
        app,
        user,
        Method::POST,
        &format!("/messages/{user_message}/regenerate"),
        Some(json!({})),
    )
    .await;
    (c, reply)
}

#[tokio::test]
async fn a_branch_chosen_on_instance_a_reaches_a_connection_on_instance_b() {
    let (Some(redis), Some(_pg)) = (redis_url(), postgres_url()) else {
        return;
    };
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    let a = TestApp::spawn_with(Backend::Postgres, &[("REDIS_URL", &redis)]).await;
    let b = TestApp::spawn_with_db(&a, &[("REDIS_URL", &redis)]).await;
    let user = format!("branch-{}", uuid::Uuid::now_v7().simple());
    let (c, first_reply) = branched(&a, &user).await;
    io.connect("on-b", &b.base, &b.token(&user)).await;
    call(
        &a,
        &user,
        Method::PUT,
        &format!("/conversations/{c}/active-leaf"),
        Some(json!({"messageId": first_reply})),
    )
    .await;
    let event = io.event("on-b", "conversation:branch").await;
    assert_eq!(
        event,
        json!({"conversationId": c, "activeLeafId": first_reply})
    );
    // Instance B serves the branch A chose.
    let got = call(&b, &user, Method::GET, &format!("/conversations/{c}"), None).await;
    assert_eq!(got["activeLeafId"], first_reply.as_str());
}

#[tokio::test]
async fn a_completion_job_can_start_a_branch() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let first = app.chat("jo", json!({"message": "one"})).await;
        let c = first.body["conversationId"].as_str().unwrap().to_owned();
        let u1 = first.body["userMessageId"].as_str().unwrap().to_owned();
        let a1 = first.body["messageId"].as_str().unwrap().to_owned();
        app.chat("jo", json!({"conversationId": c, "message": "two"}))
            .await;
        let data = json!({"conversationId": c, "parentMessageId": a1, "message": "from a job"});
        let queued = call(
            &app,
            "jo",
            Method::POST,
            "/jobs",
            Some(json!({"type": "generate-completion", "data": data})),
        )
        .await;
        let id = queued["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        let job = loop {
            let job = call(&app, "jo", Method::GET, &format!("/jobs/{id}"), None).await;
            if matches!(job["status"].as_str(), Some("completed" | "failed")) {
                break job;
            }
            assert!(Instant::now() < deadline, "{backend}: {job}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(job["status"], "completed", "{backend}: {job}");
        let got = call(
            &app,
            "jo",
            Method::GET,
            &format!("/conversations/{c}"),
            None,
        )
        .await;
        let path = got["messages"].as_array().unwrap();
        let texts: Vec<&str> = path.iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(texts[..2], [u1.as_str(), a1.as_str()], "{backend}");
        assert_eq!(path[2]["content"], "from a job", "{backend}");
        assert_eq!(path[3]["id"], job["result"]["messageId"], "{backend}");
        assert_eq!(path[1]["childCount"], 2, "{backend}: a branch beside `two`");
        app.stop().await;
    }
}
