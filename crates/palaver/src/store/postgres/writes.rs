//! The statements that write messages, conversations and usage records, and their binds.

use super::super::{Message, NewConversation, StoreError, UsageRecord};

pub(super) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds a usage record after the parameters already bound.
pub(super) fn bind_usage<'q>(query: PgQuery<'q>, usage: &'q UsageRecord) -> PgQuery<'q> {
    query
        .bind(usage.id)
        .bind(&usage.user_id)
        .bind(usage.conversation_id)
        .bind(&usage.kind)
        .bind(&usage.model)
        .bind(usage.prompt_tokens)
        .bind(usage.completion_tokens)
        .bind(usage.cost_usd)
        .bind(usage.created_at)
}

/// Binds a usage record's attribution (its API key and end user): the last two parameters
/// of every statement that writes a usage record.
pub(super) fn bind_attribution<'q>(query: PgQuery<'q>, usage: &'q UsageRecord) -> PgQuery<'q> {
    query.bind(usage.api_key_id).bind(&usage.end_user)
}

/// Appends a message (`$1`..`$10`) if its conversation exists and its parent (`$9`) is a
/// message of it.
pub(super) const APPEND: &str = concat!(
    "INSERT INTO messages ",
    message_insert!(),
    " ",
    append_where!()
);

/// A conversation (`$1`..`$7`, see [`bind_conversation`]) and its first message
/// (`$8`..`$17`, see [`bind_message`]), in one statement.
pub(super) const START_CONVERSATION: &str = "WITH conversation AS (
    INSERT INTO conversations (id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)
    RETURNING id)
INSERT INTO messages (id, conversation_id, role, content, tokens, model, metadata, created_at, parent_id, edited_at)
    SELECT $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 FROM conversation";

/// Binds a new conversation's columns as `$1`..`$7`.
pub(super) fn bind_conversation<'q>(query: PgQuery<'q>, new: &'q NewConversation) -> PgQuery<'q> {
    query
        .bind(new.id)
        .bind(&new.user_id)
        .bind(&new.title)
        .bind(&new.system_prompt)
        .bind(&new.model)
        .bind(&new.metadata)
        .bind(new.created_at)
}

/// Binds a message's columns in the order of the `messages` INSERTs above (10 parameters).
pub(super) fn bind_message<'q>(query: PgQuery<'q>, msg: &'q Message) -> PgQuery<'q> {
    query
        .bind(msg.id)
        .bind(msg.conversation_id)
        .bind(msg.role.as_str())
        .bind(&msg.content)
        .bind(msg.tokens)
        .bind(&msg.model)
        .bind(&msg.metadata)
        .bind(msg.created_at)
        .bind(msg.parent_id)
        .bind(msg.edited_at)
}

/// A write's error: a unique violation is a conflict.
pub(super) fn write_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::Conflict,
        other => other.into(),
    }
}

/// `APPEND` and, only if the message was stored, its usage record (`$11`..`$19`, and its
/// attribution `$20`, `$21`).
pub(super) const APPEND_WITH_USAGE: &str = concat!(
    "WITH message AS (INSERT INTO messages ",
    message_insert!(),
    " ",
    append_where!(),
    " RETURNING id)
INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, completion_tokens, cost_usd, created_at, api_key_id, end_user)
    SELECT $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21 FROM message"
);

/// A usage record (`$1`..`$9`, and its attribution `$10`, `$11`).
pub(super) const RECORD_USAGE: &str = "INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, completion_tokens, cost_usd, created_at, api_key_id, end_user)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
