//! Runs on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::super::to_sqlite_text as ts;
use uuid::Uuid;

use super::super::{
    Checkpoint, Message, NewConversation, Run, RunEnd, RunStatus, RunStore, StoreError,
    StoreResult, Timestamp, UsageRecord,
};
use super::SqliteStore;
use super::conversations::{ConversationRow, MessageRow};
use super::conversations::{corrupt, opt_uuid_at, ts_at, uuid_at};

/// An optional timestamp column.
fn opt_ts_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    let text: Option<String> = row.get(i)?;
    text.map(|t| super::super::from_sqlite_text(&t).map_err(|e| corrupt(i, e.to_string())))
        .transpose()
}
use super::usage::UsageRow;

/// The columns [`run`] reads.
macro_rules! run_columns {
    () => {
        "id, user_id, conversation_id, message_id, user_message_id, status, last_seq, \
         error_code, lease_until, request_key, created_at, updated_at"
    };
}

/// Selects the columns [`run`] reads.
macro_rules! select_runs {
    () => {
        concat!("SELECT ", run_columns!(), " FROM runs")
    };
}

fn run(row: &Row<'_>) -> rusqlite::Result<Run> {
    let status: String = row.get(5)?;
    Ok(Run {
        id: uuid_at(row, 0)?,
        user_id: row.get(1)?,
        conversation_id: uuid_at(row, 2)?,
        message_id: uuid_at(row, 3)?,
        user_message_id: opt_uuid_at(row, 4)?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| corrupt(5, format!("bad run status `{status}`")))?,
        last_seq: row.get(6)?,
        error_code: row.get(7)?,
        lease_until: opt_ts_at(row, 8)?,
        request_key: row.get(9)?,
        created_at: ts_at(row, 10)?,
        updated_at: ts_at(row, 11)?,
    })
}

/// A run, owned, ready to insert.
pub(super) struct RunRow(Run);

impl From<&Run> for RunRow {
    fn from(run: &Run) -> RunRow {
        RunRow(run.clone())
    }
}

impl RunRow {
    pub(super) fn insert(&self, c: &Connection) -> rusqlite::Result<usize> {
        let r = &self.0;
        c.prepare_cached(
            "INSERT INTO runs (id, user_id, conversation_id, message_id, user_message_id, status, \
             last_seq, error_code, lease_until, request_key, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            r.id.to_string(),
            r.user_id,
            r.conversation_id.to_string(),
            r.message_id.to_string(),
            r.user_message_id.map(|u| u.to_string()),
            r.status.as_str(),
            r.last_seq,
            r.error_code,
            r.lease_until.map(ts),
            r.request_key,
            ts(r.created_at),
            ts(r.updated_at)
        ])
    }
}

pub(super) fn finish(c: &Connection, id: &str, end: &RunEnd) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "UPDATE runs SET status = ?2, last_seq = ?3, error_code = ?4, updated_at = ?5 \
         WHERE id = ?1 AND status IN ('queued', 'in_progress')",
    )?
    .execute(params![
        id,
        end.status.as_str(),
        end.last_seq,
        end.error_code,
        ts(end.at)
    ])
}

pub(super) fn get(c: &Connection, user_id: &str, id: &str) -> rusqlite::Result<Option<Run>> {
    c.prepare_cached(concat!(select_runs!(), " WHERE id = ?1 AND user_id = ?2"))?
        .query_row(params![id, user_id], run)
        .optional()
}

pub(super) fn list(
    c: &Connection,
    user_id: &str,
    status: Option<RunStatus>,
    limit: i64,
) -> rusqlite::Result<Vec<Run>> {
    c.prepare_cached(concat!(
        select_runs!(),
        " WHERE user_id = ?1 AND (?2 IS NULL OR status = ?2) \
         ORDER BY created_at DESC, id DESC LIMIT ?3"
    ))?
    .query_map(params![user_id, status.map(RunStatus::as_str), limit], run)?
    .collect()
}

impl SqliteStore {
    /// [`Store::begin_exchange`](super::super::Store::begin_exchange): one write.
    pub(super) async fn begin_run_with(
        &self,
        new: Option<&NewConversation>,
        message: Option<&Message>,
        run: &Run,
    ) -> StoreResult<()> {
        let conversation = new.map(ConversationRow::from);
        let message = message.map(MessageRow::from);
        let run = RunRow::from(run);
        let stored = self
            .db
            .write(move |c| {
                if let Some(conversation) = conversation {
                    conversation.insert(c)?;
                }
                if let Some(message) = message
                    && message.insert(c)? == 0
                {
                    return Ok(false);
                }
                run.insert(c)?;
                Ok(true)
            })
            .await?;
        if stored {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    /// [`Store::end_exchange`](super::super::Store::end_exchange): one write.
    pub(super) async fn end_run_with(
        &self,
        reply: &Message,
        usage: &UsageRecord,
        run_id: Uuid,
        end: &RunEnd,
    ) -> StoreResult<()> {
        self.write_reply(reply, usage, run_id, Some(end), false)
            .await
    }

    /// The last write of an exchange: its reply inserted (or, `replace`, written over its
    /// checkpointed row), its usage and, with `end`, the end of its run; `NotFound` when the
    /// reply could not be written.
    async fn write_reply(
        &self,
        reply: &Message,
        usage: &UsageRecord,
        run_id: Uuid,
        end: Option<&RunEnd>,
        replace: bool,
    ) -> StoreResult<()> {
        let (row, usage) = (MessageRow::from(reply), UsageRow::from(usage));
        let (run_id, end) = (run_id.to_string(), end.cloned());
        let stored = self
            .db
            .write(move |c| {
                let written = if replace {
                    row.replace(c)?
                } else {
                    row.insert(c)?
                };
                if written == 0 {
                    return Ok(false);
                }
                usage.insert(c)?;
                if let Some(end) = end {
                    finish(c, &run_id, &end)?;
                }
                Ok(true)
            })
            .await?;
        if stored {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }
}

/// Marks the live runs whose lease expired (up to `limit`) interrupted, with their
/// checkpointed replies.
fn interrupt_expired(c: &Connection, now: &str, limit: u32) -> rusqlite::Result<Vec<Run>> {
    let runs = c
        .prepare_cached(concat!(
            "UPDATE runs SET status = 'interrupted', error_code = 'interrupted', updated_at = ?1 \
             WHERE id IN (SELECT id FROM runs WHERE status IN ('queued', 'in_progress') \
             AND lease_until < ?1 LIMIT ?2) RETURNING ",
            run_columns!()
        ))?
        .query_map(params![now, limit], run)?
        .collect::<rusqlite::Result<Vec<Run>>>()?;
    let mut mark = c.prepare_cached(
        "UPDATE messages SET metadata = \
         json_remove(json_set(metadata, '$.interrupted', json('true')), '$.streaming') \
         WHERE id = ?1",
    )?;
    for run in &runs {
        mark.execute(params![run.message_id.to_string()])?;
    }
    Ok(runs)
}

fn renew(c: &Connection, id: &str, until: &str, last_seq: Option<i64>) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "UPDATE runs SET lease_until = ?2, last_seq = COALESCE(?3, last_seq) \
         WHERE id = ?1 AND status IN ('queued', 'in_progress')",
    )?
    .execute(params![id, until, last_seq])
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn finish_run(&self, id: Uuid, end: &RunEnd) -> StoreResult<bool> {
        let (id, end) = (id.to_string(), end.clone());
        Ok(self.db.write(move |c| finish(c, &id, &end)).await? == 1)
    }

    async fn get_run(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Run>> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        Ok(self.db.read(move |c| get(c, &user_id, &id)).await?)
    }

    async fn run_by_request_key(&self, user_id: &str, key: &str) -> StoreResult<Option<Run>> {
        let (user_id, key) = (user_id.to_owned(), key.to_owned());
        let sql = concat!(select_runs!(), " WHERE user_id = ?1 AND request_key = ?2");
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(sql)?
                    .query_row(params![user_id, key], run)
                    .optional()
            })
            .await?)
    }

    async fn list_runs(
        &self,
        user_id: &str,
        status: Option<RunStatus>,
        limit: u64,
    ) -> StoreResult<Vec<Run>> {
        let user_id = user_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .db
            .read(move |c| list(c, &user_id, status, limit))
            .await?)
    }

    async fn renew_run(&self, id: Uuid, lease_until: Timestamp) -> StoreResult<bool> {
        let (id, until) = (id.to_string(), ts(lease_until));
        Ok(self.db.write(move |c| renew(c, &id, &until, None)).await? == 1)
    }

    async fn checkpoint_reply(&self, checkpoint: &Checkpoint<'_>) -> StoreResult<bool> {
        let row = MessageRow::from(checkpoint.reply);
        let (first, run_id) = (checkpoint.first, checkpoint.run_id.to_string());
        let (until, last_seq) = (ts(checkpoint.lease_until), checkpoint.last_seq);
        let written = self
            .db
            .write(move |c| {
                if renew(c, &run_id, &until, Some(last_seq))? == 0 {
                    return Ok(Some(false));
                }
                let stored = if first {
                    row.insert(c)?
                } else {
                    row.replace(c)?
                };
                Ok((stored == 1).then_some(true))
            })
            .await?;
        written.ok_or(StoreError::NotFound)
    }

    async fn replace_reply(
        &self,
        reply: &Message,
        usage: &UsageRecord,
        run_id: Uuid,
        end: Option<&RunEnd>,
    ) -> StoreResult<()> {
        self.write_reply(reply, usage, run_id, end, true).await
    }

    async fn interrupt_expired_runs(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<Run>> {
        let now = ts(now);
        Ok(self
            .db
            .write(move |c| interrupt_expired(c, &now, limit))
            .await?)
    }
}
