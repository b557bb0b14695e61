//! The embedded store: one SQLite file in WAL mode, on the [`embedded`](super::embedded)
//! engine (one writer thread committing concurrent writes together, read-only connections
//! beside it). Ids are stored as hyphenated text and times as fixed-width RFC 3339 text,
//! which sorts like the instant it names.

mod conversations;
mod job_rows;
mod jobs;
mod keys;
mod runs;
mod search;
mod templates;
mod tree;
mod usage;
mod users;

use async_trait::async_trait;
use rusqlite::OptionalExtension;
use uuid::Uuid;

use super::embedded::{Db, DbError};
use super::{
    Conversation, ConversationFilter, ConversationPatch, Message, NewConversation, RemovedMessages,
    Revision, Run, RunEnd, SearchPage, SearchQuery, Store, StoreError, StoreResult, Timestamp,
    UsageRecord, UsageTotals, User,
};
use conversations::{ConversationRow, MessageRow, conversation, conversation_columns};
pub use jobs::SqliteJobStore;
use usage::{UsageRow, usage_stats};

use super::to_sqlite_text as ts;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    db: Db,
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        if e.is_unique_violation() {
            StoreError::Conflict
        } else {
            StoreError::Other(Box::new(e))
        }
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `url` (`sqlite://path` or `sqlite::memory:`).
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        Ok(SqliteStore {
            db: Db::open(url).await?,
        })
    }

    /// The `jobs` table of this database, on the same engine (one writer thread for both).
    pub fn jobs(&self) -> SqliteJobStore {
        SqliteJobStore::new(self.db.clone())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        Ok(self.db.migrate(&MIGRATOR).await?)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db
            .read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await?;
        Ok(())
    }

    async fn ensure_user(&self, user_id: &str, now: Timestamp) -> StoreResult<()> {
        let (user_id, now) = (user_id.to_owned(), ts(now));
        self.db
            .write(move |c| users::ensure(c, &user_id, &now))
            .await?;
        Ok(())
    }

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let user_id = user_id.to_owned();
        Ok(self.db.read(move |c| users::get(c, &user_id)).await?)
    }

    async fn create_conversation(&self, new: &NewConversation) -> StoreResult<Conversation> {
        let row = ConversationRow::from(new);
        self.db.write(move |c| row.insert(c)).await?;
        Ok(new.created())
    }

    async fn start_conversation(&self, new: &NewConversation, first: &Message) -> StoreResult<()> {
        if first.conversation_id != new.id {
            return Err(StoreError::NotFound);
        }
        let conversation = ConversationRow::from(new);
        let message = MessageRow::from(first);
        self.db
            .write(move |c| {
                conversation.insert(c)?;
                message.insert(c)
            })
            .await?;
        Ok(())
    }

    async fn list_conversations(
        &self,
        user_id: &str,
        filter: ConversationFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Conversation>, u64)> {
        let user_id = user_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let archived = filter.archived;
        Ok(self
            .db
            .read(move |c| conversations::list(c, &user_id, archived, limit, offset))
            .await?)
    }

    async fn get_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Conversation>> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(concat!(
                    "SELECT ",
                    conversation_columns!(),
                    " FROM conversations WHERE id = ?1 AND user_id = ?2"
                ))?
                .query_row([id, user_id], conversation)
                .optional()
            })
            .await?)
    }

    async fn search_conversations(
        &self,
        user_id: &str,
        query: &SearchQuery,
        filter: ConversationFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<SearchPage> {
        let (user_id, query) = (user_id.to_owned(), query.clone());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        Ok(self
            .db
            .read(move |c| search::search(c, &user_id, &query, filter, offset, limit))
            .await?)
    }

    async fn update_conversation(
        &self,
        user_id: &str,
        id: Uuid,
        patch: &ConversationPatch,
    ) -> StoreResult<Option<Conversation>> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        let patch = patch.clone();
        Ok(self
            .db
            .write(move |c| conversations::update(c, &user_id, &id, &patch))
            .await?)
    }

    async fn set_title_if(
        &self,
        user_id: &str,
        id: Uuid,
        expected: &str,
        title: &str,
    ) -> StoreResult<bool> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        let (expected, title) = (expected.to_owned(), title.to_owned());
        let changed = self
            .db
            .write(move |c| conversations::set_title_if(c, &id, &user_id, &expected, &title))
            .await?;
        Ok(changed == 1)
    }

    async fn delete_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<bool> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        let deleted = self
            .db
            .write(move |c| {
                c.prepare_cached("DELETE FROM conversations WHERE id = ?1 AND user_id = ?2")?
                    .execute([id, user_id])
            })
            .await?;
        Ok(deleted > 0)
    }

    async fn list_messages(&self, conversation_id: Uuid) -> StoreResult<Vec<Message>> {
        let id = conversation_id.to_string();
        Ok(self.db.read(move |c| tree::list_messages(c, &id)).await?)
    }

    async fn get_message(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Message>> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        Ok(self
            .db
            .read(move |c| tree::get_message(c, &user_id, &id))
            .await?)
    }

    async fn path(
        &self,
        conversation_id: Uuid,
        leaf: Uuid,
        limit: u64,
    ) -> StoreResult<Vec<Message>> {
        let (conversation, leaf) = (conversation_id.to_string(), leaf.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .db
            .read(move |c| tree::path(c, &conversation, &leaf, limit))
            .await?)
    }

    async fn children(
        &self,
        conversation_id: Uuid,
        parents: &[Uuid],
        roots: bool,
    ) -> StoreResult<Vec<(Option<Uuid>, Uuid)>> {
        let (conversation, parents) = (conversation_id.to_string(), parents.to_vec());
        Ok(self
            .db
            .read(move |c| tree::children(c, &conversation, &parents, roots))
            .await?)
    }

    async fn set_active_leaf(
        &self,
        user_id: &str,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> StoreResult<Option<Uuid>> {
        let (user_id, conversation) = (user_id.to_owned(), conversation_id.to_string());
        let message_id = message_id.to_string();
        Ok(self
            .db
            .write(move |c| tree::set_active_leaf(c, &user_id, &conversation, &message_id))
            .await?)
    }

    async fn edit_message(
        &self,
        user_id: &str,
        id: Uuid,
        content: &str,
        tokens: i64,
        at: Timestamp,
    ) -> StoreResult<Option<Message>> {
        let (user_id, id, content) = (user_id.to_owned(), id.to_string(), content.to_owned());
        Ok(self
            .db
            .write(move |c| tree::edit_message(c, &user_id, &id, &content, tokens, at))
            .await?)
    }

    async fn revisions(&self, message_id: Uuid) -> StoreResult<Vec<Revision>> {
        let id = message_id.to_string();
        Ok(self.db.read(move |c| tree::revisions(c, &id)).await?)
    }

    async fn delete_message(
        &self,
        user_id: &str,
        id: Uuid,
    ) -> StoreResult<Option<RemovedMessages>> {
        self.remove_subtree(user_id, id).await
    }

    async fn insert_conversation(
        &self,
        new: &NewConversation,
        messages: &[Message],
        active_leaf_id: Option<Uuid>,
    ) -> StoreResult<Conversation> {
        self.store_whole(new, messages, active_leaf_id).await
    }

    async fn append_message(&self, msg: &Message, usage: Option<&UsageRecord>) -> StoreResult<()> {
        // Nothing is written when the conversation is missing; the usage record goes in the
        // same transaction as its message (triggers move the conversation and the user's total).
        let row = MessageRow::from(msg);
        let usage = usage.map(UsageRow::from);
        let stored = self
            .db
            .write(move |c| {
                let stored = row.insert(c)?;
                if stored == 1
                    && let Some(usage) = usage
                {
                    usage.insert(c)?;
                }
                Ok(stored)
            })
            .await?;
        if stored == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn begin_exchange(
        &self,
        new: Option<&NewConversation>,
        message: Option<&Message>,
        run: &Run,
    ) -> StoreResult<()> {
        self.begin_run_with(new, message, run).await
    }

    async fn end_exchange(
        &self,
        reply: &Message,
        usage: &UsageRecord,
        run_id: Uuid,
        end: &RunEnd,
    ) -> StoreResult<()> {
        self.end_run_with(reply, usage, run_id, end).await
    }

    async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()> {
        let usage = UsageRow::from(usage);
        self.db.write(move |c| usage.insert(c)).await?;
        Ok(())
    }

    async fn usage_stats(&self, user_id: &str) -> StoreResult<UsageTotals> {
        let user_id = user_id.to_owned();
        Ok(self.db.read(move |c| usage_stats(c, &user_id)).await?)
    }

    async fn tokens_used_since(&self, user_id: &str, since: Timestamp) -> StoreResult<i64> {
        let user_id = user_id.to_owned();
        Ok(self
            .db
            .read(move |c| usage::tokens_used_since(c, &user_id, since))
            .await?)
    }

    async fn prune_usage(&self, before: Timestamp, limit: u32) -> StoreResult<u64> {
        let before = ts(before);
        let deleted = self
            .db
            .write(move |c| usage::prune(c, &before, limit))
            .await?;
        Ok(deleted as u64)
    }
}
