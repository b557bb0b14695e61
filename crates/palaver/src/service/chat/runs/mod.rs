//! Runs: every exchange is one, and every event of a run has a sequence number, assigned by
//! its producer alone (no shared counter). A streamed run's events go to an event log
//! ([`RunLog`]) that any client can read after a cursor and follow live, as well as to the
//! transport that started it.

mod log;
mod service;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::value::RawValue;
use uuid::Uuid;

use super::{ChatEvent, ChatFailure, ChatSink};
pub use log::{Logged, Read, RunLog, RunReader};
pub use service::{RunEvents, RunService, RunSnapshot};

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
            buffer: log.open(run_id),
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
        };
        self.sink.emit(event, &logged);
        self.buffer.append(logged, self.log.cap());
    }

    /// The run ended (its last event was emitted): readers stop after it.
    pub fn end(&self) {
        self.buffer.end();
        self.log.ended(self.run_id);
    }

    pub fn sink(&self) -> &dyn ChatSink {
        &*self.sink
    }
}
