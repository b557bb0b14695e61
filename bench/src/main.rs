//! `palaver-bench chat`: throughput and latency of `mock-llm` called directly and through
//! Palaver's `/api/v1/ai/chat` (with persistence on SQLite and PostgreSQL), side by side in one
//! run. Palaver and mock-llm run as separate release processes; this process only generates load.
//!
//! `palaver-bench usage`: `/api/v1/ai/usage` for a user with a million usage records; see
//! `usage.rs`.
//!
//! `palaver-bench search`: conversation search over 100,000 messages; see `search.rs`.
//!
//! `palaver-bench tree`: the active path of a conversation of 10,000 messages in 50 branches,
//! and chat into it; see `tree.rs`.
//!
//! `palaver-bench cache`: what a response-cache hit adds over the store writes; see `cache.rs`.
//!
//! `palaver-bench jobs`: background-job throughput (Palaver's apalis queue vs BullMQ, and
//! `generate-embeddings` end to end) and latency; see `jobs.rs`.
//!
//! Build first: `cargo build --release -p palaver -p mock-llm -p palaver-bench`, then
//! `./target/release/palaver-bench chat [--seconds 10] [--postgres postgres://postgres@127.0.0.1:5432/test]`.

mod cache;
mod jobs;
mod limiter;
mod load;
mod procs;
mod resume;
mod search;
mod sio;
mod sockets;
mod tree;
mod usage;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use load::{Report, Target, run_load};
use procs::{Child, free_port, spawn_mock, spawn_palaver, target_dir};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// mock-llm directly vs Palaver's chat endpoint on SQLite and PostgreSQL.
    Chat {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrency of the saturation run.
        #[arg(long, default_value_t = 64)]
        saturation: usize,
        /// Admin URL of a PostgreSQL server; a `palaver_bench` database is recreated there.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Start-up to first served request, and idle RSS, on the embedded default (SQLite, no keys).
    Startup {
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// The cost of one rate-limit decision, in-process and on Redis.
    Limiter {
        #[arg(long, default_value_t = 1_000_000)]
        decisions: usize,
        /// A Redis server to measure the shared limiter on.
        #[arg(long)]
        redis: Option<String>,
    },
    /// Idle Socket.IO connections (RSS each) and chunks relayed per second with added latency.
    Sockets {
        /// Idle connections to open.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        /// Concurrent streams for the relay measurement.
        #[arg(long, default_value_t = 200)]
        streams: usize,
        /// Tokens per second of each stream (streams × rate = chunks/s in total).
        #[arg(long, default_value_t = 100.0)]
        tokens_per_sec: f64,
        /// Seconds measured with every stream open (each stream lasts two ramps and 0.2 s longer).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seconds over which the streams open (and, at the end, close).
        #[arg(long, default_value_t = 1.0)]
        ramp: f64,
        /// Write every chunk's latency to this CSV file (path,stream,index,sent_us,latency_us).
        #[arg(long)]
        dump: Option<std::path::PathBuf>,
        /// A Redis server: a second Palaver with `REDIS_URL` (runs' events logged on Redis)
        /// relays the same streams, interleaved with the first, in the same run.
        #[arg(long)]
        redis: Option<String>,
        /// Measurement rounds (direct, then each Palaver), interleaved.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// What a response-cache hit adds over the store writes of an exchange.
    Cache(cache::CacheArgs),
    /// `GET /api/v1/ai/usage` for one user with many usage records, on SQLite and PostgreSQL.
    Usage(usage::UsageArgs),
    /// `GET /api/v1/ai/conversations?q=` for one user with many messages, on SQLite and
    /// PostgreSQL.
    Search(search::SearchArgs),
    /// The active path of a conversation of 10,000 messages in 50 branches (GET, paging) and
    /// chat into it against a fresh conversation, on SQLite and PostgreSQL.
    Tree(tree::TreeArgs),
    /// The replay of a finished run of 2,000 events, on its instance and on another sharing
    /// its PostgreSQL and Redis.
    Resume(resume::ResumeArgs),
    /// Job throughput: no-op jobs through Palaver's queue and through BullMQ on the same Redis,
    /// `generate-embeddings` jobs end to end, and enqueue-to-completion latency.
    Jobs {
        /// The Redis server for both queues.
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis: String,
        /// Admin URL of a PostgreSQL server: the end-to-end run on PostgreSQL + Redis uses a
        /// recreated `palaver_bench_jobs` database there (the SQLite run always happens).
        #[arg(long)]
        postgres: Option<String>,
        /// No-op jobs per queue run.
        #[arg(long, default_value_t = 20_000)]
        noop_jobs: usize,
        /// Worker concurrency of both no-op runs.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// generate-embeddings jobs per end-to-end run.
        #[arg(long, default_value_t = 10_000)]
        e2e_jobs: usize,
        /// Concurrent HTTP clients posting jobs.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Distinct users (tokens) the jobs are spread over.
        #[arg(long, default_value_t = 256)]
        users: usize,
        /// Palaver's WORKER_CONCURRENCY values to try (comma-separated); latency runs on the first.
        #[arg(long, value_delimiter = ',', default_value = "16")]
        worker_concurrency: Vec<usize>,
        /// Sequential jobs of the latency measurement (0 skips it).
        #[arg(long, default_value_t = 200)]
        latency_jobs: usize,
        /// Leave BullMQ out (no node needed).
        #[arg(long)]
        skip_bullmq: bool,
    },
}

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Chat {
            seconds,
            saturation,
            postgres,
        } => chat(Duration::from_secs(seconds), saturation, postgres).await,
        Command::Startup { runs } => startup(runs).await,
        Command::Limiter { decisions, redis } => limiter::run(decisions, redis).await,
        Command::Search(args) => search::run(args, SECRET, mint).await,
        Command::Tree(args) => tree::run(args, SECRET, mint).await,
        Command::Resume(args) => resume::run(args, SECRET, mint).await,
        Command::Usage(args) => usage::run(args, SECRET, mint).await,
        Command::Cache(args) => cache::run(args, SECRET, mint).await,
        Command::Sockets {
            idle,
            streams,
            tokens_per_sec,
            seconds,
            ramp,
            dump,
            redis,
            rounds,
        } => {
            anyhow::ensure!(
                ramp.is_finite() && ramp >= 0.0,
                "--ramp must be a number of seconds, 0 or more"
            );
            let args = sockets::SocketArgs {
                idle,
                streams,
                tokens_per_sec,
                seconds,
                ramp: std::time::Duration::from_secs_f64(ramp),
                dump,
                redis,
                rounds: rounds.max(1),
            };
            sockets::run(args, SECRET, mint).await
        }
        Command::Jobs {
            redis,
            postgres,
            noop_jobs,
            concurrency,
            e2e_jobs,
            clients,
            users,
            worker_concurrency,
            latency_jobs,
            skip_bullmq,
        } => {
            let args = jobs::JobsArgs {
                redis,
                postgres,
                noop_jobs,
                concurrency,
                e2e_jobs,
                clients,
                users,
                worker_concurrency,
                latency_jobs,
                skip_bullmq,
            };
            jobs::run(args, mint).await
        }
    }
}

async fn chat(
    duration: Duration,
    saturation: usize,
    postgres: Option<String>,
) -> anyhow::Result<()> {
    let bin = target_dir()?;
    let mock_port = free_port()?;
    let _mock: Child = spawn_mock(&bin, mock_port).await?;
    let mock_base = format!("http://127.0.0.1:{mock_port}");
    let direct = Target {
        name: "mock-llm direct".into(),
        url: format!("{mock_base}/v1/chat/completions"),
        body: json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 64}),
        tokens: vec!["Bearer sk-bench".into()],
    };

    let data_dir = std::env::temp_dir().join(format!("palaver-bench-{}", std::process::id()));
    let mut backends = vec![(
        "sqlite",
        format!("sqlite://{}/bench.db", data_dir.display()),
    )];
    if let Some(admin) = postgres {
        backends.push((
            "postgres",
            procs::fresh_pg_database(&admin, "palaver_bench").await?,
        ));
    }

    let mut rows = Vec::new();
    for concurrency in [1, 16, saturation] {
        rows.push(run_load(&direct, concurrency, duration).await?);
    }
    for (name, url) in backends {
        let port = free_port()?;
        let _palaver = spawn_palaver(
            &bin,
            port,
            &url,
            &format!("{mock_base}/v1"),
            &data_dir,
            SECRET,
        )
        .await?;
        let tokens = (0..saturation.max(16))
            .map(|i| Ok(format!("Bearer {}", mint(&format!("bench-user-{i}"))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let via = Target {
            name: format!("palaver /ai/chat ({name})"),
            url: format!("http://127.0.0.1:{port}/api/v1/ai/chat"),
            body: json!({"message": "hello there", "model": "gpt-4o-mini", "maxTokens": 64}),
            tokens,
        };
        for concurrency in [1, 16, saturation] {
            rows.push(run_load(&via, concurrency, duration).await?);
        }
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    print_table(&rows);
    Ok(())
}

async fn startup(runs: usize) -> anyhow::Result<()> {
    let bin = target_dir()?;
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for run in 0..runs {
        // A fresh data directory each run: migrations and the JWT secret are created at start-up.
        let dir =
            std::env::temp_dir().join(format!("palaver-startup-{}-{run}", std::process::id()));
        let port = free_port()?;
        let started = std::time::Instant::now();
        let child = tokio::process::Command::new(bin.join("palaver"))
            .env_clear()
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("PALAVER_DATA_DIR", &dir)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let url = format!("http://127.0.0.1:{port}/health");
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "palaver did not start"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss.push(procs::rss_kib(child.id().context("pid")?)?);
        drop(child);
        let _ = std::fs::remove_dir_all(&dir);
    }
    times.sort_by(f64::total_cmp);
    rss.sort_unstable();
    println!(
        "start-up to first served request over {runs} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    println!(
        "idle RSS after start-up: median {} KiB ({:.1} MB), max {} KiB",
        rss[rss.len() / 2],
        rss[rss.len() / 2] as f64 / 1024.0,
        rss[rss.len() - 1]
    );
    Ok(())
}

fn mint(sub: &str) -> anyhow::Result<String> {
    let exp = chrono::Utc::now().timestamp() + 24 * 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .context("minting a token")
}

fn print_table(rows: &[Report]) {
    println!();
    println!("| target | concurrency | requests | errors | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} |",
            r.name, r.concurrency, r.ok, r.errors, r.rate, r.p50_ms, r.p99_ms
        );
    }
    let direct: Vec<&Report> = rows
        .iter()
        .filter(|r| r.name.starts_with("mock-llm"))
        .collect();
    println!();
    println!("Added latency (Palaver minus direct, same concurrency):");
    for r in rows.iter().filter(|r| !r.name.starts_with("mock-llm")) {
        if let Some(d) = direct.iter().find(|d| d.concurrency == r.concurrency) {
            println!(
                "  {} c={}: p50 +{:.3} ms, p99 +{:.3} ms",
                r.name,
                r.concurrency,
                r.p50_ms - d.p50_ms,
                r.p99_ms - d.p99_ms
            );
        }
    }
}
