//! `palaver-bench cache`: what a response-cache hit adds over the store writes alone.
//!
//! One Palaver on SQLite with the built-in mock provider (no network upstream, no word
//! delay) and `RESPONSE_CACHE=true`. At concurrency 1, interleaved request by request:
//! - `store`: `POST /api/v1/ai/chat` with `temperature: 0, cache: false`: the whole exchange
//!   (a new conversation, its user message and run, the reply and its usage) answered by the
//!   in-process mock, so what it costs is the pipeline and its store writes;
//! - `hit`: the same request without `cache: false`: the same writes, the reply from the cache.
//!
//! The difference of the two is what the cache adds (hashing the request, the lookup, the
//! replay). Beside it, in this process, the key and a lookup of a 20-message context.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use palaver::providers::{ChatMessage, ChatRequest, ChatRole};
use palaver::service::cache::{CachedReply, LocalCache, key};
use serde_json::{Value, json};

use crate::load::percentile;
use crate::procs::{free_port, target_dir};

#[derive(clap::Args)]
pub struct CacheArgs {
    /// Requests of each kind.
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    /// A Redis server: the same again with `REDIS_URL` (the cache, and the limits and the
    /// runs' event logs, on Redis for both kinds of request).
    #[arg(long)]
    redis: Option<String>,
}

pub async fn run(
    args: CacheArgs,
    secret: &str,
    mint: fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    in_process();
    measure(&args, None, secret, mint).await?;
    if let Some(redis) = &args.redis {
        measure(&args, Some(redis), secret, mint).await?;
    }
    Ok(())
}

/// The two kinds of request, interleaved, on a Palaver of its own (with `REDIS_URL` when
/// `redis` is given).
async fn measure(
    args: &CacheArgs,
    redis: Option<&str>,
    secret: &str,
    mint: fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let bin = target_dir()?;
    let dir = std::env::temp_dir().join(format!("palaver-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let palaver = spawn(&bin, port, &dir, secret, redis).await?;
    let url = format!("http://127.0.0.1:{port}/api/v1/ai/chat");
    let token = format!("Bearer {}", mint("bench-cache")?);
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let message = "What is the capital of Portugal, and why did it move there?";
    let store = json!({"message": message, "temperature": 0, "cache": false});
    let hit = json!({"message": message, "temperature": 0});
    // Warm-up (the tokenizer, connections), and the reply the hits are answered with.
    for _ in 0..50 {
        post(&client, &url, &token, &store).await?;
        post(&client, &url, &token, &hit).await?;
    }
    let (mut stores, mut hits) = (Vec::new(), Vec::new());
    for _ in 0..args.requests {
        stores.push(post(&client, &url, &token, &store).await?);
        hits.push(post(&client, &url, &token, &hit).await?);
    }
    stores.sort_unstable();
    hits.sort_unstable();
    let (s50, s99) = (percentile(&stores, 0.50), percentile(&stores, 0.99));
    let (h50, h99) = (percentile(&hits, 0.50), percentile(&hits, 0.99));
    let on = if redis.is_some() {
        "Redis"
    } else {
        "in process"
    };
    println!("cache {on}; c=1, {} each, interleaved (ms):", args.requests);
    println!("  store writes alone (built-in mock, cache: false)  p50 {s50:.3}  p99 {s99:.3}");
    println!("  cache hit (same writes, reply from the cache)     p50 {h50:.3}  p99 {h99:.3}");
    println!(
        "  a hit adds                                        p50 {:+.3}  p99 {:+.3}",
        h50 - s50,
        h99 - s99
    );
    drop(palaver);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The key of a 20-message context and a lookup in a cache of 10,000 replies.
fn in_process() {
    let request = ChatRequest {
        model: "gpt-4o-mini".to_owned(),
        messages: (0..20)
            .map(|i| ChatMessage {
                role: if i % 2 == 0 {
                    ChatRole::User
                } else {
                    ChatRole::Assistant
                },
                content: format!(
                    "message {i}: {}",
                    "some words of a conversation ".repeat(20)
                ),
            })
            .collect(),
        max_tokens: 1000,
        temperature: 0.0,
    };
    let cache = LocalCache::new(10_000, Duration::from_secs(3600));
    for i in 0..10_000 {
        cache.put(&format!("{i:064}"), reply());
    }
    let rounds = 20_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        let key = key("openai", std::hint::black_box(&request)).unwrap_or_default();
        std::hint::black_box(cache.get(&key));
    }
    let per_key = started.elapsed() / rounds;
    let the_key = format!("{:064}", 1234);
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(cache.get(std::hint::black_box(&the_key)));
    }
    let per_get = started.elapsed() / rounds;
    println!(
        "in-process: key of a 20-message context (12 KB) + a miss {:.1} µs; a hit in a cache of 10,000: {:.2} µs",
        per_key.as_secs_f64() * 1e6,
        per_get.as_secs_f64() * 1e6
    );
}

fn reply() -> CachedReply {
    CachedReply {
        content: "Lisbon. ".repeat(40),
        finish_reason: "stop".to_owned(),
        prompt_tokens: Some(100),
        completion_tokens: Some(80),
    }
}

/// One chat, answered; its latency in microseconds.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<u32> {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("authorization", token)
        .json(body)
        .send()
        .await?;
    let status = response.status();
    let _ = response.bytes().await?;
    anyhow::ensure!(status.is_success(), "chat answered {status}");
    Ok(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX))
}

/// Palaver with the built-in mock provider (no provider key) and the response cache on.
async fn spawn(
    bin: &Path,
    port: u16,
    dir: &Path,
    secret: &str,
    redis: Option<&str>,
) -> anyhow::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(bin.join("palaver"));
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("PALAVER_DATA_DIR", dir)
        .env("JWT_SECRET", secret)
        .env("RATE_LIMIT_PER_MINUTE", "1000000")
        .env("MOCK_WORD_DELAY_MS", "0")
        .env("AUTO_TITLE", "false")
        .env("RESPONSE_CACHE", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(url) = redis {
        command.env("REDIS_URL", url);
    }
    let child = command.spawn().context("starting palaver")?;
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
            .is_ok()
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("palaver did not start")
}
