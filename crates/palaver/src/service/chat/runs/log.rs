//! The in-process event log of runs: each run's events in order, kept for a while after it
//! ends, read after a cursor and then followed live (no pub/sub race: a reader that is
//! behind reads what it missed from the log, then waits for the next event).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::watch;
use uuid::Uuid;

/// One event of a run, encoded once for every reader.
#[derive(Debug, Clone)]
pub struct Logged {
    pub run_id: Uuid,
    /// Counted from 1 by the run's producer.
    pub seq: u64,
    /// The event's name (`chat:message`, `chat:end`, ...).
    pub name: &'static str,
    /// Its JSON payload (which carries `runId` and `seq` too), serialized once.
    pub data: Arc<RawValue>,
    /// The run's last event (`chat:end`, `chat:stopped` or `chat:error`).
    pub last: bool,
}

impl PartialEq for Logged {
    fn eq(&self, other: &Logged) -> bool {
        (self.run_id, self.seq, self.name, self.data.get())
            == (other.run_id, other.seq, other.name, other.data.get())
    }
}

/// What a reader gets next.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Event(Logged),
    /// Events after the cursor are no longer kept: the reader needs the stored message.
    Gap,
}

/// The most ended runs whose events are kept (the oldest are forgotten first, even within
/// the ttl): memory stays bounded however many runs an hour brings.
const MAX_ENDED: usize = 2_000;

/// The runs' logs of this process.
pub struct LocalLog {
    runs: Mutex<Runs>,
    /// How long a run's events stay after it ends.
    ttl: Duration,
    /// The most events kept per run (the oldest go first).
    cap: usize,
}

#[derive(Default)]
struct Runs {
    by_id: HashMap<Uuid, Arc<Buffer>>,
    /// The ended runs, oldest first, with when they ended.
    ended: VecDeque<(Instant, Uuid)>,
}

pub(super) struct Buffer {
    state: Mutex<State>,
    /// The last seq appended, and whether the run ended.
    tail: watch::Sender<(u64, bool)>,
}

struct State {
    events: VecDeque<Logged>,
    ended_at: Option<Instant>,
}

impl LocalLog {
    pub fn new(ttl: Duration, cap: usize) -> LocalLog {
        LocalLog {
            runs: Mutex::default(),
            ttl,
            cap: cap.max(1),
        }
    }

    /// Opens the log of a new run (and forgets the runs that ended more than `ttl` ago, or
    /// past the newest [`MAX_ENDED`]).
    pub(super) fn open(&self, run_id: Uuid) -> Arc<Buffer> {
        let buffer = Arc::new(Buffer {
            state: Mutex::new(State {
                events: VecDeque::new(),
                ended_at: None,
            }),
            tail: watch::channel((0, false)).0,
        });
        if let Ok(mut runs) = self.runs.lock() {
            while let Some(&(at, id)) = runs.ended.front() {
                if at.elapsed() <= self.ttl && runs.ended.len() <= MAX_ENDED {
                    break;
                }
                runs.ended.pop_front();
                runs.by_id.remove(&id);
            }
            runs.by_id.insert(run_id, buffer.clone());
        }
        buffer
    }

    /// The run ended: its events are kept for `ttl`.
    pub(super) fn ended(&self, run_id: Uuid) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.ended.push_back((Instant::now(), run_id));
        }
    }

    /// A reader of the run's events after `after`; `None` when this process keeps no log of
    /// the run (it ran elsewhere, or ended more than `ttl` ago).
    pub fn reader(&self, run_id: Uuid, after: u64) -> Option<LocalReader> {
        let runs = self.runs.lock().ok()?;
        let buffer = runs
            .by_id
            .get(&run_id)
            .filter(|b| !b.expired(self.ttl))?
            .clone();
        let tail = buffer.tail.subscribe();
        Some(LocalReader {
            buffer,
            tail,
            cursor: after,
        })
    }

    /// How many runs this process keeps a log of.
    pub fn len(&self) -> usize {
        self.runs.lock().map(|r| r.by_id.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn cap(&self) -> usize {
        self.cap
    }
}

impl Buffer {
    fn expired(&self, ttl: Duration) -> bool {
        self.state
            .lock()
            .map(|s| s.ended_at.is_some_and(|at| at.elapsed() > ttl))
            .unwrap_or(true)
    }

    /// Appends the next event (its seq follows the last one's), dropping the oldest past `cap`.
    pub(super) fn append(&self, event: Logged, cap: usize) {
        let seq = event.seq;
        if let Ok(mut state) = self.state.lock() {
            if state.events.len() >= cap {
                state.events.pop_front();
            }
            state.events.push_back(event);
        }
        self.tail.send_replace((seq, false));
    }

    /// Marks the run ended: readers stop once they have read everything.
    pub(super) fn end(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.ended_at = Some(Instant::now());
        }
        self.tail.send_modify(|(_, ended)| *ended = true);
    }
}

/// Reads one run's events after a cursor, then follows them live, to the run's end.
pub struct LocalReader {
    buffer: Arc<Buffer>,
    tail: watch::Receiver<(u64, bool)>,
    cursor: u64,
}

impl LocalReader {
    /// The next event after the cursor, waiting for it while the run goes on; `None` once
    /// the run has ended and everything was read.
    pub async fn next(&mut self) -> Option<Read> {
        loop {
            let (_, ended) = *self.tail.borrow_and_update();
            if let Some(read) = self.take() {
                return Some(read);
            }
            if ended {
                return None;
            }
            self.tail.changed().await.ok()?;
        }
    }

    /// The next event when it is in the log already (without waiting).
    pub fn ready(&mut self) -> Option<Read> {
        self.take()
    }

    fn take(&mut self) -> Option<Read> {
        let state = self.buffer.state.lock().ok()?;
        let first = state.events.front()?.seq;
        if self.cursor + 1 < first {
            // What follows the cursor was dropped; go on after the gap.
            self.cursor = first - 1;
            return Some(Read::Gap);
        }
        let index = usize::try_from(self.cursor + 1 - first).ok()?;
        let event = state.events.get(index)?.clone();
        self.cursor = event.seq;
        Some(Read::Event(event))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_newest_ended_runs_are_kept() {
        let log = LocalLog::new(Duration::from_secs(3600), 10);
        let first = Uuid::now_v7();
        log.open(first).end();
        log.ended(first);
        for _ in 0..MAX_ENDED {
            let run = Uuid::now_v7();
            log.open(run).end();
            log.ended(run);
        }
        log.open(Uuid::now_v7());
        assert!(
            log.reader(first, 0).is_none(),
            "the oldest ended run was forgotten"
        );
        assert_eq!(log.len(), MAX_ENDED + 1);
    }

    use super::*;

    fn event(run_id: Uuid, seq: u64) -> Logged {
        Logged {
            run_id,
            seq,
            name: "chat:message",
            data: Arc::from(RawValue::from_string(format!("{{\"seq\":{seq}}}")).unwrap()),
            last: false,
        }
    }

    #[tokio::test]
    async fn a_reader_replays_after_its_cursor_then_follows_to_the_end() {
        let log = LocalLog::new(Duration::from_secs(60), 100);
        let run = Uuid::now_v7();
        let buffer = log.open(run);
        for seq in 1..=3 {
            buffer.append(event(run, seq), log.cap());
        }
        let mut reader = log.reader(run, 1).unwrap();
        assert_eq!(reader.next().await, Some(Read::Event(event(run, 2))));
        assert_eq!(reader.next().await, Some(Read::Event(event(run, 3))));
        let live = async move {
            let mut seen = Vec::new();
            while let Some(Read::Event(e)) = reader.next().await {
                seen.push(e.seq);
            }
            seen
        };
        let produce = async {
            tokio::task::yield_now().await;
            buffer.append(event(run, 4), log.cap());
            buffer.append(event(run, 5), log.cap());
            buffer.end();
        };
        let (seen, ()) = tokio::join!(live, produce);
        assert_eq!(seen, vec![4, 5]);
        assert!(log.reader(Uuid::now_v7(), 0).is_none());
    }

    #[tokio::test]
    async fn a_reader_behind_the_cap_is_told_of_the_gap() {
        let log = LocalLog::new(Duration::from_secs(60), 2);
        let run = Uuid::now_v7();
        let buffer = log.open(run);
        for seq in 1..=5 {
            buffer.append(event(run, seq), log.cap());
        }
        buffer.end();
        let mut reader = log.reader(run, 0).unwrap();
        assert_eq!(reader.next().await, Some(Read::Gap));
        assert_eq!(reader.next().await, Some(Read::Event(event(run, 4))));
        assert_eq!(reader.next().await, Some(Read::Event(event(run, 5))));
        assert_eq!(reader.next().await, None);
    }

    #[tokio::test]
    async fn ended_runs_are_forgotten_after_the_ttl() {
        let log = LocalLog::new(Duration::ZERO, 10);
        let run = Uuid::now_v7();
        log.open(run).end();
        log.ended(run);
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(log.reader(run, 0).is_none());
        log.open(Uuid::now_v7());
        assert_eq!(log.len(), 1, "the expired run was pruned");
    }
}
