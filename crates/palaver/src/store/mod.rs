//! Storage: one narrow trait, two implementations (SQLite and PostgreSQL).
//!
//! The service layer creates ids and timestamps; a store writes what it is given.
//! Every read that takes a `user_id` is scoped to that user, so another user's rows
//! are indistinguishable from missing ones.

pub mod embedded;
mod postgres;
mod sqlite;
mod types;

use async_trait::async_trait;
use uuid::Uuid;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use types::*;

/// Storage errors: the caller only ever needs to tell "not there" from "broken".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("a row with this key already exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Embedded(embedded::DbError),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A store's connection pool (see [`Store::shared_pool`]).
#[derive(Clone)]
pub enum SharedPool {
    Sqlite(embedded::Db),
    Postgres(sqlx::PgPool),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is ("sqlite" or "postgres").
    fn backend(&self) -> &'static str;

    /// The connection pool, for components that keep their own tables in the same database
    /// (the `jobs` table): on SQLite they share the store's one writer thread, so that
    /// writers never wait on each other's file lock and commit together.
    fn shared_pool(&self) -> SharedPool;

    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;

    /// A cheap round trip, for `/ready`.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates the user row the first time a `sub` is seen; a no-op afterwards.
    async fn ensure_user(&self, user_id: &str, now: Timestamp) -> StoreResult<()>;

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>>;

    async fn create_conversation(&self, new: &NewConversation) -> StoreResult<Conversation>;

    /// Creates a conversation together with its first message, in one transaction (a chat
    /// that starts a conversation pays one commit, or one round trip, for both).
    /// `Conflict` when the conversation or the message id exists already; `NotFound` when
    /// `first` names another conversation.
    async fn start_conversation(&self, new: &NewConversation, first: &Message) -> StoreResult<()>;

    /// One page of a user's conversations, latest activity first, and the user's total.
    async fn list_conversations(
        &self,
        user_id: &str,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Conversation>, u64)>;

    async fn get_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Conversation>>;

    /// Deletes a conversation and its messages; false when the user has no such conversation.
    async fn delete_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<bool>;

    /// Messages of a conversation, oldest first.
    async fn list_messages(&self, conversation_id: Uuid) -> StoreResult<Vec<Message>>;

    /// The newest `limit` messages of a conversation, returned oldest first.
    async fn recent_messages(&self, conversation_id: Uuid, limit: u64)
    -> StoreResult<Vec<Message>>;

    /// Appends a message (moving the conversation's `updated_at` and `message_count`) and,
    /// when given, records usage and adds it to the user's total, all in one transaction.
    /// `NotFound` when the conversation does not exist.
    async fn append_message(
        &self,
        message: &Message,
        usage: Option<&UsageRecord>,
    ) -> StoreResult<()>;

    /// Records usage that is not tied to a stored message (embeddings, failed calls).
    async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()>;

    /// Aggregated usage of one user.
    async fn usage_stats(&self, user_id: &str) -> StoreResult<UsageTotals>;

    /// Tokens a user has used since `since` (for quotas).
    async fn tokens_used_since(&self, user_id: &str, since: Timestamp) -> StoreResult<i64>;
}
