//! Rows of `conversations` and `messages`: how they are read, and owned copies ready to write.

use rusqlite::{OptionalExtension, Row, params};
use uuid::Uuid;

use super::super::{Conversation, ConversationPatch, Message, NewConversation, Role, Timestamp};
use super::super::{from_sqlite_text, to_sqlite_text as ts};

/// A column that does not read as what it should be.
pub(super) fn corrupt(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

pub(super) fn uuid_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let s: String = row.get(i)?;
    Uuid::parse_str(&s).map_err(|e| corrupt(i, format!("bad uuid `{s}`: {e}")))
}

pub(super) fn opt_uuid_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
    let s: Option<String> = row.get(i)?;
    s.map(|s| Uuid::parse_str(&s).map_err(|e| corrupt(i, format!("bad uuid `{s}`: {e}"))))
        .transpose()
}

pub(super) fn ts_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    let s: String = row.get(i)?;
    from_sqlite_text(&s).map_err(|e| corrupt(i, format!("bad timestamp `{s}`: {e}")))
}

pub(super) fn opt_ts_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    let s: Option<String> = row.get(i)?;
    s.map(|s| from_sqlite_text(&s).map_err(|e| corrupt(i, format!("bad timestamp `{s}`: {e}"))))
        .transpose()
}

pub(super) fn json_at(row: &Row<'_>, i: usize) -> rusqlite::Result<serde_json::Value> {
    let s: String = row.get(i)?;
    serde_json::from_str(&s).map_err(|e| corrupt(i, format!("bad JSON: {e}")))
}

/// The columns [`conversation`] reads.
macro_rules! conversation_columns {
    () => {
        "id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at, \
         archived, pinned, active_leaf_id, \
         (SELECT r.id FROM runs r WHERE r.conversation_id = conversations.id \
         AND r.status IN ('queued', 'in_progress') ORDER BY r.created_at DESC LIMIT 1)"
    };
}

pub(super) fn conversation(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: uuid_at(row, 0)?,
        user_id: row.get(1)?,
        title: row.get(2)?,
        system_prompt: row.get(3)?,
        model: row.get(4)?,
        metadata: json_at(row, 5)?,
        message_count: row.get(6)?,
        created_at: ts_at(row, 7)?,
        updated_at: ts_at(row, 8)?,
        archived: row.get(9)?,
        pinned: row.get(10)?,
        active_leaf_id: opt_uuid_at(row, 11)?,
        active_run_id: opt_uuid_at(row, 12)?,
    })
}

/// The columns [`message`] reads.
macro_rules! message_columns {
    () => {
        "id, conversation_id, role, content, tokens, model, metadata, created_at, parent_id, edited_at"
    };
}

pub(super) use {conversation_columns, message_columns};

pub(super) fn message(row: &Row<'_>) -> rusqlite::Result<Message> {
    let role: String = row.get(2)?;
    Ok(Message {
        id: uuid_at(row, 0)?,
        conversation_id: uuid_at(row, 1)?,
        role: Role::parse(&role).ok_or_else(|| corrupt(2, format!("bad role `{role}`")))?,
        content: row.get(3)?,
        tokens: row.get(4)?,
        model: row.get(5)?,
        metadata: json_at(row, 6)?,
        created_at: ts_at(row, 7)?,
        parent_id: opt_uuid_at(row, 8)?,
        edited_at: opt_ts_at(row, 9)?,
    })
}

/// A new conversation, owned, ready to insert.
pub(super) struct ConversationRow {
    id: String,
    user_id: String,
    title: String,
    system_prompt: Option<String>,
    model: Option<String>,
    metadata: String,
    created_at: String,
}

impl From<&NewConversation> for ConversationRow {
    fn from(new: &NewConversation) -> ConversationRow {
        ConversationRow {
            id: new.id.to_string(),
            user_id: new.user_id.clone(),
            title: new.title.clone(),
            system_prompt: new.system_prompt.clone(),
            model: new.model.clone(),
            metadata: new.metadata.to_string(),
            created_at: ts(new.created_at),
        }
    }
}

impl ConversationRow {
    pub(super) fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
        c.prepare_cached(
            "INSERT INTO conversations (id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
        )?
        .execute(params![
            self.id,
            self.user_id,
            self.title,
            self.system_prompt,
            self.model,
            self.metadata,
            self.created_at
        ])
    }
}

/// A message, owned, ready to append.
pub(super) struct MessageRow {
    id: String,
    conversation_id: String,
    role: &'static str,
    content: String,
    tokens: i64,
    model: Option<String>,
    metadata: String,
    created_at: String,
    parent_id: Option<String>,
    edited_at: Option<String>,
}

impl From<&Message> for MessageRow {
    fn from(m: &Message) -> MessageRow {
        MessageRow {
            id: m.id.to_string(),
            conversation_id: m.conversation_id.to_string(),
            role: m.role.as_str(),
            content: m.content.clone(),
            tokens: m.tokens,
            model: m.model.clone(),
            metadata: m.metadata.to_string(),
            created_at: ts(m.created_at),
            parent_id: m.parent_id.map(|p| p.to_string()),
            edited_at: m.edited_at.map(ts),
        }
    }
}

impl MessageRow {
    /// Appends the message if its conversation exists and holds its parent (1), else nothing
    /// (0); a trigger moves the conversation.
    pub(super) fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
        self.execute(c, APPEND)
    }

    /// Inserts the message whatever its conversation or parent: their foreign keys refuse a
    /// missing one (for a conversation written whole, in one transaction).
    pub(super) fn insert_plain(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
        self.execute(
            c,
            "INSERT INTO messages (id, conversation_id, role, content, tokens, model, metadata, \
             created_at, parent_id, edited_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
    }

    /// Writes the message's text, tokens, model and metadata over its stored row (a reply
    /// checkpointed while it streamed); 0 when there is no such row.
    pub(super) fn replace(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
        c.prepare_cached(
            "UPDATE messages SET content = ?2, tokens = ?3, model = ?4, metadata = ?5 WHERE id = ?1",
        )?
        .execute(params![
            self.id,
            self.content,
            self.tokens,
            self.model,
            self.metadata
        ])
    }

    fn execute(&self, c: &rusqlite::Connection, sql: &str) -> rusqlite::Result<usize> {
        c.prepare_cached(sql)?.execute(params![
            self.id,
            self.conversation_id,
            self.role,
            self.content,
            self.tokens,
            self.model,
            self.metadata,
            self.created_at,
            self.parent_id,
            self.edited_at
        ])
    }
}

/// Appends a message (`?1`..`?10`) if its conversation exists and its parent (`?9`) is a
/// message of it; a trigger moves the conversation.
pub(super) const APPEND: &str = "INSERT INTO messages
    (id, conversation_id, role, content, tokens, model, metadata, created_at, parent_id, edited_at)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
     WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?2)
       AND (?9 IS NULL OR EXISTS (SELECT 1 FROM messages WHERE id = ?9 AND conversation_id = ?2))";

/// One page of a user's conversations, pinned first, then latest activity first, and how
/// many there are.
pub(super) fn list(
    c: &rusqlite::Connection,
    user_id: &str,
    archived: bool,
    limit: i64,
    offset: i64,
) -> rusqlite::Result<(Vec<Conversation>, u64)> {
    let total: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM conversations WHERE user_id = ?1 AND archived = ?2")?
        .query_row(params![user_id, archived], |r| r.get(0))?;
    let mut stmt = c.prepare_cached(concat!(
        "SELECT ",
        conversation_columns!(),
        " FROM conversations WHERE user_id = ?1 AND archived = ?2 \
     ORDER BY pinned DESC, updated_at DESC, id DESC LIMIT ?3 OFFSET ?4"
    ))?;
    let conversations = stmt
        .query_map(params![user_id, archived, limit, offset], conversation)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((conversations, u64::try_from(total).unwrap_or(0)))
}

/// Applies a patch to a conversation of `user_id`; `None` when it has no such conversation.
pub(super) fn update(
    c: &rusqlite::Connection,
    user_id: &str,
    id: &str,
    patch: &ConversationPatch,
) -> rusqlite::Result<Option<Conversation>> {
    c.prepare_cached(concat!(
        "UPDATE conversations SET title = COALESCE(?3, title), \
         archived = COALESCE(?4, archived), pinned = COALESCE(?5, pinned), \
         metadata = COALESCE(?6, metadata) WHERE id = ?1 AND user_id = ?2 RETURNING ",
        conversation_columns!()
    ))?
    .query_row(
        params![
            id,
            user_id,
            patch.title,
            patch.archived,
            patch.pinned,
            patch.metadata.as_ref().map(|m| m.to_string())
        ],
        conversation,
    )
    .optional()
}

/// Sets the title only if it is still `expected` (one statement); how many rows changed.
pub(super) fn set_title_if(
    c: &rusqlite::Connection,
    id: &str,
    user_id: &str,
    expected: &str,
    title: &str,
) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "UPDATE conversations SET title = ?4 WHERE id = ?1 AND user_id = ?2 AND title = ?3",
    )?
    .execute(params![id, user_id, expected, title])
}
