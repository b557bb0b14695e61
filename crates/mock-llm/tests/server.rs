//! The mock server over real HTTP, as its clients see it.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] functions unwrap too: this whole file is test code"
)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use mock_llm::{Fault, MockConfig, MockLlm};
use reqwest::{Client, Response};
use serde_json::{Value, json};

async fn mock() -> MockLlm {
    MockLlm::start(MockConfig::default()).await.unwrap()
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn openai(mock: &MockLlm, body: Value) -> Response {
    client()
        .post(format!("{}/v1/chat/completions", mock.base_url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn anthropic(mock: &MockLlm, body: Value) -> Response {
    client()
        .post(format!("{}/v1/messages", mock.base_url()))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn gemini(mock: &MockLlm, action: &str, body: Value) -> Response {
    client()
        .post(format!(
            "{}/v1beta/models/gemini-2.0-flash:{action}",
            mock.base_url()
        ))
        .header("x-goog-api-key", "AIzaTest")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// SSE frames as (event name, data payload); `[DONE]` is kept as a string.
fn sse(text: &str) -> Vec<(Option<String>, Value)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut name = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            (name, value)
        })
        .collect()
}

/// Reads a body until it ends or fails: (bytes received, whether it failed).
async fn read_all(response: Response) -> (String, bool) {
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => bytes.extend_from_slice(&b),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    (String::from_utf8(bytes).unwrap(), failed)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn openai_plain_reply_and_usage() {
    let mock = mock().await;
    let r = openai(
        &mock,
        json!({"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 50,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["model"], "gpt-4o-mini");
    assert!(b["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        b["choices"][0]["message"],
        json!({"role": "assistant", "content": "Mock reply to: hello there", "refusal": null})
    );
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        b["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9})
    );
}

#[tokio::test]
async fn openai_stream_reassembles_to_the_plain_reply() {
    let mock = mock().await;
    let messages = json!([{"role": "user", "content": "héllo wörld ✓ ünïcode 🚀 text"}]);
    let plain: Value = openai(&mock, json!({"model": "gpt-4o", "messages": messages}))
        .await
        .json()
        .await
        .unwrap();
    let expected = plain["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(expected, "Mock reply to: héllo wörld ✓ ünïcode 🚀 text");

    let r = openai(&mock, json!({"model": "gpt-4o", "messages": messages, "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (text, failed) = read_all(r).await;
    assert!(!failed);
    let events: Vec<Value> = sse(&text).into_iter().map(|(_, v)| v).collect();
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[0]["choices"][0]["delta"]["content"], "");
    let words: Vec<&str> = events[1..]
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(words.len(), 9, "one chunk per word");
    assert_eq!(words[1], " reply");
    assert_eq!(words.concat(), expected);
    let n = events.len();
    assert_eq!(events[n - 3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[n - 3]["choices"][0]["delta"], json!({}));
    assert_eq!(events[n - 2]["choices"], json!([]));
    assert_eq!(
        events[n - 2]["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 9, "total_tokens": 15})
    );
    assert_eq!(events[n - 1], "[DONE]");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(mock.open_streams(), 0);
    assert_eq!(mock.cancelled_streams(), 0);

    // Without include_usage there is no usage chunk.
    let r = openai(&mock, json!({"messages": messages, "stream": true})).await;
    let events = sse(&read_all(r).await.0);
    assert!(events.iter().all(|(_, e)| e.get("usage").is_none()));
    assert_eq!(events.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn anthropic_plain_stream_and_auth() {
    let mock = mock().await;
    let body = json!({"model": "claude-3-5-haiku-latest", "system": "Be brief.", "max_tokens": 100,
        "messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "ça va?"}]}]});
    let r = anthropic(&mock, body.clone()).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["type"], "message");
    assert_eq!(b["role"], "assistant");
    assert_eq!(b["model"], "claude-3-5-haiku-latest");
    assert_eq!(
        b["content"],
        json!([{"type": "text", "text": "Mock reply to: ça va?"}])
    );
    assert_eq!(b["stop_reason"], "end_turn");
    assert_eq!(b["usage"], json!({"input_tokens": 6, "output_tokens": 5}));

    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let (text, failed) = read_all(anthropic(&mock, streaming).await).await;
    assert!(!failed);
    let events = sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_deref().unwrap());
    }
    assert_eq!(
        events[0].1["message"]["usage"],
        json!({"input_tokens": 6, "output_tokens": 1})
    );
    let reassembled: String = events
        .iter()
        .filter_map(|(_, e)| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(reassembled, "Mock reply to: ça va?");
    assert_eq!(events[3].1["delta"]["type"], "text_delta");
    assert_eq!(events[9].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[9].1["usage"]["output_tokens"], 5);

    // Both headers are required.
    let url = format!("{}/v1/messages", mock.base_url());
    let no_key = client()
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let e: Value = no_key.json().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "authentication_error");
    let no_version = client()
        .post(&url)
        .header("x-api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 401);
}

#[tokio::test]
async fn gemini_plain_stream_and_auth() {
    let mock = mock().await;
    let body = json!({"systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "hi gemini"}]}],
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 100}});
    let r = gemini(&mock, "generateContent", body.clone()).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b["candidates"][0]["content"],
        json!({"role": "model", "parts": [{"text": "Mock reply to: hi gemini"}]})
    );
    assert_eq!(b["candidates"][0]["finishReason"], "STOP");
    assert_eq!(b["candidates"][0]["index"], 0);
    assert_eq!(
        b["usageMetadata"],
        json!({"promptTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 9})
    );
    assert_eq!(b["modelVersion"], "gemini-2.0-flash");

    // alt=sse, with the key in the query.
    let r = client()
        .post(format!(
            "{}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=AIzaTest",
            mock.base_url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (text, failed) = read_all(r).await;
    assert!(!failed);
    assert!(text.ends_with("\r\n\r\n"));
    let events: Vec<Value> = sse(&text).into_iter().map(|(_, v)| v).collect();
    assert_eq!(events.len(), 5, "one chunk per word");
    let reassembled: String = events
        .iter()
        .map(|e| {
            e["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(reassembled, "Mock reply to: hi gemini");
    assert!(
        events[..4]
            .iter()
            .all(|e| e["candidates"][0].get("finishReason").is_none()
                && e.get("usageMetadata").is_none())
    );
    assert_eq!(events[4]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(events[4]["usageMetadata"]["candidatesTokenCount"], 5);
    let recorded = mock.requests().pop().unwrap();
    assert_eq!(
        recorded.path,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    );
    assert_eq!(recorded.query.as_deref(), Some("alt=sse&key=AIzaTest"));

    // Without alt=sse: one JSON array.
    let r = gemini(&mock, "streamGenerateContent", body.clone()).await;
    let array: Value = serde_json::from_str(&read_all(r).await.0).unwrap();
    assert_eq!(array.as_array().unwrap().len(), 5);

    // No key.
    let r = client()
        .post(format!(
            "{}/v1beta/models/gemini-2.0-flash:generateContent",
            mock.base_url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["status"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn model_lists() {
    let mock = mock().await;
    let url = format!("{}/v1/models", mock.base_url());
    let o: Value = client()
        .get(&url)
        .bearer_auth("sk")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(o["object"], "list");
    assert_eq!(
        o["data"][0],
        json!({"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"})
    );
    let a: Value = client()
        .get(&url)
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["data"][0]["id"], "claude-3-5-haiku-latest");
    assert_eq!(a["data"][0]["type"], "model");
    assert_eq!(a["has_more"], false);
    let g: Value = client()
        .get(format!("{}/v1beta/models?key=k", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["models"][0]["name"], "models/gemini-2.0-flash");
    let missing = client()
        .get(format!("{}/v2/nothing", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn faults_are_consumed_in_order() {
    let mock = mock().await;
    mock.push_fault(Fault::Status {
        status: 429,
        retry_after: Some(2),
        body: None,
    });
    mock.push_fault(Fault::Status {
        status: 503,
        retry_after: None,
        body: None,
    });
    mock.push_fault(Fault::Status {
        status: 400,
        retry_after: None,
        body: Some(r#"{"custom":true}"#.into()),
    });
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});

    let first = openai(&mock, body.clone()).await;
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "2");
    let e: Value = first.json().await.unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_exceeded");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mock-upstream-secret-detail")
    );

    let second = anthropic(
        &mock,
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}),
    )
    .await;
    assert_eq!(second.status(), 503);
    assert!(second.headers().get("retry-after").is_none());
    let e: Value = second.json().await.unwrap();
    assert_eq!(e["error"]["type"], "overloaded_error");
    assert!(e.to_string().contains("upstream-secret-detail"));

    let third = openai(&mock, body.clone()).await;
    assert_eq!(third.status(), 400);
    assert_eq!(
        third.json::<Value>().await.unwrap(),
        json!({"custom": true})
    );

    let ok = openai(&mock, body.clone()).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(mock.request_count(), 4);

    // Directives: any status, 429 with Retry-After: 1, in each provider's shape.
    let r = gemini(
        &mock,
        "generateContent",
        json!({"contents": [{"parts": [{"text": "x [[mock:429]]"}]}]}),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["status"],
        "RESOURCE_EXHAUSTED"
    );
    let r = openai(
        &mock,
        json!({"messages": [{"role": "user", "content": "[[mock:500]] boom"}]}),
    )
    .await;
    assert_eq!(r.status(), 500);

    // clear() forgets both queued faults and recorded requests.
    mock.push_fault(Fault::Hang);
    mock.clear();
    assert_eq!(mock.request_count(), 0);
    assert!(mock.requests().is_empty());
    assert_eq!(openai(&mock, body).await.status(), 200);
}

#[tokio::test]
async fn delays_hold_the_answer() {
    let mock = mock().await;
    mock.push_fault(Fault::Delay(Duration::from_millis(300)));
    let body = json!({"messages": [{"role": "user", "content": "slow"}]});
    let start = Instant::now();
    assert_eq!(openai(&mock, body).await.status(), 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    let start = Instant::now();
    let r = openai(
        &mock,
        json!({"messages": [{"role": "user", "content": "slow [[mock:delay=200]]"}]}),
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["choices"][0]["message"]["content"],
        "Mock reply to: slow"
    );
    assert!(start.elapsed() >= Duration::from_millis(200));

    let slow = MockLlm::start(MockConfig {
        latency: Duration::from_millis(150),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let start = Instant::now();
    assert_eq!(openai(&slow, json!({"messages": []})).await.status(), 200);
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn cut_streams_end_without_done() {
    let mock = mock().await;
    for (provider, fault) in [
        ("openai", false),
        ("anthropic", false),
        ("gemini", false),
        ("openai", true),
    ] {
        let text = if fault {
            mock.push_fault(Fault::Cut { after_chunks: 3 });
            "one two three four five"
        } else {
            "one two three four five [[mock:cut=3]]"
        };
        let response = match provider {
            "openai" => openai(&mock, json!({"stream": true, "messages": [{"role": "user", "content": text}]})).await,
            "anthropic" => {
                anthropic(&mock, json!({"stream": true, "max_tokens": 99, "messages": [{"role": "user", "content": text}]}))
                    .await
            }
            _ => gemini(&mock, "streamGenerateContent?alt=sse", json!({"contents": [{"parts": [{"text": text}]}]})).await,
        };
        assert_eq!(response.status(), 200);
        let (body, failed) = read_all(response).await;
        assert!(
            failed,
            "{provider}: the connection is dropped mid-body: {body}"
        );
        assert!(
            !body.contains("[DONE]")
                && !body.contains("message_stop")
                && !body.contains("finishReason"),
            "{body}"
        );
        let words: String = sse(&body)
            .iter()
            .filter_map(|(_, e)| {
                e["choices"][0]["delta"]["content"]
                    .as_str()
                    .or(e["delta"]["text"].as_str())
                    .or(e["candidates"][0]["content"]["parts"][0]["text"].as_str())
            })
            .collect();
        assert_eq!(
            words, "Mock reply to:",
            "{provider}: three words then the cut"
        );
    }
    eventually("streams closed", || mock.open_streams() == 0).await;
    assert_eq!(mock.cancelled_streams(), 0, "a cut is the server's doing");

    // Plain requests: the connection closes without a response.
    let plain = client()
        .post(format!("{}/v1/chat/completions", mock.base_url()))
        .json(&json!({"messages": [{"role": "user", "content": "x [[mock:cut=1]]"}]}))
        .send()
        .await;
    assert!(plain.is_err(), "no response: {plain:?}");
    mock.push_fault(Fault::Cut { after_chunks: 0 });
    assert!(
        client()
            .post(format!("{}/v1/embeddings", mock.base_url()))
            .json(&json!({"input": "x"}))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn hung_requests_are_cancelled_when_the_client_gives_up() {
    let mock = mock().await;
    let quick = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("{}/v1/chat/completions", mock.base_url());

    mock.push_fault(Fault::Hang);
    let start = Instant::now();
    let r = quick
        .post(&url)
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert!(start.elapsed() >= Duration::from_millis(300));
    eventually("the hang to be cancelled", || mock.cancelled_streams() == 1).await;

    let r = quick
        .post(&url)
        .json(
            &json!({"stream": true, "messages": [{"role": "user", "content": "[[mock:hang]] hi"}]}),
        )
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    eventually("the streaming hang to be cancelled", || {
        mock.cancelled_streams() == 2
    })
    .await;
    assert_eq!(mock.open_streams(), 0);
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn streams_are_counted_open_and_cancelled() {
    let mock = MockLlm::start(MockConfig {
        tokens_per_sec: Some(20.0),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let start = Instant::now();
    let response = openai(
        &mock,
        json!({"stream": true, "messages": [{"role": "user", "content": "[[mock:words=1000]]"}]}),
    )
    .await;
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains(" reply") {
        seen.push_str(std::str::from_utf8(&stream.next().await.unwrap().unwrap()).unwrap());
    }
    assert!(
        start.elapsed() >= Duration::from_millis(40),
        "paced at 20 words/s"
    );
    assert_eq!(mock.open_streams(), 1);
    drop(stream);
    eventually("the stream to be cancelled", || {
        mock.cancelled_streams() == 1
    })
    .await;
    assert_eq!(mock.open_streams(), 0);
}

#[tokio::test]
async fn words_and_max_tokens() {
    let mock = mock().await;
    let r: Value = openai(
        &mock,
        json!({"messages": [{"role": "user", "content": "a b [[mock:words=8]]"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Mock reply to: a b word6 word7 word8"
    );
    assert_eq!(r["usage"]["completion_tokens"], 8);
    let r: Value = openai(
        &mock,
        json!({"messages": [{"role": "user", "content": "[[mock:words=2]] a b"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], "Mock reply");

    // Streamed, words=N gives N word chunks.
    let (text, _) =
        read_all(openai(&mock, json!({"stream": true, "messages": [{"role": "user", "content": "[[mock:words=30]] go"}]})).await).await;
    let chunks = sse(&text)
        .iter()
        .filter(|(_, e)| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert_eq!(chunks, 30);

    // max tokens truncates, with each provider's finish reason.
    let long = "one two three four five six";
    let o: Value = openai(
        &mock,
        json!({"max_completion_tokens": 4, "messages": [{"role": "user", "content": long}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(o["choices"][0]["message"]["content"], "Mock reply to: one");
    assert_eq!(o["choices"][0]["finish_reason"], "length");
    assert_eq!(o["usage"]["completion_tokens"], 4);
    let a: Value = anthropic(
        &mock,
        json!({"max_tokens": 2, "messages": [{"role": "user", "content": long}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(a["content"][0]["text"], "Mock reply");
    assert_eq!(a["stop_reason"], "max_tokens");
    let g: Value = gemini(
        &mock,
        "generateContent",
        json!({"contents": [{"role": "user", "parts": [{"text": long}]}], "generationConfig": {"maxOutputTokens": 3}}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        g["candidates"][0]["content"]["parts"][0]["text"],
        "Mock reply to:"
    );
    assert_eq!(g["candidates"][0]["finishReason"], "MAX_TOKENS");

    let (text, _) = read_all(
        anthropic(&mock, json!({"stream": true, "max_tokens": 2, "messages": [{"role": "user", "content": long}]})).await,
    )
    .await;
    let delta = sse(&text)
        .into_iter()
        .find(|(n, _)| n.as_deref() == Some("message_delta"))
        .unwrap()
        .1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 2);
}

#[tokio::test]
async fn stamps_are_write_times() {
    let mock = mock().await;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64
    };
    let before = now();
    let r = openai(&mock, json!({"stream": true, "messages": [{"role": "user", "content": "[[mock:stamp]] [[mock:words=20]]"}]})).await;
    let (text, _) = read_all(r).await;
    let after = now();
    let stamps: Vec<u64> = sse(&text)
        .iter()
        .filter_map(|(_, e)| e["choices"][0]["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .map(|c| c.trim().parse().unwrap())
        .collect();
    assert_eq!(stamps.len(), 20);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    assert!(stamps[0] >= before && stamps[19] <= after);
}

#[tokio::test]
async fn embeddings_in_both_forms() {
    let mock = mock().await;
    let url = format!("{}/v1/embeddings", mock.base_url());
    let one: Value = client()
        .post(&url)
        .bearer_auth("sk")
        .json(&json!({"input": "hello", "model": "text-embedding-3-small"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["object"], "list");
    assert_eq!(one["model"], "text-embedding-3-small");
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    assert_eq!(one["data"][0]["object"], "embedding");
    let vector: Vec<f64> = one["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(vector.len(), 1536);
    assert!(
        (vector.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-3,
        "unit length"
    );
    assert_eq!(one["usage"], json!({"prompt_tokens": 1, "total_tokens": 1}));

    let many: Value = client()
        .post(&url)
        .json(&json!({"input": ["a b", "hello", "c"], "model": "text-embedding-3-large"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = many["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(
        data[1]["embedding"], one["data"][0]["embedding"],
        "same text, same vector"
    );
    assert_ne!(data[0]["embedding"], data[2]["embedding"]);
    assert_eq!(many["usage"]["prompt_tokens"], 4);

    let small: Value = client()
        .post(&url)
        .json(&json!({"input": "x", "dimensions": 8}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(small["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(
        client()
            .post(&url)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn requests_are_recorded_with_body_and_headers() {
    let mock = mock().await;
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    client()
        .post(format!("{}/v1/chat/completions?trace=1", mock.base_url()))
        .bearer_auth("sk-secret")
        .header("OpenAI-Organization", "org-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    client()
        .get(format!("{}/__mock/stats", mock.base_url()))
        .send()
        .await
        .unwrap();
    client()
        .get(format!("{}/v1/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    let recorded = mock.requests();
    assert_eq!(recorded.len(), 2, "admin endpoints are not recorded");
    assert_eq!(mock.request_count(), 2);
    let first = &recorded[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.query.as_deref(), Some("trace=1"));
    assert_eq!(first.body, body);
    assert_eq!(first.header("authorization"), Some("Bearer sk-secret"));
    assert!(
        first
            .headers
            .contains(&("openai-organization".to_owned(), "org-test".to_owned()))
    );
    assert_eq!(recorded[1].method, "GET");
    assert_eq!(recorded[1].body, Value::Null);
}

#[tokio::test]
async fn admin_endpoints() {
    let mock = mock().await;
    let base = mock.base_url();
    let queued: Value = client()
        .post(format!("{base}/__mock/faults"))
        .json(
            &json!([{"status": 429, "retryAfter": 1}, {"delayMs": 10}, {"cut": 2}, {"hang": true}]),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(queued["faultsQueued"], 4);
    let bad = client()
        .post(format!("{base}/__mock/faults"))
        .json(&json!([{}]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let r = openai(&mock, json!({"messages": []})).await;
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["retry-after"].to_str().unwrap()
        ),
        (429, "1")
    );
    assert_eq!(openai(&mock, json!({"messages": []})).await.status(), 200);

    let stats: Value = client()
        .get(format!("{base}/__mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats,
        json!({"requests": 2, "openStreams": 0, "cancelledStreams": 0, "faultsQueued": 2})
    );
    let reset = client()
        .post(format!("{base}/__mock/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let stats: Value = client()
        .get(format!("{base}/__mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 0);
    assert_eq!(stats["faultsQueued"], 0);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let mock = mock().await;
    let url = format!("{}/v1/models", mock.base_url());
    assert_eq!(client().get(&url).send().await.unwrap().status(), 200);
    mock.shutdown().await;
    assert!(client().get(&url).send().await.is_err());
}

/// Sends a raw HTTP/1.1 request and returns the body's chunks as sent.
async fn raw_chunks(mock: &MockLlm, body: &Value) -> Vec<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let body = body.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).await.unwrap();
    let start = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = &raw[start..];
    let mut chunks = Vec::new();
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        if size == 0 {
            return chunks;
        }
        chunks.push(rest[line + 2..line + 2 + size].to_vec());
        rest = &rest[line + 2 + size + 2..];
    }
}

#[tokio::test]
async fn odd_splits_cut_through_lines_and_characters() {
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "ünïcödé wörds ✓✓✓ 🚀🚀 ñ"}]});
    let mock = mock().await;
    let chunks = raw_chunks(&mock, &body).await;
    assert!(chunks.iter().all(|c| c.len() <= 11), "small frames");
    assert!(
        chunks.iter().any(|c| std::str::from_utf8(c).is_err()),
        "some frame cuts a character"
    );
    let text = String::from_utf8(chunks.concat()).unwrap();
    let words: String = sse(&text)
        .iter()
        .filter_map(|(_, e)| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(words, "Mock reply to: ünïcödé wörds ✓✓✓ 🚀🚀 ñ");

    let whole = MockLlm::start(MockConfig {
        odd_splits: false,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let chunks = raw_chunks(&whole, &body).await;
    assert!(
        chunks
            .iter()
            .all(|c| c.ends_with(b"\n\n") && std::str::from_utf8(c).is_ok()),
        "whole events"
    );
    let whole_text = String::from_utf8(chunks.concat()).unwrap();
    assert_eq!(sse(&whole_text).len(), sse(&text).len());
}
