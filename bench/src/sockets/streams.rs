//! The streams: straight from mock-llm (the baseline), and through Palaver's gateway.

use futures::StreamExt;
use serde_json::json;

use super::Pace;
use super::measure::{Run, gather, stamp_latency};
use crate::sio::{Incoming, SioClient};

pub(super) async fn direct_streams(
    mock_base: &str,
    pace: Pace,
    words: usize,
) -> anyhow::Result<Run> {
    let client = reqwest::Client::new();
    let url = format!("{mock_base}/v1/chat/completions");
    gather(pace.streams, |i, ready| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let body = json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 8000,
                "messages": [{"role": "user", "content": format!("[[mock:stamp]] [[mock:words={words}]]")}]});
            let released = pace.start(i, &ready).await;
            let response = client.post(url).bearer_auth("sk-bench").json(&body).send().await?;
            let mut stream = response.bytes_stream();
            let mut buffer = String::new();
            let mut latencies = Vec::new();
            while let Some(bytes) = stream.next().await {
                buffer.push_str(&String::from_utf8_lossy(&bytes?));
                while let Some(end) = buffer.find("\n\n") {
                    let frame: String = buffer.drain(..end + 2).collect();
                    let Some(data) = frame.trim().strip_prefix("data: ") else { continue };
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                        && let Some(word) = v["choices"][0]["delta"]["content"].as_str()
                        && let Some(l) = stamp_latency(word)
                    {
                        latencies.push(l);
                    }
                }
            }
            anyhow::Ok((released, latencies))
        }
    })
    .await
}

/// One short chat: the first one of a process loads the tokenizer tables.
pub(super) async fn warm_up(base: &str, token: &str) -> anyhow::Result<()> {
    let mut client = SioClient::connect(base, "/ai", &json!({"token": token})).await?;
    client
        .emit("chat:start", &json!({"message": "[[mock:words=3]]"}))
        .await?;
    while let Some(incoming) = client.next().await? {
        if let Incoming::Event(name, payload) = incoming {
            match name.as_str() {
                "chat:end" => return Ok(()),
                "chat:error" => anyhow::bail!("warm-up chat:error {payload}"),
                _ => {}
            }
        }
    }
    anyhow::bail!("warm-up: the connection closed before chat:end")
}

pub(super) async fn gateway_streams(
    base: &str,
    tokens: &[String],
    pace: Pace,
    words: usize,
) -> anyhow::Result<Run> {
    gather(pace.streams, |i, ready| {
        let token = tokens[i % tokens.len()].clone();
        let base = base.to_owned();
        async move {
            // Every stream reaches the barrier, even one that could not connect.
            let connected = SioClient::connect(&base, "/ai", &json!({"token": token})).await;
            let released = pace.start(i, &ready).await;
            let mut client = connected?;
            client
                .emit("chat:start", &json!({"message": format!("[[mock:stamp]] [[mock:words={words}]]"), "maxTokens": 8000}))
                .await?;
            let mut latencies = Vec::new();
            while let Some(incoming) = client.next().await? {
                let Incoming::Event(name, payload) = incoming else { continue };
                match name.as_str() {
                    "chat:message" => {
                        if let Some(l) = payload["content"].as_str().and_then(stamp_latency) {
                            latencies.push(l);
                        }
                    }
                    "chat:end" => break,
                    "chat:error" => anyhow::bail!("chat:error {payload}"),
                    _ => {}
                }
            }
            anyhow::Ok((released, latencies))
        }
    })
    .await
}
