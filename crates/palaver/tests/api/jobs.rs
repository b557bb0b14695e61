//! Background jobs: `POST /ai/jobs`, `GET /ai/jobs/{id}`, progress, retries, idempotency, and
//! delivery surviving restarts and killed workers (the table queue always, Redis when
//! configured).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mock_llm::{Fault, MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{SECRET, TestApp, TestResponse};
use crate::support::db::{Backend, backends};

const JOBS: &str = "/api/v1/ai/jobs";

async fn enqueue(app: &TestApp, user: &str, body: Value) -> TestResponse {
    app.request(Method::POST, JOBS, Some(&app.token(user)), Some(body))
        .await
}

async fn get_job(app: &TestApp, user: &str, id: &str) -> TestResponse {
    app.request(
        Method::GET,
        &format!("{JOBS}/{id}"),
        Some(&app.token(user)),
        None,
    )
    .await
}

/// Polls until the job is completed or failed; returns it with every progress value seen.
async fn finished(app: &TestApp, user: &str, id: &str, within: Duration) -> (Value, Vec<i64>) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let job = get_job(app, user, id).await;
        assert_eq!(job.status, 200, "{}", job.body);
        let progress = job.body["progress"].as_i64().unwrap();
        if seen.last() != Some(&progress) {
            seen.push(progress);
        }
        if matches!(job.body["status"].as_str(), Some("completed" | "failed")) {
            return (job.body, seen);
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not finish in {within:?}: {}",
            job.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `ready` holds for the job.
async fn until(
    app: &TestApp,
    user: &str,
    id: &str,
    within: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let job = get_job(app, user, id).await.body;
        if ready(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id}: condition not met in {within:?}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn with_mock(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, MockLlm) {
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let base = format!("{}/v1", mock.base_url());
    let mut vars = vec![
        ("OPENAI_API_KEY", "sk-test-jobs-key"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("PROVIDER_MAX_ATTEMPTS", "1"),
        ("JOB_BACKOFF_MS", "50"),
    ];
    vars.extend_from_slice(extra);
    (TestApp::spawn_with(backend, &vars).await, mock)
}

/// The `job:*` events of job `id` (emitted by the app's own workers), until the job ends.
async fn events_of(
    events: &mut tokio::sync::broadcast::Receiver<palaver::service::UserEvent>,
    user: &str,
    id: &str,
) -> Vec<(&'static str, Value)> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap()
            .unwrap();
        if event.payload["jobId"] != id {
            continue;
        }
        assert_eq!(event.user_id, user, "events go to the job's owner");
        let end = event.name != "job:progress";
        seen.push((event.name, event.payload));
        if end {
            return seen;
        }
    }
}

/// The body of the last chat request the upstream received.
fn last_upstream_request(mock: &MockLlm) -> Value {
    mock.requests()
        .into_iter()
        .rfind(|r| r.method == "POST")
        .unwrap()
        .body
}

/// The conversation's messages as (role, content, metadata.jobId).
async fn messages(app: &TestApp, user: &str, conversation: &str) -> Vec<(String, String, Value)> {
    let stored = app.get_conversation(user, conversation).await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    stored.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
                m["metadata"]["jobId"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_completion_job_runs_the_chat_pipeline_and_reports_progress() {
    for backend in backends() {
        eprintln!("backend {backend:?}");
        // The built-in mock streams word by word: slow enough to watch progress move.
        let app = TestApp::spawn_with(
            backend,
            &[("MOCK_WORD_DELAY_MS", "40"), ("JOB_BACKOFF_MS", "50")],
        )
        .await;
        let mut events = app.state.notifier.subscribe();
        let queued = enqueue(&app, "jo", json!({"type": "generate-completion", "data": {"message": "count to three", "maxTokens": 100}})).await;
        assert_eq!(queued.status, 202, "{}", queued.body);
        let job = &queued.body;
        assert_eq!(job["type"], "generate-completion");
        assert!(
            matches!(job["status"].as_str(), Some("waiting" | "active")),
            "{job}"
        );
        assert_eq!(job["progress"], 0);
        assert_eq!(job["attempts"], 0);
        assert_eq!(job["maxAttempts"], 3);
        assert!(job["createdAt"].is_string() && job["updatedAt"].is_string());
        let id = job["id"].as_str().unwrap().to_owned();

        let (done, seen) = finished(&app, "jo", &id, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["progress"], 100);
        assert_eq!(done["attempts"], 1);
        assert!(done.get("error").is_none(), "{done}");
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "progress only grows: {seen:?}"
        );
        assert!(
            seen.iter().any(|p| (10..100).contains(p)),
            "progress between context and storage was seen: {seen:?}"
        );

        let result = &done["result"];
        let conversation = result["conversationId"].as_str().unwrap();
        assert!(
            result["content"]
                .as_str()
                .unwrap()
                .contains("count to three"),
            "{result}"
        );
        assert!(result["tokens"].as_i64().unwrap() > 0);
        // The exchange landed in a new conversation, like any other.
        let stored = messages(&app, "jo", conversation).await;
        assert_eq!(stored.len(), 2, "{stored:?}");
        assert_eq!(stored[0].0, "USER");
        assert_eq!(stored[0].1, "count to three");
        assert_eq!(stored[1].0, "ASSISTANT");
        assert_eq!(stored[1].1, result["content"].as_str().unwrap());
        assert_eq!(stored[1].2, json!(id), "the reply carries metadata.jobId");
        let listed = app.get_conversation("jo", conversation).await.body;
        assert_eq!(listed["messages"][1]["id"], result["messageId"]);

        // The owner was told: progress as it moved, 100, then the result.
        let told = events_of(&mut events, "jo", &id).await;
        let (last, progress) = told.split_last().unwrap();
        assert_eq!(
            *last,
            ("job:completed", json!({"jobId": id, "result": result}))
        );
        let progress: Vec<i64> = progress
            .iter()
            .map(|(_, p)| p["progress"].as_i64().unwrap())
            .collect();
        assert_eq!(progress.first(), Some(&10), "context built: {progress:?}");
        assert_eq!(progress.last(), Some(&100), "stored: {progress:?}");
        assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
        assert!(progress.len() >= 3, "tokens moved it: {progress:?}");
    }
}

#[tokio::test]
async fn a_completion_job_continues_a_conversation_through_the_upstream() {
    let (app, mock) = with_mock(Backend::Sqlite, &[]).await;
    let first = app
        .chat("kai", json!({"message": "hello", "model": "gpt-4o-mini"}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let conversation = first.body["conversationId"].as_str().unwrap().to_owned();
    let queued = enqueue(
        &app,
        "kai",
        json!({"type": "generate-completion", "data": {"conversationId": conversation, "message": "and now?", "model": "gpt-4o-mini", "temperature": 0}}),
    )
    .await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    let (done, _) = finished(
        &app,
        "kai",
        queued.body["id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["conversationId"], conversation.as_str());
    assert_eq!(done["result"]["content"], "Mock reply to: and now?");
    let sent = last_upstream_request(&mock);
    assert_eq!(
        sent["messages"].as_array().unwrap().len(),
        3,
        "the history went upstream: {sent}"
    );
    assert_eq!(sent["temperature"], json!(0.0));
    assert_eq!(messages(&app, "kai", &conversation).await.len(), 4);
}

#[tokio::test]
async fn an_embeddings_job_returns_the_embedding() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let queued = enqueue(
            &app,
            "em",
            json!({"type": "generate-embeddings", "data": {"text": "embed me"}}),
        )
        .await;
        assert_eq!(queued.status, 202, "{}", queued.body);
        let (done, _) = finished(
            &app,
            "em",
            queued.body["id"].as_str().unwrap(),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["progress"], 100);
        let result = &done["result"];
        assert_eq!(result["model"], "mock");
        assert!(result["tokens"].as_i64().unwrap() > 0);
        let direct = app
            .request(
                Method::POST,
                "/api/v1/ai/embeddings",
                Some(&app.token("em")),
                Some(json!({"text": "embed me"})),
            )
            .await;
        assert_eq!(
            result["embedding"], direct.body["embedding"],
            "the same vector as POST /ai/embeddings"
        );
    }
}

#[tokio::test]
async fn jobs_are_validated_and_private() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let r = enqueue(
            &app,
            "val",
            json!({"type": "summarise", "data": {"message": "x"}}),
        )
        .await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "type");
        let r = enqueue(&app, "val", json!({"data": {"message": "x"}})).await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "type");
        let r = enqueue(&app, "val", json!({"type": "generate-completion"})).await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "data");
        let r = enqueue(
            &app,
            "val",
            json!({"type": "generate-completion", "data": {"message": ""}}),
        )
        .await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "data.message");
        let r = enqueue(
            &app,
            "val",
            json!({"type": "generate-completion", "data": {"message": "hi", "maxTokens": 9000}}),
        )
        .await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "data.maxTokens");
        let r = enqueue(
            &app,
            "val",
            json!({"type": "generate-completion", "data": {"message": "hi", "temperature": "hot"}}),
        )
        .await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "data.temperature");
        let r = enqueue(
            &app,
            "val",
            json!({"type": "generate-embeddings", "data": {"input": ["a"]}}),
        )
        .await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "data.text");
        app.request(
            Method::POST,
            JOBS,
            None,
            Some(json!({"type": "generate-embeddings", "data": {"text": "a"}})),
        )
        .await
        .assert_error(401, "unauthorized");

        // Another user's conversation and another user's job are not found.
        let mine = app.create_conversation("owner", json!({})).await.body["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = enqueue(&app, "intruder", json!({"type": "generate-completion", "data": {"message": "hi", "conversationId": mine}})).await;
        r.assert_error(404, "not_found");
        let queued = enqueue(
            &app,
            "owner",
            json!({"type": "generate-embeddings", "data": {"text": "private"}}),
        )
        .await;
        let id = queued.body["id"].as_str().unwrap().to_owned();
        get_job(&app, "intruder", &id)
            .await
            .assert_error(404, "not_found");
        get_job(&app, "owner", &uuid::Uuid::now_v7().to_string())
            .await
            .assert_error(404, "not_found");
        get_job(&app, "owner", "not-a-uuid")
            .await
            .assert_error(400, "validation_failed");
        assert_eq!(get_job(&app, "owner", &id).await.status, 200);
    }
}

#[tokio::test]
async fn failed_attempts_back_off_then_fail_with_a_sanitised_error() {
    for backend in backends() {
        let (app, mock) = with_mock(backend, &[("JOB_BACKOFF_MS", "200")]).await;
        for _ in 0..3 {
            mock.push_fault(Fault::Status {
                status: 500,
                retry_after: None,
                body: None,
            });
        }
        let mut events = app.state.notifier.subscribe();
        let started = Instant::now();
        let queued = enqueue(&app, "fay", json!({"type": "generate-completion", "data": {"message": "doomed", "model": "gpt-4o-mini"}})).await;
        assert_eq!(queued.status, 202, "{}", queued.body);
        let id = queued.body["id"].as_str().unwrap().to_owned();
        let delayed = until(&app, "fay", &id, Duration::from_secs(10), |j| {
            j["status"] == "delayed"
        })
        .await;
        assert_eq!(delayed["attempts"], 1);
        assert_eq!(delayed["error"], "The AI provider failed to answer");

        let (done, _) = finished(&app, "fay", &id, Duration::from_secs(20)).await;
        let elapsed = started.elapsed();
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["attempts"], 3);
        assert_eq!(done["error"], "The AI provider failed to answer");
        let told = events_of(&mut events, "fay", &id).await;
        assert_eq!(
            told.last().unwrap(),
            &(
                "job:failed",
                json!({"jobId": id, "error": "The AI provider failed to answer"})
            )
        );
        assert!(done.get("result").is_none());
        assert!(
            elapsed >= Duration::from_millis(200 + 400),
            "backoff 200 ms then 400 ms: {elapsed:?}"
        );
        assert_eq!(
            mock.requests()
                .iter()
                .filter(|r| r.method == "POST")
                .count(),
            3,
            "one upstream call per attempt"
        );
        let text = done.to_string();
        assert!(
            !text.contains("mock-upstream-secret-detail") && !text.contains("sk-"),
            "leak: {text}"
        );

        // A refusal is not retried.
        mock.clear();
        mock.push_fault(Fault::Status {
            status: 400,
            retry_after: None,
            body: None,
        });
        let queued = enqueue(&app, "fay", json!({"type": "generate-completion", "data": {"message": "bad", "model": "gpt-4o-mini"}})).await;
        let (done, _) = finished(
            &app,
            "fay",
            queued.body["id"].as_str().unwrap(),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(done["status"], "failed");
        assert_eq!(done["attempts"], 1);
    }
}

#[tokio::test]
async fn a_retried_job_stores_one_user_message_and_one_reply() {
    for backend in backends() {
        let (app, mock) = with_mock(backend, &[]).await;
        mock.push_fault(Fault::Status {
            status: 503,
            retry_after: None,
            body: None,
        });
        mock.push_fault(Fault::Status {
            status: 500,
            retry_after: None,
            body: None,
        });
        let queued = enqueue(&app, "rio", json!({"type": "generate-completion", "data": {"message": "third time lucky", "model": "gpt-4o-mini"}})).await;
        let id = queued.body["id"].as_str().unwrap().to_owned();
        let (done, _) = finished(&app, "rio", &id, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["attempts"], 3);
        assert_eq!(done["result"]["content"], "Mock reply to: third time lucky");
        let conversation = done["result"]["conversationId"].as_str().unwrap();
        let stored = messages(&app, "rio", conversation).await;
        assert_eq!(
            stored
                .iter()
                .map(|(role, content, _)| (role.as_str(), content.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("USER", "third time lucky"),
                ("ASSISTANT", "Mock reply to: third time lucky")
            ],
            "one user message and one reply after three attempts"
        );
        // The last attempt sent the message once, not once per attempt.
        let sent = last_upstream_request(&mock);
        assert_eq!(sent["messages"].as_array().unwrap().len(), 1, "{sent}");
    }
}

#[tokio::test]
async fn re_running_a_job_never_stores_a_second_reply() {
    for backend in backends() {
        let (app, mock) = with_mock(backend, &[]).await;
        let queued = enqueue(&app, "ida", json!({"type": "generate-completion", "data": {"message": "once only", "model": "gpt-4o-mini"}})).await;
        let id = queued.body["id"].as_str().unwrap().to_owned();
        let job_id: uuid::Uuid = id.parse().unwrap();
        let (done, _) = finished(&app, "ida", &id, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed");
        let calls = mock.request_count();

        // A duplicate delivery of a completed job does nothing.
        palaver::jobs::run_delivery(&app.state, job_id, 1)
            .await
            .unwrap();
        palaver::jobs::run_delivery(&app.state, job_id, 2)
            .await
            .unwrap();
        assert_eq!(mock.request_count(), calls);

        // The worker stored the reply and died before marking the job completed: the attempt
        // runs again once its lease expires, finds the reply, and completes with it.
        set_active_with_expired_lease(&app, &id).await;
        assert_eq!(get_job(&app, "ida", &id).await.body["status"], "active");
        palaver::jobs::run_delivery(&app.state, job_id, 1)
            .await
            .unwrap();
        let again = get_job(&app, "ida", &id).await.body;
        assert_eq!(again["status"], "completed", "{again}");
        assert_eq!(again["result"], done["result"]);
        assert_eq!(
            mock.request_count(),
            calls,
            "the upstream was not asked again"
        );
        let conversation = done["result"]["conversationId"].as_str().unwrap();
        assert_eq!(
            messages(&app, "ida", conversation).await.len(),
            2,
            "still one user message and one reply"
        );

        // Even when the kept result was lost too (a failed attempt cleared it), the stored
        // reply is found by the job's reply id and the job completes with it.
        set_active_with_expired_lease(&app, &id).await;
        clear_result(&app, &id).await;
        palaver::jobs::run_delivery(&app.state, job_id, 1)
            .await
            .unwrap();
        let rebuilt = get_job(&app, "ida", &id).await.body;
        assert_eq!(rebuilt["status"], "completed", "{rebuilt}");
        assert_eq!(rebuilt["result"]["messageId"], done["result"]["messageId"]);
        assert_eq!(rebuilt["result"]["content"], done["result"]["content"]);
        assert_eq!(
            mock.request_count(),
            calls,
            "the upstream was not asked again"
        );
        assert_eq!(messages(&app, "ida", conversation).await.len(), 2);
    }
}

async fn clear_result(app: &TestApp, id: &str) {
    edit_job(
        app,
        "UPDATE jobs SET result = NULL WHERE id = ?1",
        "UPDATE jobs SET result = NULL WHERE id = $1::uuid",
        &[id],
    )
    .await;
}

/// Runs `sqlite` or `postgres` (the same statement in each dialect) on the app's database, with
/// `binds` as its text parameters: what a hand edit, a crash or an older release leaves.
async fn edit_job(app: &TestApp, sqlite: &'static str, postgres: &'static str, binds: &[&str]) {
    match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url()).await.unwrap();
            let mut query = sqlx::query(sqlite);
            for bind in binds {
                query = query.bind(bind.to_string());
            }
            query.execute(&pool).await.unwrap();
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url()).await.unwrap();
            let mut query = sqlx::query(postgres);
            for bind in binds {
                query = query.bind(bind.to_string());
            }
            query.execute(&pool).await.unwrap();
        }
    }
}

/// What a worker that died mid-attempt leaves behind.
async fn set_active_with_expired_lease(app: &TestApp, id: &str) {
    let past = "2000-01-01T00:00:00.000000Z";
    edit_job(
        app,
        "UPDATE jobs SET status = 'active', progress = 40, locked_by = 'dead', locked_until = ?1 WHERE id = ?2",
        "UPDATE jobs SET status = 'active', progress = 40, locked_by = 'dead', locked_until = $1::timestamptz WHERE id = $2::uuid",
        &[past, id],
    )
    .await;
}

/// A job whose runs kill their worker (issue #14 item 7), on the table queue and on Redis: each
/// time its row is left as a dead worker leaves it, a live worker takes it over and runs the
/// same attempt again, until the takeover that would be the `maxAttempts`-th (3) fails it.
#[tokio::test]
async fn a_job_whose_worker_keeps_dying_fails_instead_of_running_for_ever() {
    const STOPPED: &str = "The worker running the job stopped 3 times";
    for redis in queue_backends() {
        for backend in backends() {
            let queue = if redis.is_some() { "redis" } else { "table" };
            eprintln!("queue {queue}, backend {backend:?}");
            let env = queue_env(&redis);
            let app = TestApp::spawn_with(backend, &borrowed(&env)).await;
            let body = json!({"type": "generate-embeddings", "data": {"text": "poison"}});
            let queued = enqueue(&app, "pia", body).await;
            assert_eq!(queued.status, 202, "{}", queued.body);
            let id = queued.body["id"].as_str().unwrap().to_owned();
            let (done, _) = finished(&app, "pia", &id, Duration::from_secs(20)).await;
            assert_eq!(done["status"], "completed", "{queue}: {done}");
            // Its worker died before it recorded the end, twice: each time the job is taken
            // over and run again.
            for _ in 0..2 {
                set_active_with_expired_lease(&app, &id).await;
                take_over(&app, &redis, &id).await;
                let (again, _) = finished(&app, "pia", &id, Duration::from_secs(20)).await;
                assert_eq!(again["status"], "completed", "{queue}: ran again: {again}");
                assert_eq!(again["attempts"], 1, "a takeover runs the same attempt");
            }
            // The third worker died too: the next takeover fails the job instead of running it.
            let mut events = app.state.notifier.subscribe();
            set_active_with_expired_lease(&app, &id).await;
            take_over(&app, &redis, &id).await;
            let (failed, _) = finished(&app, "pia", &id, Duration::from_secs(20)).await;
            assert_eq!(failed["status"], "failed", "{queue}: {failed}");
            assert_eq!(failed["error"], STOPPED);
            assert_eq!(failed["attempts"], 1);
            assert_eq!(
                events_of(&mut events, "pia", &id).await,
                vec![("job:failed", json!({"jobId": id, "error": STOPPED}))],
                "{queue}: failed without running (no progress)"
            );
            // Never run again: not by the table queue's polls, not by a late delivery.
            tokio::time::sleep(Duration::from_millis(600)).await;
            take_over(&app, &redis, &id).await;
            let job_id: uuid::Uuid = id.parse().unwrap();
            palaver::jobs::run_delivery(&app.state, job_id, 2)
                .await
                .unwrap();
            let after = get_job(&app, "pia", &id).await.body;
            assert_eq!(
                (&after["status"], &after["error"]),
                (&json!("failed"), &json!(STOPPED))
            );
            while let Ok(event) = events.try_recv() {
                assert_ne!(
                    event.payload["jobId"], id,
                    "{queue}: {} after failing",
                    event.name
                );
            }
        }
    }
}

/// What takes a dead worker's job over: on Redis the re-delivery of its envelope (driven here
/// by hand), with the table queue the app's own worker, which claims due rows as it polls.
async fn take_over(app: &TestApp, redis: &Option<String>, id: &str) {
    if redis.is_some() {
        palaver::jobs::run_delivery(&app.state, id.parse().unwrap(), 1)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_embedded_queue_survives_a_restart() {
    for backend in backends() {
        eprintln!("backend {backend:?}");
        let mut app = TestApp::spawn_with(backend, &[("WORKER_CONCURRENCY", "0")]).await;
        let queued = enqueue(
            &app,
            "res",
            json!({"type": "generate-completion", "data": {"message": "after the restart"}}),
        )
        .await;
        assert_eq!(queued.status, 202, "{}", queued.body);
        let id = queued.body["id"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            get_job(&app, "res", &id).await.body["status"],
            "waiting",
            "no worker runs it"
        );

        // Stopped, then started again on the same database and data directory, with workers.
        app.restart_with(&[("MOCK_WORD_DELAY_MS", "0")]).await;
        let (done, _) = finished(&app, "res", &id, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert!(
            done["result"]["content"]
                .as_str()
                .unwrap()
                .contains("after the restart")
        );
    }
}

#[tokio::test]
async fn stranded_jobs_are_queued_again() {
    // Only a Redis delivery can be lost (without Redis a job's row is its delivery).
    let Some(redis) = crate::support::db::redis_url() else {
        eprintln!("skipped: PALAVER_TEST_REDIS_URL is not set");
        return;
    };
    for backend in backends() {
        let env = queue_env(&Some(redis.clone()));
        let mut app_env = borrowed(&env);
        app_env.push(("WORKER_CONCURRENCY", "0"));
        let mut app = TestApp::spawn_with(backend, &app_env).await;
        let queued = enqueue(
            &app,
            "sol",
            json!({"type": "generate-embeddings", "data": {"text": "lost and found"}}),
        )
        .await;
        let id = queued.body["id"].as_str().unwrap().to_owned();
        // Its delivery is lost: the app comes back reading another queue.
        let other = format!("ai-tasks-elsewhere-{}", uuid::Uuid::now_v7().simple());
        app.restart_with(&[("REDIS_URL", redis.as_str()), ("JOB_QUEUE", other.as_str())])
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get_job(&app, "sol", &id).await.body["status"], "waiting");
        // What every worker's sweeper does each minute for jobs left alone for five.
        assert_eq!(
            palaver::jobs::rescue_stranded(&app.state, Duration::from_secs(3600))
                .await
                .unwrap(),
            0,
            "not stranded yet"
        );
        assert_eq!(
            palaver::jobs::rescue_stranded(&app.state, Duration::ZERO)
                .await
                .unwrap(),
            1
        );
        let (done, _) = finished(&app, "sol", &id, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
}

#[tokio::test]
async fn the_table_queue_serves_the_jobs_of_its_own_queue() {
    for backend in backends() {
        let mut app = TestApp::spawn_with(backend, &[("WORKER_CONCURRENCY", "0")]).await;
        assert_eq!(app.state.jobs.backend(), "table");
        let queued = enqueue(
            &app,
            "tab",
            json!({"type": "generate-embeddings", "data": {"text": "my own queue"}}),
        )
        .await;
        let id = queued.body["id"].as_str().unwrap().to_owned();
        // Workers of another queue on the same database leave it alone.
        app.restart_with(&[("JOB_QUEUE", "ai-tasks-elsewhere")])
            .await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(get_job(&app, "tab", &id).await.body["status"], "waiting");
        assert_eq!(
            palaver::jobs::rescue_stranded(&app.state, Duration::ZERO)
                .await
                .unwrap(),
            0,
            "nothing is ever stranded in the table queue"
        );
        // Workers of its own queue take it, with no push from this process (a poll finds it).
        app.restart_with(&[]).await;
        let (done, _) = finished(&app, "tab", &id, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["attempts"], 1);
    }
}

#[tokio::test]
async fn jobs_stored_before_job_queues_are_adopted_at_start_up() {
    for backend in backends() {
        let mut app = TestApp::spawn_with(backend, &[("WORKER_CONCURRENCY", "0")]).await;
        let queued = enqueue(
            &app,
            "old",
            json!({"type": "generate-embeddings", "data": {"text": "from an older release"}}),
        )
        .await;
        let id = queued.body["id"].as_str().unwrap().to_owned();
        // What migration 0004 leaves on a job stored by an older release.
        edit_job(
            &app,
            "UPDATE jobs SET queue = NULL WHERE id = ?1",
            "UPDATE jobs SET queue = NULL WHERE id = $1::uuid",
            &[&id],
        )
        .await;
        // A deployment whose JOB_QUEUE is not the default takes it over.
        app.restart_with(&[("JOB_QUEUE", "ai-tasks-custom")]).await;
        let (done, _) = finished(&app, "old", &id, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
}

#[tokio::test]
async fn an_unreadable_job_fails_and_does_not_hold_up_the_queue() {
    // A row edited by hand (only SQLite lets `data` hold text that is not JSON).
    let mut app = TestApp::spawn_with(Backend::Sqlite, &[("WORKER_CONCURRENCY", "0")]).await;
    let body = |text: &str| json!({"type": "generate-embeddings", "data": {"text": text}});
    let bad = enqueue(&app, "ugo", body("to be broken")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let good = enqueue(&app, "ugo", body("fine")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pool = sqlx::SqlitePool::connect(&app.db.url()).await.unwrap();
    sqlx::query("UPDATE jobs SET data = 'not json' WHERE id = ?1")
        .bind(&bad)
        .execute(&pool)
        .await
        .unwrap();
    // One worker slot: the broken job (the oldest) and the good one are claimed in turn.
    app.restart_with(&[("WORKER_CONCURRENCY", "1")]).await;
    let (done, _) = finished(&app, "ugo", &good, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let broken: (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM jobs WHERE id = ?1")
            .bind(&bad)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        broken,
        (
            "failed".to_owned(),
            Some("The job could not be read".to_owned())
        )
    );
}

#[tokio::test]
async fn instances_on_one_database_claim_each_job_of_the_table_queue_once() {
    for backend in backends() {
        let a = TestApp::spawn_with(backend, &[("WORKER_CONCURRENCY", "4")]).await;
        let b = TestApp::spawn_with_db(&a, &[("WORKER_CONCURRENCY", "4")]).await;
        let (mut events_a, mut events_b) =
            (a.state.notifier.subscribe(), b.state.notifier.subscribe());
        let mut ids = Vec::new();
        for i in 0..40 {
            let app = if i % 2 == 0 { &a } else { &b };
            let body =
                json!({"type": "generate-embeddings", "data": {"text": format!("shared {i}")}});
            let queued = enqueue(app, "duo", body).await;
            assert_eq!(queued.status, 202, "{}", queued.body);
            ids.push(queued.body["id"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            let (done, _) = finished(&a, "duo", id, Duration::from_secs(20)).await;
            assert_eq!(done["status"], "completed", "{done}");
            assert_eq!(done["attempts"], 1, "claimed once: {done}");
        }
        // Every completion was announced by exactly one of the two instances' workers.
        let mut completed = std::collections::HashMap::<String, usize>::new();
        for events in [&mut events_a, &mut events_b] {
            while let Ok(event) = events.try_recv() {
                if event.name == "job:completed" {
                    let id = event.payload["jobId"].as_str().unwrap().to_owned();
                    *completed.entry(id).or_default() += 1;
                }
            }
        }
        for id in &ids {
            assert_eq!(
                completed.get(id),
                Some(&1),
                "job {id} ran once: {completed:?}"
            );
        }
    }
}

/// `palaver worker` as its own process, on the database (and queue) of `app`.
struct WorkerProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl WorkerProcess {
    fn start(app: &TestApp, extra: &[(&str, &str)]) -> WorkerProcess {
        let data_dir = app.data_dir();
        let log = data_dir.join(format!("worker-{}.log", uuid::Uuid::now_v7()));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_palaver"));
        command
            .arg("worker")
            .env_clear()
            .env("DATABASE_URL", app.db.url())
            .env("PALAVER_DATA_DIR", data_dir)
            .env("JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            // As in every test app (support/app.rs): the title tests turn it on.
            .env("AUTO_TITLE", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file));
        for (k, v) in extra {
            command.env(k, v);
        }
        WorkerProcess {
            child: command.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its status, or `None` after `within`.
    async fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The queues to run the worker-process tests on: SQLite always, Redis when configured.
fn queue_backends() -> Vec<Option<String>> {
    let mut queues = vec![None];
    if let Some(url) = crate::support::db::redis_url() {
        queues.push(Some(url));
    }
    queues
}

/// Variables that put the app and its worker processes on the same queue.
fn queue_env(redis: &Option<String>) -> Vec<(String, String)> {
    let mut env = vec![
        ("JOB_HEARTBEAT_SECS".to_owned(), "1".to_owned()),
        ("JOB_BACKOFF_MS".to_owned(), "50".to_owned()),
    ];
    if let Some(url) = redis {
        env.push(("REDIS_URL".to_owned(), url.clone()));
        env.push((
            "JOB_QUEUE".to_owned(),
            format!("ai-tasks-test-{}", uuid::Uuid::now_v7().simple()),
        ));
    }
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn a_killed_worker_s_job_completes_on_another_worker_with_one_reply() {
    for redis in queue_backends() {
        eprintln!("queue {}", if redis.is_some() { "redis" } else { "table" });
        let env = queue_env(&redis);
        let mut app_env = borrowed(&env);
        app_env.push(("WORKER_CONCURRENCY", "0"));
        let app = TestApp::spawn_with(Backend::Sqlite, &app_env).await;
        // Slow replies (about 25 words, 200 ms apart), so that the kill lands mid-stream.
        let mut worker_env = borrowed(&env);
        worker_env.extend([("WORKER_CONCURRENCY", "1"), ("MOCK_WORD_DELAY_MS", "200")]);
        let mut doomed = WorkerProcess::start(&app, &worker_env);

        let queued = enqueue(&app, "kim", json!({"type": "generate-completion", "data": {"message": "survive a crash", "maxTokens": 60}})).await;
        assert_eq!(queued.status, 202, "{}", queued.body);
        let id = queued.body["id"].as_str().unwrap().to_owned();
        let running = until(&app, "kim", &id, Duration::from_secs(20), |j| {
            j["progress"].as_i64().unwrap() > 10
        })
        .await;
        assert_eq!(running["status"], "active", "{running}\n{}", doomed.log());
        doomed.child.kill().unwrap(); // SIGKILL
        doomed.wait(Duration::from_secs(5)).await.unwrap();
        let conversation = running_conversation(&app, "kim").await;
        assert_eq!(
            messages(&app, "kim", &conversation).await.len(),
            1,
            "killed before the reply was stored"
        );

        let killed_at = Instant::now();
        let survivor = WorkerProcess::start(&app, &worker_env);
        let (done, _) = finished(&app, "kim", &id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "completed", "{done}\n{}", survivor.log());
        eprintln!("completed {:?} after the kill", killed_at.elapsed());
        assert!(killed_at.elapsed() < Duration::from_secs(60));
        assert_eq!(done["result"]["conversationId"], conversation.as_str());
        let stored = messages(&app, "kim", &conversation).await;
        assert_eq!(
            stored.len(),
            2,
            "one user message and exactly one reply: {stored:?}"
        );
        assert_eq!(stored[1].0, "ASSISTANT");
        assert!(stored[1].1.contains("survive a crash"));
    }
}

/// The only conversation of `user`.
async fn running_conversation(app: &TestApp, user: &str) -> String {
    let list = app.list_conversations(user, "").await.body;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    list["data"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sigterm_lets_the_active_job_finish_then_the_worker_exits() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("WORKER_CONCURRENCY", "0"), ("JOB_HEARTBEAT_SECS", "1")],
    )
    .await;
    let mut worker = WorkerProcess::start(
        &app,
        &[
            ("WORKER_CONCURRENCY", "2"),
            ("MOCK_WORD_DELAY_MS", "60"),
            ("JOB_HEARTBEAT_SECS", "1"),
            ("SHUTDOWN_GRACE_SECS", "20"),
        ],
    );
    let queued = enqueue(
        &app,
        "tess",
        json!({"type": "generate-completion", "data": {"message": "finish me"}}),
    )
    .await;
    let id = queued.body["id"].as_str().unwrap().to_owned();
    until(&app, "tess", &id, Duration::from_secs(20), |j| {
        j["status"] == "active"
    })
    .await;
    worker.sigterm();
    // Queued after the signal: the stopping worker does not take it.
    let late = enqueue(
        &app,
        "tess",
        json!({"type": "generate-embeddings", "data": {"text": "later"}}),
    )
    .await;
    let status = worker.wait(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the worker exits cleanly: {status:?}\n{}",
        worker.log()
    );
    let job = get_job(&app, "tess", &id).await.body;
    assert_eq!(
        job["status"],
        "completed",
        "the active job finished first: {job}\n{}",
        worker.log()
    );
    let late = get_job(&app, "tess", late.body["id"].as_str().unwrap())
        .await
        .body;
    assert_eq!(late["status"], "waiting", "{late}");
}

#[tokio::test]
async fn jobs_run_on_the_redis_queue() {
    let Some(redis) = queue_backends().pop().flatten() else {
        eprintln!("skipped: PALAVER_TEST_REDIS_URL is not set");
        return;
    };
    for backend in backends() {
        let env = queue_env(&Some(redis.clone()));
        let app = TestApp::spawn_with(backend, &borrowed(&env)).await;
        assert_eq!(app.state.jobs.backend(), "redis");
        let queued = enqueue(
            &app,
            "red",
            json!({"type": "generate-completion", "data": {"message": "over redis"}}),
        )
        .await;
        let (done, _) = finished(
            &app,
            "red",
            queued.body["id"].as_str().unwrap(),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
    }
}
