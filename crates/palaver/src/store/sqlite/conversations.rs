//! Rows of `conversations` and `messages`: how they are read, and owned copies ready to write.

use rusqlite::{Row, params};
use uuid::Uuid;

use super::super::{Conversation, Message, NewConversation, Role, Timestamp};
use super::super::{from_sqlite_text, to_sqlite_text as ts};

/// A column that does not read as what it should be.
pub(super) fn corrupt(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

pub(super) fn uuid_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let s: String = row.get(i)?;
    Uuid::parse_str(&s).map_err(|e| corrupt(i, format!("bad uuid `{s}`: {e}")))
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
         archived, pinned"
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
    })
}

/// The columns [`message`] reads.
macro_rules! message_columns {
    () => {
        "id, conversation_id, role, content, tokens, model, metadata, created_at"
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
        }
    }
}

impl MessageRow {
    /// Appends the message if its conversation exists (1), else nothing (0); a trigger moves
    /// the conversation.
    pub(super) fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
        c.prepare_cached(APPEND)?.execute(params![
            self.id,
            self.conversation_id,
            self.role,
            self.content,
            self.tokens,
            self.model,
            self.metadata,
            self.created_at
        ])
    }
}

/// Appends a message (`?1`..`?8`) if its conversation exists; a trigger moves the conversation.
pub(super) const APPEND: &str =
    "INSERT INTO messages (id, conversation_id, role, content, tokens, model, metadata, created_at)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?2)";
