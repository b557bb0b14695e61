//! 2. No-op jobs through BullMQ (`bench/bullmq/bullmq-noop.js`, run with node).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use super::{BULK, IN_FLIGHT, Row};

fn bullmq_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bullmq")
}

pub(super) async fn bullmq_noop(
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
