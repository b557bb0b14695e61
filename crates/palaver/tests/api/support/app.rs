//! `TestApp`: the real server on a random port over a fresh database, with one helper per endpoint.

use std::time::Duration;

use palaver::{Application, Config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::db::{Backend, TestDb};

pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub state: palaver::state::AppState,
    pub db: TestDb,
    _data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, &[]).await
    }

    /// Spawns with extra environment variables on top of the test defaults.
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
        let db = TestDb::new(backend).await;
        let data_dir = tempfile::tempdir().unwrap();
        let (base, state, shutdown, server) = serve(&db, data_dir.path(), extra).await;
        TestApp {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            backend,
            state,
            db,
            _data_dir: data_dir,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Stops the server and starts a new one on the same database and data directory
    /// (what a restart of the process does), with `extra` on top of the test defaults.
    pub async fn restart_with(&mut self, extra: &[(&str, &str)]) {
        self.halt().await;
        let (base, state, shutdown, server) = serve(&self.db, self._data_dir.path(), extra).await;
        self.base = base;
        self.state = state;
        self.shutdown = Some(shutdown);
        self.server = Some(server);
    }

    /// A second instance on the same database as `other` (scale-out tests), with its own
    /// data directory and `extra` on top of the test defaults.
    pub async fn spawn_with_db(other: &TestApp, extra: &[(&str, &str)]) -> TestApp {
        let db = other.db.share();
        let data_dir = tempfile::tempdir().unwrap();
        let (base, state, shutdown, server) = serve(&db, data_dir.path(), extra).await;
        TestApp {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            backend: other.backend,
            state,
            db,
            _data_dir: data_dir,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// The data directory (`PALAVER_DATA_DIR`), to share with a `palaver worker` process.
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    /// Signals shutdown and waits for the server to stop; the database stays.
    async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Signals shutdown and waits for the server to finish in-flight requests.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    pub fn token(&self, sub: &str) -> String {
        palaver::auth::mint_hs256(
            SECRET.as_bytes(),
            sub,
            Duration::from_secs(3600),
            None,
            None,
        )
        .unwrap()
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        TestResponse::from(req.send().await.unwrap()).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> TestResponse {
        TestResponse::from(req.send().await.unwrap()).await
    }

    pub async fn create_conversation(&self, user: &str, body: Value) -> TestResponse {
        self.request(
            Method::POST,
            "/api/v1/ai/conversations",
            Some(&self.token(user)),
            Some(body),
        )
        .await
    }

    pub async fn list_conversations(&self, user: &str, query: &str) -> TestResponse {
        self.request(
            Method::GET,
            &format!("/api/v1/ai/conversations{query}"),
            Some(&self.token(user)),
            None,
        )
        .await
    }

    pub async fn get_conversation(&self, user: &str, id: &str) -> TestResponse {
        self.request(
            Method::GET,
            &format!("/api/v1/ai/conversations/{id}"),
            Some(&self.token(user)),
            None,
        )
        .await
    }

    pub async fn delete_conversation(&self, user: &str, id: &str) -> TestResponse {
        self.request(
            Method::DELETE,
            &format!("/api/v1/ai/conversations/{id}"),
            Some(&self.token(user)),
            None,
        )
        .await
    }

    pub async fn chat(&self, user: &str, body: Value) -> TestResponse {
        self.request(
            Method::POST,
            "/api/v1/ai/chat",
            Some(&self.token(user)),
            Some(body),
        )
        .await
    }
}

type Server = tokio::task::JoinHandle<std::io::Result<()>>;

/// Builds and serves the application on `db` and `data_dir` (port 0).
async fn serve(
    db: &TestDb,
    data_dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> (
    String,
    palaver::state::AppState,
    oneshot::Sender<()>,
    Server,
) {
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url()),
        ("PALAVER_DATA_DIR".into(), data_dir.display().to_string()),
        ("JWT_SECRET".into(), SECRET.into()),
        ("JWT_LEEWAY_SECS".into(), "0".into()),
        // Many servers run at once in a test run: stay well under PostgreSQL's 100 connections.
        ("DATABASE_POOL_SIZE".into(), "4".into()),
        // A title job after every first exchange would add upstream calls, usage records,
        // jobs and events to tests that count them: the title tests turn it on.
        ("AUTO_TITLE".into(), "false".into()),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        if !v.is_empty() {
            vars.push((k.to_string(), v.to_string()));
        }
    }
    let config = Config::from_vars(vars).expect("test config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::with_listener(config, listener)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    #[expect(
        clippy::disallowed_methods,
        reason = "the test server's handle is kept in TestApp, which stops it on drop"
    )]
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    (base, state, tx, server)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestResponse {
    async fn from(response: reqwest::Response) -> TestResponse {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// Asserts the API.md error shape and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["statusCode"], status, "body: {}", self.body);
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        for field in ["timestamp", "path", "method", "message"] {
            assert!(
                self.body[field].is_string(),
                "error body lacks `{field}`: {}",
                self.body
            );
        }
    }
}
