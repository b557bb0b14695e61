//! Conversations as trees: paths walked up from a leaf, children, the active leaf, edits with
//! revisions, subtree deletes, and whole conversations written at once.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::super::to_sqlite_text as ts;
use super::super::{
    Conversation, Message, NewConversation, RemovedMessages, Revision, StoreResult, Timestamp,
};
use super::SqliteStore;
use super::conversations::ConversationRow;
use super::conversations::{MessageRow, message, message_columns, opt_uuid_at, ts_at, uuid_at};

/// Every message of a conversation, in the order they were written.
pub(super) fn list_messages(c: &Connection, conversation: &str) -> rusqlite::Result<Vec<Message>> {
    c.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE conversation_id = ?1 ORDER BY seq"
    ))?
    .query_map([conversation], message)?
    .collect()
}

/// A message of one of the user's conversations (`?1` the id, `?2` the user).
const OWNED_MESSAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE id = ?1 AND conversation_id IN \
     (SELECT id FROM conversations WHERE user_id = ?2)"
);

pub(super) fn get_message(
    c: &Connection,
    user_id: &str,
    id: &str,
) -> rusqlite::Result<Option<Message>> {
    c.prepare_cached(OWNED_MESSAGE)?
        .query_row(params![id, user_id], message)
        .optional()
}

/// Walks up from `?2` (in conversation `?1`) to the root, at most `?3` messages, oldest first.
const PATH: &str = concat!(
    "WITH RECURSIVE path (pseq, pparent, depth) AS (
        SELECT seq, parent_id, 0 FROM messages WHERE id = ?2 AND conversation_id = ?1
        UNION ALL
        SELECT m.seq, m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.pparent
         WHERE path.depth + 1 < ?3
    )
    SELECT ",
    message_columns!(),
    " FROM path JOIN messages ON messages.seq = path.pseq ORDER BY path.depth DESC"
);

pub(super) fn path(
    c: &Connection,
    conversation: &str,
    leaf: &str,
    limit: i64,
) -> rusqlite::Result<Vec<Message>> {
    c.prepare_cached(PATH)?
        .query_map(params![conversation, leaf, limit], message)?
        .collect()
}

pub(super) fn children(
    c: &Connection,
    conversation: &str,
    parents: &[Uuid],
    roots: bool,
) -> rusqlite::Result<Vec<(Option<Uuid>, Uuid)>> {
    let pair = |r: &rusqlite::Row<'_>| Ok((opt_uuid_at(r, 0)?, uuid_at(r, 1)?));
    let mut out = Vec::new();
    if roots {
        let mut stmt = c.prepare_cached(
            "SELECT parent_id, id FROM messages WHERE parent_id IS NULL AND conversation_id = ?1 ORDER BY seq",
        )?;
        for row in stmt.query_map([conversation], pair)? {
            out.push(row?);
        }
    }
    if !parents.is_empty() {
        let ids = serde_json::to_string(parents).unwrap_or_else(|_| "[]".to_owned());
        let mut stmt = c.prepare_cached(
            "SELECT parent_id, id FROM messages WHERE parent_id IN (SELECT value FROM json_each(?2)) \
             AND conversation_id = ?1 ORDER BY seq",
        )?;
        for row in stmt.query_map(params![conversation, ids], pair)? {
            out.push(row?);
        }
    }
    Ok(out)
}

/// The newest message under `?1` (it included), which has no children of its own.
const NEWEST_UNDER: &str = "WITH RECURSIVE sub (id, seq) AS (
        SELECT id, seq FROM messages WHERE id = ?1
        UNION ALL
        SELECT m.id, m.seq FROM messages m JOIN sub ON m.parent_id = sub.id
    )
    SELECT id FROM sub ORDER BY seq DESC LIMIT 1";

fn newest_under(c: &Connection, id: &str) -> rusqlite::Result<Option<String>> {
    c.prepare_cached(NEWEST_UNDER)?
        .query_row([id], |r| r.get(0))
        .optional()
}

pub(super) fn set_active_leaf(
    c: &Connection,
    user_id: &str,
    conversation: &str,
    message_id: &str,
) -> rusqlite::Result<Option<Uuid>> {
    let owned = get_message(c, user_id, message_id)?
        .is_some_and(|m| m.conversation_id.to_string() == conversation);
    if !owned {
        return Ok(None);
    }
    let Some(leaf) = newest_under(c, message_id)? else {
        return Ok(None);
    };
    c.prepare_cached("UPDATE conversations SET active_leaf_id = ?2 WHERE id = ?1")?
        .execute(params![conversation, leaf])?;
    Ok(Uuid::parse_str(&leaf).ok())
}

pub(super) fn edit_message(
    c: &Connection,
    user_id: &str,
    id: &str,
    content: &str,
    tokens: i64,
    at: Timestamp,
) -> rusqlite::Result<Option<Message>> {
    let Some(old) = get_message(c, user_id, id)? else {
        return Ok(None);
    };
    let at = ts(at);
    c.prepare_cached(
        "INSERT INTO message_revisions (message_id, content, tokens, written_at, replaced_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        id,
        old.content,
        old.tokens,
        ts(old.edited_at.unwrap_or(old.created_at)),
        at
    ])?;
    c.prepare_cached(concat!(
        "UPDATE messages SET content = ?2, tokens = ?3, edited_at = ?4 WHERE id = ?1 RETURNING ",
        message_columns!()
    ))?
    .query_row(params![id, content, tokens, at], message)
    .optional()
}

pub(super) fn revisions(c: &Connection, message_id: &str) -> rusqlite::Result<Vec<Revision>> {
    c.prepare_cached(
        "SELECT content, tokens, written_at, replaced_at FROM message_revisions \
         WHERE message_id = ?1 ORDER BY seq",
    )?
    .query_map([message_id], |r| {
        Ok(Revision {
            content: r.get(0)?,
            tokens: r.get(1)?,
            written_at: ts_at(r, 2)?,
            replaced_at: ts_at(r, 3)?,
        })
    })?
    .collect()
}

/// Deletes `?1` and everything under it, in one statement (the self-reference is checked at
/// its end).
const DELETE_SUBTREE: &str = "WITH RECURSIVE sub (id) AS (
        SELECT ?1
        UNION ALL
        SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id
    )
    DELETE FROM messages WHERE id IN (SELECT id FROM sub)";

/// Deletes a subtree and mends its conversation.
pub(super) fn delete_message(
    c: &Connection,
    user_id: &str,
    id: &str,
) -> rusqlite::Result<Option<RemovedMessages>> {
    let Some(target) = get_message(c, user_id, id)? else {
        return Ok(None);
    };
    let conversation = target.conversation_id.to_string();
    let count = c.prepare_cached(DELETE_SUBTREE)?.execute([id])?;
    let active: Option<String> = c
        .prepare_cached("SELECT active_leaf_id FROM conversations WHERE id = ?1")?
        .query_row([&conversation], |r| r.get(0))?;
    let still_there = match &active {
        Some(leaf) => c
            .prepare_cached("SELECT 1 FROM messages WHERE id = ?1")?
            .exists([leaf])?,
        None => false,
    };
    let leaf = if still_there {
        active.clone()
    } else {
        match target.parent_id {
            Some(parent) => newest_under(c, &parent.to_string())?,
            None => c
                .prepare_cached(
                    "SELECT id FROM messages WHERE conversation_id = ?1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([&conversation], |r| r.get(0))
                .optional()?,
        }
    };
    c.prepare_cached(
        "UPDATE conversations SET message_count = message_count - ?2, active_leaf_id = ?3 WHERE id = ?1",
    )?
    .execute(params![conversation, count as i64, leaf])?;
    let leaf_moved = leaf != active;
    Ok(Some(RemovedMessages {
        conversation_id: target.conversation_id,
        count: count as u64,
        active_leaf_id: leaf.and_then(|l| Uuid::parse_str(&l).ok()),
        leaf_moved,
    }))
}

/// Writes messages of a conversation being stored whole (parents first); a plain insert, so a
/// message whose parent is missing fails the whole write.
pub(super) fn insert_messages(c: &Connection, messages: &[MessageRow]) -> rusqlite::Result<()> {
    for m in messages {
        m.insert_plain(c)?;
    }
    Ok(())
}

pub(super) fn set_leaf(
    c: &Connection,
    conversation: &str,
    leaf: Option<String>,
) -> rusqlite::Result<usize> {
    c.prepare_cached("UPDATE conversations SET active_leaf_id = ?2 WHERE id = ?1")?
        .execute(params![conversation, leaf])
}

impl SqliteStore {
    pub(super) async fn remove_subtree(
        &self,
        user_id: &str,
        id: Uuid,
    ) -> StoreResult<Option<RemovedMessages>> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        Ok(self
            .db
            .write(move |c| delete_message(c, &user_id, &id))
            .await?)
    }

    pub(super) async fn store_whole(
        &self,
        new: &NewConversation,
        messages: &[Message],
        active_leaf_id: Option<Uuid>,
    ) -> StoreResult<Conversation> {
        let conversation = ConversationRow::from(new);
        let rows: Vec<MessageRow> = messages.iter().map(MessageRow::from).collect();
        let (id, leaf) = (new.id.to_string(), active_leaf_id.map(|l| l.to_string()));
        self.db
            .write(move |c| {
                conversation.insert(c)?;
                insert_messages(c, &rows)?;
                set_leaf(c, &id, leaf)
            })
            .await?;
        let mut stored = new.created();
        stored.message_count = messages.len() as i64;
        stored.active_leaf_id = active_leaf_id;
        if let Some(last) = messages.iter().map(|m| m.created_at).max() {
            stored.updated_at = stored.updated_at.max(last);
        }
        Ok(stored)
    }
}
