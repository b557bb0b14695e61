//! The workers of a process, running up to `WORKER_CONCURRENCY` attempts at once: on Redis an
//! apalis worker (restarted if its backend fails) and a sweeper for stranded jobs; with the
//! table queue a loop that claims due rows of `jobs` for its free slots. They run inside
//! `palaver serve`, or alone as `palaver worker`.

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

use apalis_redis::RedisStorage;
use tokio::sync::Semaphore;

use super::runner::Runner;
use crate::queue::{Envelope, JobQueue, Pushed, Storage};
use crate::state::AppState;

/// How often an idle worker asks the queue for work.
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often the sweeper looks for stranded jobs, and how old they must be.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const STRANDED_AFTER: Duration = Duration::from_secs(5 * 60);
/// How long the table queue's worker waits after it could not claim (the database is away).
const CLAIM_RETRY: Duration = Duration::from_secs(1);

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
    /// leases expire and a live worker takes them up again.
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
    let concurrency = state.config.jobs.concurrency as usize;
    if concurrency > 0 {
        let runner = Runner::new(state.clone());
        let queue = state.jobs.queue().clone();
        match queue.storage() {
            Storage::Table => {
                tasks.spawn(claim_loop(queue, runner, concurrency, stop.clone()));
            }
            Storage::Redis(storage) => {
                let storage = (**storage).clone();
                tasks.spawn(supervise(
                    storage,
                    queue.pushed(),
                    runner.clone(),
                    concurrency,
                    stop.clone(),
                ));
                tasks.spawn(sweep(runner, stop.clone()));
            }
        }
        tracing::info!(
            concurrency,
            backend = state.jobs.backend(),
            "jobs: workers started"
        );
    }
    tasks.spawn(super::maintenance::sweep(state.clone(), stop.clone()));
    tasks.spawn(super::maintenance::sweep_runs(state.clone(), stop.clone()));
    Workers { stop, tasks }
}

/// The table queue's worker until `stop`: claims as many due jobs as it has free slots, runs
/// each in a task of its own, and claims again at once while claims come back full (a
/// backlog), else when this process queues a job or every [`POLL_EVERY`] (jobs queued by other
/// processes, delayed ones coming due, leases of dead workers expiring). On `stop` it takes
/// nothing more and waits for the running attempts ([`Workers::shutdown`] bounds the wait).
async fn claim_loop(queue: JobQueue, runner: Runner, concurrency: usize, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut running = JoinSet::new();
    let mut wakeups = Wakeups::new(queue.pushed());
    // Claim without waiting for a wake-up: at start, and while claims come back full.
    let mut more = true;
    loop {
        while let Some(ended) = running.try_join_next() {
            log_panic(ended);
        }
        let first = tokio::select! {
            () = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        if !more {
            let wake = tokio::select! {
                () = stop.cancelled() => break,
                wake = wakeups.next() => wake,
            };
            // A tick finds nothing due most of the time: ask with a read, not the write lock.
            if wake == Wake::Tick && !runner.any_due().await.unwrap_or(true) {
                continue;
            }
        }
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let (jobs, token) = match runner.claim_due(permits.len()).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "jobs: could not claim jobs; retrying");
                more = true;
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(CLAIM_RETRY) => continue,
                }
            }
        };
        more = jobs.len() == permits.len();
        for (job, permit) in jobs.into_iter().zip(permits) {
            let (runner, token) = (runner.clone(), token.clone());
            running.spawn(async move {
                let id = job.id;
                if let Err(err) = runner.execute(job, &token).await {
                    // The job stays active under its lease; once that expires it is due again.
                    tracing::error!(job_id = %id, error = %err, "jobs: attempt could not be recorded");
                }
                drop(permit);
            });
        }
    }
    while let Some(ended) = running.join_next().await {
        log_panic(ended);
    }
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(err) = ended
        && err.is_panic()
    {
        tracing::error!(error = %err, "jobs: a worker task panicked");
    }
}

/// Runs the apalis worker on Redis until `stop`, restarting it (under a new name) if its
/// backend fails.
async fn supervise(
    storage: RedisStorage<Envelope>,
    pushed: Arc<Pushed>,
    runner: Runner,
    concurrency: usize,
    stop: CancellationToken,
) {
    loop {
        let name = worker_name();
        let signal = {
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                Ok::<(), WorkerError>(())
            }
        };
        let result = WorkerBuilder::new(name.as_str())
            .backend(
                storage
                    .clone()
                    .poll_with_strategy(Wakeups::new(pushed.clone())),
            )
            .concurrency(concurrency)
            .data(runner.clone())
            .build(handle)
            .run_until(signal)
            .await;
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

/// When an idle worker asks the queue for work again: every [`POLL_EVERY`] (for jobs queued
/// by other processes, and delayed ones), and at once when this process queues one.
///
/// apalis' own `poll_with_interval` re-arms its timer without registering a waker, so after
/// an idle tick nothing woke the worker before its next heartbeat (seconds later).
pub struct Wakeups {
    tick: tokio::time::Interval,
    pushed: Arc<Pushed>,
}

/// Why a worker woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// This process queued a job.
    Pushed,
    Tick,
}

impl Wakeups {
    pub fn new(pushed: Arc<Pushed>) -> Wakeups {
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Wakeups { tick, pushed }
    }

    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Wake> {
        // Both sources are polled until pending, so that both wake this task next time.
        let pushed = self.pushed.take(cx);
        let mut ticked = false;
        while self.tick.poll_tick(cx).is_ready() {
            ticked = true;
        }
        match (pushed, ticked) {
            (true, _) => Poll::Ready(Wake::Pushed),
            (false, true) => Poll::Ready(Wake::Tick),
            (false, false) => Poll::Pending,
        }
    }

    async fn next(&mut self) -> Wake {
        std::future::poll_fn(|cx| self.poll_wake(cx)).await
    }
}

impl PollStrategy for Wakeups {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        self.poll_wake(cx).map(|_| Some(()))
    }
}

/// The apalis handler: one delivered attempt.
async fn handle(envelope: Envelope, runner: Data<Runner>) -> Result<(), BoxDynError> {
    runner
        .run(envelope)
        .await
        .map_err(|e| Box::new(e) as BoxDynError)
}

/// Every [`SWEEP_EVERY`], queues again on Redis the jobs nobody has looked after for
/// [`STRANDED_AFTER`].
async fn sweep(runner: Runner, stop: CancellationToken) {
    let mut rescue = tokio::time::interval(SWEEP_EVERY);
    rescue.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescue.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
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
