//! `palaver-bench resume`: how long the replay of a finished run of 2,000 events takes
//! (`GET /api/v1/ai/runs/{id}/events?after=0`, request sent to the last event received), on
//! the instance that produced it (its in-process log) and on another instance sharing its
//! PostgreSQL and Redis (the run's Redis stream). Issue #17's target: under 20 ms.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use crate::load::percentile;
use crate::procs::{free_port, fresh_pg_database, spawn_mock, spawn_palaver_with, target_dir};

#[derive(clap::Args)]
pub struct ResumeArgs {
    /// The Redis server both instances share.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Admin URL of a PostgreSQL server; a `palaver_bench_resume` database is recreated there.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Events per run (the conversation, the user message, the chunks and `chat:end`).
    #[arg(long, default_value_t = 2_000)]
    pub events: usize,
    /// Runs produced, each replayed on both instances.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
}

const USER: &str = "bench-resume";

pub async fn run(
    args: ResumeArgs,
    secret: &str,
    mint: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 3, "--events must be more than 3");
    let bin = target_dir()?;
    let mock_port = free_port()?;
    let _mock = spawn_mock(&bin, mock_port).await?;
    let upstream = format!("http://127.0.0.1:{mock_port}/v1");
    let db = fresh_pg_database(&args.postgres, "palaver_bench_resume").await?;
    let dir = std::env::temp_dir().join(format!("palaver-bench-resume-{}", std::process::id()));
    let extra = [("REDIS_URL", args.redis.clone())];
    let (port_a, port_b) = (free_port()?, free_port()?);
    let _a =
        spawn_palaver_with(&bin, port_a, &db, &upstream, &dir.join("a"), secret, &extra).await?;
    let _b =
        spawn_palaver_with(&bin, port_b, &db, &upstream, &dir.join("b"), secret, &extra).await?;
    let (a, b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let client = reqwest::Client::new();
    let token = mint(USER)?;
    let words = args.events - 3;
    let (mut local, mut shared) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let run = produce(&client, &a, &token, words).await?;
        local.push(replay(&client, &a, &token, &run, args.events).await?);
        shared.push(replay(&client, &b, &token, &run, args.events).await?);
    }
    local.sort_unstable();
    shared.sort_unstable();
    for (name, sorted) in [
        ("producing instance (in-process log)", &local),
        ("other instance (Redis stream)", &shared),
    ] {
        println!(
            "replay of {} events, {name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} runs",
            args.events,
            percentile(sorted, 0.50),
            percentile(sorted, 0.99),
            percentile(sorted, 1.0),
            sorted.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Streams one exchange of `words` words to its end on `base`; returns its run's id.
async fn produce(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    words: usize,
) -> anyhow::Result<String> {
    let body = client
        .post(format!("{base}/api/v1/ai/chat"))
        .bearer_auth(token)
        .json(&json!({"message": format!("[[mock:words={words}]]"), "stream": true, "maxTokens": 8000}))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    anyhow::ensure!(
        body.contains("event: chat:end"),
        "the run did not end: {body:.300}"
    );
    let first = body
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .context("no event")?;
    let payload: Value = serde_json::from_str(first.trim())?;
    Ok(payload["runId"].as_str().context("no runId")?.to_owned())
}

/// Replays the run from its first event on `base`; returns the time to its last (µs).
async fn replay(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    run: &str,
    events: usize,
) -> anyhow::Result<u32> {
    let started = Instant::now();
    let body = client
        .get(format!("{base}/api/v1/ai/runs/{run}/events?after=0"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let elapsed = started.elapsed();
    let received = body.lines().filter(|l| l.starts_with("id:")).count();
    anyhow::ensure!(
        received == events && body.contains("event: chat:end"),
        "replay on {base}: {received} of {events} events"
    );
    Ok(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX))
}
