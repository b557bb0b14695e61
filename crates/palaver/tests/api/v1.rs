//! The OpenAI-compatible `/v1` surface over the real server, mock-llm as the upstream, on
//! every backend: models, chat completions (plain, streamed, in a conversation), embeddings,
//! API keys, and errors in OpenAI's shape.

use base64::Engine;
use mock_llm::{MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{TestApp, TestResponse};
use crate::support::db::{Backend, TestDb, backends};

/// A server whose OpenAI-compatible provider and Anthropic are mock-llm.
pub(crate) async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, MockLlm) {
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let base = mock.base_url();
    let openai = format!("{base}/v1");
    let mut vars = vec![
        ("OPENAI_API_KEY", "sk-test-openai-key"),
        ("OPENAI_BASE_URL", openai.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
        ("ANTHROPIC_BASE_URL", base.as_str()),
        ("PROVIDER_BACKOFF_MS", "10"),
    ];
    vars.extend_from_slice(extra);
    (TestApp::spawn_with(backend, &vars).await, mock)
}

async fn post(app: &TestApp, path: &str, bearer: &str, body: Value) -> TestResponse {
    app.request(Method::POST, path, Some(bearer), Some(body))
        .await
}

/// The `data:` payloads of an event stream, in order; `[DONE]` as a string.
fn data_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| match d.trim() {
            "[DONE]" => json!("[DONE]"),
            d => serde_json::from_str(d).unwrap_or_else(|e| panic!("not JSON: {d}: {e}")),
        })
        .collect()
}

/// The API key and end user of every usage record of `user`, oldest first.
async fn attributions(db: &TestDb, user: &str) -> Vec<(Option<String>, Option<String>, String)> {
    let (sqlite, pg) = (
        "SELECT api_key_id, end_user, kind FROM usage_records WHERE user_id = ?1 ORDER BY created_at",
        "SELECT api_key_id::text, end_user, kind FROM usage_records WHERE user_id = $1 ORDER BY created_at",
    );
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
            sqlx::query_as(sqlite)
                .bind(user)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
            sqlx::query_as(pg)
                .bind(user)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    }
}

fn assert_openai_error(r: &TestResponse, status: u16, kind: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    let error = &r.body["error"];
    assert!(error["message"].is_string(), "{}", r.body);
    assert_eq!(error["type"], kind, "{}", r.body);
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{}",
        r.body
    );
    assert!(
        r.body.get("statusCode").is_none(),
        "not the API.md shape: {}",
        r.body
    );
}

#[tokio::test]
async fn models_of_every_configured_provider_are_listed() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, &[]).await;
        let token = app.token("alice");
        let r = app
            .request(Method::GET, "/v1/models", Some(&token), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["object"], "list");
        let models = r.body["data"].as_array().unwrap();
        let find = |id: &str| models.iter().find(|m| m["id"] == id).cloned();
        let mini = find("gpt-4o-mini").expect("an OpenAI model");
        assert_eq!(mini["object"], "model");
        assert_eq!(mini["owned_by"], "openai-compatible");
        assert!(mini["created"].is_i64() && mini["contextWindow"].as_u64() > Some(0));
        assert!(mini["price"]["input"].as_f64() > Some(0.0), "{mini}");
        let haiku = find("claude-3-5-haiku-latest").expect("an Anthropic model");
        assert_eq!(haiku["owned_by"], "anthropic");
        assert_eq!(haiku["contextWindow"], 200_000);
        let one = app
            .request(Method::GET, "/v1/models/gpt-4o-mini", Some(&token), None)
            .await;
        assert_eq!(one.body, mini, "{backend}");
        let none = app
            .request(Method::GET, "/v1/models/gpt-9", Some(&token), None)
            .await;
        assert_openai_error(&none, 404, "invalid_request_error");
        assert_eq!(none.body["error"]["code"], "model_not_found");
    }
}

#[tokio::test]
async fn a_plain_completion_is_stateless_metered_and_names_what_it_ignored() {
    for backend in backends() {
        let (app, mock) = spawn(backend, &[]).await;
        let token = app.token("alice");
        let messages = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say one thing"},
            {"role": "assistant", "content": "One thing"},
            {"role": "user", "content": [{"type": "text", "text": "Now say two things"}]},
        ]);
        let body = json!({"model": "gpt-4o-mini", "messages": messages, "temperature": 0,
            "max_tokens": 50, "seed": 7, "top_p": 1, "unheard_of": true});
        let r = post(&app, "/v1/chat/completions", &token, body).await;
        assert_eq!(r.status, 200, "{backend}: {}", r.body);
        assert_eq!(
            r.headers["x-palaver-ignored-params"],
            "seed, top_p, unheard_of"
        );
        assert_eq!(r.body["object"], "chat.completion");
        assert!(r.body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(r.body["model"], "gpt-4o-mini");
        let choice = &r.body["choices"][0];
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["finish_reason"], "stop");
        let content = choice["message"]["content"].as_str().unwrap();
        assert!(content.contains("two things"), "mock-llm echoes: {content}");
        let usage = &r.body["usage"];
        let total = usage["total_tokens"].as_u64().unwrap();
        assert_eq!(
            total,
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        );
        // The upstream got the whole context, in order.
        let sent = mock.requests().last().unwrap().body.clone();
        let roles: Vec<&str> = sent["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(sent["messages"][3]["content"], "Now say two things");
        assert_eq!(sent["max_tokens"], 50);
        // Nothing stored but usage.
        let listed = app.list_conversations("alice", "").await;
        assert_eq!(listed.body["meta"]["total"], 0, "{backend}");
        let stats = app
            .request(Method::GET, "/api/v1/ai/usage", Some(&token), None)
            .await;
        assert_eq!(stats.body["requests"], 1);
        assert_eq!(stats.body["totalTokens"].as_u64(), Some(total), "{backend}");
    }
}

#[tokio::test]
async fn a_streamed_completion_is_chunks_then_usage_then_done() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, &[]).await;
        let token = app.token("bob");
        let messages = json!([{"role": "user", "content": "Tell me [[mock:words=12]]"}]);
        let plain = post(
            &app,
            "/v1/chat/completions",
            &token,
            json!({"model": "gpt-4o-mini", "messages": messages}),
        )
        .await;
        let expected = plain.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        let streamed = post(
            &app,
            "/v1/chat/completions",
            &token,
            json!({"model": "gpt-4o-mini",
            "messages": messages, "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
        assert_eq!(streamed.status, 200);
        assert!(
            streamed.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let chunks = data_lines(streamed.body.as_str().unwrap());
        assert_eq!(chunks.last().unwrap(), "[DONE]", "{backend}");
        let (usage_chunk, rest) = chunks[..chunks.len() - 1].split_last().unwrap();
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(
            usage_chunk["usage"], plain.body["usage"],
            "{backend}: same usage as plain"
        );
        assert_eq!(rest[0]["choices"][0]["delta"]["role"], "assistant");
        let last = rest.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        let text: String = rest
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, expected, "{backend}: the chunks make the reply");
        for chunk in rest {
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["id"], rest[0]["id"]);
            assert!(
                chunk["usage"].is_null() && chunk.get("usage").is_some(),
                "{chunk}"
            );
        }
        // Without include_usage: no usage field at all, and [DONE] right after the finish.
        let bare = post(
            &app,
            "/v1/chat/completions",
            &token,
            json!({"model": "gpt-4o-mini", "messages": messages, "stream": true}),
        )
        .await;
        let chunks = data_lines(bare.body.as_str().unwrap());
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "stop"
        );
        let stats = app
            .request(Method::GET, "/api/v1/ai/usage", Some(&token), None)
            .await;
        assert_eq!(
            stats.body["requests"], 3,
            "{backend}: every call is a usage record"
        );
    }
}

#[tokio::test]
async fn api_keys_authenticate_are_attributed_and_refused_once_revoked() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, &[]).await;
        let jwt = app.token("carol");
        let made = post(
            &app,
            "/api/v1/ai/keys",
            &jwt,
            json!({"name": "open-webui", "models": ["gpt-4o-mini"], "rateLimitPerMinute": 30}),
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let secret = made.body["key"].as_str().unwrap().to_owned();
        let id = made.body["id"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("pal_") && secret.len() > 40);
        assert!(secret.starts_with(made.body["prefix"].as_str().unwrap()));
        let listed = app
            .request(Method::GET, "/api/v1/ai/keys", Some(&jwt), None)
            .await;
        assert_eq!(listed.body["data"][0]["id"], id.as_str());
        assert_eq!(listed.body["data"][0]["models"], json!(["gpt-4o-mini"]));
        assert!(
            !listed.body.to_string().contains(&secret),
            "the secret is shown once"
        );
        // The key is its owner on /v1 and on /api/v1; the end user is kept with the usage.
        let chat = json!({"model": "gpt-4o-mini", "user": "end-user-7",
            "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            post(&app, "/v1/chat/completions", &secret, chat)
                .await
                .status,
            200
        );
        let r = app
            .raw(
                app.client
                    .post(format!("{}/v1/embeddings", app.base))
                    .bearer_auth(&secret)
                    .header("X-OpenWebUI-User-Id", "end-user-8")
                    .json(&json!({"model": "gpt-4o-mini", "input": "x"})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let own = app
            .request(Method::GET, "/api/v1/ai/usage", Some(&secret), None)
            .await;
        assert_eq!(
            own.body["requests"], 2,
            "{backend}: the key's usage is carol's"
        );
        let records = attributions(&app.db, "carol").await;
        assert_eq!(
            records,
            vec![
                (
                    Some(id.clone()),
                    Some("end-user-7".to_owned()),
                    "chat".to_owned()
                ),
                (
                    Some(id.clone()),
                    Some("end-user-8".to_owned()),
                    "embedding".to_owned()
                ),
            ],
            "{backend}"
        );
        // A model outside the key's list does not exist for it; a key cannot mint keys.
        let other = post(
            &app,
            "/v1/chat/completions",
            &secret,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_openai_error(&other, 404, "invalid_request_error");
        assert_eq!(other.body["error"]["code"], "model_not_found");
        post(&app, "/api/v1/ai/keys", &secret, json!({"name": "child"}))
            .await
            .assert_error(401, "unauthorized");
        let past = post(
            &app,
            "/api/v1/ai/keys",
            &jwt,
            json!({"name": "old", "expiresAt": "2020-01-01T00:00:00Z"}),
        )
        .await;
        past.assert_error(400, "validation_failed");
        // Revoked: refused on the next request.
        let path = format!("/api/v1/ai/keys/{id}");
        assert_eq!(
            app.request(Method::DELETE, &path, Some(&app.token("dave")), None)
                .await
                .status,
            404
        );
        assert_eq!(
            app.request(Method::DELETE, &path, Some(&jwt), None)
                .await
                .status,
            204
        );
        let refused = app
            .request(Method::GET, "/v1/models", Some(&secret), None)
            .await;
        assert_openai_error(&refused, 401, "invalid_request_error");
        assert_eq!(refused.body["error"]["code"], "invalid_api_key");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("revoked")
        );
        app.request(Method::GET, "/api/v1/ai/usage", Some(&secret), None)
            .await
            .assert_error(401, "unauthorized");
        let listed = app
            .request(Method::GET, "/api/v1/ai/keys", Some(&jwt), None)
            .await;
        assert!(listed.body["data"][0]["revokedAt"].is_string(), "{backend}");
    }
}

#[tokio::test]
async fn v1_errors_are_in_openai_shape_and_api_v1_errors_are_not() {
    for backend in backends() {
        let (app, mock) = spawn(backend, &[("RATE_LIMIT_PER_MINUTE", "3")]).await;
        let token = app.token("erin");
        let hi = json!([{"role": "user", "content": "hi"}]);
        let anonymous = app.request(Method::GET, "/v1/models", None, None).await;
        assert_openai_error(&anonymous, 401, "invalid_request_error");
        let wrong = app
            .request(Method::GET, "/v1/models", Some("pal_not-a-key"), None)
            .await;
        assert_eq!(wrong.body["error"]["code"], "invalid_api_key");
        let missing = post(
            &app,
            "/v1/chat/completions",
            &token,
            json!({"model": "gpt-4o-mini"}),
        )
        .await;
        assert_openai_error(&missing, 400, "invalid_request_error");
        assert_eq!(missing.body["error"]["param"], "messages");
        let tools = post(
            &app,
            "/v1/chat/completions",
            &token,
            json!({"model": "gpt-4o-mini",
            "messages": hi, "tools": [{"type": "function", "function": {"name": "f"}}]}),
        )
        .await;
        assert_openai_error(&tools, 400, "invalid_request_error");
        assert_eq!(tools.body["error"]["param"], "tools");
        let nowhere = app
            .request(Method::GET, "/v1/nowhere", Some(&token), None)
            .await;
        assert_openai_error(&nowhere, 404, "invalid_request_error");
        assert_eq!(mock.request_count(), 0, "{backend}: nothing went upstream");
        // The third metered request of the minute passes; the fourth is rate limited.
        let upstream_500 = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "[[mock:500]]"}]});
        let failed = post(&app, "/v1/chat/completions", &token, upstream_500).await;
        assert_openai_error(&failed, 502, "server_error");
        assert!(
            !failed
                .body
                .to_string()
                .contains("mock-upstream-secret-detail")
        );
        let limited = post(
            &app,
            "/v1/chat/completions",
            &token,
            json!({"model": "gpt-4o-mini", "messages": hi}),
        )
        .await;
        assert_openai_error(&limited, 429, "requests");
        assert_eq!(limited.body["error"]["code"], "rate_limit_exceeded");
        assert!(limited.headers.contains_key("retry-after"));
        // /api/v1 keeps its own shape.
        app.request(Method::GET, "/api/v1/ai/usage", None, None)
            .await
            .assert_error(401, "unauthorized");
    }
}

#[tokio::test]
async fn a_spent_quota_is_insufficient_quota_and_not_to_be_retried() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, &[("QUOTA_TOKENS_PER_DAY", "5")]).await;
        let token = app.token("frank");
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three four five six"}]});
        let first = post(&app, "/v1/chat/completions", &token, body.clone()).await;
        assert_eq!(first.status, 200, "{}", first.body);
        let spent = post(&app, "/v1/chat/completions", &token, body).await;
        assert_openai_error(&spent, 429, "insufficient_quota");
        assert_eq!(spent.body["error"]["code"], "insufficient_quota");
        assert_eq!(spent.headers["x-should-retry"], "false", "{backend}");
    }
}

#[tokio::test]
async fn embeddings_come_as_floats_or_base64_from_text_or_tokens() {
    for backend in backends() {
        let (app, mock) = spawn(backend, &[]).await;
        let token = app.token("gina");
        let embed = |body: Value| post(&app, "/v1/embeddings", &token, body);
        let floats =
            embed(json!({"model": "text-embedding-3-small", "input": ["hello world", "bye"]}))
                .await;
        assert_eq!(floats.status, 200, "{}", floats.body);
        assert_eq!(floats.body["object"], "list");
        assert_eq!(floats.body["data"][1]["index"], 1);
        assert_eq!(floats.body["data"][0]["object"], "embedding");
        let first: Vec<f32> =
            serde_json::from_value(floats.body["data"][0]["embedding"].clone()).unwrap();
        let encoded = embed(json!({"model": "text-embedding-3-small", "input": "hello world", "encoding_format": "base64"})).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.body["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(
            decoded, first,
            "{backend}: base64 is the same little-endian f32s"
        );
        // "hello world" in cl100k (text-embedding-3-small's encoding) is [15339, 1917].
        let tokens =
            embed(json!({"model": "text-embedding-3-small", "input": [[15339, 1917]]})).await;
        assert_eq!(
            tokens.body["data"][0]["embedding"],
            floats.body["data"][0]["embedding"]
        );
        assert_eq!(
            mock.requests().last().unwrap().body["input"],
            json!(["hello world"])
        );
        let short =
            embed(json!({"model": "text-embedding-3-small", "input": "x", "dimensions": 8})).await;
        assert_eq!(
            short.body["data"][0]["embedding"].as_array().unwrap().len(),
            8
        );
        assert!(short.body["usage"]["prompt_tokens"].as_u64() > Some(0));
        let bad = embed(json!({"input": "x", "encoding_format": "hex"})).await;
        assert_openai_error(&bad, 400, "invalid_request_error");
        assert_eq!(bad.body["error"]["param"], "encoding_format");
    }
}

#[tokio::test]
async fn a_completion_with_a_conversation_id_is_stored_there() {
    for backend in backends() {
        let (app, mock) = spawn(backend, &[]).await;
        let token = app.token("hana");
        let created = app
            .create_conversation("hana", json!({"title": "Via v1"}))
            .await;
        let id = created.body["id"].as_str().unwrap().to_owned();
        let ask = |text: &str| {
            json!({"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": "ignored: the stored path is the context"},
            {"role": "user", "content": text}]})
        };
        let plain = app
            .raw(
                app.client
                    .post(format!("{}/v1/chat/completions", app.base))
                    .bearer_auth(&token)
                    .header("X-Conversation-Id", &id)
                    .json(&ask("first question")),
            )
            .await;
        assert_eq!(plain.status, 200, "{}", plain.body);
        assert_eq!(plain.headers["x-palaver-conversation-id"], id.as_str());
        let mut streamed = ask("second question");
        streamed["stream"] = json!(true);
        streamed["metadata"] = json!({"conversationId": id});
        let streamed = post(&app, "/v1/chat/completions", &token, streamed).await;
        let chunks = data_lines(streamed.body.as_str().unwrap());
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        let conversation = app.get_conversation("hana", &id).await;
        let messages = conversation.body["messages"].as_array().unwrap();
        let contents: Vec<&str> = messages
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents.len(), 4, "{backend}: {contents:?}");
        assert_eq!(contents[0], "first question");
        assert_eq!(
            contents[1],
            plain.body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
        );
        assert_eq!(contents[2], "second question");
        assert_eq!(contents[3], text, "{backend}");
        // The second exchange's context is the stored path, not the request's other messages.
        let sent = mock.requests().last().unwrap().body["messages"].clone();
        let sent: Vec<&str> = sent
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(sent, contents[..3].to_vec());
    }
}

/// On each backend in-process, and through Redis (the shared limiter) when it is there.
#[tokio::test]
async fn a_key_with_its_own_rate_is_limited_before_its_user() {
    let redis = crate::support::db::redis_url();
    for backend in backends() {
        let mut limiters = vec![None];
        limiters.extend(redis.clone().map(Some));
        for redis in limiters {
            let mut extra = vec![("RATE_LIMIT_PER_MINUTE", "10")];
            if let Some(url) = &redis {
                extra.push(("REDIS_URL", url.as_str()));
            }
            let (app, _mock) = spawn(backend, &extra).await;
            key_rate_is_its_own(&app, &format!("ivan-{}", uuid::Uuid::new_v4())).await;
        }
    }
}

async fn key_rate_is_its_own(app: &TestApp, user: &str) {
    let jwt = app.token(user);
    let made = post(
        app,
        "/api/v1/ai/keys",
        &jwt,
        json!({"name": "tight", "rateLimitPerMinute": 2}),
    )
    .await;
    let secret = made.body["key"].as_str().unwrap().to_owned();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    for remaining in ["1", "0"] {
        let ok = post(app, "/v1/chat/completions", &secret, body.clone()).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(
            ok.headers["ratelimit-limit"], "2",
            "the key's is the tighter"
        );
        assert_eq!(ok.headers["ratelimit-remaining"], remaining);
    }
    let limited = post(app, "/v1/chat/completions", &secret, body.clone()).await;
    assert_openai_error(&limited, 429, "requests");
    assert!(limited.headers.contains_key("retry-after"));
    // The key's refusal did not spend its user's: 8 of 10 are left to the JWT.
    let own = post(app, "/v1/chat/completions", &jwt, body).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.headers["ratelimit-remaining"], "7");
}

/// A key's own daily token quota refuses it once spent; its user goes on.
#[tokio::test]
async fn a_key_with_its_own_quota_is_refused_once_spent() {
    for backend in backends() {
        let (app, _mock) = spawn(backend, &[]).await;
        let jwt = app.token("judy");
        let made = post(
            &app,
            "/api/v1/ai/keys",
            &jwt,
            json!({"name": "small", "tokenQuotaPerDay": 5}),
        )
        .await;
        let secret = made.body["key"].as_str().unwrap().to_owned();
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three four five six"}]});
        let first = post(&app, "/v1/chat/completions", &secret, body.clone()).await;
        assert_eq!(first.status, 200, "{}", first.body);
        let spent = post(&app, "/v1/chat/completions", &secret, body.clone()).await;
        assert_openai_error(&spent, 429, "insufficient_quota");
        assert_eq!(spent.headers["x-should-retry"], "false", "{backend}");
        let embed = post(&app, "/v1/embeddings", &secret, json!({"input": "x"})).await;
        assert_openai_error(&embed, 429, "insufficient_quota");
        let own = post(&app, "/v1/chat/completions", &jwt, body).await;
        assert_eq!(
            own.status, 200,
            "{backend}: the user's own quota is not the key's"
        );
    }
}
