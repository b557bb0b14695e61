//! The workers of a process: one apalis worker running up to `WORKER_CONCURRENCY` attempts
//! at once (restarted if its backend fails), and a sweeper for stranded jobs. They run inside
//! `palaver serve`, or alone as `palaver worker`.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{
    BackendExt, BoxDynError, Data, PollSnapshot, PollStrategy, WorkerBuilder, WorkerBuilderExt,
    WorkerError,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::queue::{Envelope, JobQueue, Pushed, Storage};
use super::runner::Runner;
use crate::gateway::{self, GatewayError};
use crate::state::AppState;

/// How often an idle worker asks the queue for work.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often the sweeper looks for stranded jobs, and how old they must be.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const STRANDED_AFTER: Duration = Duration::from_secs(5 * 60);
/// How often handled deliveries leave the embedded queue. The `jobs` table holds each job's
/// state; a handled delivery is dead weight, and apalis-sqlite's ack scans every delivery its
/// worker ever locked (its plan searches by `lock_by`, which stays set, and extracts JSON per
/// row): kept for a day, each ack cost more as the day went on. Pruned every second,
/// palaver-bench's 3,000 embeddings jobs ran at 624/s instead of 497/s.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Running workers; [`Workers::shutdown`] stops them.
pub struct Workers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Workers {
    /// Stops taking jobs at once (the token may also be cancelled by the caller).
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops taking jobs, lets active ones finish for up to `grace`, then drops the rest: their
    /// leases expire and apalis hands them to a live worker.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "jobs: active jobs did not finish in time: they will run again on another worker"
            );
            self.tasks.abort_all();
        }
    }
}

/// Starts this process's workers (none with `WORKER_CONCURRENCY=0`).
pub fn start_workers(state: &AppState) -> Workers {
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let concurrency = state.jobs.inner.concurrency;
    if concurrency > 0 {
        let runner = Runner::new(state.clone());
        let queue = state.jobs.inner.queue.clone();
        tasks.spawn(supervise(queue, runner.clone(), concurrency, stop.clone()));
        tasks.spawn(sweep(runner, stop.clone()));
        tracing::info!(
            concurrency,
            backend = state.jobs.backend(),
            "jobs: workers started"
        );
    }
    Workers { stop, tasks }
}

/// `palaver worker`: workers only, until `shutdown`, then a bounded drain. Job events reach
/// users through the gateway's adapter (with Redis, on whichever instance they are connected).
pub async fn run_standalone<F>(state: AppState, shutdown: F) -> Result<(), GatewayError>
where
    F: Future<Output = ()>,
{
    let (_, broadcaster) = gateway::attach(axum::Router::new(), &state).await?;
    let _ = state.broadcaster.set(broadcaster);
    let workers = start_workers(&state);
    shutdown.await;
    workers.shutdown(state.config.shutdown_grace).await;
    Ok(())
}

/// Runs the apalis worker until `stop`, restarting it (under a new name) if its backend fails.
async fn supervise(queue: JobQueue, runner: Runner, concurrency: usize, stop: CancellationToken) {
    loop {
        let name = worker_name();
        let signal = {
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                Ok::<(), WorkerError>(())
            }
        };
        let result = match queue.storage() {
            Storage::Sqlite(storage, _) => {
                WorkerBuilder::new(name.as_str())
                    .backend(
                        storage
                            .clone()
                            .poll_with_strategy(Wakeups::new(queue.pushed())),
                    )
                    .concurrency(concurrency)
                    .data(runner.clone())
                    .build(handle)
                    .run_until(signal)
                    .await
            }
            Storage::Redis(storage) => {
                WorkerBuilder::new(name.as_str())
                    .backend(
                        storage
                            .clone()
                            .poll_with_strategy(Wakeups::new(queue.pushed())),
                    )
                    .concurrency(concurrency)
                    .data(runner.clone())
                    .build(handle)
                    .run_until(signal)
                    .await
            }
        };
        if stop.is_cancelled() {
            return;
        }
        match result {
            Ok(()) => tracing::warn!(worker = name, "jobs: worker stopped; restarting"),
            Err(err) => {
                tracing::error!(worker = name, error = %err, "jobs: worker failed; restarting")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// When an idle worker asks the queue for work again: every [`POLL_EVERY`] (for envelopes
/// queued by other processes, and delayed ones), and at once when this process queues one.
///
/// apalis' own `poll_with_interval` re-arms its timer without registering a waker, so after
/// an idle tick nothing woke the worker before its next heartbeat (seconds later).
pub struct Wakeups {
    tick: tokio::time::Interval,
    pushed: Arc<Pushed>,
}

impl Wakeups {
    pub fn new(pushed: Arc<Pushed>) -> Wakeups {
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Wakeups { tick, pushed }
    }
}

impl PollStrategy for Wakeups {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        // Both sources are polled until pending, so that both wake this task next time.
        let mut ready = self.pushed.take(cx);
        while self.tick.poll_tick(cx).is_ready() {
            ready = true;
        }
        if ready {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

/// The apalis handler: one delivered attempt.
async fn handle(envelope: Envelope, runner: Data<Runner>) -> Result<(), BoxDynError> {
    runner
        .run(envelope)
        .await
        .map_err(|e| Box::new(e) as BoxDynError)
}

/// Every [`SWEEP_EVERY`], queues again the jobs nobody has looked after for [`STRANDED_AFTER`];
/// every [`PRUNE_EVERY`], drops the queue's record of handled deliveries.
async fn sweep(runner: Runner, stop: CancellationToken) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rescue = tokio::time::interval(SWEEP_EVERY);
    rescue.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescue.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = prune.tick() => match runner.prune_queue(Duration::ZERO).await {
                Ok(0) => {}
                Ok(pruned) => tracing::trace!(pruned, "jobs: pruned handled deliveries"),
                Err(err) => tracing::warn!(error = %err, "jobs: could not prune the queue"),
            },
            _ = rescue.tick() => match runner.rescue_stranded(STRANDED_AFTER).await {
                Ok(0) => {}
                Ok(queued) => tracing::warn!(queued, "jobs: queued stranded jobs again"),
                Err(err) => tracing::warn!(error = %err, "jobs: could not look for stranded jobs"),
            },
        }
    }
}

/// Unique per run: apalis refuses a name that a live worker holds.
fn worker_name() -> String {
    let random = Uuid::now_v7().simple().to_string();
    format!("palaver-{}-{}", std::process::id(), &random[20..])
}
