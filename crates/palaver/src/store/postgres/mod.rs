//! The scaled-out store: PostgreSQL, shared by every instance.

mod jobs;
mod search;
mod usage;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use uuid::Uuid;

use super::{
    Conversation, ConversationFilter, ConversationPatch, Message, NewConversation, RemovedMessages,
    Revision, Role, Run, RunEnd, SearchPage, SearchQuery, Store, StoreError, StoreResult,
    Timestamp, UsageRecord, UsageTotals, User,
};
pub use jobs::PgJobStore;

pub struct PgStore {
    pool: PgPool,
}

pub(super) fn conversation(row: &PgRow) -> StoreResult<Conversation> {
    Ok(Conversation {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        system_prompt: row.try_get("system_prompt")?,
        model: row.try_get("model")?,
        metadata: row.try_get("metadata")?,
        message_count: row.try_get("message_count")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        archived: row.try_get("archived")?,
        pinned: row.try_get("pinned")?,
        active_leaf_id: row.try_get("active_leaf_id")?,
        active_run_id: row.try_get("active_run_id")?,
    })
}

pub(super) fn message(row: &PgRow) -> StoreResult<Message> {
    let role: &str = row.try_get("role")?;
    Ok(Message {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        role: Role::parse(role)
            .ok_or_else(|| StoreError::other(format!("bad role `{role}` in a message row")))?,
        content: row.try_get("content")?,
        tokens: row.try_get("tokens")?,
        model: row.try_get("model")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        parent_id: row.try_get("parent_id")?,
        edited_at: row.try_get("edited_at")?,
    })
}

/// The columns [`message`] reads.
macro_rules! message_columns {
    () => {
        "id, conversation_id, role, content, tokens, model, metadata, created_at, parent_id, edited_at"
    };
}

/// Selects the columns [`conversation`] reads.
macro_rules! conversations {
    () => {
        "SELECT id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at, \
         archived, pinned, active_leaf_id, \
         (SELECT r.id FROM runs r WHERE r.conversation_id = conversations.id \
         AND r.status IN ('queued', 'in_progress') ORDER BY r.created_at DESC LIMIT 1) AS active_run_id \
         FROM conversations"
    };
}

/// The columns `writes::bind_message` binds, and their parameters.
macro_rules! message_insert {
    () => {
        "(id, conversation_id, role, content, tokens, model, metadata, created_at, parent_id, edited_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10"
    };
}

/// An appended message's conversation exists and holds its parent.
macro_rules! append_where {
    () => {
        "WHERE EXISTS (SELECT 1 FROM conversations WHERE id = $2)
      AND ($9::uuid IS NULL OR EXISTS (SELECT 1 FROM messages WHERE id = $9 AND conversation_id = $2))"
    };
}

// After the macros, which they use.
mod conversations;
mod keys;
mod runs;
mod templates;
mod tree;
mod writes;

use writes::{
    APPEND, APPEND_WITH_USAGE, RECORD_USAGE, START_CONVERSATION, bind_attribution,
    bind_conversation, bind_message, bind_usage, write_error,
};

impl PgStore {
    /// A pool of 10 connections.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        PgStore::connect_with(url, 10).await
    }

    pub async fn connect_with(url: &str, max_connections: u32) -> StoreResult<PgStore> {
        // No ping before each acquire: it is a round trip per query. A connection the
        // server dropped fails its next query, which sqlx then closes.
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(PgStore { pool })
    }

    /// The `jobs` table of this database, on the same pool.
    pub fn jobs(&self) -> PgJobStore {
        PgJobStore::new(self.pool.clone())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        StoreError::Other(Box::new(e))
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(StoreError::other)?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn ensure_user(&self, user_id: &str, now: Timestamp) -> StoreResult<()> {
        sqlx::query("INSERT INTO users (id, total_tokens_used, created_at) VALUES ($1, 0, $2) ON CONFLICT (id) DO NOTHING")
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, total_tokens_used, created_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(User {
                id: row.try_get("id")?,
                total_tokens_used: row.try_get("total_tokens_used")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn create_conversation(&self, new: &NewConversation) -> StoreResult<Conversation> {
        let query = sqlx::query(
            "INSERT INTO conversations (id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
        );
        bind_conversation(query, new)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(new.created())
    }

    async fn start_conversation(&self, new: &NewConversation, first: &Message) -> StoreResult<()> {
        if first.conversation_id != new.id {
            return Err(StoreError::NotFound);
        }
        // One statement, one round trip: the message's foreign key and trigger run at its
        // end, when the conversation row exists.
        bind_message(
            bind_conversation(sqlx::query(START_CONVERSATION), new),
            first,
        )
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn list_conversations(
        &self,
        user_id: &str,
        filter: ConversationFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Conversation>, u64)> {
        conversations::list(&self.pool, user_id, filter, offset, limit).await
    }

    async fn search_conversations(
        &self,
        user_id: &str,
        query: &SearchQuery,
        filter: ConversationFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<SearchPage> {
        search::search(&self.pool, user_id, query, filter, offset, limit).await
    }

    async fn update_conversation(
        &self,
        user_id: &str,
        id: Uuid,
        patch: &ConversationPatch,
    ) -> StoreResult<Option<Conversation>> {
        conversations::update(&self.pool, user_id, id, patch).await
    }

    async fn set_title_if(
        &self,
        user_id: &str,
        id: Uuid,
        expected: &str,
        title: &str,
    ) -> StoreResult<bool> {
        conversations::set_title_if(&self.pool, user_id, id, expected, title).await
    }

    async fn get_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Conversation>> {
        conversations::get(&self.pool, user_id, id).await
    }

    async fn delete_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<bool> {
        conversations::delete(&self.pool, user_id, id).await
    }

    async fn list_messages(&self, conversation_id: Uuid) -> StoreResult<Vec<Message>> {
        tree::list_messages(&self.pool, conversation_id).await
    }

    async fn get_message(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Message>> {
        tree::get_message(&self.pool, user_id, id).await
    }

    async fn path(
        &self,
        conversation_id: Uuid,
        leaf: Uuid,
        limit: u64,
    ) -> StoreResult<Vec<Message>> {
        tree::path(&self.pool, conversation_id, leaf, limit).await
    }

    async fn children(
        &self,
        conversation_id: Uuid,
        parents: &[Uuid],
        roots: bool,
    ) -> StoreResult<Vec<(Option<Uuid>, Uuid)>> {
        tree::children(&self.pool, conversation_id, parents, roots).await
    }

    async fn set_active_leaf(
        &self,
        user_id: &str,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> StoreResult<Option<Uuid>> {
        tree::set_active_leaf(&self.pool, user_id, conversation_id, message_id).await
    }

    async fn edit_message(
        &self,
        user_id: &str,
        id: Uuid,
        content: &str,
        tokens: i64,
        at: Timestamp,
    ) -> StoreResult<Option<Message>> {
        tree::edit_message(&self.pool, user_id, id, content, tokens, at).await
    }

    async fn revisions(&self, message_id: Uuid) -> StoreResult<Vec<Revision>> {
        tree::revisions(&self.pool, message_id).await
    }

    async fn delete_message(
        &self,
        user_id: &str,
        id: Uuid,
    ) -> StoreResult<Option<RemovedMessages>> {
        tree::delete_message(&self.pool, user_id, id).await
    }

    async fn insert_conversation(
        &self,
        new: &NewConversation,
        messages: &[Message],
        active_leaf_id: Option<Uuid>,
    ) -> StoreResult<Conversation> {
        tree::insert_conversation(&self.pool, new, messages, active_leaf_id).await
    }

    async fn append_message(&self, msg: &Message, usage: Option<&UsageRecord>) -> StoreResult<()> {
        // One statement, one round trip: triggers move the conversation and the user's total.
        let query = bind_message(
            sqlx::query(if usage.is_some() {
                APPEND_WITH_USAGE
            } else {
                APPEND
            }),
            msg,
        );
        let query = match usage {
            Some(usage) => bind_attribution(bind_usage(query, usage), usage),
            None => query,
        };
        match query.execute(&self.pool).await.map_err(write_error)? {
            done if done.rows_affected() == 0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn begin_exchange(
        &self,
        new: Option<&NewConversation>,
        message: Option<&Message>,
        run: &Run,
    ) -> StoreResult<()> {
        runs::begin_exchange(&self.pool, new, message, run).await
    }

    async fn end_exchange(
        &self,
        reply: &Message,
        usage: &UsageRecord,
        run_id: Uuid,
        end: &RunEnd,
    ) -> StoreResult<()> {
        runs::end_exchange(&self.pool, reply, usage, run_id, end).await
    }

    async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()> {
        bind_attribution(bind_usage(sqlx::query(RECORD_USAGE), usage), usage)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn usage_stats(&self, user_id: &str) -> StoreResult<UsageTotals> {
        usage::usage_stats(&self.pool, user_id).await
    }

    async fn tokens_used_since(&self, user_id: &str, since: Timestamp) -> StoreResult<i64> {
        usage::tokens_used_since(&self.pool, user_id, since).await
    }

    async fn prune_usage(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        usage::prune(&self.pool, before, limit).await
    }
}
