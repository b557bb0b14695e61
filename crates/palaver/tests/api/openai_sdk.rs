//! The official OpenAI SDKs (the `openai` npm package and Python package, pinned in
//! `tests/openai/`) drive `/v1` on the real server: models, a plain and a streamed chat
//! with `include_usage`, base64 embeddings (both SDKs' default), an API key minted through
//! `/api/v1/ai/keys`, and errors raised as the SDKs' own exception types.
//!
//! `.ci/run` installs them (`npm ci` in `tests/openai`; a venv at `target/openai-venv` with
//! `pip install -r tests/openai/requirements.txt`). Without them the tests are skipped, except
//! with `PALAVER_REQUIRE_NODE=1` / `PALAVER_REQUIRE_PYTHON=1` (CI), where that is a failure.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::app::TestApp;
use crate::support::db::backends;
use crate::v1::spawn;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai")
}

/// The venv's Python (`PALAVER_OPENAI_VENV`, default `target/openai-venv` of the workspace).
fn python() -> PathBuf {
    let venv = std::env::var_os("PALAVER_OPENAI_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/openai-venv"),
        PathBuf::from,
    );
    venv.join("bin/python")
}

fn required(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// The command that runs one SDK's script, or `None` (a visible skip) when it is not installed.
fn sdk_command(sdk: &str) -> Option<Command> {
    let (installed, var, program, script, how) = match sdk {
        "node" => (
            dir().join("node_modules/openai/package.json").exists(),
            "PALAVER_REQUIRE_NODE",
            PathBuf::from("node"),
            "sdk.mjs",
            "npm ci in crates/palaver/tests/openai",
        ),
        _ => (
            python().exists(),
            "PALAVER_REQUIRE_PYTHON",
            python(),
            "sdk.py",
            "python3 -m venv target/openai-venv && target/openai-venv/bin/pip install -r crates/palaver/tests/openai/requirements.txt",
        ),
    };
    if !installed {
        assert!(
            !required(var),
            "{var}=1 but the {sdk} openai SDK is not installed: {how}"
        );
        crate::support::skip(&format!("no {sdk} openai SDK ({how}; {var} unset)"));
        return None;
    }
    let mut command = Command::new(program);
    command.arg(script).current_dir(dir()).kill_on_drop(true);
    Some(command)
}

/// Runs one SDK's script against `app` as `user`; its JSON report.
async fn run_sdk(mut command: Command, app: &TestApp, user: &str) -> Value {
    command
        .env("PALAVER_BASE", &app.base)
        .env("PALAVER_JWT", app.token(user));
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the SDK script finishes within a minute")
        .expect("the SDK script starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(last)
        .unwrap_or_else(|_| panic!("no report; stdout: {stdout}\nstderr: {stderr}"));
    assert!(output.status.success(), "{report}\nstderr: {stderr}");
    report
}

async fn sdks_drive_v1(sdk: &str) {
    for backend in backends() {
        let Some(command) = sdk_command(sdk) else {
            return;
        };
        let (app, _mock) = spawn(backend, &[]).await;
        let user = format!("{sdk}-user");
        let report = run_sdk(command, &app, &user).await;
        let models: Vec<&str> = report["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(
            models.contains(&"gpt-4o-mini") && models.contains(&"claude-3-5-haiku-latest"),
            "{sdk} {backend}: {models:?}"
        );
        let plain = report["plain"].as_str().unwrap();
        assert!(plain.contains("three colours"), "mock-llm echoes: {report}");
        assert_eq!(report["plain_finish"], "stop");
        assert_eq!(
            report["streamed"], plain,
            "{sdk} {backend}: streamed as plain"
        );
        assert_eq!(report["stream_finish"], "stop");
        assert_eq!(report["stream_usage"], report["plain_usage"], "{report}");
        // The vectors the SDK decoded from base64 are the floats Palaver answers.
        let token = app.token(&user);
        let floats = app
            .request(
                Method::POST,
                "/v1/embeddings",
                Some(&token),
                Some(json!({"model": "text-embedding-3-small", "input": ["hello world", "bye"]})),
            )
            .await;
        // The SDK's floats are the f32s widened to f64: compared as f32, they are equal.
        let as_f32 = |v: &Value| -> Vec<Vec<f32>> { serde_json::from_value(v.clone()).unwrap() };
        let expected: Vec<Value> = floats.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["embedding"].clone())
            .collect();
        let (expected, decoded) = (as_f32(&json!(expected)), as_f32(&report["embeddings"]));
        assert_eq!(decoded.len(), 2, "{sdk} {backend}");
        assert_eq!(
            report["embedding_format_sent"], "base64",
            "the SDKs' default"
        );
        assert!(
            decoded == expected,
            "{sdk} {backend}: the decoded vectors differ"
        );
        assert_eq!(report["not_found"], "NotFoundError:model_not_found");
        assert_eq!(report["auth_error"], "AuthenticationError:invalid_api_key");
        assert_eq!(report["bad_request"], "BadRequestError:messages");
        // The minted key is the user, and the plain chat names its end user.
        let keys = app
            .request(Method::GET, "/api/v1/ai/keys", Some(&token), None)
            .await;
        assert_eq!(keys.body["data"].as_array().unwrap().len(), 1, "{sdk}");
        let stats = app
            .request(Method::GET, "/api/v1/ai/usage", Some(&token), None)
            .await;
        assert_eq!(stats.body["requests"], 5, "{sdk} {backend}: {}", stats.body);
    }
}

#[tokio::test]
async fn the_openai_npm_package_drives_v1() {
    sdks_drive_v1("node").await;
}

#[tokio::test]
async fn the_openai_python_package_drives_v1() {
    sdks_drive_v1("python").await;
}
