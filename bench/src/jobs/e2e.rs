//! 3. `generate-embeddings` jobs end to end, and 4. the latency of one job at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::instance::Instance;
use super::{JobsArgs, Row, pct};

fn embedding_body(i: usize) -> Vec<u8> {
    json!({"type": "generate-embeddings", "data": {"text": format!("bench text number {i}, hello there")}})
        .to_string()
        .into_bytes()
}

pub(super) async fn e2e(
    instance: &Instance,
    args: &JobsArgs,
    tokens: &[String],
) -> anyhow::Result<Row> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .tcp_nodelay(true)
        .build()?;
    warm_up(&client, instance, args.clients, tokens).await?;

    let start_wall = SystemTime::now();
    let start = Instant::now();
    let (mut post_ms, errors) = post_all(&client, instance, args, tokens).await;
    let enqueued = start.elapsed().as_secs_f64();
    let accepted = post_ms.len();
    let (completed, failed, polls) = wait_finished(instance, accepted, start).await?;
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

/// One connection per client, and the token cache.
async fn warm_up(
    client: &reqwest::Client,
    instance: &Instance,
    clients: usize,
    tokens: &[String],
) -> anyhow::Result<()> {
    let probe = format!("{}/{}", instance.url, Uuid::nil());
    let warm = (0..clients).map(|i| {
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
    Ok(())
}

/// `args.e2e_jobs` POSTs from `args.clients` clients: each accepted one's latency (ms), and
/// how many were refused.
async fn post_all(
    client: &reqwest::Client,
    instance: &Instance,
    args: &JobsArgs,
    tokens: &[String],
) -> (Vec<f64>, usize) {
    let n = args.e2e_jobs;
    let next = Arc::new(AtomicUsize::new(0));
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
    let mut post_ms = Vec::new();
    let mut errors = 0;
    for (l, e) in results {
        post_ms.extend(l);
        errors += e;
    }
    (post_ms, errors)
}

/// Polls the `jobs` table until the accepted jobs are finished (or 120 s have passed):
/// (completed, failed, polls).
async fn wait_finished(
    instance: &Instance,
    accepted: usize,
    start: Instant,
) -> anyhow::Result<(i64, i64, usize)> {
    let mut polls = 0;
    loop {
        let (completed, failed) = instance.finished("bench-jobs-user-").await?;
        polls += 1;
        if (completed + failed) as usize >= accepted {
            return Ok((completed, failed, polls));
        }
        if start.elapsed() > Duration::from_secs(120) {
            eprintln!(
                "{}: only {completed} of {accepted} jobs completed in 120 s",
                instance.name
            );
            return Ok((completed, failed, polls));
        }
        // The figure comes from the server's timestamps; polling only tells when to read them,
        // and each poll (a count over every job of the run) takes CPU from the run measured.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Latency at low load.

pub(super) struct Latency {
    pub(super) name: String,
    pub(super) jobs: usize,
    /// POST sent → 202 received.
    pub(super) post: Vec<f64>,
    /// The job's `created_at` → `updated_at` once completed (server clock, no polling).
    pub(super) server: Vec<f64>,
    /// POST sent → a `GET` (polled every millisecond) shows it completed.
    pub(super) client: Vec<f64>,
}

pub(super) async fn latency(instance: &Instance, n: usize, token: &str) -> anyhow::Result<Latency> {
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
