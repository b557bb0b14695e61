//! Issue #16, titles: the first exchange of an untitled conversation queues a `generate-title`
//! job, which sets the title unless the user set one, and tells the owner's connections.

use std::time::Duration;

use mock_llm::{MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::app::TestApp;
use crate::support::db::{Backend, backends, postgres_url, redis_url};
use crate::support::node::SocketDriver;

const DEFAULT_TITLE: &str = "New Conversation";

/// The test app with automatic titles on (the harness turns them off), and `extra`.
async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("AUTO_TITLE", "true")];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(backend, &vars).await
}

/// The conversation once its title is no longer the default one (polls for up to 5 s).
async fn titled(app: &TestApp, user: &str, id: &str) -> Value {
    for _ in 0..100 {
        let got = app.get_conversation(user, id).await;
        assert_eq!(got.status, 200, "{}", got.body);
        if got.body["title"] != DEFAULT_TITLE {
            return got.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("conversation {id} was never titled");
}

async fn title_of(app: &TestApp, user: &str, id: &str) -> String {
    let got = app.get_conversation(user, id).await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body["title"].as_str().unwrap().to_owned()
}

/// The ids of the `generate-title` jobs stored for a conversation, oldest first.
async fn title_jobs(app: &TestApp, conversation: &str) -> Vec<String> {
    match app.db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url()).await.unwrap();
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE kind = 'generate-title' AND conversation_id = ?1 ORDER BY id",
            )
                .bind(conversation)
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            ids
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
            let ids: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM jobs WHERE kind = 'generate-title' AND conversation_id = $1 ORDER BY id",
            )
                .bind(Uuid::parse_str(conversation).unwrap())
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            ids.iter().map(Uuid::to_string).collect()
        }
    }
}

/// The title job of a conversation, once it is queued (the pipeline queues it after the
/// reply, from a task of its own).
async fn the_title_job(app: &TestApp, conversation: &str) -> String {
    for _ in 0..100 {
        if let [id] = title_jobs(app, conversation).await.as_slice() {
            return id.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no title job for {conversation}");
}

async fn job(app: &TestApp, user: &str, id: &str) -> Value {
    let got = app
        .request(
            Method::GET,
            &format!("/api/v1/ai/jobs/{id}"),
            Some(&app.token(user)),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body
}

async fn usage_requests(app: &TestApp, user: &str) -> i64 {
    let usage = app
        .request(
            Method::GET,
            "/api/v1/ai/usage",
            Some(&app.token(user)),
            None,
        )
        .await;
    usage.body["requests"].as_i64().unwrap()
}

#[tokio::test]
async fn the_first_exchange_titles_an_untitled_conversation() {
    for backend in backends() {
        let app = spawn(backend, &[]).await;
        let chat = app
            .chat(
                "tia",
                json!({"message": "plan a trip, to Lisbon next spring?"}),
            )
            .await;
        assert_eq!(chat.status, 200, "{}", chat.body);
        let id = chat.body["conversationId"].as_str().unwrap().to_owned();
        // The built-in mock's title: the first words of the first message.
        let conversation = titled(&app, "tia", &id).await;
        assert_eq!(conversation["title"], "Plan a trip to Lisbon", "{backend}");

        // The job is readable like the others, and its call is a usage record of its own.
        let job_id = the_title_job(&app, &id).await;
        let done = job(&app, "tia", &job_id).await;
        assert_eq!(done["type"], "generate-title", "{backend}: {done}");
        assert_eq!(done["status"], "completed", "{backend}: {done}");
        assert_eq!(
            done["data"],
            json!({"conversationId": id, "model": "gpt-4"})
        );
        assert_eq!(
            done["result"],
            json!({"conversationId": id, "title": "Plan a trip to Lisbon"})
        );
        assert_eq!(
            usage_requests(&app, "tia").await,
            2,
            "{backend}: chat + title"
        );

        // Only the first exchange: the next one queues nothing.
        let again = app
            .chat(
                "tia",
                json!({"message": "and in summer?", "conversationId": id}),
            )
            .await;
        assert_eq!(again.status, 200, "{}", again.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(title_jobs(&app, &id).await, vec![job_id], "{backend}");
        assert_eq!(title_of(&app, "tia", &id).await, "Plan a trip to Lisbon");

        // A conversation created without a title is untitled too.
        let created = app.create_conversation("tia", json!({})).await;
        let empty = created.body["id"].as_str().unwrap().to_owned();
        app.chat(
            "tia",
            json!({"message": "rust borrow checker", "conversationId": empty}),
        )
        .await;
        assert_eq!(
            titled(&app, "tia", &empty).await["title"],
            "Rust borrow checker"
        );

        // Clients cannot queue title jobs themselves.
        let posted = app
            .request(
                Method::POST,
                "/api/v1/ai/jobs",
                Some(&app.token("tia")),
                Some(json!({"type": "generate-title", "data": {"conversationId": id}})),
            )
            .await;
        posted.assert_error(400, "validation_failed");
        assert_eq!(posted.body["errors"][0]["field"], "type");
        app.stop().await;
    }
}

/// Shutdown waits for the pipeline's tasks, the title job's enqueue among them: after a
/// restart, "no title job" cannot be "no title job yet".
#[tokio::test]
async fn a_given_title_is_kept_and_auto_title_off_queues_nothing() {
    for backend in backends() {
        let mut app = spawn(backend, &[]).await;
        let created = app
            .create_conversation("uli", json!({"title": "My trip"}))
            .await;
        let named = created.body["id"].as_str().unwrap().to_owned();
        let chat = app
            .chat(
                "uli",
                json!({"message": "hello there", "conversationId": named}),
            )
            .await;
        assert_eq!(chat.status, 200, "{}", chat.body);
        app.restart_with(&[("AUTO_TITLE", "true")]).await;
        assert!(title_jobs(&app, &named).await.is_empty(), "{backend}");
        assert_eq!(title_of(&app, "uli", &named).await, "My trip");
        app.stop().await;

        let mut off = TestApp::spawn_with(backend, &[("AUTO_TITLE", "false")]).await;
        let chat = off.chat("uli", json!({"message": "hello there"})).await;
        assert_eq!(chat.status, 200, "{}", chat.body);
        let untitled = chat.body["conversationId"].as_str().unwrap().to_owned();
        off.restart_with(&[("AUTO_TITLE", "false")]).await;
        assert!(title_jobs(&off, &untitled).await.is_empty(), "{backend}");
        assert_eq!(title_of(&off, "uli", &untitled).await, DEFAULT_TITLE);
        assert_eq!(usage_requests(&off, "uli").await, 1, "{backend}");
        off.stop().await;
    }
}

#[tokio::test]
async fn a_rename_while_the_job_waits_is_never_overwritten() {
    for backend in backends() {
        // No workers: the job waits in the queue until it is run by hand.
        let app = spawn(backend, &[("WORKER_CONCURRENCY", "0")]).await;
        let chat = app.chat("vic", json!({"message": "plan a trip"})).await;
        let id = chat.body["conversationId"].as_str().unwrap().to_owned();
        let job_id = the_title_job(&app, &id).await;
        assert_eq!(job(&app, "vic", &job_id).await["status"], "waiting");
        let renamed = app
            .request(
                Method::PATCH,
                &format!("/api/v1/ai/conversations/{id}"),
                Some(&app.token("vic")),
                Some(json!({"title": "Mine"})),
            )
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.body);

        palaver::jobs::run_delivery(&app.state, job_id.parse().unwrap(), 1)
            .await
            .unwrap();
        let done = job(&app, "vic", &job_id).await;
        assert_eq!(done["status"], "completed", "{backend}: {done}");
        assert_eq!(done["result"], json!({"conversationId": id, "title": null}));
        assert_eq!(title_of(&app, "vic", &id).await, "Mine", "{backend}");
        // Renamed before the job ran: the model was not even asked.
        assert_eq!(usage_requests(&app, "vic").await, 1, "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn streams_and_completion_jobs_title_their_conversations_too() {
    for backend in backends() {
        let app = spawn(backend, &[("MOCK_WORD_DELAY_MS", "0")]).await;
        let sse = app
            .client
            .post(format!("{}/api/v1/ai/chat", app.base))
            .bearer_auth(app.token("wen"))
            .json(&json!({"message": "what is rust ownership", "stream": true}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events = crate::chat::parse_sse(&sse);
        let streamed = events
            .iter()
            .find(|(name, _)| name == "chat:conversation")
            .map(|(_, data)| data["conversationId"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{sse}"));
        assert_eq!(
            titled(&app, "wen", &streamed).await["title"],
            "What is rust ownership",
            "{backend}"
        );

        let queued = app
            .request(
                Method::POST,
                "/api/v1/ai/jobs",
                Some(&app.token("wen")),
                Some(json!({"type": "generate-completion", "data": {"message": "summarise the meeting notes please"}})),
            )
            .await;
        assert_eq!(queued.status, 202, "{}", queued.body);
        let job_id = queued.body["id"].as_str().unwrap().to_owned();
        let mut conversation = None;
        for _ in 0..100 {
            let got = job(&app, "wen", &job_id).await;
            if got["status"] == "completed" {
                conversation = got["result"]["conversationId"].as_str().map(str::to_owned);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let conversation = conversation.expect("the completion job completes");
        assert_eq!(
            titled(&app, "wen", &conversation).await["title"],
            "Summarise the meeting notes please",
            "{backend}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn socket_io_clients_hear_conversation_title() {
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    for backend in backends() {
        let app = spawn(backend, &[("MOCK_WORD_DELAY_MS", "0")]).await;
        io.connect("a", &app.base, &app.token("xan")).await;
        io.connect("other", &app.base, &app.token("someone-else"))
            .await;
        let ack = io
            .emit_ack(
                "a",
                "chat:start",
                json!({"message": "name this chat for me please"}),
            )
            .await;
        let id = ack["conversationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{ack}"))
            .to_owned();
        let event = io.event("a", "conversation:title").await;
        assert_eq!(
            event,
            json!({"conversationId": id, "title": "Name this chat for me"}),
            "{backend}"
        );
        assert_eq!(title_of(&app, "xan", &id).await, "Name this chat for me");
        let leaked = io
            .wait_for(Duration::from_millis(300), &|v| {
                v["id"] == "other" && v["kind"] == "event"
            })
            .await;
        assert!(leaked.is_none(), "another user's socket got {leaked:?}");
        io.disconnect("a").await;
        io.disconnect("other").await;
        app.stop().await;
    }
}

/// The title is set by a worker on instance A; the owner's connection on B hears it (the
/// notifier goes through the Socket.IO Redis adapter).
#[tokio::test]
async fn conversation_title_reaches_connections_on_other_instances() {
    let (Some(redis), Some(_pg)) = (redis_url(), postgres_url()) else {
        return;
    };
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    let queue = format!("q-{}", Uuid::now_v7().simple());
    let a = spawn(
        Backend::Postgres,
        &[
            ("REDIS_URL", &redis),
            ("JOB_QUEUE", &queue),
            ("WORKER_CONCURRENCY", "1"),
        ],
    )
    .await;
    let b = TestApp::spawn_with_db(
        &a,
        &[
            ("AUTO_TITLE", "true"),
            ("REDIS_URL", &redis),
            ("JOB_QUEUE", &queue),
            ("WORKER_CONCURRENCY", "0"),
        ],
    )
    .await;
    let user = format!("titles-{}", Uuid::now_v7().simple());
    io.connect("on-b", &b.base, &b.token(&user)).await;
    let chat = b
        .chat(&user, json!({"message": "across the instances"}))
        .await;
    assert_eq!(chat.status, 200, "{}", chat.body);
    let id = chat.body["conversationId"].as_str().unwrap();
    let event = io.event("on-b", "conversation:title").await;
    assert_eq!(
        event,
        json!({"conversationId": id, "title": "Across the instances"})
    );
}

/// `TITLE_MODEL` is the model the title request names upstream; without it, the exchange's.
#[tokio::test]
async fn the_title_request_names_the_title_model() {
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let base = format!("{}/v1", mock.base_url());
    for (title_model, sent) in [("gpt-4o-title", "gpt-4o-title"), ("", "gpt-4o-mini")] {
        mock.clear();
        let app = spawn(
            Backend::Sqlite,
            &[
                ("OPENAI_API_KEY", "sk-test-openai-key"),
                ("OPENAI_BASE_URL", &base),
                ("TITLE_MODEL", title_model),
            ],
        )
        .await;
        let chat = app
            .chat(
                "yul",
                json!({"message": "hello there", "model": "gpt-4o-mini"}),
            )
            .await;
        assert_eq!(chat.status, 200, "{}", chat.body);
        let id = chat.body["conversationId"].as_str().unwrap().to_owned();
        let title = titled(&app, "yul", &id).await["title"]
            .as_str()
            .unwrap()
            .to_owned();
        // mock-llm echoes the request: the title is cleaned from that answer.
        assert!(
            title.starts_with("Mock reply to: First message: hello there"),
            "{title}"
        );
        assert!(title.chars().count() <= palaver::service::TITLE_MAX_CHARS);

        let bodies: Vec<Value> = mock
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.body)
            .collect();
        assert_eq!(bodies.len(), 2, "the exchange, then the title: {bodies:?}");
        assert_eq!(bodies[0]["model"], "gpt-4o-mini");
        let asked = &bodies[1];
        assert_eq!(asked["model"], sent, "{asked}");
        assert_eq!(asked["max_tokens"], 20, "{asked}");
        assert_eq!(asked["messages"][0]["role"], "system");
        assert_eq!(
            asked["messages"][0]["content"],
            palaver::providers::TITLE_PROMPT
        );
        let shown = asked["messages"][1]["content"].as_str().unwrap();
        assert!(
            shown.starts_with("First message: hello there\nReply: Mock reply to: hello there"),
            "{shown}"
        );
        app.stop().await;
    }
}
