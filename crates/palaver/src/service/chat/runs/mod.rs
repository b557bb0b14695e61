//! Runs: every exchange is one, and every event of a run has a sequence number, assigned by
//! its producer alone (no shared counter). A streamed run's events go to an event log
//! ([`RunLog`]: this process's ring, and a Redis stream per run when Redis is configured)
//! that any client can read after a cursor and follow live, on any instance, as well as to
//! the transport that started it.

mod control;
mod log;
mod reader;
mod redis;
mod service;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::value::RawValue;
use uuid::Uuid;

use super::{ChatEvent, ChatFailure, ChatSink};
pub use control::RunControl;
pub use log::{LocalLog, LocalReader, Logged, Read};
pub use reader::RunReader;
pub use redis::{RedisLog, RedisLogError};
pub use service::{RunEvents, RunService, RunSnapshot};

/// The runs' event logs: this process's (which its own readers read), and the shared one on
/// Redis when configured (which readers on other instances read).
pub struct RunLog {
    local: LocalLog,
    shared: Option<RedisLog>,
}

impl RunLog {
    /// This process's log, and the shared one when Redis is configured.
    pub fn new(local: LocalLog, shared: Option<RedisLog>) -> RunLog {
        RunLog { local, shared }
    }

    pub fn local(&self) -> &LocalLog {
        &self.local
    }

    pub fn shared(&self) -> Option<&RedisLog> {
        self.shared.as_ref()
    }

    /// Waits until the events emitted so far are in the shared log.
    pub async fn flush(&self) {
        if let Some(shared) = &self.shared {
            shared.flush().await;
        }
    }
}

/// Which event of which run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub run_id: Uuid,
    pub seq: u64,
}

/// Encodes a pipeline event as its transports send it (the protocol layer's names and
/// payloads, which carry the stamp).
pub trait EventEncoder: Send + Sync + 'static {
    fn encode(&self, stamp: Stamp, event: &ChatEvent<'_>) -> (&'static str, Box<RawValue>);

    /// The error code a failure is reported with (`chat:error`'s `code`).
    fn error_code(&self, failure: &ChatFailure) -> &'static str;

    /// Every name [`EventEncoder::encode`] gives (a log read back names its events by them).
    fn names(&self) -> &'static [&'static str];
}

/// The producer's side of a run: stamps each event, encodes it once, appends it to the log
/// and hands it to the transport that started the run.
pub struct RunRecorder {
    run_id: Uuid,
    seq: AtomicU64,
    log: Arc<RunLog>,
    buffer: Arc<log::Buffer>,
    encoder: Arc<dyn EventEncoder>,
    sink: Arc<dyn ChatSink>,
}

impl RunRecorder {
    pub fn new(
        run_id: Uuid,
        log: Arc<RunLog>,
        encoder: Arc<dyn EventEncoder>,
        sink: Arc<dyn ChatSink>,
    ) -> RunRecorder {
        RunRecorder {
            run_id,
            seq: AtomicU64::new(0),
            buffer: log.local.open(run_id),
            log,
            encoder,
            sink,
        }
    }

    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The sequence number of the last event emitted.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    pub fn emit(&self, event: ChatEvent<'_>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let stamp = Stamp {
            run_id: self.run_id,
            seq,
        };
        let (name, data) = self.encoder.encode(stamp, &event);
        let logged = Logged {
            run_id: self.run_id,
            seq,
            name,
            data: Arc::from(data),
            last: matches!(event, ChatEvent::Finished(_) | ChatEvent::Failed(_)),
        };
        self.sink.emit(event, &logged);
        if let Some(shared) = &self.log.shared {
            shared.append(&logged);
        }
        self.buffer.append(logged, self.log.local.cap());
    }

    /// The run ended (its last event was emitted): readers stop after it.
    pub fn end(&self) {
        self.buffer.end();
        self.log.local.ended(self.run_id);
    }

    pub fn sink(&self) -> &dyn ChatSink {
        &*self.sink
    }
}
