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

mod measure;
mod streams;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::procs::{
    free_port, rss_kib, spawn_mock_with, spawn_palaver, spawn_palaver_with, target_dir,
};
use crate::sio::SioClient;
use measure::{report, summarize};
use streams::{direct_streams, gateway_streams, warm_up};

pub struct SocketArgs {
    pub idle: usize,
    pub streams: usize,
    pub tokens_per_sec: f64,
    pub seconds: u64,
    pub ramp: Duration,
    /// Writes every chunk's latency (CSV) here.
    pub dump: Option<std::path::PathBuf>,
    /// Also relay through a Palaver with `REDIS_URL` (the runs' event log on Redis).
    pub redis: Option<String>,
    /// Interleaved measurement rounds.
    pub rounds: usize,
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
    let tokens: Vec<String> = (0..64)
        .map(|i| mint(&format!("sio-user-{i}")))
        .collect::<anyhow::Result<_>>()?;
    let idle = idle_connections(&base, pid, &tokens, args.idle).await?;

    let mut dump = open_dump(args.dump.as_deref())?;
    let shared = match &args.redis {
        Some(url) => Some(spawn_shared(&bin, &data_dir, &mock_base, url, secret).await?),
        None => None,
    };
    // One short chat per Palaver first: it loads the tokenizer tables (a one-off of tens of
    // milliseconds per process, not part of relaying).
    warm_up(&base, &tokens[0]).await?;
    if let Some((shared_base, _)) = &shared {
        warm_up(shared_base, &tokens[0]).await?;
    }
    let shared_base = shared.as_ref().map(|(base, _)| base.as_str());
    let gateways = Gateways {
        local: &base,
        shared: shared_base,
        tokens: &tokens,
    };
    relay_rounds(&args, &mock_base, &gateways, dump.as_mut()).await?;
    if let Some(mut file) = dump {
        file.flush()?;
    }
    drop(shared);
    for task in idle {
        task.abort();
    }
    drop(palaver);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// A second Palaver, with `REDIS_URL` (the runs' log on Redis): its address and process.
async fn spawn_shared(
    bin: &Path,
    data_dir: &Path,
    mock_base: &str,
    redis: &str,
    secret: &str,
) -> anyhow::Result<(String, crate::procs::Child)> {
    let dir = data_dir.join("shared");
    let port = free_port()?;
    let db = format!("sqlite://{}/bench.db", dir.display());
    let extra = [("REDIS_URL", redis.to_owned())];
    let mock = format!("{mock_base}/v1");
    let child = spawn_palaver_with(bin, port, &db, &mock, &dir, secret, &extra).await?;
    Ok((format!("http://127.0.0.1:{port}"), child))
}

/// The Palavers relaying: without Redis, and (when asked) with the runs' log on Redis.
struct Gateways<'a> {
    local: &'a str,
    shared: Option<&'a str>,
    tokens: &'a [String],
}

/// Direct, then through each Palaver, `rounds` times.
async fn relay_rounds(
    args: &SocketArgs,
    mock_base: &str,
    gateways: &Gateways<'_>,
    mut dump: Option<&mut BufWriter<File>>,
) -> anyhow::Result<()> {
    let (pace, window, words) = plan(args);
    for round in 1..=args.rounds {
        println!("round {round} of {}", args.rounds);
        // Baseline: the same streams read straight from mock-llm.
        let direct = direct_streams(mock_base, pace, words).await?;
        let direct = summarize("direct", direct, window, dump.as_deref_mut())?;
        report("mock-llm direct (SSE)", &direct);
        let via = gateway_streams(gateways.local, gateways.tokens, pace, words).await?;
        let via = summarize("gateway", via, window, dump.as_deref_mut())?;
        report("palaver gateway (Socket.IO)", &via);
        added(args, "events logged in process", &via, &direct);
        if let Some(shared_base) = gateways.shared {
            let logged = gateway_streams(shared_base, gateways.tokens, pace, words).await?;
            let logged = summarize("gateway-redis", logged, window, dump.as_deref_mut())?;
            report("palaver gateway, REDIS_URL (Socket.IO)", &logged);
            added(args, "events logged on Redis", &logged, &direct);
            println!(
                "the log on Redis over the in-process one: p50 {:+.3} ms, p99 {:+.3} ms",
                (logged.steady.p50_us - via.steady.p50_us) / 1000.0,
                (logged.steady.p99_us - via.steady.p99_us) / 1000.0,
            );
        }
    }
    Ok(())
}

/// Prints the latency a relay added over mock-llm read directly.
fn added(args: &SocketArgs, what: &str, via: &measure::Relay, direct: &measure::Relay) {
    println!(
        "added per-chunk latency ({what}), all {} streams open: p50 {:.3} ms, p99 {:.3} ms \
         (whole run, ramps included: p50 {:.3} ms, p99 {:.3} ms)",
        args.streams,
        (via.steady.p50_us - direct.steady.p50_us) / 1000.0,
        (via.steady.p99_us - direct.steady.p99_us) / 1000.0,
        (via.whole.p50_us - direct.whole.p50_us) / 1000.0,
        (via.whole.p99_us - direct.whole.p99_us) / 1000.0,
    );
}

/// Opens `n` idle connections and prints the RSS they cost palaver; returns their tasks.
#[expect(
    clippy::disallowed_methods,
    reason = "load generator: the idle connections' tasks are returned and aborted at the end of the run"
)]
async fn idle_connections(
    base: &str,
    pid: u32,
    tokens: &[String],
    n: usize,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let mut idle = Vec::with_capacity(n);
    let connects = futures::stream::iter(0..n)
        .map(|i| {
            let base = base.to_owned();
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
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / n.max(1) as f64;
    println!(
        "idle: {} connections, palaver RSS {} KiB -> {} KiB: {:.0} bytes ({:.1} KiB) per connection",
        n,
        before,
        after,
        per_conn,
        per_conn / 1024.0
    );
    Ok(idle)
}

/// The streams' pace, the window measured, and each stream's length in words.
fn plan(args: &SocketArgs) -> (Pace, Window, usize) {
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
    (pace, window, words)
}

/// Every chunk's latency as CSV, when `--dump` asks for it.
fn open_dump(path: Option<&Path>) -> anyhow::Result<Option<BufWriter<File>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let mut file = BufWriter::new(File::create(path)?);
    writeln!(file, "path,stream,index,sent_us,latency_us")?;
    Ok(Some(file))
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
