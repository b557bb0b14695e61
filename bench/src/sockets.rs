//! `palaver-bench sockets`: idle Socket.IO connections (RSS per connection) and streamed chunks
//! relayed per second with the per-chunk latency Palaver adds over mock-llm's own stream.
//!
//! Per-chunk latency uses mock-llm's `[[mock:stamp]]` directive: every streamed word is the
//! wall-clock time (µs since the epoch) at which mock-llm wrote it, so the receiver measures
//! upstream-write-to-client-receive directly. The same streams read straight from mock-llm give
//! the baseline; the difference is what Palaver adds.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;

use crate::procs::{free_port, rss_kib, spawn_mock_with, spawn_palaver, target_dir};
use crate::sio::{Incoming, SioClient};

pub struct SocketArgs {
    pub idle: usize,
    pub streams: usize,
    pub tokens_per_sec: f64,
    pub seconds: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

pub async fn run(
    args: SocketArgs,
    secret: &str,
    mint: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tokens_per_sec.is_finite() && args.tokens_per_sec > 0.0,
        "--tokens-per-sec must be a positive number"
    );
    anyhow::ensure!(args.streams > 0, "--streams must be at least 1");
    let bin = target_dir()?;
    let mock_port = free_port()?;
    let _mock = spawn_mock_with(
        &bin,
        mock_port,
        // Whole events per write: odd splits are for parser tests and would make mock-llm,
        // not Palaver, the bottleneck at tens of thousands of chunks per second.
        &[
            "--tokens-per-sec",
            &args.tokens_per_sec.to_string(),
            "--odd-splits",
            "false",
        ],
    )
    .await?;
    let mock_base = format!("http://127.0.0.1:{mock_port}");
    let data_dir = std::env::temp_dir().join(format!("palaver-bench-sio-{}", std::process::id()));
    let port = free_port()?;
    let db = format!("sqlite://{}/bench.db", data_dir.display());
    let palaver = spawn_palaver(
        &bin,
        port,
        &db,
        &format!("{mock_base}/v1"),
        &data_dir,
        secret,
    )
    .await?;
    let pid = palaver.pid().context("palaver pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let words = (args.tokens_per_sec * args.seconds as f64).ceil() as usize;

    // 1. Idle connections.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let tokens: Vec<String> = (0..64)
        .map(|i| mint(&format!("sio-user-{i}")))
        .collect::<anyhow::Result<_>>()?;
    let mut idle = Vec::with_capacity(args.idle);
    let connects = futures::stream::iter(0..args.idle)
        .map(|i| {
            let base = base.clone();
            let token = tokens[i % tokens.len()].clone();
            async move { SioClient::connect(&base, "/ai", &json!({"token": token})).await }
        })
        .buffer_unordered(256);
    futures::pin_mut!(connects);
    while let Some(client) = connects.next().await {
        idle.push(tokio::spawn(client?.idle()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / args.idle.max(1) as f64;
    println!(
        "idle: {} connections, palaver RSS {} KiB -> {} KiB: {:.0} bytes ({:.1} KiB) per connection",
        args.idle,
        before,
        after,
        per_conn,
        per_conn / 1024.0
    );

    // Streams start spread evenly over one token interval, so the total is a steady rate rather
    // than every stream's chunk falling due in the same millisecond.
    let pace = Pace {
        streams: args.streams,
        interval: Duration::from_secs_f64(1.0 / args.tokens_per_sec),
    };

    // 2. Baseline: the same streams read straight from mock-llm.
    let direct = direct_streams(&mock_base, pace, words).await?;
    report("mock-llm direct (SSE)", &direct);

    // 3. Through Palaver's gateway.
    let via = gateway_streams(&base, &tokens, pace, words).await?;
    report("palaver gateway (Socket.IO)", &via);
    println!(
        "added per-chunk latency: p50 {:.3} ms, p99 {:.3} ms",
        (via.p50_us - direct.p50_us) / 1000.0,
        (via.p99_us - direct.p99_us) / 1000.0
    );
    for task in idle {
        task.abort();
    }
    drop(palaver);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[derive(Clone, Copy)]
struct Pace {
    streams: usize,
    interval: Duration,
}

impl Pace {
    /// Waits for every stream to be ready, then for stream `i`'s slot in the interval.
    async fn start(&self, i: usize, ready: &tokio::sync::Barrier) {
        ready.wait().await;
        tokio::time::sleep(self.interval.mul_f64(i as f64 / self.streams as f64)).await;
    }
}

/// Runs `streams` tasks (each on the runtime, so the load generator uses every core) and
/// gathers their latencies.
async fn gather<F, Fut>(streams: usize, stream: F) -> anyhow::Result<Relay>
where
    F: Fn(usize, Arc<tokio::sync::Barrier>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Instant, Vec<u64>)>> + Send + 'static,
{
    let ready = Arc::new(tokio::sync::Barrier::new(streams));
    let mut tasks: Vec<_> = (0..streams)
        .map(|i| tokio::spawn(stream(i, ready.clone())))
        .collect();
    let mut all = Vec::new();
    let mut first = None::<Instant>;
    for (i, task) in tasks.iter_mut().enumerate() {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(e.into()),
        };
        let (started, latencies) = match outcome {
            Ok(done) => done,
            Err(e) => {
                for rest in &tasks[i + 1..] {
                    rest.abort();
                }
                return Err(e);
            }
        };
        first = Some(first.map_or(started, |f| f.min(started)));
        all.extend(latencies);
    }
    let elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok(summarize(all, elapsed))
}

struct Relay {
    chunks: usize,
    rate: f64,
    p50_us: f64,
    p99_us: f64,
}

fn report(name: &str, r: &Relay) {
    println!(
        "{name}: {} chunks, {:.0} chunks/s, latency p50 {:.3} ms, p99 {:.3} ms",
        r.chunks,
        r.rate,
        r.p50_us / 1000.0,
        r.p99_us / 1000.0
    );
}

fn summarize(mut latencies: Vec<u64>, elapsed: Duration) -> Relay {
    latencies.sort_unstable();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
            as f64
    };
    Relay {
        chunks: latencies.len(),
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.5),
        p99_us: pct(0.99),
    }
}

fn stamp_latency(word: &str) -> Option<u64> {
    word.trim()
        .parse::<u64>()
        .ok()
        .map(|sent| now_us().saturating_sub(sent))
}

async fn direct_streams(mock_base: &str, pace: Pace, words: usize) -> anyhow::Result<Relay> {
    let client = reqwest::Client::new();
    let url = format!("{mock_base}/v1/chat/completions");
    gather(pace.streams, |i, ready| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let body = json!({"model": "gpt-4o-mini", "stream": true, "max_tokens": 8000,
                "messages": [{"role": "user", "content": format!("[[mock:stamp]] [[mock:words={words}]]")}]});
            pace.start(i, &ready).await;
            let started = Instant::now();
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
            anyhow::Ok((started, latencies))
        }
    })
    .await
}

async fn gateway_streams(
    base: &str,
    tokens: &[String],
    pace: Pace,
    words: usize,
) -> anyhow::Result<Relay> {
    gather(pace.streams, |i, ready| {
        let token = tokens[i % tokens.len()].clone();
        let base = base.to_owned();
        async move {
            // Every stream reaches the barrier, even one that could not connect.
            let connected = SioClient::connect(&base, "/ai", &json!({"token": token})).await;
            pace.start(i, &ready).await;
            let mut client = connected?;
            let started = Instant::now();
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
            anyhow::Ok((started, latencies))
        }
    })
    .await
}
