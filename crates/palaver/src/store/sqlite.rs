//! The embedded store: one SQLite file in WAL mode, on the [`embedded`](super::embedded)
//! engine (one writer thread committing concurrent writes together, read-only connections
//! beside it). Ids are stored as hyphenated text and times as fixed-width RFC 3339 text,
//! which sorts like the instant it names.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};
use uuid::Uuid;

use super::embedded::{Db, DbError};
use super::{
    Conversation, Message, ModelUsage, NewConversation, Role, SharedPool, Store, StoreError,
    StoreResult, Timestamp, UsageRecord, UsageTotals, User,
};

pub struct SqliteStore {
    db: Db,
}

use super::{from_sqlite_text, to_sqlite_text as ts};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A column that does not read as what it should be.
fn corrupt(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

fn uuid_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let s: String = row.get(i)?;
    Uuid::parse_str(&s).map_err(|e| corrupt(i, format!("bad uuid `{s}`: {e}")))
}

fn ts_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    let s: String = row.get(i)?;
    from_sqlite_text(&s).map_err(|e| corrupt(i, format!("bad timestamp `{s}`: {e}")))
}

fn opt_ts_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    let s: Option<String> = row.get(i)?;
    s.map(|s| from_sqlite_text(&s).map_err(|e| corrupt(i, format!("bad timestamp `{s}`: {e}"))))
        .transpose()
}

fn json_at(row: &Row<'_>, i: usize) -> rusqlite::Result<serde_json::Value> {
    let s: String = row.get(i)?;
    serde_json::from_str(&s).map_err(|e| corrupt(i, format!("bad JSON: {e}")))
}

const CONVERSATION_COLUMNS: &str =
    "id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at";

fn conversation(row: &Row<'_>) -> rusqlite::Result<Conversation> {
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
    })
}

const MESSAGE_COLUMNS: &str =
    "id, conversation_id, role, content, tokens, model, metadata, created_at";

fn message(row: &Row<'_>) -> rusqlite::Result<Message> {
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

impl From<DbError> for StoreError {
    fn from(e: DbError) -> StoreError {
        if e.is_unique_violation() {
            StoreError::Conflict
        } else {
            StoreError::Embedded(e)
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

    /// The engine (for components that keep their own tables in the same file).
    pub fn db(&self) -> &Db {
        &self.db
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn shared_pool(&self) -> SharedPool {
        SharedPool::Sqlite(self.db.clone())
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
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO users (id, total_tokens_used, created_at) VALUES (?1, 0, ?2) \
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![user_id, now])
            })
            .await?;
        Ok(())
    }

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let user_id = user_id.to_owned();
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT id, total_tokens_used, created_at FROM users WHERE id = ?1",
                )?
                .query_row([user_id], |row| {
                    Ok(User {
                        id: row.get(0)?,
                        total_tokens_used: row.get(1)?,
                        created_at: ts_at(row, 2)?,
                    })
                })
                .optional()
            })
            .await?)
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
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Conversation>, u64)> {
        let user_id = user_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        Ok(self
            .db
            .read(move |c| {
                let total: i64 = c
                    .prepare_cached("SELECT COUNT(*) FROM conversations WHERE user_id = ?1")?
                    .query_row([&user_id], |r| r.get(0))?;
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE user_id = ?1 \
                     ORDER BY updated_at DESC, id DESC LIMIT ?2 OFFSET ?3"
                ))?;
                let conversations = stmt
                    .query_map(params![user_id, limit, offset], conversation)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((conversations, u64::try_from(total).unwrap_or(0)))
            })
            .await?)
    }

    async fn get_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Conversation>> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1 AND user_id = ?2"
                ))?
                .query_row([id, user_id], conversation)
                .optional()
            })
            .await?)
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
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 ORDER BY created_at, seq"
                ))?
                .query_map([id], message)?
                .collect()
            })
            .await?)
    }

    async fn recent_messages(
        &self,
        conversation_id: Uuid,
        limit: u64,
    ) -> StoreResult<Vec<Message>> {
        let id = conversation_id.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM (SELECT seq, {MESSAGE_COLUMNS} \
                     FROM messages WHERE conversation_id = ?1 ORDER BY created_at DESC, seq DESC LIMIT ?2) \
                     ORDER BY created_at, seq"
                ))?
                .query_map(params![id, limit], message)?
                .collect()
            })
            .await?)
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
        let (user_id, since) = (user_id.to_owned(), ts(since));
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_records \
                     WHERE user_id = ?1 AND created_at >= ?2",
                )?
                .query_row([user_id, since], |r| r.get(0))
            })
            .await?)
    }
}

fn usage_stats(c: &rusqlite::Connection, user_id: &str) -> rusqlite::Result<UsageTotals> {
    let (prompt_tokens, completion_tokens, requests, cost_usd, last_usage): (
        i64,
        i64,
        i64,
        f64,
        Option<Timestamp>,
    ) = c
        .prepare_cached(
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), \
             COUNT(*), COALESCE(SUM(cost_usd), 0.0), MAX(created_at) \
             FROM usage_records WHERE user_id = ?1",
        )?
        .query_row([user_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, opt_ts_at(r, 4)?))
        })?;
    let by_model = c
        .prepare_cached(
            "SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd) \
             FROM usage_records WHERE user_id = ?1 GROUP BY model ORDER BY model",
        )?
        .query_map([user_id], |r| {
            Ok(ModelUsage {
                model: r.get(0)?,
                requests: r.get(1)?,
                prompt_tokens: r.get(2)?,
                completion_tokens: r.get(3)?,
                cost_usd: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let conversations_count: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM conversations WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))?;
    let (messages_count, last_message): (i64, Option<Timestamp>) = c
        .prepare_cached(
            "SELECT COUNT(*), MAX(m.created_at) FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id WHERE c.user_id = ?1",
        )?
        .query_row([user_id], |r| Ok((r.get(0)?, opt_ts_at(r, 1)?)))?;
    Ok(UsageTotals {
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens,
        completion_tokens,
        requests,
        cost_usd,
        conversations_count,
        messages_count,
        last_used: last_usage.max(last_message),
        by_model,
    })
}

/// A new conversation, owned, ready to insert.
struct ConversationRow {
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
    fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
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
struct MessageRow {
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
    fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
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

/// A usage record, owned, ready to insert (a trigger adds it to the user's total).
struct UsageRow {
    id: String,
    user_id: String,
    conversation_id: Option<String>,
    kind: String,
    model: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_usd: f64,
    created_at: String,
}

impl From<&UsageRecord> for UsageRow {
    fn from(u: &UsageRecord) -> UsageRow {
        UsageRow {
            id: u.id.to_string(),
            user_id: u.user_id.clone(),
            conversation_id: u.conversation_id.map(|id| id.to_string()),
            kind: u.kind.clone(),
            model: u.model.clone(),
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cost_usd: u.cost_usd,
            created_at: ts(u.created_at),
        }
    }
}

impl UsageRow {
    fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
        c.prepare_cached(
            "INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, completion_tokens, cost_usd, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            self.id,
            self.user_id,
            self.conversation_id,
            self.kind,
            self.model,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost_usd,
            self.created_at
        ])
    }
}

/// Appends a message (`?1`..`?8`) if its conversation exists; a trigger moves the conversation.
const APPEND: &str =
    "INSERT INTO messages (id, conversation_id, role, content, tokens, model, metadata, created_at)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?2)";
