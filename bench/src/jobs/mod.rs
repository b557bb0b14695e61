//! `palaver-bench jobs`: background-job throughput and latency, side by side on one Redis.
//!
//! 1. No-op jobs through Palaver's queue: `RedisStorage<Envelope>` with Palaver's settings
//!    (`palaver::jobs::bench_support`), an apalis worker with a no-op handler.
//! 2. No-op jobs through BullMQ (`bench/bullmq/bullmq-noop.js`, run with node).
//! 3. `generate-embeddings` jobs end to end: `POST /api/v1/ai/jobs` from many clients against
//!    `palaver serve` (mock-llm upstream), until the `jobs` table says all are completed; on
//!    PostgreSQL + Redis, on PostgreSQL alone and on the embedded default (SQLite), the last two
//!    with the `jobs` table as the queue.
//! 4. Enqueue-to-completion latency of one job at a time.

mod bullmq;
mod e2e;
mod instance;
mod noop;
mod table;

use crate::procs::{Child, free_port, spawn_mock, target_dir};
use bullmq::bullmq_noop;
use e2e::{e2e, latency};
use instance::{Backend, Instance};
use noop::{Push, apalis_noop};
use table::print_table;

pub struct JobsArgs {
    pub redis: String,
    pub postgres: Option<String>,
    pub noop_jobs: usize,
    pub concurrency: usize,
    pub e2e_jobs: usize,
    pub clients: usize,
    pub users: usize,
    pub worker_concurrency: Vec<usize>,
    pub latency_jobs: usize,
    pub skip_bullmq: bool,
}

/// One line of the table.
struct Row {
    what: String,
    jobs: usize,
    seconds: f64,
    note: String,
}

const BULK: usize = 1000;
const IN_FLIGHT: usize = 64;

pub async fn run(args: JobsArgs, mint: fn(&str) -> anyhow::Result<String>) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let c = args.concurrency;

    // 1. Palaver's queue, no-op handler.
    let bulk = apalis_noop(&args.redis, args.noop_jobs, c, Push::Bulk).await?;
    rows.push(bulk);
    let single = apalis_noop(&args.redis, args.noop_jobs.min(5000), c, Push::Single).await?;
    rows.push(single);

    // 2. BullMQ, no-op processor.
    if !args.skip_bullmq {
        rows.extend(bullmq_noop(&args.redis, args.noop_jobs, c, args.noop_jobs.min(5000)).await?);
    }

    // 3 and 4. End to end.
    let bin = target_dir()?;
    let mock_port = free_port()?;
    let _mock: Child = spawn_mock(&bin, mock_port).await?;
    let openai = format!("http://127.0.0.1:{mock_port}/v1");
    let tokens = (0..args.users.max(1))
        .map(|i| Ok(format!("Bearer {}", mint(&format!("bench-jobs-user-{i}"))?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let latency_token = format!("Bearer {}", mint("bench-jobs-latency")?);
    let mut backends = Vec::new();
    if let Some(admin) = &args.postgres {
        backends.push(Backend::PostgresRedis {
            admin: admin.clone(),
        });
        backends.push(Backend::Postgres {
            admin: admin.clone(),
        });
    }
    backends.push(Backend::Sqlite);
    let mut latencies = Vec::new();
    for backend in &backends {
        for (k, &wc) in args.worker_concurrency.iter().enumerate() {
            let instance = Instance::start(&bin, &openai, backend, &args.redis, wc, k).await?;
            let row = e2e(&instance, &args, &tokens).await;
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    instance.stop().await;
                    return Err(e);
                }
            };
            rows.push(row);
            if k == 0 && args.latency_jobs > 0 {
                let l = latency(&instance, args.latency_jobs, &latency_token).await;
                match l {
                    Ok(l) => latencies.push(l),
                    Err(e) => notes.push(format!("latency on {}: {e:#}", instance.name)),
                }
            }
            instance.stop().await;
        }
    }

    print_table(&rows, &latencies, &notes);
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
