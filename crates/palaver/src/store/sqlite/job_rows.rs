//! Rows of the `jobs` table in SQLite: how a row reads as a [`Job`], and a job owned, ready
//! to insert.

use rusqlite::{Row, ToSql};
use serde_json::Value;
use uuid::Uuid;

use super::super::jobs::{Job, JobStoreError, JobStoreResult, columns, parse_kind, parse_status};
use super::super::{Timestamp, from_sqlite_text, to_sqlite_text};

/// SQLite keeps times as fixed-width RFC 3339 text, so that they compare as text.
pub(super) fn ts(t: &Timestamp) -> String {
    to_sqlite_text(*t)
}

fn parse_ts(s: &str) -> JobStoreResult<Timestamp> {
    from_sqlite_text(s).map_err(|e| JobStoreError::Corrupt(format!("time `{s}`: {e}")))
}

pub(super) fn parse_uuid(s: &str) -> JobStoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| JobStoreError::Corrupt(format!("uuid `{s}`: {e}")))
}

fn parse_json(s: &str) -> JobStoreResult<Value> {
    serde_json::from_str(s).map_err(|e| JobStoreError::Corrupt(format!("json: {e}")))
}

/// Reads a row of [`columns!`].
pub(super) fn job(row: &Row<'_>) -> rusqlite::Result<Job> {
    fn bad(i: usize, e: JobStoreError) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    }
    let text = |i: usize| row.get::<_, String>(i);
    let opt_text = |i: usize| row.get::<_, Option<String>>(i);
    Ok(Job {
        id: parse_uuid(&text(0)?).map_err(|e| bad(0, e))?,
        user_id: row.get(1)?,
        kind: parse_kind(&text(2)?).map_err(|e| bad(2, e))?,
        data: parse_json(&text(3)?).map_err(|e| bad(3, e))?,
        status: parse_status(&text(4)?).map_err(|e| bad(4, e))?,
        progress: row.get(5)?,
        attempts: row.get(6)?,
        max_attempts: row.get(7)?,
        result: opt_text(8)?
            .as_deref()
            .map(|s| parse_json(s).map_err(|e| bad(8, e)))
            .transpose()?,
        error: row.get(9)?,
        conversation_id: opt_text(10)?
            .as_deref()
            .map(|s| parse_uuid(s).map_err(|e| bad(10, e)))
            .transpose()?,
        run_at: opt_text(11)?
            .as_deref()
            .map(|s| parse_ts(s).map_err(|e| bad(11, e)))
            .transpose()?,
        locked_by: row.get(12)?,
        locked_until: opt_text(13)?
            .as_deref()
            .map(|s| parse_ts(s).map_err(|e| bad(13, e)))
            .transpose()?,
        created_at: parse_ts(&text(14)?).map_err(|e| bad(14, e))?,
        updated_at: parse_ts(&text(15)?).map_err(|e| bad(15, e))?,
    })
}

/// A new job, owned, ready to insert.
pub(super) struct JobRow {
    values: [rusqlite::types::Value; 16],
}

impl From<&Job> for JobRow {
    fn from(job: &Job) -> JobRow {
        use rusqlite::types::Value as V;
        let text = |s: String| V::Text(s);
        let opt = |s: Option<String>| s.map_or(V::Null, V::Text);
        JobRow {
            values: [
                text(job.id.to_string()),
                text(job.user_id.clone()),
                text(job.kind.as_str().to_owned()),
                text(job.data.to_string()),
                text(job.status.as_str().to_owned()),
                V::Integer(job.progress.into()),
                V::Integer(job.attempts.into()),
                V::Integer(job.max_attempts.into()),
                opt(job.result.as_ref().map(Value::to_string)),
                opt(job.error.clone()),
                opt(job.conversation_id.map(|c| c.to_string())),
                opt(job.run_at.as_ref().map(ts)),
                opt(job.locked_by.clone()),
                opt(job.locked_until.as_ref().map(ts)),
                text(ts(&job.created_at)),
                text(ts(&job.updated_at)),
            ],
        }
    }
}

impl JobRow {
    pub(super) fn insert(&self, c: &rusqlite::Connection, queue: &str) -> rusqlite::Result<usize> {
        let queue: &dyn ToSql = &queue;
        let values = self.values.iter().map(|v| v as &dyn ToSql);
        c.prepare_cached(concat!(
            "INSERT INTO jobs (",
            columns!(),
            ", queue) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"
        ))?
        .execute(rusqlite::params_from_iter(values.chain([queue])))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    #[test]
    fn sqlite_times_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + chrono::Duration::microseconds(1);
        let c = a + chrono::Duration::milliseconds(1500);
        assert!(ts(&a) < ts(&b) && ts(&b) < ts(&c));
        assert_eq!(ts(&a), "2026-01-01T00:00:00.000000Z");
        assert_eq!(parse_ts(&ts(&b)).unwrap(), b);
    }
}
