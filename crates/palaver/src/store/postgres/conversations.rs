//! Listing and changing conversations.

use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::super::{Conversation, ConversationFilter, ConversationPatch, StoreResult};
use super::conversation;

pub(super) async fn list(
    pool: &PgPool,
    user_id: &str,
    filter: ConversationFilter,
    offset: u64,
    limit: u64,
) -> StoreResult<(Vec<Conversation>, u64)> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM conversations WHERE user_id = $1 AND archived = $2",
    )
    .bind(user_id)
    .bind(filter.archived)
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query(concat!(
        conversations!(),
        " WHERE user_id = $1 AND archived = $2 \
         ORDER BY pinned DESC, updated_at DESC, id DESC LIMIT $3 OFFSET $4"
    ))
    .bind(user_id)
    .bind(filter.archived)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    let conversations = rows
        .iter()
        .map(conversation)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok((conversations, u64::try_from(total).unwrap_or(0)))
}

pub(super) async fn update(
    pool: &PgPool,
    user_id: &str,
    id: Uuid,
    patch: &ConversationPatch,
) -> StoreResult<Option<Conversation>> {
    let row = sqlx::query(
        "UPDATE conversations SET title = COALESCE($3, title), \
         archived = COALESCE($4, archived), pinned = COALESCE($5, pinned), \
         metadata = COALESCE($6, metadata) WHERE id = $1 AND user_id = $2 \
         RETURNING id, user_id, title, system_prompt, model, metadata, message_count, \
         created_at, updated_at, archived, pinned, active_leaf_id, \
         (SELECT r.id FROM runs r WHERE r.conversation_id = conversations.id \
         AND r.status IN ('queued', 'in_progress') ORDER BY r.created_at DESC LIMIT 1) AS active_run_id",
    )
    .bind(id)
    .bind(user_id)
    .bind(patch.title.as_deref())
    .bind(patch.archived)
    .bind(patch.pinned)
    .bind(patch.metadata.as_ref())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(conversation).transpose()
}

/// Sets the title only if it is still `expected`: one statement, so a rename between the
/// check and the write cannot be lost.
pub(super) async fn set_title_if(
    pool: &PgPool,
    user_id: &str,
    id: Uuid,
    expected: &str,
    title: &str,
) -> StoreResult<bool> {
    let changed = sqlx::query(
        "UPDATE conversations SET title = $4 WHERE id = $1 AND user_id = $2 AND title = $3",
    )
    .bind(id)
    .bind(user_id)
    .bind(expected)
    .bind(title)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

pub(super) async fn get(
    pool: &PgPool,
    user_id: &str,
    id: Uuid,
) -> StoreResult<Option<Conversation>> {
    let row = sqlx::query(concat!(conversations!(), " WHERE id = $1 AND user_id = $2"))
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(conversation).transpose()
}

/// Deletes a conversation (its messages and runs go with it); false when there is none.
pub(super) async fn delete(pool: &PgPool, user_id: &str, id: Uuid) -> StoreResult<bool> {
    let done = sqlx::query("DELETE FROM conversations WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}
