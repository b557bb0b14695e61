//! Runs on SQLite.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::super::to_sqlite_text as ts;
use uuid::Uuid;

use super::super::{
    Message, NewConversation, Run, RunEnd, RunStatus, StoreError, StoreResult, UsageRecord,
};
use super::SqliteStore;
use super::conversations::{ConversationRow, MessageRow};
use super::conversations::{corrupt, opt_uuid_at, ts_at, uuid_at};
use super::usage::UsageRow;

/// Selects the columns [`run`] reads.
macro_rules! select_runs {
    () => {
        "SELECT id, user_id, conversation_id, message_id, user_message_id, status, last_seq, \
         error_code, created_at, updated_at FROM runs"
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
        created_at: ts_at(row, 8)?,
        updated_at: ts_at(row, 9)?,
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
             last_seq, error_code, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
        let (row, usage) = (MessageRow::from(reply), UsageRow::from(usage));
        let (run_id, end) = (run_id.to_string(), end.clone());
        let stored = self
            .db
            .write(move |c| {
                if row.insert(c)? == 0 {
                    return Ok(false);
                }
                usage.insert(c)?;
                finish(c, &run_id, &end)?;
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
