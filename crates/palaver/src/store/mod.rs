//! Storage: two narrow traits, [`Store`] (users, conversations, messages, usage, and through
//! [`RunStore`], [`TemplateStore`] and [`KeyStore`] runs, prompt templates and API keys) and
//! [`JobStore`] (the `jobs` table), each with a SQLite and a PostgreSQL implementation
//! (`sqlite/`, `postgres/`; SQLite runs on the [`embedded`] engine). [`connect`] opens both on
//! one database, so no connection pool leaves this module.
//!
//! The service layer creates ids and timestamps; a store writes what it is given.
//! Every read that takes a `user_id` is scoped to that user, so another user's rows
//! are indistinguishable from missing ones.

pub mod embedded;
pub mod jobs;
mod keys;
mod postgres;
mod runs;
mod search;
mod search_text;
mod sqlite;
mod templates;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::DatabaseConfig;

pub use jobs::{JobStore, JobStoreError, JobStoreResult};
pub use keys::{ApiKey, KeyStore};
pub use postgres::{PgJobStore, PgStore};
pub use runs::{Checkpoint, Run, RunEnd, RunStatus, RunStore};
pub use search::{
    MARK_END, MARK_START, SearchBounds, SearchHit, SearchPage, SearchQuery, SnippetPart,
    owner_token,
};
pub use sqlite::{SqliteJobStore, SqliteStore};
pub use templates::{
    Template, TemplateDefinition, TemplateMessage, TemplateRole, TemplateStore, TemplateVariable,
};
pub use types::*;

/// A backend's own error, kept as the source of [`StoreError::Other`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Storage errors: the caller only ever needs to tell "not there" and "already there" from
/// "broken" (which keeps the backend's error, to log).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("a row with this key already exists")]
    Conflict,
    #[error("database error: {0}")]
    Other(#[source] BoxError),
}

impl StoreError {
    pub fn other(e: impl Into<BoxError>) -> StoreError {
        StoreError::Other(e.into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The opened database: the conversation store and the `jobs` table, on one connection pool
/// (on SQLite, one writer thread: their writes never wait on each other's file lock, and
/// commit together).
#[derive(Clone)]
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub jobs: Arc<dyn JobStore>,
}

/// Opens the configured database (a SQLite file, or PostgreSQL with up to `pool_size`
/// connections) and applies pending migrations.
pub async fn connect(config: &DatabaseConfig, pool_size: u32) -> StoreResult<Backend> {
    let backend = match config {
        DatabaseConfig::Sqlite { url } => {
            let store = SqliteStore::connect(url).await?;
            let jobs = Arc::new(store.jobs());
            Backend {
                store: Arc::new(store),
                jobs,
            }
        }
        DatabaseConfig::Postgres { url } => {
            let store = PgStore::connect_with(url, pool_size).await?;
            let jobs = Arc::new(store.jobs());
            Backend {
                store: Arc::new(store),
                jobs,
            }
        }
    };
    backend.store.migrate().await?;
    Ok(backend)
}

#[async_trait]
pub trait Store: RunStore + TemplateStore + KeyStore {
    /// Which backend this is ("sqlite" or "postgres").
    fn backend(&self) -> &'static str;

    /// Applies pending migrations (of the `jobs` table too).
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

    /// One page of a user's conversations that match `filter`, pinned ones first, then latest
    /// activity first, and how many match in all.
    async fn list_conversations(
        &self,
        user_id: &str,
        filter: ConversationFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Conversation>, u64)>;

    async fn get_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Conversation>>;

    /// The user's conversations that match `query` (its words in a message, or in order in the
    /// title) and `filter`: title matches first, then by relevance, or by their newest match
    /// when the words match more messages than the query's [`SearchBounds`] let be scored;
    /// one page, and how many match.
    async fn search_conversations(
        &self,
        user_id: &str,
        query: &SearchQuery,
        filter: ConversationFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<SearchPage>;

    /// Applies `patch` to a conversation of `user_id` and returns it as it now is; `None`
    /// when the user has no such conversation.
    async fn update_conversation(
        &self,
        user_id: &str,
        id: Uuid,
        patch: &ConversationPatch,
    ) -> StoreResult<Option<Conversation>>;

    /// Sets the title of a conversation of `user_id` to `title` only if it is still
    /// `expected`, in one statement (a title job must never overwrite a title the user set
    /// while it waited); false when it is not (renamed, or no such conversation). `updated_at`
    /// does not move.
    async fn set_title_if(
        &self,
        user_id: &str,
        id: Uuid,
        expected: &str,
        title: &str,
    ) -> StoreResult<bool>;

    /// Deletes a conversation and its messages; false when the user has no such conversation.
    async fn delete_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<bool>;

    /// Every message of a conversation (the whole tree), in the order they were written
    /// (parents before their children).
    async fn list_messages(&self, conversation_id: Uuid) -> StoreResult<Vec<Message>>;

    /// A message of one of `user_id`'s conversations.
    async fn get_message(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Message>>;

    /// The path from the root of a conversation to `leaf`: the `limit` messages nearest to
    /// `leaf` (it included), oldest first; empty when `leaf` is not a message of
    /// `conversation_id`. Read by walking up from `leaf` (a recursive query): never the tree.
    async fn path(
        &self,
        conversation_id: Uuid,
        leaf: Uuid,
        limit: u64,
    ) -> StoreResult<Vec<Message>>;

    /// The children of each of `parents` (with `roots`, the conversation's first messages
    /// too) as `(parent, child)` pairs; each parent's children in the order they were written.
    async fn children(
        &self,
        conversation_id: Uuid,
        parents: &[Uuid],
        roots: bool,
    ) -> StoreResult<Vec<(Option<Uuid>, Uuid)>>;

    /// Makes the newest message under `message_id` (a leaf, or the message itself) the
    /// active leaf of a conversation of `user_id`, and returns it; `None` when the user has
    /// no such message in that conversation. `updated_at` does not move.
    async fn set_active_leaf(
        &self,
        user_id: &str,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> StoreResult<Option<Uuid>>;

    /// Replaces the content of a message of `user_id` (its previous content kept as a
    /// [`Revision`]), in one transaction; `None` when the user has no such message.
    async fn edit_message(
        &self,
        user_id: &str,
        id: Uuid,
        content: &str,
        tokens: i64,
        at: Timestamp,
    ) -> StoreResult<Option<Message>>;

    /// The earlier contents of a message, oldest first.
    async fn revisions(&self, message_id: Uuid) -> StoreResult<Vec<Revision>>;

    /// Deletes a message of `user_id` and every message under it, in one transaction. When
    /// the active leaf was among them, the newest message left under the deleted one's
    /// parent (for a first message: the conversation's newest, or none) becomes the active
    /// leaf. `None` when the user has no such message.
    async fn delete_message(&self, user_id: &str, id: Uuid)
    -> StoreResult<Option<RemovedMessages>>;

    /// Stores a whole conversation at once (a fork, an import): the conversation, its
    /// messages (each after its parent) and its active leaf, in one transaction.
    async fn insert_conversation(
        &self,
        new: &NewConversation,
        messages: &[Message],
        active_leaf_id: Option<Uuid>,
    ) -> StoreResult<Conversation>;

    /// Appends a message (moving the conversation's `updated_at` and `message_count`, and
    /// making it the active leaf) and, when given, records usage and adds it to the user's
    /// total, all in one transaction. `NotFound` when the conversation does not exist, or
    /// the message's parent is not a message of it.
    async fn append_message(
        &self,
        message: &Message,
        usage: Option<&UsageRecord>,
    ) -> StoreResult<()>;

    /// The first write of an exchange, in one transaction (one commit, one round trip): a new
    /// conversation (`new`), its user message (`message`, as [`Store::append_message`] without
    /// usage; none when it is stored already) and its run. Nothing is written when the
    /// message cannot be (`NotFound`).
    async fn begin_exchange(
        &self,
        new: Option<&NewConversation>,
        message: Option<&Message>,
        run: &Run,
    ) -> StoreResult<()>;

    /// The last write of an exchange, in one transaction: the reply with its usage (as
    /// [`Store::append_message`]) and the end of its run. `NotFound` (nothing written) when
    /// the conversation is gone.
    async fn end_exchange(
        &self,
        reply: &Message,
        usage: &UsageRecord,
        run_id: Uuid,
        end: &RunEnd,
    ) -> StoreResult<()>;

    /// Records usage that is not tied to a stored message (embeddings, failed calls).
    async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()>;

    /// Aggregated usage of one user, read from the per-day rollup (not from every record).
    async fn usage_stats(&self, user_id: &str) -> StoreResult<UsageTotals>;

    /// Tokens a user has used since `since` (for quotas): whole UTC days from the rollup, the
    /// rest of `since`'s own day from the records (see [`UsageSpan`]), so it stays exact for
    /// a `since` within the usage retention.
    async fn tokens_used_since(&self, user_id: &str, since: Timestamp) -> StoreResult<i64>;

    /// Deletes up to `limit` of the oldest usage records created before `before`; the rollup
    /// keeps what they counted, so totals and quotas do not change. Returns how many.
    async fn prune_usage(&self, before: Timestamp, limit: u32) -> StoreResult<u64>;
}
