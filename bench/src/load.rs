//! A closed-loop load generator: `concurrency` workers send requests back to back for a duration.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

pub struct Target {
    pub name: String,
    pub url: String,
    /// The JSON body of a POST; `Value::Null` sends a GET.
    pub body: Value,
    /// `Authorization` header values; worker `i` uses `tokens[i % len]`.
    pub tokens: Vec<String>,
}

impl Target {
    /// One GET of the target with its first token: the JSON body of a success.
    pub async fn get_json(&self) -> anyhow::Result<Value> {
        Ok(reqwest::Client::new()
            .get(&self.url)
            .header("authorization", &self.tokens[0])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

pub struct Report {
    pub name: String,
    pub concurrency: usize,
    pub ok: usize,
    pub errors: usize,
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub async fn run_load(
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()?;
    let body = serde_json::to_vec(&target.body)?;
    // Warm-up: connections, caches, the tokenizer.
    for i in 0..concurrency.min(8) {
        send(&client, target, &body, i)
            .await
            .context("warm-up request failed")?;
    }
    let start = Instant::now();
    let workers = (0..concurrency).map(|i| {
        let client = client.clone();
        let body = body.clone();
        async move {
            let mut latencies = Vec::with_capacity(4096);
            let mut errors = 0usize;
            while start.elapsed() < duration {
                let t = Instant::now();
                match send(&client, target, &body, i).await {
                    Ok(()) => latencies.push(t.elapsed().as_micros() as u32),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }
    });
    let results = futures::future::join_all(workers).await;
    let elapsed = start.elapsed().as_secs_f64();
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    for (l, e) in results {
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| percentile(&all, p);
    let report = Report {
        name: target.name.clone(),
        concurrency,
        ok: all.len(),
        errors,
        rate: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    };
    eprintln!(
        "{} c={}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
        report.name, concurrency, report.rate, report.p50_ms, report.p99_ms, errors
    );
    Ok(report)
}

/// The `p` quantile (0 to 1) of latencies in µs, sorted, in milliseconds (NaN for none).
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

async fn send(
    client: &reqwest::Client,
    target: &Target,
    body: &[u8],
    worker: usize,
) -> anyhow::Result<()> {
    let token = &target.tokens[worker % target.tokens.len()];
    let request = if target.body.is_null() {
        client.get(&target.url)
    } else {
        client
            .post(&target.url)
            .header("content-type", "application/json")
            .body(body.to_vec())
    };
    let response = request.header("authorization", token).send().await?;
    let status = response.status();
    let _ = response.bytes().await?;
    anyhow::ensure!(status.is_success(), "status {status}");
    Ok(())
}
