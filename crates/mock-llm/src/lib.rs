//! `mock-llm`: a real HTTP server that imitates the OpenAI, Anthropic and Gemini APIs.
//!
//! Integration tests start it in-process on a random port ([`MockLlm::start`]); benchmarks and
//! demos run the `mock-llm` binary. Replies are deterministic (`"Mock reply to: <last user
//! text>"`), streams are split at odd byte boundaries so clients must reassemble SSE frames, and
//! failures can be injected either by queueing [`Fault`]s or with `[[mock:...]]` directives in
//! the last user message:
//!
//! - `[[mock:429]]`, `[[mock:500]]`, `[[mock:503]]` (any status): a provider-shaped error
//!   (429 with `Retry-After: 1`);
//! - `[[mock:hang]]`: accept and never answer;
//! - `[[mock:cut=N]]`: stream N words then drop the connection (plain requests: no response);
//! - `[[mock:words=N]]`: the reply is exactly N words;
//! - `[[mock:delay=MS]]`: wait before answering;
//! - `[[mock:stamp]]`: every word is the time it was written, in µs since the Unix epoch.
//!
//! Admin endpoints (never recorded): `GET /__mock/stats`, `POST /__mock/faults`,
//! `POST /__mock/reset`.

mod admin;
mod chat;
mod embeddings;
mod endpoint;
mod handler;
mod pacer;
mod render;
mod response;
mod stream;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// How the server streams.
#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    /// `None`: stream as fast as possible; `Some(r)`: wait `1/r` seconds between words.
    pub tokens_per_sec: Option<f64>,
    /// Split every SSE event into several body writes at odd byte boundaries (through
    /// multibyte characters and lines), so the client must reassemble. Default `true`.
    pub odd_splits: bool,
    /// Delay before the first byte of every provider response. Default zero.
    pub latency: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            tokens_per_sec: None,
            odd_splits: true,
            latency: Duration::ZERO,
        }
    }
}

/// A failure injected into the next provider request (FIFO, one per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status. `retry_after` adds a `Retry-After` header (seconds); `body` replaces
    /// the default provider-shaped error JSON (which contains `mock-upstream-secret-detail`).
    Status {
        status: u16,
        retry_after: Option<u64>,
        body: Option<String>,
    },
    /// Accept the request and never answer, holding the connection until the client closes.
    Hang,
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Streaming: send this many words, then drop the connection (no finish, no `[DONE]`).
    /// Plain: drop the connection without a response.
    Cut { after_chunks: usize },
}

/// A provider request as the server received it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// The path only, without the query.
    pub path: String,
    pub query: Option<String>,
    /// Header names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// The JSON body; `Null` when empty or not JSON.
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// At most this many requests are kept (the count goes on).
pub const MAX_RECORDED: usize = 1000;

/// The state shared by every connection of one server.
#[derive(Debug)]
pub struct MockState {
    config: MockConfig,
    faults: Mutex<VecDeque<Fault>>,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    request_count: AtomicUsize,
    open_streams: AtomicUsize,
    cancelled_streams: AtomicUsize,
    next_id: AtomicU64,
}

impl MockState {
    pub fn new(config: MockConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            faults: Mutex::new(VecDeque::new()),
            recorded: Mutex::new(VecDeque::new()),
            request_count: AtomicUsize::new(0),
            open_streams: AtomicUsize::new(0),
            cancelled_streams: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn config(&self) -> &MockConfig {
        &self.config
    }

    pub fn push_fault(&self, fault: Fault) {
        self.faults.lock().push_back(fault);
    }

    pub fn faults_queued(&self) -> usize {
        self.faults.lock().len()
    }

    /// The recorded provider requests, oldest first (at most [`MAX_RECORDED`]).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorded.lock().iter().cloned().collect()
    }

    /// Provider requests received since start (or the last clear).
    pub fn request_count(&self) -> usize {
        self.request_count.load(Ordering::SeqCst)
    }

    /// Forgets recorded requests, queued faults and the request and cancellation counts.
    pub fn clear(&self) {
        self.faults.lock().clear();
        let mut recorded = self.recorded.lock();
        recorded.clear();
        self.request_count.store(0, Ordering::SeqCst);
        self.cancelled_streams.store(0, Ordering::SeqCst);
    }

    pub fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::SeqCst)
    }

    pub fn cancelled_streams(&self) -> usize {
        self.cancelled_streams.load(Ordering::SeqCst)
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        let mut recorded = self.recorded.lock();
        if recorded.len() >= MAX_RECORDED {
            recorded.pop_front();
        }
        recorded.push_back(request);
        self.request_count.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn pop_fault(&self) -> Option<Fault> {
        self.faults.lock().pop_front()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn stream_opened(&self) {
        self.open_streams.fetch_add(1, Ordering::SeqCst);
    }

    /// A stream ended; `cancelled` when its client went away first.
    pub(crate) fn stream_closed(&self, cancelled: bool) {
        if cancelled {
            self.cancelled_streams.fetch_add(1, Ordering::SeqCst);
        }
        self.open_streams.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn request_cancelled(&self) {
        self.cancelled_streams.fetch_add(1, Ordering::SeqCst);
    }
}

/// Serves HTTP/1.1 on `listener` until the returned future is dropped; dropping it also closes
/// every open connection.
pub async fn serve(listener: TcpListener, state: Arc<MockState>) -> io::Result<()> {
    let router = handler::router(state);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors or a connection reset before accept: keep serving.
                        tracing::debug!(error = %e, "mock-llm: accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                // Small writes (odd splits, one word per event) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                connections.spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = connection.await {
                        tracing::trace!(error = %e, "mock-llm: connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A running mock server. Stops on [`MockLlm::shutdown`] or drop.
#[derive(Debug)]
pub struct MockLlm {
    addr: SocketAddr,
    state: Arc<MockState>,
    task: Option<JoinHandle<()>>,
}

impl MockLlm {
    /// Binds `127.0.0.1:0` and serves in a background task.
    pub async fn start(config: MockConfig) -> io::Result<MockLlm> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn bind(addr: SocketAddr, config: MockConfig) -> io::Result<MockLlm> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = MockState::new(config);
        let served = state.clone();
        #[expect(
            clippy::disallowed_methods,
            reason = "the server task is owned by MockLlm, which aborts it on shutdown or drop"
        )]
        let task = tokio::spawn(async move {
            if let Err(e) = serve(listener, served).await {
                tracing::warn!(error = %e, "mock-llm stopped");
            }
        });
        Ok(MockLlm {
            addr,
            state,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash or `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }

    /// Queues a fault for the next provider request (FIFO).
    pub fn push_fault(&self, fault: Fault) {
        self.state.push_fault(fault);
    }

    /// Every provider request received, in order (the last [`MAX_RECORDED`]).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    pub fn request_count(&self) -> usize {
        self.state.request_count()
    }

    /// Forgets recorded requests and queued faults.
    pub fn clear(&self) {
        self.state.clear();
    }

    /// Streaming responses being sent right now.
    pub fn open_streams(&self) -> usize {
        self.state.open_streams()
    }

    /// Streams (and hung requests) whose client went away before they finished.
    pub fn cancelled_streams(&self) -> usize {
        self.state.cancelled_streams()
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
