//! Chat, embeddings and usage through each provider's real wire format (mock-llm on loopback).

use mock_llm::{Fault, MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::db::{Backend, backends};

#[derive(Debug, Clone, Copy)]
enum Format {
    OpenAi,
    Anthropic,
    Gemini,
}

const FORMATS: [Format; 3] = [Format::OpenAi, Format::Anthropic, Format::Gemini];

impl Format {
    fn model(self) -> &'static str {
        match self {
            Format::OpenAi => "gpt-4o-mini",
            Format::Anthropic => "claude-3-5-haiku-latest",
            Format::Gemini => "gemini-2.0-flash",
        }
    }

    fn env(self, mock: &MockLlm) -> Vec<(&'static str, String)> {
        let base = mock.base_url();
        let mut env = vec![("PROVIDER_BACKOFF_MS", "10".to_owned())];
        match self {
            Format::OpenAi => {
                env.push(("OPENAI_API_KEY", "sk-test-openai-key".into()));
                env.push(("OPENAI_BASE_URL", format!("{base}/v1")));
                env.push(("OPENAI_ORG_ID", "org-test".into()));
            }
            Format::Anthropic => {
                env.push(("ANTHROPIC_API_KEY", "sk-ant-test-key".into()));
                env.push(("ANTHROPIC_BASE_URL", base));
            }
            Format::Gemini => {
                env.push(("GEMINI_API_KEY", "AIzaTestGeminiKey0000".into()));
                env.push(("GEMINI_BASE_URL", base));
            }
        }
        env
    }

    /// Messages as the provider received them: (role, text), system first.
    fn sent_messages(self, body: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match self {
            Format::OpenAi => {
                for m in body["messages"].as_array().unwrap() {
                    out.push((
                        m["role"].as_str().unwrap().to_owned(),
                        m["content"].as_str().unwrap().to_owned(),
                    ));
                }
            }
            Format::Anthropic => {
                if let Some(system) = body["system"].as_str() {
                    out.push(("system".into(), system.to_owned()));
                }
                for m in body["messages"].as_array().unwrap() {
                    let text = match &m["content"] {
                        Value::String(s) => s.clone(),
                        other => other[0]["text"].as_str().unwrap().to_owned(),
                    };
                    out.push((m["role"].as_str().unwrap().to_owned(), text));
                }
            }
            Format::Gemini => {
                if let Some(system) = body["systemInstruction"]["parts"][0]["text"].as_str() {
                    out.push(("system".into(), system.to_owned()));
                }
                for m in body["contents"].as_array().unwrap() {
                    let role = if m["role"] == "model" {
                        "assistant"
                    } else {
                        "user"
                    };
                    out.push((
                        role.to_owned(),
                        m["parts"][0]["text"].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
        out
    }

    fn temperature(self, body: &Value) -> Value {
        match self {
            Format::Gemini => body["generationConfig"]["temperature"].clone(),
            _ => body["temperature"].clone(),
        }
    }

    fn max_tokens(self, body: &Value) -> Value {
        match self {
            Format::Gemini => body["generationConfig"]["maxOutputTokens"].clone(),
            _ => body["max_tokens"].clone(),
        }
    }
}

async fn spawn(format: Format, backend: Backend, extra: &[(&str, &str)]) -> (TestApp, MockLlm) {
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let env = format.env(&mock);
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.extend_from_slice(extra);
    (TestApp::spawn_with(backend, &vars).await, mock)
}

fn chat_requests(mock: &MockLlm) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body)
        .collect()
}

/// Parses an SSE body into (event, payload) pairs.
pub fn parse_sse(text: &str) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    for frame in text.split("\n\n") {
        let mut name = None;
        let mut data = String::new();
        for line in frame.lines() {
            if let Some(n) = line.strip_prefix("event:") {
                name = Some(n.trim().to_owned());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            }
        }
        if let Some(name) = name {
            events.push((name, serde_json::from_str(&data).unwrap_or(Value::Null)));
        }
    }
    events
}

#[tokio::test]
async fn plain_chat_history_and_parameters_for_every_format() {
    for format in FORMATS {
        for backend in backends() {
            eprintln!("format {format:?}, backend {backend:?}");
            let (app, mock) = spawn(format, backend, &[]).await;
            let first = app
                .chat("alice", json!({"message": "hello there", "model": format.model(), "temperature": 0, "maxTokens": 50, "systemPrompt": "Be brief."}))
                .await;
            assert_eq!(first.status, 200, "{}", first.body);
            let b = &first.body;
            assert_eq!(b["content"], "Mock reply to: hello there");
            assert_eq!(b["model"], format.model());
            assert_eq!(b["finishReason"], "stop");
            let usage = &b["usage"];
            assert_eq!(
                usage["completionTokens"], 5,
                "the provider's reported usage is used: {b}"
            );
            assert_eq!(
                usage["totalTokens"],
                usage["promptTokens"].as_u64().unwrap() + 5
            );
            assert_eq!(b["tokens"], usage["totalTokens"]);
            let conversation = b["conversationId"].as_str().unwrap().to_owned();

            let body = chat_requests(&mock).pop().unwrap();
            assert_eq!(
                format.temperature(&body),
                json!(0.0),
                "temperature 0 is sent as 0: {body}"
            );
            assert_eq!(format.max_tokens(&body), json!(50));
            assert_eq!(
                format.sent_messages(&body),
                vec![
                    ("system".into(), "Be brief.".into()),
                    ("user".into(), "hello there".into())
                ]
            );

            let second = app.chat("alice", json!({"message": "and again", "conversationId": conversation, "model": format.model()})).await;
            assert_eq!(second.status, 200, "{}", second.body);
            let body = chat_requests(&mock).pop().unwrap();
            assert_eq!(
                format.sent_messages(&body),
                vec![
                    ("system".into(), "Be brief.".into()),
                    ("user".into(), "hello there".into()),
                    ("assistant".into(), "Mock reply to: hello there".into()),
                    ("user".into(), "and again".into()),
                ],
                "history in order, system prompt kept from the conversation"
            );

            let stored = app.get_conversation("alice", &conversation).await.body;
            let messages = stored["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 4);
            assert_eq!(messages[1]["role"], "ASSISTANT");
            assert_eq!(messages[1]["content"], "Mock reply to: hello there");
            assert_eq!(messages[1]["model"], format.model());
            assert_eq!(messages[1]["tokens"], 5);
            assert_eq!(messages[1]["metadata"]["finishReason"], "stop");
            assert_eq!(stored["messageCount"], 4);
        }
    }
}

#[tokio::test]
async fn streamed_chat_over_sse_for_every_format() {
    for format in FORMATS {
        eprintln!("format {format:?}");
        let (app, _mock) = spawn(format, Backend::Sqlite, &[]).await;
        let response = app
            .client
            .post(format!("{}/api/v1/ai/chat", app.base))
            .bearer_auth(app.token("sam"))
            .json(&json!({"message": "stream this [[mock:words=30]]", "model": format.model(), "stream": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let events = parse_sse(&response.text().await.unwrap());
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[0], "chat:conversation");
        assert_eq!(names[1], "chat:user-message");
        assert_eq!(*names.last().unwrap(), "chat:end", "{names:?}");
        let chunks: Vec<&Value> = events
            .iter()
            .filter(|(n, _)| n == "chat:message")
            .map(|(_, p)| p)
            .collect();
        assert_eq!(chunks.len(), 30);
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk["index"], i);
            assert_eq!(chunk["isComplete"], false);
        }
        let text: String = chunks
            .iter()
            .map(|c| c["content"].as_str().unwrap())
            .collect();
        let end = &events.last().unwrap().1;
        assert_eq!(end["content"], text.as_str());
        assert_eq!(end["finishReason"], "stop");
        assert_eq!(end["usage"]["completionTokens"], 30);
        let conversation = end["conversationId"].as_str().unwrap();
        let stored = app.get_conversation("sam", conversation).await.body;
        assert_eq!(stored["messages"][1]["content"], text.as_str());
        assert_eq!(stored["messages"][1]["id"], end["messageId"]);
    }
}

#[tokio::test]
async fn retries_then_success_and_sanitised_failures() {
    for format in FORMATS {
        eprintln!("format {format:?}");
        let (app, mock) = spawn(
            format,
            Backend::Sqlite,
            &[("PROVIDER_FIRST_BYTE_TIMEOUT_MS", "500")],
        )
        .await;
        let model = format.model();

        mock.push_fault(Fault::Status {
            status: 429,
            retry_after: Some(1),
            body: None,
        });
        let start = std::time::Instant::now();
        let ok = app
            .chat("rita", json!({"message": "hi", "model": model}))
            .await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert!(
            start.elapsed() >= std::time::Duration::from_millis(900),
            "Retry-After honoured"
        );
        assert_eq!(chat_requests(&mock).len(), 2);

        mock.clear();
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
        assert_eq!(
            app.chat("rita", json!({"message": "hi", "model": model}))
                .await
                .status,
            200
        );
        assert_eq!(chat_requests(&mock).len(), 3);

        mock.clear();
        for _ in 0..3 {
            mock.push_fault(Fault::Status {
                status: 500,
                retry_after: None,
                body: None,
            });
        }
        let failed = app
            .chat("rita", json!({"message": "will fail", "model": model}))
            .await;
        failed.assert_error(502, "upstream_error");
        assert_eq!(chat_requests(&mock).len(), 3, "at most 3 attempts");
        let text = failed.body.to_string();
        assert!(
            !text.contains("mock-upstream-secret-detail"),
            "upstream body leaked: {text}"
        );
        assert!(
            !text.contains("sk-") && !text.contains("AIza"),
            "key leaked: {text}"
        );

        mock.clear();
        mock.push_fault(Fault::Status {
            status: 400,
            retry_after: None,
            body: None,
        });
        app.chat("rita", json!({"message": "bad", "model": model}))
            .await
            .assert_error(502, "upstream_error");
        assert_eq!(chat_requests(&mock).len(), 1, "4xx is not retried");

        mock.clear();
        for _ in 0..3 {
            mock.push_fault(Fault::Hang);
        }
        let timeout = app
            .chat("rita", json!({"message": "slow", "model": model}))
            .await;
        timeout.assert_error(504, "upstream_timeout");

        // The user messages of failed exchanges stay stored.
        let list = app.list_conversations("rita", "?limit=100").await.body;
        let total_messages: i64 = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["messageCount"].as_i64().unwrap())
            .sum();
        assert_eq!(
            total_messages,
            2 * 2 + 3,
            "two exchanges plus three lone user messages"
        );
    }
}

#[tokio::test]
async fn usage_and_cost_are_recorded() {
    for backend in backends() {
        let (app, _mock) = spawn(Format::OpenAi, backend, &[]).await;
        let r = app
            .chat("uma", json!({"message": "one two three", "model": "gpt-4"}))
            .await;
        assert_eq!(r.status, 200);
        let prompt = r.body["usage"]["promptTokens"].as_i64().unwrap();
        let completion = r.body["usage"]["completionTokens"].as_i64().unwrap();
        let e = app
            .request(
                Method::POST,
                "/api/v1/ai/embeddings",
                Some(&app.token("uma")),
                Some(json!({"text": "a b c d"})),
            )
            .await;
        assert_eq!(e.status, 200);
        let embed_tokens = e.body["tokens"].as_i64().unwrap();

        let usage = app
            .request(
                Method::GET,
                "/api/v1/ai/usage",
                Some(&app.token("uma")),
                None,
            )
            .await;
        assert_eq!(usage.status, 200);
        let u = &usage.body;
        assert_eq!(u["promptTokens"], prompt + embed_tokens);
        assert_eq!(u["completionTokens"], completion);
        assert_eq!(u["totalTokens"], prompt + completion + embed_tokens);
        assert_eq!(u["requests"], 2);
        assert_eq!(u["conversationsCount"], 1);
        assert_eq!(u["messagesCount"], 2);
        assert!(u["lastUsed"].is_string());
        let expected =
            (prompt as f64 * 30.0 + completion as f64 * 60.0 + embed_tokens as f64 * 0.02) / 1e6;
        assert!(
            (u["costUsd"].as_f64().unwrap() - expected).abs() < 1e-9,
            "{u}"
        );
        let by_model = u["byModel"].as_array().unwrap();
        assert_eq!(by_model.len(), 2);
        assert_eq!(by_model[0]["model"], "gpt-4");
        assert_eq!(u["limits"]["rateLimitPerMinute"], 20);
        let user = app.state.store.get_user("uma").await.unwrap().unwrap();
        assert_eq!(user.total_tokens_used, prompt + completion + embed_tokens);
    }
}

#[tokio::test]
async fn embeddings_in_both_forms() {
    let (app, mock) = spawn(Format::OpenAi, Backend::Sqlite, &[]).await;
    let token = app.token("eve");
    let single = app
        .request(
            Method::POST,
            "/api/v1/ai/embeddings",
            Some(&token),
            Some(json!({"text": "hello"})),
        )
        .await;
    assert_eq!(single.status, 200, "{}", single.body);
    assert_eq!(single.body["model"], "text-embedding-3-small");
    assert_eq!(single.body["embedding"].as_array().unwrap().len(), 1536);
    assert!(single.body["tokens"].as_u64().unwrap() >= 1);

    let batch = app
        .request(
            Method::POST,
            "/api/v1/ai/embeddings",
            Some(&token),
            Some(json!({"input": ["a", "hello", "c"], "model": "text-embedding-3-large"})),
        )
        .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(batch.body["model"], "text-embedding-3-large");
    let data = batch.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(
        data[1]["embedding"], single.body["embedding"],
        "same text, same vector, in input order"
    );
    assert!(batch.body["usage"]["promptTokens"].as_u64().unwrap() >= 3);
    assert_eq!(
        batch.body["usage"]["totalTokens"],
        batch.body["usage"]["promptTokens"]
    );
    let sent = mock
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/embeddings"))
        .unwrap();
    assert_eq!(sent.body["input"], json!(["a", "hello", "c"]));

    let one_string = app
        .request(
            Method::POST,
            "/api/v1/ai/embeddings",
            Some(&token),
            Some(json!({"input": "x"})),
        )
        .await;
    assert_eq!(one_string.body["data"].as_array().unwrap().len(), 1);

    for bad in [
        json!({}),
        json!({"input": []}),
        json!({"text": ""}),
        json!({"text": "a", "input": "b"}),
        json!({"input": [1, 2]}),
    ] {
        let r = app
            .request(
                Method::POST,
                "/api/v1/ai/embeddings",
                Some(&token),
                Some(bad.clone()),
            )
            .await;
        r.assert_error(400, "validation_failed");
    }
}

#[tokio::test]
async fn chat_validation() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (body, field) in [
        (json!({}), "message"),
        (json!({"message": ""}), "message"),
        (json!({"message": "   "}), "message"),
        (json!({"message": "x".repeat(32001)}), "message"),
        (json!({"message": "hi", "maxTokens": 0}), "maxTokens"),
        (json!({"message": "hi", "maxTokens": 8001}), "maxTokens"),
        (json!({"message": "hi", "temperature": 2.5}), "temperature"),
        (
            json!({"message": "hi", "temperature": "hot"}),
            "temperature",
        ),
        (
            json!({"message": "hi", "conversationId": "nope"}),
            "conversationId",
        ),
    ] {
        let r = app.chat("val", body.clone()).await;
        r.assert_error(400, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], field, "{body}: {}", r.body);
    }
    let unknown = app
        .chat(
            "val",
            json!({"message": "hi", "conversationId": uuid::Uuid::now_v7()}),
        )
        .await;
    unknown.assert_error(404, "not_found");
    let other = app.create_conversation("owner", json!({})).await.body["id"].clone();
    app.chat("val", json!({"message": "hi", "conversationId": other}))
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        app.list_conversations("val", "").await.body["meta"]["total"],
        0,
        "nothing stored"
    );
}

#[tokio::test]
async fn built_in_mock_provider_answers_without_keys() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("MOCK_WORD_DELAY_MS", "0")]).await;
    let ready = app.request(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.body["mockProvider"], true);
    assert!(ready.body["warning"].as_str().unwrap().contains("mock"));
    let r = app
        .chat(
            "newbie",
            json!({"message": "does this work?", "userId": "ignored"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["model"], "mock");
    assert!(
        r.body["content"]
            .as_str()
            .unwrap()
            .contains("You said: does this work?")
    );
    assert!(
        r.body["usage"]["promptTokens"].as_u64().unwrap() > 0,
        "counted with tiktoken when the provider reports nothing"
    );
    let e = app
        .request(
            Method::POST,
            "/api/v1/ai/embeddings",
            Some(&app.token("newbie")),
            Some(json!({"text": "x"})),
        )
        .await;
    assert_eq!(e.status, 200);
    assert_eq!(e.body["model"], "mock");
}

#[tokio::test]
async fn unconfigured_provider_families_are_refused_clearly() {
    let (app, _mock) = spawn(Format::OpenAi, Backend::Sqlite, &[("OPENAI_BASE_URL", "")]).await;
    let r = app
        .chat(
            "ann",
            json!({"message": "hi", "model": "anthropic/claude-3-5-haiku-latest"}),
        )
        .await;
    r.assert_error(400, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "model");
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic")
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let (app, mock) = spawn(Format::OpenAi, Backend::Sqlite, &[]).await;
    mock.push_fault(Fault::Delay(std::time::Duration::from_millis(800)));
    let request = app
        .client
        .post(format!("{}/api/v1/ai/chat", app.base))
        .bearer_auth(app.token("grace"))
        .json(&json!({"message": "slow one", "model": "gpt-4o-mini"}))
        .send();
    let in_flight = tokio::spawn(request);
    // Let the request reach the provider, then shut down.
    for _ in 0..100 {
        if mock.request_count() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let store = app.state.store.clone();
    app.stop().await;
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "the in-flight request finished");
    let body: Value = response.json().await.unwrap();
    let id = body["conversationId"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        store.list_messages(id).await.unwrap().len(),
        2,
        "and its reply was stored"
    );
}

#[tokio::test]
async fn a_refused_model_leaves_no_empty_conversation() {
    for backend in backends() {
        let (app, mock) = spawn(Format::OpenAi, backend, &[]).await;
        // Anthropic is not configured: the route is refused before anything is stored.
        let r = app
            .chat(
                "ivy",
                json!({"message": "hi", "model": "anthropic/claude-3-5-haiku-latest"}),
            )
            .await;
        r.assert_error(400, "validation_failed");
        let list = app.list_conversations("ivy", "").await;
        assert_eq!(list.body["meta"]["total"], 0, "{backend}: {}", list.body);
        assert_eq!(mock.request_count(), 0);
    }
}

#[tokio::test]
async fn a_conversation_deleted_mid_stream_still_counts_the_tokens() {
    let mock = MockLlm::start(MockConfig {
        tokens_per_sec: Some(100.0),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let base = format!("{}/v1", mock.base_url());
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("OPENAI_API_KEY", "sk-test-openai-key"),
            ("OPENAI_BASE_URL", &base),
        ],
    )
    .await;
    let token = app.token("june");
    let stream = app
        .client
        .post(format!("{}/api/v1/ai/chat", app.base))
        .bearer_auth(&token)
        .json(&json!({"message": "long [[mock:words=40]]", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = stream.bytes_stream();
    use futures::StreamExt;
    let mut seen = String::new();
    while !seen.contains("chat:message") {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    let conversation = parse_sse(&seen)
        .into_iter()
        .find(|(name, _)| name == "chat:user-message")
        .unwrap()
        .1["conversationId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete_conversation("june", &conversation).await.status,
        204
    );
    // The stream ends with an error, and the tokens spent are recorded all the same.
    let mut rest = seen;
    while let Some(chunk) = body.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let events = parse_sse(&rest);
    assert_eq!(events.last().unwrap().0, "chat:error", "{events:?}");
    let usage = app
        .request(Method::GET, "/api/v1/ai/usage", Some(&token), None)
        .await;
    assert_eq!(usage.status, 200);
    assert!(
        usage.body["completionTokens"].as_i64().unwrap() >= 40,
        "{}",
        usage.body
    );
}

#[tokio::test]
async fn openai_requests_carry_the_key_and_the_organization() {
    let (app, mock) = spawn(Format::OpenAi, Backend::Sqlite, &[]).await;
    let r = app
        .chat("kai", json!({"message": "hello", "model": "gpt-4o-mini"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = mock
        .requests()
        .into_iter()
        .rfind(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-test-openai-key")
    );
    assert_eq!(sent.header("openai-organization"), Some("org-test"));
}

/// `palaver check` calls each configured provider once and says what works.
#[tokio::test]
async fn check_reports_each_provider() {
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let base = mock.base_url();
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let data_dir = dir.path().to_owned();
    let run = move |gemini_base: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_palaver"))
            .arg("check")
            .env_clear()
            .env("PALAVER_DATA_DIR", &data_dir)
            .env("OPENAI_API_KEY", "sk-test-openai-key")
            .env("OPENAI_BASE_URL", format!("{base}/v1"))
            .env("ANTHROPIC_API_KEY", "sk-ant-test-key")
            .env("ANTHROPIC_BASE_URL", &base)
            .env("GEMINI_API_KEY", "AIzaTestGeminiKey0000")
            .env("GEMINI_BASE_URL", gemini_base)
            .env("PROVIDER_MAX_ATTEMPTS", "1")
            .output()
            .unwrap()
    };
    let all_up = tokio::task::spawn_blocking({
        let (base, run) = (mock.base_url(), run.clone());
        move || run(base)
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&all_up.stdout);
    assert!(all_up.status.success(), "{out}");
    for provider in ["openai-compatible", "anthropic", "gemini"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.contains(provider)),
            "{provider}: {out}"
        );
    }
    let models = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(models, 3, "one model list per provider");

    let one_down = tokio::task::spawn_blocking(move || run(closed))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&one_down.stdout);
    assert!(!one_down.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("gemini")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("anthropic")),
        "{out}"
    );
}

/// A user who has not chatted yet still gets a date (issue #14 item 2): a usage page would
/// show 1970 or throw on `null`.
#[tokio::test]
async fn usage_of_a_new_user_has_a_last_used_date() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token("newcomer");
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let usage = app
        .request(Method::GET, "/api/v1/ai/usage", Some(&token), None)
        .await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    let last_used = usage.body["lastUsed"]
        .as_str()
        .expect("lastUsed is a string");
    let when = chrono::DateTime::parse_from_rfc3339(last_used).unwrap();
    assert!(when >= before, "{last_used}");
    assert_eq!(usage.body["requests"], 0);
}

/// One rule for every transport (issue #14 item 6): while a conversation streams a reply, a
/// plain `POST /ai/chat` into it is refused with 409 `conversation_busy` instead of
/// interleaving with it, and is admitted again once the stream has ended.
#[tokio::test]
async fn a_plain_chat_into_a_streaming_conversation_is_busy() {
    let mock = MockLlm::start(MockConfig {
        tokens_per_sec: Some(100.0),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let base = format!("{}/v1", mock.base_url());
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("OPENAI_API_KEY", "sk-test-openai-key"),
            ("OPENAI_BASE_URL", &base),
        ],
    )
    .await;
    let token = app.token("bea");
    let stream = app
        .client
        .post(format!("{}/api/v1/ai/chat", app.base))
        .bearer_auth(&token)
        .json(&json!({"message": "long [[mock:words=40]]", "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = stream.bytes_stream();
    use futures::StreamExt;
    let mut seen = String::new();
    while !seen.contains("chat:message") {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    let conversation = parse_sse(&seen)
        .into_iter()
        .find(|(name, _)| name == "chat:user-message")
        .unwrap()
        .1["conversationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let busy = app
        .chat(
            "bea",
            json!({"message": "me too", "conversationId": conversation}),
        )
        .await;
    busy.assert_error(409, "conversation_busy");
    while body.next().await.is_some() {}
    let after = app
        .chat(
            "bea",
            json!({"message": "now", "conversationId": conversation}),
        )
        .await;
    assert_eq!(after.status, 200, "{}", after.body);
    // The refused message was not stored: the stream's two messages and the later two.
    let stored = app.get_conversation("bea", &conversation).await;
    assert_eq!(
        stored.body["messages"].as_array().unwrap().len(),
        4,
        "{}",
        stored.body
    );
}
