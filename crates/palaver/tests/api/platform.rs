//! Health, readiness, docs, metrics, request ids, CORS and shutdown.

use reqwest::Method;

use crate::support::app::TestApp;
use crate::support::db::{Backend, backends};

#[tokio::test]
async fn health_and_ready_on_every_backend() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let health = app.request(Method::GET, "/health", None, None).await;
        assert_eq!(health.status, 200);
        assert_eq!(health.body["status"], "ok");
        let ready = app.request(Method::GET, "/ready", None, None).await;
        assert_eq!(ready.status, 200, "{backend:?}: {}", ready.body);
        assert_eq!(ready.body["database"], "ok");
        assert_eq!(
            ready.body["backend"],
            match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            }
        );
    }
}

#[tokio::test]
async fn docs_page_and_openapi_document() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = app
        .client
        .get(format!("{}/api-docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("SwaggerUIBundle") && html.contains("api-docs/swagger-ui-bundle.js"));
    let bundle = app
        .client
        .get(format!("{}/api-docs/swagger-ui-bundle.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(
        bundle.bytes().await.unwrap().len() > 500_000,
        "the vendored bundle is served whole"
    );
    let css = app
        .client
        .get(format!("{}/api-docs/swagger-ui.css", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);

    let doc = app
        .request(Method::GET, "/api-docs/openapi.json", None, None)
        .await
        .body;
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/ai/conversations",
        "/api/v1/ai/conversations/{id}",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(
        doc["paths"]["/health"]["get"]["security"],
        serde_json::json!([{}]),
        "public routes opt out"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn committed_openapi_matches_the_code() {
    let committed = include_str!("../../openapi.json");
    let generated = palaver::api::openapi().to_pretty_json().unwrap();
    assert_eq!(
        committed.trim(),
        generated.trim(),
        "crates/palaver/openapi.json is stale: run `cargo run -p palaver -- openapi > crates/palaver/openapi.json`"
    );
}

#[tokio::test]
async fn unknown_routes_request_ids_and_metrics() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let missing = app.request(Method::GET, "/nope", None, None).await;
    missing.assert_error(404, "not_found");
    assert_eq!(missing.body["path"], "/nope");
    let id = missing
        .headers
        .get("x-request-id")
        .expect("a request id on every response")
        .to_str()
        .unwrap();
    uuid::Uuid::parse_str(id).unwrap();

    let given = app
        .client
        .get(format!("{}/health", app.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");

    app.list_conversations("mia", "").await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(
        metrics.contains("route=\"/api/v1/ai/conversations\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn cors_allows_the_configured_origin_only() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(
                Method::OPTIONS,
                format!("{}/api/v1/ai/conversations", app.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("http://localhost:5173").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let other = preflight("http://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn embedded_mode_generates_and_keeps_a_jwt_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (first, created) = palaver::server::embedded_jwt_secret(dir.path()).unwrap();
    assert!(created);
    let (second, created_again) = palaver::server::embedded_jwt_secret(dir.path()).unwrap();
    assert!(!created_again);
    use secrecy::ExposeSecret;
    assert_eq!(first.expose_secret(), second.expose_secret());
    assert!(first.expose_secret().len() >= 40);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("jwt-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// `LOG_FORMAT=json`: every log line is one JSON object (the binary logs to stderr).
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palaver"))
        .arg("migrate")
        .env_clear()
        .env("PALAVER_DATA_DIR", dir.path())
        .env("LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "migrations applied"),
        "{stderr}"
    );
}
