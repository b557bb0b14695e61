//! Housekeeping beside the workers: finished jobs older than `JOB_RETENTION_DAYS` and usage
//! records older than `USAGE_RETENTION_DAYS` are deleted, hourly, in batches (every process
//! does it; deleting the oldest rows is idempotent). Usage totals and quotas read the rollup,
//! which keeps what pruned records counted. Runs whose producer died (their lease expired)
//! are marked `interrupted`, every half lease.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::runner::RunError;
use crate::state::AppState;
use crate::store::{self, StoreError};

/// How often finished jobs and old usage records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per statement, so that one sweep never holds the writer for long.
const BATCH: u32 = 1_000;

/// Deletes, here and now, the completed and failed jobs that finished more than
/// `JOB_RETENTION_DAYS` ago; returns how many.
pub async fn prune_finished(state: &AppState) -> Result<u64, RunError> {
    let retention = chrono::Duration::from_std(state.config.jobs.retention).unwrap_or_default();
    let before = store::now() - retention;
    let mut pruned = 0;
    loop {
        let deleted = state.jobs.store().prune_finished(before, BATCH).await?;
        pruned += deleted;
        if deleted < u64::from(BATCH) {
            return Ok(pruned);
        }
        tokio::task::yield_now().await;
    }
}

/// Deletes, here and now, the usage records created more than `USAGE_RETENTION_DAYS` ago;
/// returns how many. What they counted stays in the rollup: `/ai/usage` does not change.
pub async fn prune_usage(state: &AppState) -> Result<u64, StoreError> {
    let retention = chrono::Duration::from_std(state.config.usage_retention).unwrap_or_default();
    let before = store::now() - retention;
    let mut pruned = 0;
    loop {
        let deleted = state.store.prune_usage(before, BATCH).await?;
        pruned += deleted;
        if deleted < u64::from(BATCH) {
            return Ok(pruned);
        }
        tokio::task::yield_now().await;
    }
}

/// Prunes every [`PRUNE_EVERY`] until `stop` (the first time one period after start, so
/// that a fleet restarting together does not sweep all at once).
pub(super) async fn sweep(state: AppState, stop: CancellationToken) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                match prune_finished(&state).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "jobs: finished jobs past their retention deleted"),
                    Err(err) => tracing::warn!(error = %err, "jobs: could not prune finished jobs"),
                }
                match prune_usage(&state).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "usage: records past their retention deleted"),
                    Err(err) => tracing::warn!(error = %err, "usage: could not prune old records"),
                }
            }
        }
    }
}

/// Marks the runs whose lease expired `interrupted`, every half `RUN_LEASE_SECS`, until
/// `stop` (every process does it; the store marks each run once).
pub(super) async fn sweep_runs(state: AppState, stop: CancellationToken) {
    let period = (state.config.run_lease / 2).max(Duration::from_millis(500));
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => match state.runs.interrupt_expired().await {
                Ok(0) => {}
                Ok(runs) => tracing::warn!(runs, "runs: producers gone (lease expired): marked interrupted"),
                Err(err) => tracing::warn!(error = %err, "runs: could not sweep expired leases"),
            },
        }
    }
}
