//! `palaver-bench sockets`: idle Socket.IO connections (RSS per connection) and streamed chunks
//! relayed per second with the per-chunk latency Palaver adds over mock-llm's own stream.
//!
//! Per-chunk latency uses mock-llm's `[[mock:stamp]]` directive: every streamed word is the
//! wall-clock time (µs since the epoch) at which mock-llm wrote it, so the receiver measures
//! upstream-write-to-client-receive directly. The same streams read straight from mock-llm give
//! the baseline; the difference is what Palaver adds.
//!
//! Streams open over a ramp (`--ramp`, 1 s) and are long enough that all of them are open for
//! `--seconds` after it: the figures are those of the chunks mock-llm wrote in that window,
//! when the total is the full `streams × tokens-per-sec`. Opening every stream at once would
//! measure a burst of chat starts (each one a conversation, two writes and an upstream
//! request), which the chat benchmark measures; the whole run's figures, ramps included, are
//! printed beside them.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    pub ramp: Duration,
    /// Writes every chunk's latency (CSV) here.
    pub dump: Option<std::path::PathBuf>,
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

    let interval = Duration::from_secs_f64(1.0 / args.tokens_per_sec);
    let pace = Pace {
        streams: args.streams,
        interval,
        rounds: ((args.ramp.as_secs_f64() / interval.as_secs_f64()).floor() as usize).max(1),
    };
    let window = Window {
        from: args.ramp + Duration::from_millis(200),
        length: Duration::from_secs(args.seconds),
    };
    // The first stream to open is still open at the window's end, and a ramp after it (the
    // streams close over a ramp, as they opened).
    let words = (args.tokens_per_sec * (window.from + window.length + args.ramp).as_secs_f64())
        .ceil() as usize;
    let mut dump = match &args.dump {
        Some(path) => {
            let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
            writeln!(file, "path,stream,index,sent_us,latency_us")?;
            Some(file)
        }
        None => None,
    };

    // 2. Baseline: the same streams read straight from mock-llm.
    let direct = direct_streams(&mock_base, pace, words).await?;
    let direct = summarize("direct", direct, window, dump.as_mut())?;
    report("mock-llm direct (SSE)", &direct);

    // 3. Through Palaver's gateway, after one short chat that loads the tokenizer tables (a
    // one-off of tens of milliseconds per process, not part of relaying).
    warm_up(&base, &tokens[0]).await?;
    let via = gateway_streams(&base, &tokens, pace, words).await?;
    let via = summarize("gateway", via, window, dump.as_mut())?;
    report("palaver gateway (Socket.IO)", &via);
    if let Some(mut file) = dump {
        file.flush()?;
    }
    println!(
        "added per-chunk latency, all {} streams open: p50 {:.3} ms, p99 {:.3} ms \
         (whole run, ramps included: p50 {:.3} ms, p99 {:.3} ms)",
        args.streams,
        (via.steady.p50_us - direct.steady.p50_us) / 1000.0,
        (via.steady.p99_us - direct.steady.p99_us) / 1000.0,
        (via.whole.p50_us - direct.whole.p50_us) / 1000.0,
        (via.whole.p99_us - direct.whole.p99_us) / 1000.0,
    );
    for task in idle {
        task.abort();
    }
    drop(palaver);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// When each stream starts: spread over `rounds` token intervals (the ramp), about
/// `streams / rounds` in each, and each at its own phase within the interval (`i / streams` of
/// it), so that the total is a steady rate rather than every stream's chunk falling due in the
/// same millisecond.
#[derive(Clone, Copy)]
struct Pace {
    streams: usize,
    interval: Duration,
    rounds: usize,
}

impl Pace {
    /// Waits for every stream to be ready, then for stream `i`'s start; returns the moment
    /// the streams were released (µs since the epoch).
    async fn start(&self, i: usize, ready: &tokio::sync::Barrier) -> u64 {
        ready.wait().await;
        let released = now_us();
        let offset = self.interval * (i % self.rounds) as u32
            + self.interval.mul_f64(i as f64 / self.streams as f64);
        tokio::time::sleep(offset).await;
        released
    }
}

/// The part of the run measured: from `from` after the streams' release, for `length`.
#[derive(Clone, Copy)]
struct Window {
    from: Duration,
    length: Duration,
}

/// One stream's chunks: (time mock-llm wrote it, µs since the epoch; latency, µs).
type Samples = Vec<(u64, u64)>;

/// Every stream's chunks, and the moment the streams were released.
struct Run {
    released_us: u64,
    streams: Vec<Samples>,
}

/// Runs `streams` tasks (each on the runtime, so the load generator uses every core) and
/// gathers their chunks.
async fn gather<F, Fut>(streams: usize, stream: F) -> anyhow::Result<Run>
where
    F: Fn(usize, Arc<tokio::sync::Barrier>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u64, Samples)>> + Send + 'static,
{
    let ready = Arc::new(tokio::sync::Barrier::new(streams));
    let mut tasks: Vec<_> = (0..streams)
        .map(|i| tokio::spawn(stream(i, ready.clone())))
        .collect();
    let mut run = Run {
        released_us: u64::MAX,
        streams: Vec::with_capacity(streams),
    };
    for (i, task) in tasks.iter_mut().enumerate() {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(e.into()),
        };
        let (released, samples) = match outcome {
            Ok(done) => done,
            Err(e) => {
                for rest in &tasks[i + 1..] {
                    rest.abort();
                }
                return Err(e);
            }
        };
        run.released_us = run.released_us.min(released);
        run.streams.push(samples);
    }
    Ok(run)
}

struct Percentiles {
    chunks: usize,
    p50_us: f64,
    p99_us: f64,
}

impl Percentiles {
    fn of(mut latencies: Vec<u64>) -> Percentiles {
        latencies.sort_unstable();
        let pct = |p: f64| {
            if latencies.is_empty() {
                return f64::NAN;
            }
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
                as f64
        };
        Percentiles {
            chunks: latencies.len(),
            p50_us: pct(0.5),
            p99_us: pct(0.99),
        }
    }
}

struct Relay {
    /// Chunks written in the window, when every stream is open.
    steady: Percentiles,
    /// Their rate: chunks per second in the window.
    rate: f64,
    /// Every chunk of the run, ramps included.
    whole: Percentiles,
}

fn report(name: &str, r: &Relay) {
    println!(
        "{name}: {} chunks at {:.0} chunks/s with all streams open, latency p50 {:.3} ms, \
         p99 {:.3} ms (whole run: {} chunks, p50 {:.3} ms, p99 {:.3} ms)",
        r.steady.chunks,
        r.rate,
        r.steady.p50_us / 1000.0,
        r.steady.p99_us / 1000.0,
        r.whole.chunks,
        r.whole.p50_us / 1000.0,
        r.whole.p99_us / 1000.0,
    );
}

fn summarize(
    path: &str,
    run: Run,
    window: Window,
    mut dump: Option<&mut impl Write>,
) -> anyhow::Result<Relay> {
    let from = run.released_us + window.from.as_micros() as u64;
    let to = from + window.length.as_micros() as u64;
    let mut steady = Vec::new();
    let mut whole = Vec::new();
    for (stream, samples) in run.streams.iter().enumerate() {
        for (index, &(sent, latency)) in samples.iter().enumerate() {
            if let Some(out) = dump.as_mut() {
                writeln!(out, "{path},{stream},{index},{sent},{latency}")?;
            }
            whole.push(latency);
            if (from..to).contains(&sent) {
                steady.push(latency);
            }
        }
    }
    let rate = steady.len() as f64 / window.length.as_secs_f64();
    Ok(Relay {
        steady: Percentiles::of(steady),
        rate,
        whole: Percentiles::of(whole),
    })
}

/// A stamped word's (write time, latency now).
fn stamp_latency(word: &str) -> Option<(u64, u64)> {
    word.trim()
        .parse::<u64>()
        .ok()
        .map(|sent| (sent, now_us().saturating_sub(sent)))
}

async fn direct_streams(mock_base: &str, pace: Pace, words: usize) -> anyhow::Result<Run> {
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
async fn warm_up(base: &str, token: &str) -> anyhow::Result<()> {
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

async fn gateway_streams(
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
