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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use apalis::prelude::{
    BackendExt, BoxDynError, Data, TaskSink, WorkerBuilder, WorkerBuilderExt, WorkerError,
};
use apalis_redis::RedisStorage;
use chrono::{DateTime, Utc};
use palaver::jobs::Envelope;
use palaver::jobs::bench_support;
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::procs::{self, Child, free_port, spawn_mock, spawn_palaver_with, target_dir};

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

// ---------------------------------------------------------------------------------------------
// 1. apalis-redis with Palaver's settings.

#[derive(Clone, Copy, PartialEq)]
enum Push {
    /// `push_all` in batches of [`BULK`] (one Lua call per batch).
    Bulk,
    /// `push_task` one envelope per call, [`IN_FLIGHT`] at once: what `POST /ai/jobs` does.
    Single,
}

#[derive(Default)]
struct Progress {
    done: AtomicUsize,
    target: AtomicUsize,
    all_done: Notify,
}

async fn noop(_envelope: Envelope, progress: Data<Arc<Progress>>) -> Result<(), BoxDynError> {
    let done = progress.done.fetch_add(1, Ordering::Relaxed) + 1;
    if done == progress.target.load(Ordering::Relaxed) {
        progress.all_done.notify_one();
    }
    Ok(())
}

async fn apalis_noop(redis: &str, n: usize, concurrency: usize, push: Push) -> anyhow::Result<Row> {
    let queue = format!(
        "palaver-bench-noop-{}-{}",
        std::process::id(),
        if push == Push::Bulk { "bulk" } else { "single" }
    );
    delete_keys(redis, &queue).await?;
    let conn = apalis_redis::connect(redis)
        .await
        .context("connecting to Redis")?;
    let storage: RedisStorage<Envelope> = RedisStorage::new(conn).with_config(
        bench_support::redis_config(&queue, Duration::from_secs(10), concurrency),
    );
    let progress = Arc::new(Progress::default());
    progress.target.store(n, Ordering::Relaxed);
    let stop = Arc::new(Notify::new());
    // As Palaver's worker: polled every POLL_EVERY, and woken by each push of this process.
    let pushed = Arc::new(bench_support::Pushed::default());
    let worker = {
        let backend = storage
            .clone()
            .poll_with_strategy(bench_support::Wakeups::new(pushed.clone()));
        let progress = progress.clone();
        let stop = stop.clone();
        let name = format!("{queue}-worker");
        tokio::spawn(async move {
            WorkerBuilder::new(name.as_str())
                .backend(backend)
                .concurrency(concurrency)
                .data(progress)
                .build(noop)
                .run_until(async move {
                    stop.notified().await;
                    Ok::<(), WorkerError>(())
                })
                .await
        })
    };
    // Let the worker register and go idle, as a running Palaver's worker is.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let envelopes: Vec<Envelope> = (0..n)
        .map(|_| Envelope {
            job_id: Uuid::now_v7(),
            attempt: 1,
        })
        .collect();
    let start = Instant::now();
    match push {
        Push::Bulk => {
            let mut sink = storage.clone();
            for chunk in envelopes.chunks(BULK) {
                let tasks = chunk
                    .iter()
                    .map(|e| bench_support::task(*e, Duration::ZERO))
                    .collect::<Vec<_>>();
                sink.push_all(futures::stream::iter(tasks))
                    .await
                    .map_err(|e| anyhow::anyhow!("push_all: {e}"))?;
                pushed.raise();
            }
        }
        Push::Single => {
            let next = Arc::new(AtomicUsize::new(0));
            let envelopes = Arc::new(envelopes);
            let pushers = (0..IN_FLIGHT.min(n)).map(|_| {
                let mut sink = storage.clone();
                let next = next.clone();
                let envelopes = envelopes.clone();
                let pushed = pushed.clone();
                async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(e) = envelopes.get(i) else {
                            return Ok::<(), anyhow::Error>(());
                        };
                        sink.push_task(bench_support::task(*e, Duration::ZERO))
                            .await
                            .map_err(|e| anyhow::anyhow!("push_task: {e}"))?;
                        pushed.raise();
                    }
                }
            });
            futures::future::try_join_all(pushers).await?;
        }
    }
    let pushed = start.elapsed().as_secs_f64();
    let waited = tokio::time::timeout(Duration::from_secs(120), progress.all_done.notified()).await;
    let handled = start.elapsed().as_secs_f64();
    stop.notify_one();
    let stopped = tokio::time::timeout(Duration::from_secs(30), worker).await;
    let drained = start.elapsed().as_secs_f64();
    delete_keys(redis, &queue).await?;
    if waited.is_err() {
        bail!(
            "apalis no-op: only {} of {n} jobs ran in 120 s",
            progress.done.load(Ordering::Relaxed)
        );
    }
    match stopped {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => bail!("apalis worker failed: {e}"),
        Ok(Err(e)) => bail!("apalis worker panicked: {e}"),
        Err(_) => bail!("apalis worker did not stop"),
    }
    let how = match push {
        Push::Bulk => format!("push_all ×{BULK}"),
        Push::Single => format!("push_task, {IN_FLIGHT} in flight"),
    };
    let row = Row {
        what: format!("no-op, Palaver queue (apalis-redis), {how}, c={concurrency}"),
        jobs: n,
        seconds: handled,
        note: format!(
            "push {:.0}/s; all handled {:.2} s, acks flushed {:.2} s",
            n as f64 / pushed,
            handled,
            drained
        ),
    };
    eprintln!(
        "{}: {:.0} jobs/s ({})",
        row.what,
        n as f64 / row.seconds,
        row.note
    );
    Ok(row)
}

/// Deletes every key of the queue `prefix` (apalis-redis names them all `<queue>:...`).
async fn delete_keys(redis: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(5000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. BullMQ.

fn bullmq_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bullmq")
}

async fn bullmq_noop(
    redis: &str,
    n: usize,
    concurrency: usize,
    single: usize,
) -> anyhow::Result<Vec<Row>> {
    let dir = bullmq_dir();
    if !dir.join("node_modules").join("bullmq").exists() {
        eprintln!("bench/bullmq: npm ci");
        let status = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .await
            .context("running npm ci in bench/bullmq")?;
        anyhow::ensure!(status.success(), "npm ci failed in {}", dir.display());
    }
    let queue = format!("palaver-bench-bullmq-{}", std::process::id());
    let output = tokio::process::Command::new("node")
        .arg(dir.join("bullmq-noop.js"))
        .args([
            n.to_string(),
            concurrency.to_string(),
            redis.to_owned(),
            queue,
            single.to_string(),
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("running node bench/bullmq/bullmq-noop.js")?;
    anyhow::ensure!(output.status.success(), "bullmq-noop.js failed");
    let out: Value = serde_json::from_slice(&output.stdout).context("bullmq-noop.js output")?;
    let version = out["bullmqVersion"].as_str().unwrap_or("?").to_owned();
    let row = |v: &Value, how: &str| -> anyhow::Result<Row> {
        let jobs = v["jobs"].as_u64().context("jobs")? as usize;
        let seconds = v["seconds"].as_f64().context("seconds")?;
        let adds = v["addsPerSec"].as_f64().context("addsPerSec")?;
        let row = Row {
            what: format!("no-op, BullMQ {version}, {how}, c={concurrency}"),
            jobs,
            seconds,
            note: format!("add {adds:.0}/s"),
        };
        eprintln!(
            "{}: {:.0} jobs/s ({})",
            row.what,
            jobs as f64 / seconds,
            row.note
        );
        Ok(row)
    };
    let mut rows = vec![row(&out, &format!("addBulk ×{BULK}"))?];
    if out["single"].is_object() {
        rows.push(row(&out["single"], &format!("add, {IN_FLIGHT} in flight"))?);
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// 3. End to end.

enum Backend {
    PostgresRedis {
        admin: String,
    },
    /// PostgreSQL alone: its `jobs` table is the queue.
    Postgres {
        admin: String,
    },
    Sqlite,
}

enum Db {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

struct Instance {
    name: String,
    url: String,
    db: Db,
    redis_queue: Option<(String, String)>,
    data_dir: PathBuf,
    _palaver: Child,
}

impl Instance {
    async fn start(
        bin: &Path,
        openai: &str,
        backend: &Backend,
        redis: &str,
        worker_concurrency: usize,
        k: usize,
    ) -> anyhow::Result<Instance> {
        let port = free_port()?;
        let pid = std::process::id();
        let data_dir = std::env::temp_dir().join(format!("palaver-bench-jobs-{pid}-{k}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)?;
        let mut env = vec![("WORKER_CONCURRENCY", worker_concurrency.to_string())];
        let (name, database_url, redis_queue) = match backend {
            Backend::PostgresRedis { admin } => {
                let queue = format!("palaver-bench-e2e-{pid}-{k}");
                delete_keys(redis, &queue).await?;
                env.push(("REDIS_URL", redis.to_owned()));
                env.push(("JOB_QUEUE", queue.clone()));
                let url = procs::fresh_pg_database(admin, "palaver_bench_jobs").await?;
                (
                    format!("PostgreSQL + Redis, WORKER_CONCURRENCY={worker_concurrency}"),
                    url,
                    Some((redis.to_owned(), queue)),
                )
            }
            Backend::Postgres { admin } => (
                format!("PostgreSQL (table queue), WORKER_CONCURRENCY={worker_concurrency}"),
                procs::fresh_pg_database(admin, "palaver_bench_jobs").await?,
                None,
            ),
            Backend::Sqlite => (
                format!("SQLite (table queue), WORKER_CONCURRENCY={worker_concurrency}"),
                format!("sqlite://{}/bench.db", data_dir.display()),
                None,
            ),
        };
        let palaver = spawn_palaver_with(
            bin,
            port,
            &database_url,
            openai,
            &data_dir,
            crate::SECRET,
            &env,
        )
        .await?;
        let db = match backend {
            Backend::PostgresRedis { .. } | Backend::Postgres { .. } => Db::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&database_url)
                    .await?,
            ),
            Backend::Sqlite => Db::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(
                        sqlx::sqlite::SqliteConnectOptions::new()
                            .filename(data_dir.join("bench.db"))
                            .read_only(true),
                    )
                    .await?,
            ),
        };
        Ok(Instance {
            name,
            url: format!("http://127.0.0.1:{port}/api/v1/ai/jobs"),
            db,
            redis_queue,
            data_dir,
            _palaver: palaver,
        })
    }

    async fn stop(self) {
        match &self.db {
            Db::Pg(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
        drop(self._palaver);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some((redis, queue)) = &self.redis_queue {
            let _ = delete_keys(redis, queue).await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// (completed, failed) among the jobs of users whose id starts with `users`.
    async fn finished(&self, users: &str) -> anyhow::Result<(i64, i64)> {
        let pattern = format!("{users}%");
        let sql_pg =
            "SELECT COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0)::BIGINT,
                 COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0)::BIGINT
                 FROM jobs WHERE user_id LIKE $1";
        let sql_lite = "SELECT COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0)
                 FROM jobs WHERE user_id LIKE ?1";
        Ok(match &self.db {
            Db::Pg(p) => sqlx::query_as(sql_pg).bind(pattern).fetch_one(p).await?,
            Db::Sqlite(p) => sqlx::query_as(sql_lite).bind(pattern).fetch_one(p).await?,
        })
    }

    /// (created_at, updated_at) of each finished job of users starting with `users`.
    async fn times(
        &self,
        users: &str,
    ) -> anyhow::Result<Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)>> {
        let pattern = format!("{users}%");
        Ok(match &self.db {
            Db::Pg(p) => sqlx::query_as(
                "SELECT id, created_at, updated_at FROM jobs WHERE user_id LIKE $1 AND status = 'completed'",
            )
            .bind(pattern)
            .fetch_all(p)
            .await?,
            Db::Sqlite(p) => {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT id, created_at, updated_at FROM jobs WHERE user_id LIKE ?1 AND status = 'completed'",
                )
                .bind(pattern)
                .fetch_all(p)
                .await?;
                rows.into_iter()
                    .map(|(id, c, u)| {
                        Ok((
                            Uuid::parse_str(&id)?,
                            DateTime::parse_from_rfc3339(&c)?.with_timezone(&Utc),
                            DateTime::parse_from_rfc3339(&u)?.with_timezone(&Utc),
                        ))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
        })
    }
}

fn embedding_body(i: usize) -> Vec<u8> {
    json!({"type": "generate-embeddings", "data": {"text": format!("bench text number {i}, hello there")}})
        .to_string()
        .into_bytes()
}

async fn e2e(instance: &Instance, args: &JobsArgs, tokens: &[String]) -> anyhow::Result<Row> {
    let n = args.e2e_jobs;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .tcp_nodelay(true)
        .build()?;
    // Warm-up: one connection per client, and the token cache.
    let probe = format!("{}/{}", instance.url, Uuid::nil());
    let warm = (0..args.clients).map(|i| {
        let client = client.clone();
        let probe = probe.clone();
        let token = tokens[i % tokens.len()].clone();
        async move {
            client
                .get(&probe)
                .header("authorization", token)
                .send()
                .await
                .map(|r| r.status())
        }
    });
    for status in futures::future::join_all(warm).await {
        anyhow::ensure!(status?.as_u16() == 404, "warm-up GET did not 404");
    }

    let next = Arc::new(AtomicUsize::new(0));
    let start_wall = SystemTime::now();
    let start = Instant::now();
    let posters = (0..args.clients).map(|_| {
        let client = client.clone();
        let next = next.clone();
        async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return (latencies, errors);
                }
                let t = Instant::now();
                let sent = client
                    .post(&instance.url)
                    .header("authorization", &tokens[i % tokens.len()])
                    .header("content-type", "application/json")
                    .body(embedding_body(i))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(r) => {
                        if errors == 0 {
                            eprintln!("POST /ai/jobs: {}", r.status());
                        }
                        errors += 1;
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("POST /ai/jobs: {e}");
                        }
                        errors += 1;
                    }
                }
            }
        }
    });
    let results = futures::future::join_all(posters).await;
    let enqueued = start.elapsed().as_secs_f64();
    let mut post_ms = Vec::new();
    let mut errors = 0;
    for (l, e) in results {
        post_ms.extend(l);
        errors += e;
    }
    let accepted = post_ms.len();
    let mut polls = 0;
    let (completed, failed) = loop {
        let (completed, failed) = instance.finished("bench-jobs-user-").await?;
        polls += 1;
        if (completed + failed) as usize >= accepted {
            break (completed, failed);
        }
        if start.elapsed() > Duration::from_secs(120) {
            eprintln!(
                "{}: only {completed} of {accepted} jobs completed in 120 s",
                instance.name
            );
            break (completed, failed);
        }
        // The figure comes from the server's timestamps; polling only tells when to read them,
        // and each poll (a count over every job of the run) takes CPU from the run measured.
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let observed = start.elapsed().as_secs_f64();
    let times = instance.times("bench-jobs-user-").await?;
    let last = times
        .iter()
        .map(|(_, _, u)| *u)
        .max()
        .context("no job completed")?;
    let first_created = times
        .iter()
        .map(|(_, c, _)| *c)
        .min()
        .context("no job completed")?;
    let start_utc: DateTime<Utc> = start_wall.into();
    let seconds = (last - start_utc).as_seconds_f64();
    post_ms.sort_by(f64::total_cmp);
    let row = Row {
        what: format!("generate-embeddings e2e, {}", instance.name),
        jobs: completed as usize,
        seconds,
        note: format!(
            "{} clients; enqueue {:.0}/s (POST p50 {:.1} ms, p99 {:.1} ms); {} failed, {} refused; \
             server first created→last completed {:.2} s; seen by polling at {:.2} s ({polls} polls)",
            args.clients,
            accepted as f64 / enqueued,
            pct(&post_ms, 0.5),
            pct(&post_ms, 0.99),
            failed,
            errors,
            (last - first_created).as_seconds_f64(),
            observed,
        ),
    };
    eprintln!(
        "{}: {:.0} jobs/s ({})",
        row.what,
        row.jobs as f64 / row.seconds,
        row.note
    );
    Ok(row)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

// ---------------------------------------------------------------------------------------------
// 4. Latency at low load.

struct Latency {
    name: String,
    jobs: usize,
    /// POST sent → 202 received.
    post: Vec<f64>,
    /// The job's `created_at` → `updated_at` once completed (server clock, no polling).
    server: Vec<f64>,
    /// POST sent → a `GET` (polled every millisecond) shows it completed.
    client: Vec<f64>,
}

async fn latency(instance: &Instance, n: usize, token: &str) -> anyhow::Result<Latency> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let mut post = Vec::with_capacity(n);
    let mut seen = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r = client
            .post(&instance.url)
            .header("authorization", token)
            .header("content-type", "application/json")
            .body(embedding_body(i))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "POST /ai/jobs: {}", r.status());
        let job: Value = r.json().await?;
        post.push(t.elapsed().as_secs_f64() * 1000.0);
        let id = job["id"].as_str().context("no job id")?.to_owned();
        let url = format!("{}/{id}", instance.url);
        loop {
            let job: Value = client
                .get(&url)
                .header("authorization", token)
                .send()
                .await?
                .json()
                .await?;
            match job["status"].as_str() {
                Some("completed") => break,
                Some("failed") => bail!("job {id} failed: {}", job["error"]),
                _ => {}
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(10),
                "job {id} not done in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut server: Vec<f64> = instance
        .times("bench-jobs-latency")
        .await?
        .into_iter()
        .map(|(_, c, u)| (u - c).as_seconds_f64() * 1000.0)
        .collect();
    post.sort_by(f64::total_cmp);
    seen.sort_by(f64::total_cmp);
    server.sort_by(f64::total_cmp);
    let l = Latency {
        name: instance.name.clone(),
        jobs: n,
        post,
        server,
        client: seen,
    };
    eprintln!(
        "latency {}: server created→completed p50 {:.1} ms p99 {:.1} ms; client POST→seen completed p50 {:.1} ms p99 {:.1} ms",
        l.name,
        pct(&l.server, 0.5),
        pct(&l.server, 0.99),
        pct(&l.client, 0.5),
        pct(&l.client, 0.99)
    );
    Ok(l)
}

// ---------------------------------------------------------------------------------------------

fn print_table(rows: &[Row], latencies: &[Latency], notes: &[String]) {
    println!();
    println!("| run | jobs | seconds | jobs/s | notes |");
    println!("|---|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} | {:.0} | {} |",
            r.what,
            r.jobs,
            r.seconds,
            r.jobs as f64 / r.seconds,
            r.note
        );
    }
    println!();
    println!("Throughput is jobs / (first push or POST → last completion).");
    if !latencies.is_empty() {
        println!();
        println!(
            "Latency at low load, one generate-embeddings job at a time (ms; mock-llm answers at once):"
        );
        println!(
            "| backend | jobs | POST→202 p50 | p99 | created_at→completed (server) p50 | p99 | POST→GET sees completed (1 ms polling) p50 | p99 |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for l in latencies {
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
                l.name,
                l.jobs,
                pct(&l.post, 0.5),
                pct(&l.post, 0.99),
                pct(&l.server, 0.5),
                pct(&l.server, 0.99),
                pct(&l.client, 0.5),
                pct(&l.client, 0.99)
            );
        }
    }
    // Targets of the issue.
    let rate = |prefix: &str| {
        rows.iter()
            .filter(|r| r.what.starts_with(prefix))
            .map(|r| r.jobs as f64 / r.seconds)
            .fold(f64::NAN, f64::max)
    };
    let palaver = rate("no-op, Palaver");
    let bullmq = rate("no-op, BullMQ");
    let e2e = rate("generate-embeddings e2e");
    println!();
    println!("Targets:");
    if !bullmq.is_nan() {
        println!(
            "  Palaver queue no-op ≥ BullMQ no-op: best {palaver:.0} vs {bullmq:.0} jobs/s — {}",
            if palaver >= bullmq { "met" } else { "NOT met" }
        );
    }
    println!(
        "  ≥ 2,000 generate-embeddings jobs/s end to end: best {e2e:.0} jobs/s — {}",
        if e2e >= 2000.0 { "met" } else { "NOT met" }
    );
    for n in notes {
        println!("  note: {n}");
    }
}
