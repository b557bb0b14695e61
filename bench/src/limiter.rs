//! `palaver-bench limiter`: the cost of one rate-limit decision, in-process and on Redis.
//!
//! In-process: many decisions over a spread of user keys on one and on all cores (the
//! limiter is sharded; contention shows as a higher per-decision cost). Redis: sequential
//! decisions (one round trip each; compared with a bare `PING` round trip on the same
//! connection) and concurrent throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palaver::limits::{LocalGcra, Rate, RedisGcra};

pub async fn run(decisions: usize, redis: Option<String>) -> anyhow::Result<()> {
    // A rate no user of the benchmark reaches, so every decision is a full "allowed" path.
    let rate = Rate {
        limit: 1_000_000,
        period: Duration::from_secs(60),
    };
    let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();

    in_process_one_thread(rate, &keys, decisions);
    in_process_all_threads(rate, &keys, decisions)?;

    let Some(url) = redis else {
        println!("redis: skipped (pass --redis redis://127.0.0.1:6379)");
        return Ok(());
    };
    let (limiter, n) = redis_sequential(&url, rate, &keys, decisions).await?;
    redis_concurrent(limiter, &keys, n).await
}

fn in_process_one_thread(rate: Rate, keys: &[String], decisions: usize) {
    let local = LocalGcra::new(rate);
    let started = Instant::now();
    for i in 0..decisions {
        std::hint::black_box(local.check(&keys[i % keys.len()], true));
    }
    let per = started.elapsed() / decisions as u32;
    println!(
        "in-process, 1 thread:   {:>8.3} µs per decision ({decisions} decisions)",
        per.as_secs_f64() * 1e6
    );
}

fn in_process_all_threads(rate: Rate, keys: &[String], decisions: usize) -> anyhow::Result<()> {
    let local = Arc::new(LocalGcra::new(rate));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let local = local.clone();
            let keys = keys.to_vec();
            std::thread::spawn(move || {
                for i in 0..decisions / threads {
                    std::hint::black_box(local.check(&keys[(i * 7 + t) % keys.len()], true));
                }
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("bench thread panicked"))?;
    }
    let elapsed = started.elapsed();
    println!(
        "in-process, {threads} threads:  {:>8.3} µs per decision per thread, {:.0} decisions/s in total",
        elapsed.as_secs_f64() * 1e6 / (decisions / threads) as f64,
        decisions as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// One decision at a time (one round trip each), beside a bare `PING` round trip; returns
/// the limiter and the number of decisions each Redis run makes.
async fn redis_sequential(
    url: &str,
    rate: Rate,
    keys: &[String],
    decisions: usize,
) -> anyhow::Result<(Arc<RedisGcra>, usize)> {
    let prefix = format!("bench:{}", std::process::id());
    let limiter = Arc::new(RedisGcra::connect(url, rate, &prefix).await?);
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let n = decisions.min(20_000);
    for i in 0..1000 {
        limiter.check(&keys[i % keys.len()], true).await?;
    }
    let started = Instant::now();
    for _ in 0..n {
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    }
    let ping = started.elapsed() / n as u32;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        std::hint::black_box(limiter.check(&keys[i % keys.len()], true).await?);
        samples.push(t.elapsed());
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    println!(
        "redis, sequential:      {:>8.1} µs mean, p50 {:.1} µs, p99 {:.1} µs per decision (bare PING round trip: {:.1} µs)",
        mean.as_secs_f64() * 1e6,
        samples[n / 2].as_secs_f64() * 1e6,
        samples[n * 99 / 100].as_secs_f64() * 1e6,
        ping.as_secs_f64() * 1e6
    );
    Ok((limiter, n))
}

#[expect(
    clippy::disallowed_methods,
    reason = "load generator: every task is awaited before the function returns"
)]
async fn redis_concurrent(
    limiter: Arc<RedisGcra>,
    keys: &[String],
    n: usize,
) -> anyhow::Result<()> {
    let concurrency = 64;
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let limiter = limiter.clone();
            let keys = keys.to_vec();
            tokio::spawn(async move {
                for i in 0..n / concurrency {
                    limiter
                        .check(&keys[(i * 13 + t) % keys.len()], true)
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    println!(
        "redis, {concurrency} concurrent:  {:.0} decisions/s",
        (n / concurrency * concurrency) as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}
