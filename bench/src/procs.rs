//! Child processes (release builds of palaver and mock-llm) and their set-up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

/// A child process killed on drop.
pub struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// The directory of this executable: palaver and mock-llm are built beside it.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no parent directory")?.to_path_buf();
    for bin in ["palaver", "mock-llm"] {
        if !dir.join(bin).exists() {
            bail!(
                "{} is missing: run `cargo build --release -p palaver -p mock-llm -p palaver-bench`",
                dir.join(bin).display()
            );
        }
    }
    Ok(dir)
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_http(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(url).send().await
            && r.status().as_u16() < 500
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not answer")
}

impl Child {
    pub fn pid(&self) -> Option<u32> {
        self.0.id()
    }
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS")?
        .parse()?)
}

pub async fn spawn_mock(bin: &Path, port: u16) -> anyhow::Result<Child> {
    spawn_mock_with(bin, port, &[]).await
}

pub async fn spawn_mock_with(bin: &Path, port: u16, extra: &[&str]) -> anyhow::Result<Child> {
    let child = tokio::process::Command::new(bin.join("mock-llm"))
        .args(["--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    wait_http(&format!("http://127.0.0.1:{port}/__mock/stats")).await?;
    Ok(Child(child))
}

pub async fn spawn_palaver(
    bin: &Path,
    port: u16,
    database_url: &str,
    openai_base: &str,
    data_dir: &Path,
    secret: &str,
) -> anyhow::Result<Child> {
    spawn_palaver_with(bin, port, database_url, openai_base, data_dir, secret, &[]).await
}

/// [`spawn_palaver`] with more environment (`extra` overrides the defaults, e.g.
/// `WORKER_CONCURRENCY`, which is 0 otherwise).
pub async fn spawn_palaver_with(
    bin: &Path,
    port: u16,
    database_url: &str,
    openai_base: &str,
    data_dir: &Path,
    secret: &str,
    extra: &[(&str, String)],
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(data_dir)?;
    let child = tokio::process::Command::new(bin.join("palaver"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .env("PALAVER_DATA_DIR", data_dir)
        .env("JWT_SECRET", secret)
        .env("OPENAI_API_KEY", "sk-bench")
        .env("OPENAI_BASE_URL", openai_base)
        .env("RATE_LIMIT_PER_MINUTE", "1000000")
        .env("WORKER_CONCURRENCY", "0")
        .env("RUST_LOG", "warn")
        // Passed through for A/B runs of the checkpoint interval (`RUN_CHECKPOINT_MS=0`).
        .envs(std::env::vars().filter(|(k, _)| k == "RUN_CHECKPOINT_MS"))
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    wait_http(&format!("http://127.0.0.1:{port}/health")).await?;
    Ok(Child(child))
}

/// Palaver on a free port, with an upstream address that is never called (for benchmarks of
/// endpoints that make no chat); returns the port and the process.
pub async fn spawn_palaver_offline(
    bin: &Path,
    database_url: &str,
    data_dir: &Path,
    secret: &str,
) -> anyhow::Result<(u16, Child)> {
    let port = free_port()?;
    let child = spawn_palaver(
        bin,
        port,
        database_url,
        "http://127.0.0.1:9/v1",
        data_dir,
        secret,
    )
    .await?;
    Ok((port, child))
}

/// Drops and recreates `name` on the server of `admin_url`; returns the new database's URL.
pub async fn fresh_pg_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let status = tokio::process::Command::new("psql")
        .arg(admin_url)
        .args([
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .await
        .context("running psql")?;
    anyhow::ensure!(status.success(), "psql failed");
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}
