//! 1. No-op jobs through Palaver's queue: apalis-redis with Palaver's settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apalis::prelude::{
    BackendExt, BoxDynError, Data, TaskSink, WorkerBuilder, WorkerBuilderExt, WorkerError,
};
use apalis_redis::RedisStorage;
use palaver::jobs::Envelope;
use palaver::jobs::bench_support;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{BULK, IN_FLIGHT, Row};

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Push {
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

type Worker = JoinHandle<Result<(), WorkerError>>;

pub(super) async fn apalis_noop(
    redis: &str,
    n: usize,
    concurrency: usize,
    push: Push,
) -> anyhow::Result<Row> {
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
    let worker = start_worker(&storage, &queue, concurrency, &progress, &pushed, &stop);
    // Let the worker register and go idle, as a running Palaver's worker is.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let envelopes: Vec<Envelope> = (0..n)
        .map(|_| Envelope {
            job_id: Uuid::now_v7(),
            attempt: 1,
        })
        .collect();
    let start = Instant::now();
    push_envelopes(&storage, envelopes, push, &pushed).await?;
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
    Ok(noop_row(n, concurrency, push, pushed, handled, drained))
}

#[expect(
    clippy::disallowed_methods,
    reason = "the benchmark's own worker: joined through its handle when the run stops it"
)]
fn start_worker(
    storage: &RedisStorage<Envelope>,
    queue: &str,
    concurrency: usize,
    progress: &Arc<Progress>,
    pushed: &Arc<bench_support::Pushed>,
    stop: &Arc<Notify>,
) -> Worker {
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
}

async fn push_envelopes(
    storage: &RedisStorage<Envelope>,
    envelopes: Vec<Envelope>,
    push: Push,
    pushed: &Arc<bench_support::Pushed>,
) -> anyhow::Result<()> {
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
            let n = envelopes.len();
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
    Ok(())
}

fn noop_row(
    n: usize,
    concurrency: usize,
    push: Push,
    pushed: f64,
    handled: f64,
    drained: f64,
) -> Row {
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
    row
}

/// Deletes every key of the queue `prefix` (apalis-redis names them all `<queue>:...`).
pub(super) async fn delete_keys(redis: &str, prefix: &str) -> anyhow::Result<()> {
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
