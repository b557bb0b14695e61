//! A reader of one run's events after a cursor, followed live to the run's end: from this
//! process's log when the run is (or was) produced here, else from the shared log on Redis.
//! A reader of the shared log checks the stored run whenever nothing came for a while: a run
//! that ended without its last event reaching the log (its producer died) ends the reader,
//! with `chat:error {code: "interrupted"}` when it was marked so.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::redis::RedisReader;
use super::{EventEncoder, LocalReader, Logged, Read, Stamp};
use crate::service::ServiceError;
use crate::service::chat::{ChatEvent, ChatFailure};
use crate::store::{Run, RunStatus, Store};

/// How long a reader of the shared log waits for an event before it checks the stored run.
const IDLE: Duration = Duration::from_secs(2);

pub struct RunReader {
    source: Source,
}

enum Source {
    Local(LocalReader),
    Shared(Box<Shared>),
}

struct Shared {
    reader: RedisReader,
    /// Read, not yet handed out.
    pending: VecDeque<Logged>,
    /// The seq of the last event handed out.
    cursor: u64,
    ended: bool,
    run: Run,
    store: Arc<dyn Store>,
    encoder: Arc<dyn EventEncoder>,
}

impl RunReader {
    pub(super) fn local(reader: LocalReader) -> RunReader {
        RunReader {
            source: Source::Local(reader),
        }
    }

    pub(super) fn shared(
        reader: RedisReader,
        after: u64,
        run: Run,
        store: Arc<dyn Store>,
        encoder: Arc<dyn EventEncoder>,
    ) -> RunReader {
        RunReader {
            source: Source::Shared(Box::new(Shared {
                reader,
                pending: VecDeque::new(),
                cursor: after,
                ended: false,
                run,
                store,
                encoder,
            })),
        }
    }

    /// The next event after the cursor, waiting for it while the run goes on; `None` once
    /// the run has ended and everything was read.
    pub async fn next(&mut self) -> Option<Read> {
        match &mut self.source {
            Source::Local(reader) => reader.next().await,
            Source::Shared(shared) => shared.next().await,
        }
    }

    /// The next event when it is here already (without waiting, nor reading the shared
    /// log): transports send what a replay has ready in one write.
    pub fn next_ready(&mut self) -> Option<Read> {
        match &mut self.source {
            Source::Local(reader) => reader.ready(),
            Source::Shared(shared) => shared.ready(),
        }
    }
}

impl Shared {
    /// The next event already read, if any.
    fn ready(&mut self) -> Option<Read> {
        while let Some(event) = self.pending.pop_front() {
            if event.seq <= self.cursor {
                continue;
            }
            if event.seq > self.cursor + 1 {
                // What follows the cursor is no longer (or never was) in the log.
                self.cursor = event.seq - 1;
                self.pending.push_front(event);
                return Some(Read::Gap);
            }
            self.cursor = event.seq;
            self.ended |= event.last;
            return Some(Read::Event(event));
        }
        None
    }

    async fn next(&mut self) -> Option<Read> {
        loop {
            if let Some(read) = self.ready() {
                return Some(read);
            }
            if self.ended {
                return None;
            }
            match self.reader.read(Some(IDLE)).await {
                Ok(events) if !events.is_empty() => self.pending.extend(events),
                Ok(_) => {
                    if let Some(read) = self.idle().await {
                        return Some(read);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, run_id = %self.run.id, "runs: could not read the shared log");
                    self.ended = true;
                    return Some(Read::Gap);
                }
            }
        }
    }

    /// Nothing came for a while: goes on waiting while the stored run is live; else reads
    /// what is left and ends (with the run's interruption when it was marked so).
    async fn idle(&mut self) -> Option<Read> {
        let run = self.store.get_run(&self.run.user_id, self.run.id).await;
        let status = match run {
            Ok(Some(run)) if run.status.is_live() => return None,
            Ok(Some(run)) => run.status,
            Ok(None) | Err(_) => RunStatus::Failed,
        };
        if let Ok(events) = self.reader.read(None).await
            && !events.is_empty()
        {
            self.pending.extend(events);
            return None;
        }
        self.ended = true;
        if status == RunStatus::Interrupted {
            return Some(Read::Event(self.interrupted()));
        }
        Some(Read::Gap)
    }

    /// The `chat:error {code: "interrupted"}` a reader of a run whose producer died gets,
    /// numbered after the last event it read.
    fn interrupted(&self) -> Logged {
        let failure = ChatFailure {
            error: ServiceError::Interrupted,
            conversation_id: Some(self.run.conversation_id),
        };
        let stamp = Stamp {
            run_id: self.run.id,
            seq: self.cursor + 1,
        };
        let (name, data) = self.encoder.encode(stamp, &ChatEvent::Failed(&failure));
        Logged {
            run_id: self.run.id,
            seq: stamp.seq,
            name,
            data: Arc::from(data),
            last: true,
        }
    }
}
