//! The run event log on Redis, shared by every instance: one stream per run
//! (`palaver:run:<id>`) whose entry ids are `0-<seq>`, so a reader's cursor is an entry id.
//! One task per process writes (XADDs pipelined in batches, capped with `MAXLEN ~`, the key's
//! TTL renewed with each batch, so that the log of a run whose producer died expires too);
//! any instance reads after a cursor, then blocks for the live tail (`XREAD BLOCK`), on a
//! connection of its own: no pub/sub race, no reorder buffer.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{EventEncoder, Logged};

/// Events written per pipeline, at most.
const BATCH: usize = 512;
/// How long the writer waits for a batch to be answered, and how many times it sends a batch
/// that failed (every entry has its own id, so a batch written twice is written once).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_ATTEMPTS: u32 = 3;
/// Entries read per `XREAD`.
const READ_COUNT: usize = 2_000;
/// How long a reader's connection waits for an answer: longer than any `XREAD BLOCK` it
/// sends (the client's default, half a second, would cut every longer wait).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The field of an entry holding the event's name, its payload, and the mark of a run's
/// last event.
const NAME: &str = "n";
const DATA: &str = "d";
const LAST: &str = "l";

/// An entry of a stream as read: its id and its fields.
type Entry = (String, Vec<(Vec<u8>, Vec<u8>)>);

fn key(run_id: Uuid) -> String {
    format!("palaver:run:{run_id}")
}

#[derive(Debug, thiserror::Error)]
#[error("run log on redis: {0}")]
pub struct RedisLogError(#[from] redis::RedisError);

enum Op {
    Append(Logged),
    /// Answered once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// This process's writer of the shared log, and the client its readers connect with.
pub struct RedisLog {
    client: redis::Client,
    ops: mpsc::UnboundedSender<Op>,
}

impl RedisLog {
    /// Connects, and starts the writer (which ends when the log is dropped).
    pub async fn connect(url: &str, cap: usize, ttl: Duration) -> Result<RedisLog, RedisLogError> {
        let client = redis::Client::open(url)?;
        let config =
            redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(WRITE_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        let (ops, receiver) = mpsc::unbounded_channel();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        tokio::runtime::Handle::current().spawn(write_loop(conn, receiver, cap, ttl_ms));
        Ok(RedisLog { client, ops })
    }

    /// Queues an event for the writer (never waits).
    pub(super) fn append(&self, event: &Logged) {
        let _ = self.ops.send(Op::Append(event.clone()));
    }

    /// Waits until every event queued before is written (or failed to be).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.ops.send(Op::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }

    /// A reader of the run's log after `after`, on a connection of its own (its blocking
    /// reads would hold up every other command of a shared one); `None` when the run has no
    /// log (it expires `RUN_EVENTS_TTL_SECS` after its last write) and `live` is false.
    pub(super) async fn reader(
        &self,
        run_id: Uuid,
        after: u64,
        live: bool,
        encoder: Arc<dyn EventEncoder>,
    ) -> Result<Option<RedisReader>, RedisLogError> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(READ_TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let key = key(run_id);
        if !live {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            if exists == 0 {
                return Ok(None);
            }
        }
        Ok(Some(RedisReader {
            conn,
            key,
            run_id,
            cursor: after,
            encoder,
        }))
    }
}

async fn write_loop(
    mut conn: ConnectionManager,
    mut ops: mpsc::UnboundedReceiver<Op>,
    cap: usize,
    ttl_ms: u64,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut runs: Vec<Uuid> = Vec::new();
    let mut flushed = Vec::new();
    while ops.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for op in batch.drain(..) {
            match op {
                Op::Append(event) => {
                    let command = pipe
                        .cmd("XADD")
                        .arg(key(event.run_id))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(cap)
                        .arg(format!("0-{}", event.seq))
                        .arg(NAME)
                        .arg(event.name)
                        .arg(DATA)
                        .arg(event.data.get());
                    if event.last {
                        command.arg(LAST).arg(1);
                    }
                    command.ignore();
                    if !runs.contains(&event.run_id) {
                        runs.push(event.run_id);
                    }
                }
                Op::Flush(done) => flushed.push(done),
            }
        }
        for run_id in runs.drain(..) {
            pipe.cmd("PEXPIRE").arg(key(run_id)).arg(ttl_ms).ignore();
        }
        for attempt in 1..=WRITE_ATTEMPTS {
            let Err(err) = pipe.query_async::<()>(&mut conn).await else {
                break;
            };
            if attempt == WRITE_ATTEMPTS {
                // Readers elsewhere see the missing events as a gap (and read the stored reply).
                tracing::warn!(error = %err, "runs: could not write events to the redis log");
            } else {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Reads one run's log after a cursor.
pub struct RedisReader {
    conn: MultiplexedConnection,
    key: String,
    run_id: Uuid,
    cursor: u64,
    encoder: Arc<dyn EventEncoder>,
}

impl RedisReader {
    /// The events after the cursor, oldest first, waiting up to `block` (well under
    /// [`READ_TIMEOUT`]) for one when there are none (`None` for no wait); empty when none
    /// came. Moves the cursor past them.
    pub(super) async fn read(
        &mut self,
        block: Option<Duration>,
    ) -> Result<Vec<Logged>, RedisLogError> {
        let mut command = redis::cmd("XREAD");
        command.arg("COUNT").arg(READ_COUNT);
        if let Some(block) = block {
            command
                .arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX));
        }
        command
            .arg("STREAMS")
            .arg(&self.key)
            .arg(format!("0-{}", self.cursor));
        let reply: Value = command.query_async(&mut self.conn).await?;
        let events = entries(reply)
            .into_iter()
            .filter_map(|entry| self.decode(entry))
            .collect::<Vec<Logged>>();
        if let Some(last) = events.last() {
            self.cursor = last.seq;
        }
        Ok(events)
    }

    fn decode(&self, (id, mut fields): Entry) -> Option<Logged> {
        let seq = id.strip_prefix("0-")?.parse::<u64>().ok()?;
        let position = |fields: &[(Vec<u8>, Vec<u8>)], name: &str| {
            fields.iter().position(|(k, _)| k == name.as_bytes())
        };
        let last = position(&fields, LAST).is_some();
        let name = std::str::from_utf8(&fields[position(&fields, NAME)?].1).ok()?;
        let name = *self.encoder.names().iter().find(|n| **n == name)?;
        let data = fields.swap_remove(position(&fields, DATA)?).1;
        let data = String::from_utf8(data).ok()?;
        Some(Logged {
            run_id: self.run_id,
            seq,
            name,
            data: Arc::from(RawValue::from_string(data).ok()?),
            last,
        })
    }
}

/// The entries of an `XREAD` reply of one stream (RESP2 arrays or RESP3 maps; nil when the
/// wait timed out): each id with its fields.
fn entries(reply: Value) -> Vec<Entry> {
    let streams = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(items) = stream else {
            continue;
        };
        for item in items {
            let Value::Array(mut parts) = item else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let (fields, id) = (parts.pop(), parts.pop());
            let Some(id) = id.and_then(text) else {
                continue;
            };
            let Some(Value::Array(flat)) = fields else {
                continue;
            };
            let mut flat = flat.into_iter();
            let mut fields = Vec::with_capacity(3);
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                if let (Some(k), Some(v)) = (bytes(k), bytes(v)) {
                    fields.push((k, v));
                }
            }
            out.push((id, fields));
        }
    }
    out
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn text(value: Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b).ok())
}
