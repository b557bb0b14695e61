//! Users on SQLite.

use rusqlite::{Connection, OptionalExtension, params};

use super::super::User;
use super::conversations::ts_at;

pub(super) fn ensure(c: &Connection, user_id: &str, now: &str) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO users (id, total_tokens_used, created_at) VALUES (?1, 0, ?2) \
         ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![user_id, now])
}

pub(super) fn get(c: &Connection, user_id: &str) -> rusqlite::Result<Option<User>> {
    c.prepare_cached("SELECT id, total_tokens_used, created_at FROM users WHERE id = ?1")?
        .query_row([user_id], |row| {
            Ok(User {
                id: row.get(0)?,
                total_tokens_used: row.get(1)?,
                created_at: ts_at(row, 2)?,
            })
        })
        .optional()
}
