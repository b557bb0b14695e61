//! Conversations as trees: paths walked up from a leaf, children, the active leaf, edits with
//! revisions, subtree deletes, and whole conversations written at once.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::super::{
    Conversation, Message, NewConversation, RemovedMessages, Revision, StoreResult, Timestamp,
};
use super::message;
use super::writes::{bind_conversation, write_error};

/// Every message of a conversation, in the order they were written.
pub(super) async fn list_messages(
    pool: &PgPool,
    conversation_id: Uuid,
) -> StoreResult<Vec<Message>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE conversation_id = $1 ORDER BY seq"
    ))
    .bind(conversation_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(message).collect()
}

pub(super) async fn get_message(
    pool: &PgPool,
    user_id: &str,
    id: Uuid,
) -> StoreResult<Option<Message>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE id = $1 AND conversation_id IN \
         (SELECT id FROM conversations WHERE user_id = $2)"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(message).transpose()
}

/// Walks up from `$2` (in conversation `$1`) to the root, at most `$3` messages, oldest first.
const PATH: &str = concat!(
    "WITH RECURSIVE path (pseq, pparent, depth) AS (
        SELECT seq, parent_id, 0 FROM messages WHERE id = $2 AND conversation_id = $1
        UNION ALL
        SELECT m.seq, m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.pparent
         WHERE path.depth + 1 < $3
    )
    SELECT ",
    message_columns!(),
    " FROM path JOIN messages ON messages.seq = path.pseq ORDER BY path.depth DESC"
);

pub(super) async fn path(
    pool: &PgPool,
    conversation_id: Uuid,
    leaf: Uuid,
    limit: u64,
) -> StoreResult<Vec<Message>> {
    let rows = sqlx::query(PATH)
        .bind(conversation_id)
        .bind(leaf)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    rows.iter().map(message).collect()
}

pub(super) async fn children(
    pool: &PgPool,
    conversation_id: Uuid,
    parents: &[Uuid],
    roots: bool,
) -> StoreResult<Vec<(Option<Uuid>, Uuid)>> {
    let rows = sqlx::query(
        "SELECT parent_id, id FROM messages \
         WHERE (parent_id = ANY($2) OR ($3 AND parent_id IS NULL)) AND conversation_id = $1 \
         ORDER BY parent_id NULLS FIRST, seq",
    )
    .bind(conversation_id)
    .bind(parents)
    .bind(roots)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The newest message under `$1` (it included), which has no children of its own.
macro_rules! newest_under {
    ($id:literal) => {
        concat!(
            "(WITH RECURSIVE sub (id, seq) AS (
                SELECT id, seq FROM messages WHERE id = ",
            $id,
            "
                UNION ALL
                SELECT m.id, m.seq FROM messages m JOIN sub ON m.parent_id = sub.id
            ) SELECT id FROM sub ORDER BY seq DESC LIMIT 1)"
        )
    };
}

pub(super) async fn set_active_leaf(
    pool: &PgPool,
    user_id: &str,
    conversation_id: Uuid,
    message_id: Uuid,
) -> StoreResult<Option<Uuid>> {
    let leaf: Option<Option<Uuid>> = sqlx::query_scalar(concat!(
        "UPDATE conversations SET active_leaf_id = ",
        newest_under!("$3"),
        " WHERE id = $1 AND user_id = $2 \
         AND EXISTS (SELECT 1 FROM messages WHERE id = $3 AND conversation_id = $1) \
         RETURNING active_leaf_id"
    ))
    .bind(conversation_id)
    .bind(user_id)
    .bind(message_id)
    .fetch_optional(pool)
    .await?;
    Ok(leaf.flatten())
}

/// Keeps the current content as a revision and writes the new one, in one statement.
const EDIT: &str = concat!(
    "WITH old AS (
        SELECT m.id, m.content, m.tokens, COALESCE(m.edited_at, m.created_at) AS written
          FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.id = $1 AND c.user_id = $2 FOR UPDATE OF m
    ), revision AS (
        INSERT INTO message_revisions (message_id, content, tokens, written_at, replaced_at)
        SELECT id, content, tokens, written, $5 FROM old
    )
    UPDATE messages SET content = $3, tokens = $4, edited_at = $5 FROM old
     WHERE messages.id = old.id RETURNING ",
    "messages.id, messages.conversation_id, messages.role, messages.content, messages.tokens, \
     messages.model, messages.metadata, messages.created_at, messages.parent_id, messages.edited_at"
);

pub(super) async fn edit_message(
    pool: &PgPool,
    user_id: &str,
    id: Uuid,
    content: &str,
    tokens: i64,
    at: Timestamp,
) -> StoreResult<Option<Message>> {
    let row = sqlx::query(EDIT)
        .bind(id)
        .bind(user_id)
        .bind(content)
        .bind(tokens)
        .bind(at)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(message).transpose()
}

pub(super) async fn revisions(pool: &PgPool, message_id: Uuid) -> StoreResult<Vec<Revision>> {
    let rows = sqlx::query(
        "SELECT content, tokens, written_at, replaced_at FROM message_revisions \
         WHERE message_id = $1 ORDER BY seq",
    )
    .bind(message_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Revision {
                content: r.try_get(0)?,
                tokens: r.try_get(1)?,
                written_at: r.try_get(2)?,
                replaced_at: r.try_get(3)?,
            })
        })
        .collect()
}

/// Deletes `$1` and everything under it, in one statement (the self-reference is checked at
/// its end); returns how many.
const DELETE_SUBTREE: &str = "WITH RECURSIVE sub (id) AS (
        SELECT $1::uuid
        UNION ALL
        SELECT m.id FROM messages m JOIN sub ON m.parent_id = sub.id
    ), gone AS (DELETE FROM messages WHERE id IN (SELECT id FROM sub) RETURNING 1)
    SELECT COUNT(*) FROM gone";

/// Mends the conversation `$1` after `$2` messages went: its count, and its active leaf when
/// that was among them (the newest left under the parent `$3`, else the conversation's).
const MEND: &str = concat!(
    "UPDATE conversations SET message_count = message_count - $2,
        active_leaf_id = CASE
            WHEN EXISTS (SELECT 1 FROM messages WHERE id = active_leaf_id) THEN active_leaf_id
            WHEN $3::uuid IS NOT NULL THEN ",
    newest_under!("$3"),
    "
            ELSE (SELECT id FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT 1)
        END
     WHERE id = $1 RETURNING active_leaf_id"
);

pub(super) async fn delete_message(
    pool: &PgPool,
    user_id: &str,
    id: Uuid,
) -> StoreResult<Option<RemovedMessages>> {
    let mut tx = pool.begin().await?;
    let target = sqlx::query(
        "SELECT m.conversation_id, m.parent_id, c.active_leaf_id FROM messages m \
         JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.id = $1 AND c.user_id = $2 FOR UPDATE OF c",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(target) = target else {
        return Ok(None);
    };
    let (conversation_id, parent_id): (Uuid, Option<Uuid>) =
        (target.try_get(0)?, target.try_get(1)?);
    let before: Option<Uuid> = target.try_get(2)?;
    let count: i64 = sqlx::query_scalar(DELETE_SUBTREE)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let active_leaf_id: Option<Uuid> = sqlx::query_scalar(MEND)
        .bind(conversation_id)
        .bind(count)
        .bind(parent_id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(RemovedMessages {
        conversation_id,
        count: u64::try_from(count).unwrap_or(0),
        active_leaf_id,
        leaf_moved: active_leaf_id != before,
    }))
}

/// Every message of a conversation being stored whole, in one statement from arrays.
const INSERT_MESSAGES: &str = "INSERT INTO messages
    (id, conversation_id, role, content, tokens, model, metadata, created_at, parent_id, edited_at)
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int8[], $6::text[],
                         $7::jsonb[], $8::timestamptz[], $9::uuid[], $10::timestamptz[])";

pub(super) async fn insert_conversation(
    pool: &PgPool,
    new: &NewConversation,
    messages: &[Message],
    active_leaf_id: Option<Uuid>,
) -> StoreResult<Conversation> {
    let mut tx = pool.begin().await?;
    bind_conversation(
        sqlx::query(
            "INSERT INTO conversations (id, user_id, title, system_prompt, model, metadata, \
             message_count, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
        ),
        new,
    )
    .execute(&mut *tx)
    .await
    .map_err(write_error)?;
    sqlx::query(INSERT_MESSAGES)
        .bind(messages.iter().map(|m| m.id).collect::<Vec<_>>())
        .bind(
            messages
                .iter()
                .map(|m| m.conversation_id)
                .collect::<Vec<_>>(),
        )
        .bind(messages.iter().map(|m| m.role.as_str()).collect::<Vec<_>>())
        .bind(
            messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(messages.iter().map(|m| m.tokens).collect::<Vec<_>>())
        .bind(
            messages
                .iter()
                .map(|m| m.model.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            messages
                .iter()
                .map(|m| m.metadata.clone())
                .collect::<Vec<_>>(),
        )
        .bind(messages.iter().map(|m| m.created_at).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.parent_id).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.edited_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
    let row = sqlx::query(concat!(
        "UPDATE conversations SET active_leaf_id = $2 WHERE id = $1 RETURNING ",
        "id, user_id, title, system_prompt, model, metadata, message_count, created_at, \
         updated_at, archived, pinned, active_leaf_id, NULL::uuid AS active_run_id"
    ))
    .bind(new.id)
    .bind(active_leaf_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    super::conversation(&row)
}
