//! Issue #21, prompt templates: per-user CRUD with versions, validation, and chats that
//! apply a template over REST (plain and SSE), Socket.IO and a `generate-completion` job.

use std::time::Duration;

use mock_llm::{MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};

use crate::chat::parse_sse;
use crate::support::app::{TestApp, TestResponse};
use crate::support::db::{Backend, backends};
use crate::support::node::SocketDriver;

const TEMPLATES: &str = "/api/v1/ai/templates";

async fn call(
    app: &TestApp,
    user: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> TestResponse {
    app.request(method, path, Some(&app.token(user)), body)
        .await
}

/// The app on mock-llm (OpenAI's wire format), so the tests read what was sent upstream.
async fn spawn(backend: Backend) -> (TestApp, MockLlm) {
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let base = format!("{}/v1", mock.base_url());
    let vars = [
        ("OPENAI_API_KEY", "sk-test-templates"),
        ("OPENAI_BASE_URL", base.as_str()),
        ("JOB_BACKOFF_MS", "50"),
    ];
    (TestApp::spawn_with(backend, &vars).await, mock)
}

fn review_template() -> Value {
    json!({
        "name": "Code review",
        "system": "You review {{language}} code. Be {{ tone }}.",
        "messages": [
            {"role": "user", "content": "Here are my rules: {{rules}}"},
            {"role": "assistant", "content": "Understood, {{language}} it is."}
        ],
        "variables": [
            {"name": "language", "required": true},
            {"name": "tone", "required": false, "default": "kind"},
            {"name": "rules", "required": false}
        ],
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "maxTokens": 300
    })
}

/// The last chat request mock-llm received.
fn upstream(mock: &MockLlm) -> Value {
    mock.requests()
        .into_iter()
        .rfind(|r| r.method == "POST")
        .unwrap()
        .body
}

/// What the upstream was sent, as (role, content).
fn sent(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect()
}

#[tokio::test]
async fn templates_are_versioned_validated_and_private() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let created = call(
            &app,
            "tom",
            Method::POST,
            TEMPLATES,
            Some(review_template()),
        )
        .await;
        assert_eq!(created.status, 201, "{backend}: {}", created.body);
        let t = &created.body;
        assert_eq!(t["version"], 1);
        assert_eq!(t["name"], "Code review");
        assert_eq!(t["variables"][1]["default"], "kind");
        assert_eq!(t["messages"][1]["role"], "assistant");
        assert_eq!(t["maxTokens"], 300);
        let id = t["id"].as_str().unwrap().to_owned();
        let one = format!("{TEMPLATES}/{id}");

        // An undeclared placeholder is a 400 naming it.
        let mut bad = review_template();
        bad["messages"][0]["content"] = json!("Mind {{styleguide}}");
        let refused = call(&app, "tom", Method::POST, TEMPLATES, Some(bad)).await;
        refused.assert_error(400, "validation_failed");
        assert_eq!(refused.body["errors"][0]["field"], "messages[0].content");
        assert!(
            refused.body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("styleguide"),
            "{}",
            refused.body
        );
        for (body, field) in [
            (json!({"name": " "}), "name"),
            (
                json!({"name": "x", "variables": [{"name": "a b"}]}),
                "variables[0].name",
            ),
            (
                json!({"name": "x", "variables": [{"name": "a"}, {"name": "a"}]}),
                "variables[1].name",
            ),
            (json!({"name": "x", "temperature": 3}), "temperature"),
        ] {
            let refused = call(&app, "tom", Method::POST, TEMPLATES, Some(body)).await;
            refused.assert_error(400, "validation_failed");
            assert_eq!(
                refused.body["errors"][0]["field"], field,
                "{}",
                refused.body
            );
        }

        // Every PATCH is the next version; the old ones stay readable.
        let patched = call(
            &app,
            "tom",
            Method::PATCH,
            &one,
            Some(json!({"system": "Review {{language}}.", "temperature": null})),
        )
        .await;
        assert_eq!(patched.status, 200, "{}", patched.body);
        assert_eq!(patched.body["version"], 2);
        assert_eq!(patched.body["system"], "Review {{language}}.");
        assert_eq!(patched.body["temperature"], Value::Null);
        assert_eq!(patched.body["maxTokens"], 300, "fields not given are kept");
        assert_eq!(patched.body["createdAt"], t["createdAt"]);
        let renamed = call(
            &app,
            "tom",
            Method::PATCH,
            &one,
            Some(json!({"name": "Review"})),
        )
        .await;
        assert_eq!(renamed.body["version"], 3, "{}", renamed.body);
        let refused = call(
            &app,
            "tom",
            Method::PATCH,
            &one,
            Some(json!({"system": "{{nope}}"})),
        )
        .await;
        refused.assert_error(400, "validation_failed");
        call(&app, "tom", Method::PATCH, &one, Some(json!({})))
            .await
            .assert_error(400, "validation_failed");
        call(
            &app,
            "tom",
            Method::PATCH,
            &one,
            Some(json!({"colour": "red"})),
        )
        .await
        .assert_error(400, "validation_failed");

        let newest = call(&app, "tom", Method::GET, &one, None).await;
        assert_eq!(newest.body["version"], 3);
        assert_eq!(newest.body["name"], "Review");
        let first = call(&app, "tom", Method::GET, &format!("{one}/versions/1"), None).await;
        assert_eq!(first.status, 200, "{}", first.body);
        assert_eq!(first.body["system"], t["system"]);
        assert_eq!(first.body["name"], "Code review");
        call(&app, "tom", Method::GET, &format!("{one}/versions/4"), None)
            .await
            .assert_error(404, "not_found");
        call(
            &app,
            "tom",
            Method::GET,
            &format!("{one}/versions/zero"),
            None,
        )
        .await
        .assert_error(400, "validation_failed");

        let listed = call(&app, "tom", Method::GET, TEMPLATES, None).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(listed.body["data"][0]["version"], 3);

        // Another user's template is not there.
        assert_eq!(
            call(&app, "eve", Method::GET, TEMPLATES, None).await.body["data"],
            json!([])
        );
        call(&app, "eve", Method::GET, &one, None)
            .await
            .assert_error(404, "not_found");
        call(&app, "eve", Method::GET, &format!("{one}/versions/1"), None)
            .await
            .assert_error(404, "not_found");
        call(
            &app,
            "eve",
            Method::PATCH,
            &one,
            Some(json!({"name": "mine"})),
        )
        .await
        .assert_error(404, "not_found");
        call(&app, "eve", Method::DELETE, &one, None)
            .await
            .assert_error(404, "not_found");
        let chat = app
            .chat(
                "eve",
                json!({"message": "hi", "templateId": id, "variables": {"language": "Rust"}}),
            )
            .await;
        chat.assert_error(404, "not_found");

        let deleted = call(&app, "tom", Method::DELETE, &one, None).await;
        assert_eq!(deleted.status, 204);
        call(&app, "tom", Method::GET, &one, None)
            .await
            .assert_error(404, "not_found");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_chat_renders_its_template_into_the_context_and_records_the_version() {
    for backend in backends() {
        let (app, mock) = spawn(backend).await;
        let t = call(
            &app,
            "ida",
            Method::POST,
            TEMPLATES,
            Some(review_template()),
        )
        .await
        .body;
        let id = t["id"].as_str().unwrap().to_owned();

        let missing = app
            .chat("ida", json!({"message": "look", "templateId": id}))
            .await;
        missing.assert_error(400, "validation_failed");
        assert_eq!(
            missing.body["errors"][0]["field"], "variables.language",
            "{}",
            missing.body
        );
        let stray = app.chat("ida", json!({"message": "look", "templateId": id, "variables": {"language": "Go", "colour": "red"}})).await;
        assert_eq!(
            stray.body["errors"][0]["field"], "variables.colour",
            "{}",
            stray.body
        );
        app.chat("ida", json!({"message": "look", "variables": {"a": "b"}}))
            .await
            .assert_error(400, "validation_failed");
        assert_eq!(
            mock.requests().len(),
            0,
            "{backend}: nothing refused reached the upstream"
        );

        let chat = app.chat("ida", json!({"message": "fn main() {}", "templateId": id, "variables": {"language": "Rust", "rules": "no unsafe"}})).await;
        assert_eq!(chat.status, 200, "{backend}: {}", chat.body);
        let body = upstream(&mock);
        assert_eq!(
            sent(&body),
            pairs(&[
                ("system", "You review Rust code. Be kind."),
                ("user", "Here are my rules: no unsafe"),
                ("assistant", "Understood, Rust it is."),
                ("user", "fn main() {}"),
            ]),
            "{backend}"
        );
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["max_tokens"], 300, "the template's maxTokens");
        assert!(
            (body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6,
            "{body}"
        );
        let conversation = chat.body["conversationId"].as_str().unwrap().to_owned();
        let stored = app.get_conversation("ida", &conversation).await.body;
        assert_eq!(
            stored["metadata"]["template"]["id"],
            id.as_str(),
            "{stored}"
        );
        assert_eq!(stored["metadata"]["template"]["version"], 1);
        assert_eq!(
            stored["messages"].as_array().unwrap().len(),
            2,
            "template messages are context, not stored"
        );
        assert_eq!(stored["messages"][0]["metadata"]["template"]["version"], 1);

        // A new version; the conversation continues on version 1 asked for by number, the
        // request overriding the template's temperature.
        call(
            &app,
            "ida",
            Method::PATCH,
            &format!("{TEMPLATES}/{id}"),
            Some(json!({"system": "V2 for {{language}}."})),
        )
        .await;
        let again = app.chat("ida", json!({"message": "and now?", "conversationId": conversation, "templateId": id, "templateVersion": 1, "temperature": 0.9, "variables": {"language": "Go"}})).await;
        assert_eq!(again.status, 200, "{}", again.body);
        let body = upstream(&mock);
        let sent = sent(&body);
        assert_eq!(sent[0].1, "You review Go code. Be kind.");
        assert_eq!(sent[1].1, "Here are my rules: ");
        assert_eq!(sent.last().unwrap().1, "and now?");
        assert_eq!(
            sent.len(),
            6,
            "system, two template messages, the first exchange, the turn"
        );
        assert!((body["temperature"].as_f64().unwrap() - 0.9).abs() < 1e-6);

        // Streamed over SSE, the newest version.
        let response = app
            .client
            .post(format!("{}/api/v1/ai/chat", app.base))
            .bearer_auth(app.token("ida"))
            .json(&json!({"message": "stream it", "conversationId": conversation, "stream": true, "templateId": id, "variables": {"language": "C"}}))
            .send()
            .await
            .unwrap();
        let events = parse_sse(&response.text().await.unwrap());
        assert_eq!(events.last().unwrap().0, "chat:end", "{events:?}");
        assert_eq!(sent_system(&mock), "V2 for C.");
        let stored = app.get_conversation("ida", &conversation).await.body;
        assert_eq!(stored["metadata"]["template"]["version"], 2, "{stored}");
        let refused = app
            .client
            .post(format!("{}/api/v1/ai/chat", app.base))
            .bearer_auth(app.token("ida"))
            .json(&json!({"message": "x", "stream": true, "templateId": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            refused.status(),
            400,
            "a missing variable is refused before the stream starts"
        );
        app.stop().await;
    }
}

fn sent_system(mock: &MockLlm) -> String {
    sent(&upstream(mock))[0].1.clone()
}

#[tokio::test]
async fn a_completion_job_applies_its_template() {
    for backend in backends() {
        let (app, mock) = spawn(backend).await;
        let t = call(&app, "jo", Method::POST, TEMPLATES, Some(review_template()))
            .await
            .body;
        let data = json!({"message": "review this", "templateId": t["id"], "variables": {"language": "Zig"}});
        let refused = call(&app, "jo", Method::POST, "/api/v1/ai/jobs", Some(json!({"type": "generate-completion", "data": {"message": "x", "templateVersion": 0, "templateId": t["id"]}}))).await;
        refused.assert_error(400, "validation_failed");
        let queued = call(
            &app,
            "jo",
            Method::POST,
            "/api/v1/ai/jobs",
            Some(json!({"type": "generate-completion", "data": data})),
        )
        .await;
        assert_eq!(queued.status, 202, "{}", queued.body);
        let id = queued.body["id"].as_str().unwrap().to_owned();
        let mut job = Value::Null;
        for _ in 0..200 {
            job = call(
                &app,
                "jo",
                Method::GET,
                &format!("/api/v1/ai/jobs/{id}"),
                None,
            )
            .await
            .body;
            if job["status"] == "completed" || job["status"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(job["status"], "completed", "{backend}: {job}");
        assert_eq!(sent_system(&mock), "You review Zig code. Be kind.");
        let conversation = job["result"]["conversationId"].as_str().unwrap();
        let stored = app.get_conversation("jo", conversation).await.body;
        assert_eq!(stored["metadata"]["template"]["id"], t["id"], "{stored}");
        app.stop().await;
    }
}

#[tokio::test]
async fn chat_start_applies_a_template() {
    let Some(mut io) = SocketDriver::start().await else {
        return;
    };
    let (app, mock) = spawn(Backend::Sqlite).await;
    let t = call(
        &app,
        "sia",
        Method::POST,
        TEMPLATES,
        Some(review_template()),
    )
    .await
    .body;
    io.connect("s", &app.base, &app.token("sia")).await;
    let ack = io
        .emit_ack(
            "s",
            "chat:start",
            json!({"message": "hi", "templateId": t["id"]}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "validation_failed", "{ack}");
    let error = io.event("s", "chat:error").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("language")
            || error.to_string().contains("variables.language"),
        "{error}"
    );
    let ack = io
        .emit_ack(
            "s",
            "chat:start",
            json!({"message": "hi", "templateId": t["id"], "variables": {"language": "OCaml"}}),
        )
        .await;
    let conversation = ack["conversationId"]
        .as_str()
        .unwrap_or_else(|| panic!("{ack}"))
        .to_owned();
    let events = io.events_until("s", &["chat:end", "chat:error"]).await;
    assert_eq!(events.last().unwrap().0, "chat:end", "{events:?}");
    assert_eq!(sent_system(&mock), "You review OCaml code. Be kind.");
    let stored = app.get_conversation("sia", &conversation).await.body;
    assert_eq!(stored["metadata"]["template"]["version"], 1);
    io.disconnect("s").await;
}
