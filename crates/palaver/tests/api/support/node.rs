//! The real `socket.io-client` (npm), driven through `tests/socketio/driver.js`.
//!
//! `npm ci` in `crates/palaver/tests/socketio` installs it (`.ci/run` does). Without Node or
//! the packages these tests are skipped, except with `PALAVER_REQUIRE_NODE=1` (CI), where
//! that is a failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct SocketDriver {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Lines read but not yet taken by a test.
    pending: Vec<Value>,
    seq: u64,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio")
}

impl SocketDriver {
    /// Starts the driver, or `None` (skipping) when Node or its packages are missing.
    pub async fn start() -> Option<SocketDriver> {
        let required = std::env::var("PALAVER_REQUIRE_NODE").as_deref() == Ok("1");
        let installed = dir().join("node_modules/socket.io-client").exists();
        if !installed {
            assert!(
                !required,
                "PALAVER_REQUIRE_NODE=1 but tests/socketio has no node_modules: run `npm ci` there"
            );
            super::skip(
                "no socket.io-client (npm ci in crates/palaver/tests/socketio; PALAVER_REQUIRE_NODE unset)",
            );
            return None;
        }
        let spawned = Command::new("node")
            .arg("driver.js")
            .current_dir(dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    !required,
                    "PALAVER_REQUIRE_NODE=1 but node cannot start: {e}"
                );
                super::skip(&format!("no Node ({e}; PALAVER_REQUIRE_NODE unset)"));
                return None;
            }
        };
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut driver = SocketDriver {
            child,
            stdin,
            lines,
            pending: Vec::new(),
            seq: 0,
        };
        driver.wait(|v| v["kind"] == "ready").await;
        Some(driver)
    }

    async fn send(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Opens a connection `id` to namespace `/ai` of `base`; `token: None` sends no `auth`.
    pub async fn open(&mut self, id: &str, base: &str, token: Option<&str>) {
        self.send(json!({"cmd": "connect", "id": id, "url": format!("{base}/ai"), "token": token}))
            .await;
    }

    /// Opens a connection and waits until it is accepted.
    pub async fn connect(&mut self, id: &str, base: &str, token: &str) {
        self.open(id, base, Some(token)).await;
        let first = self
            .wait(|v| v["id"] == id && (v["kind"] == "connect" || v["kind"] == "connect_error"))
            .await;
        assert_eq!(first["kind"], "connect", "connection {id} refused: {first}");
    }

    pub async fn emit(&mut self, id: &str, event: &str, data: Value) {
        self.send(json!({"cmd": "emit", "id": id, "event": event, "data": data}))
            .await;
    }

    /// Emits with an acknowledgement and returns its payload.
    pub async fn emit_ack(&mut self, id: &str, event: &str, data: Value) -> Value {
        self.seq += 1;
        let seq = self.seq;
        self.send(
            json!({"cmd": "emit", "id": id, "event": event, "data": data, "ack": true, "seq": seq}),
        )
        .await;
        let ack = self.wait(|v| v["id"] == id && v["seq"] == seq).await;
        assert_eq!(ack["kind"], "ack", "no acknowledgement: {ack}");
        ack["data"].clone()
    }

    /// Emits with an acknowledgement without waiting for it; [`SocketDriver::ack`] takes it.
    pub async fn emit_ack_later(&mut self, id: &str, event: &str, data: Value) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        self.send(
            json!({"cmd": "emit", "id": id, "event": event, "data": data, "ack": true, "seq": seq}),
        )
        .await;
        seq
    }

    /// The acknowledgement of the emit numbered `seq`.
    pub async fn ack(&mut self, seq: u64) -> Value {
        let ack = self.wait(|v| v["seq"] == seq && v["kind"] != "event").await;
        assert_eq!(ack["kind"], "ack", "no acknowledgement: {ack}");
        ack["data"].clone()
    }

    pub async fn disconnect(&mut self, id: &str) {
        self.send(json!({"cmd": "disconnect", "id": id})).await;
    }

    /// The next line (in arrival order) that matches, waiting up to 20 s for it.
    pub async fn wait(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(Duration::from_secs(20), &matches)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "timed out waiting; lines seen but not taken: {:#?}",
                    self.pending
                );
            })
    }

    /// Like `wait`, but `None` after `timeout`.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        matches: &dyn Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.pending.iter().position(matches) {
            return Some(self.pending.remove(i));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Err(_) => return None,
                Ok(line) => line.unwrap().expect("driver exited"),
            };
            let value: Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("driver said: {line}"));
            assert_ne!(value["kind"], "driver_error", "{value}");
            if matches(&value) {
                return Some(value);
            }
            self.pending.push(value);
        }
    }

    /// The next event named `event` on connection `id`; returns its payload.
    pub async fn event(&mut self, id: &str, event: &str) -> Value {
        self.wait(|v| v["id"] == id && v["kind"] == "event" && v["event"] == event)
            .await["data"]
            .clone()
    }

    /// Every event of connection `id` up to and including the first whose name is in `until`.
    pub async fn events_until(&mut self, id: &str, until: &[&str]) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let v = self.wait(|v| v["id"] == id && v["kind"] == "event").await;
            let name = v["event"].as_str().unwrap().to_owned();
            let done = until.contains(&name.as_str());
            seen.push((name, v["data"].clone()));
            if done {
                return seen;
            }
        }
    }
}

impl Drop for SocketDriver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
