//! Background jobs: the `ai-tasks` queue.

use std::time::Duration;

use super::ConfigError;
use super::env::Env;

/// Background jobs (the `ai-tasks` queue).
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs a process runs at once (`WORKER_CONCURRENCY`, default 4; 0 runs no worker).
    pub concurrency: u32,
    /// Delay before the second attempt (`JOB_BACKOFF_MS`, default 5000); doubles per attempt.
    pub backoff: Duration,
    /// Queue name (`JOB_QUEUE`, default `ai-tasks`): the Redis key prefix, or the `queue` of
    /// the `jobs` rows this process serves.
    pub queue: String,
    /// Worker heartbeat (`JOB_HEARTBEAT_SECS`, default 10): a running job's lease is renewed
    /// every half heartbeat and lasts two; once it has expired (its worker died) the job is
    /// due again for a live worker.
    pub heartbeat: Duration,
    /// How long completed and failed jobs are kept (`JOB_RETENTION_DAYS`, default 7).
    pub retention: Duration,
}

/// `WORKER_CONCURRENCY`, `JOB_BACKOFF_MS`, `JOB_QUEUE`, `JOB_HEARTBEAT_SECS`, `JOB_RETENTION_DAYS`.
pub(super) fn jobs_config(env: &Env) -> Result<JobsConfig, ConfigError> {
    let queue = env.get("JOB_QUEUE").unwrap_or("ai-tasks").trim().to_owned();
    if queue.len() > 100
        || !queue
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
    {
        return Err(ConfigError::new(
            "JOB_QUEUE",
            "must be 1 to 100 letters, digits, `-`, `_`, `:` or `.`",
        ));
    }
    Ok(JobsConfig {
        concurrency: env.parse_range(&["WORKER_CONCURRENCY"], 4, 0..=256)?,
        backoff: Duration::from_millis(u64::from(env.parse_range(
            &["JOB_BACKOFF_MS"],
            5_000,
            1..=3_600_000,
        )?)),
        queue,
        heartbeat: Duration::from_secs(u64::from(env.parse_range(
            &["JOB_HEARTBEAT_SECS"],
            10,
            1..=3_600,
        )?)),
        retention: Duration::from_secs(
            86_400 * u64::from(env.parse_range(&["JOB_RETENTION_DAYS"], 7, 1..=36_500)?),
        ),
    })
}
