//! The embedded store: one SQLite file in WAL mode.
//!
//! SQLite lets one writer in at a time, so writes go through a pool of one connection
//! (no `SQLITE_BUSY` between our own writers) and reads through a separate pool that
//! runs beside it. Ids are stored as hyphenated text and times as fixed-width RFC 3339
//! text, which sorts like the instant it names.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use uuid::Uuid;

use super::{
    Conversation, Message, ModelUsage, NewConversation, Role, SharedPool, Store, StoreError,
    StoreResult, Timestamp, UsageRecord, UsageTotals, User,
};

const READERS: u32 = 4;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

use super::{from_sqlite_text, to_sqlite_text as ts};

fn parse_ts(s: &str) -> StoreResult<Timestamp> {
    from_sqlite_text(s).map_err(|e| decode(format!("bad timestamp `{s}`: {e}")))
}

fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| decode(format!("bad uuid `{s}`: {e}")))
}

fn parse_json(s: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| decode(format!("bad JSON: {e}")))
}

fn decode(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(message.into()))
}

fn conversation(row: &SqliteRow) -> StoreResult<Conversation> {
    Ok(Conversation {
        id: parse_uuid(row.try_get("id")?)?,
        user_id: row.try_get("user_id")?,
        title: row.try_get("title")?,
        system_prompt: row.try_get("system_prompt")?,
        model: row.try_get("model")?,
        metadata: parse_json(row.try_get("metadata")?)?,
        message_count: row.try_get("message_count")?,
        created_at: parse_ts(row.try_get("created_at")?)?,
        updated_at: parse_ts(row.try_get("updated_at")?)?,
    })
}

fn message(row: &SqliteRow) -> StoreResult<Message> {
    let role: &str = row.try_get("role")?;
    Ok(Message {
        id: parse_uuid(row.try_get("id")?)?,
        conversation_id: parse_uuid(row.try_get("conversation_id")?)?,
        role: Role::parse(role).ok_or_else(|| decode(format!("bad role `{role}`")))?,
        content: row.try_get("content")?,
        tokens: row.try_get("tokens")?,
        model: row.try_get("model")?,
        metadata: parse_json(row.try_get("metadata")?)?,
        created_at: parse_ts(row.try_get("created_at")?)?,
    })
}

const CONVERSATION_COLUMNS: &str =
    "id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at";

impl SqliteStore {
    /// Opens (creating when missing) the database at `url` (`sqlite://path` or `sqlite::memory:`).
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let filename = options.get_filename().to_owned();
        let in_memory =
            filename.as_os_str().is_empty() || filename.to_string_lossy().contains(":memory:");
        if !in_memory
            && let Some(parent) = filename.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READERS)
                .min_connections(1)
                .connect_with(options.read_only(true))
                .await?
        };
        Ok(SqliteStore { writer, reader })
    }

    /// Runs a write on the writer: a statement (returns the rows it changed) or, with
    /// `script`, a `BEGIN ... SELECT changes(); COMMIT;` script (returns the count it selects;
    /// the rows-affected total of a script also counts stale values).
    ///
    /// A script runs in a task of its own and to its end even when the caller is cancelled:
    /// sqlx stops a dropped query between statements, which could leave the one writer
    /// connection inside an open transaction. On an error the transaction is rolled back.
    async fn run_write(&self, query: SqliteQuery, script: bool) -> StoreResult<u64> {
        let writer = self.writer.clone();
        let write = async move {
            let mut conn = writer.acquire().await?;
            let result = if script {
                query
                    .fetch_all(&mut *conn)
                    .await
                    .and_then(|rows| match rows.first() {
                        Some(row) => row.try_get::<i64, _>(0).map(|n| n.max(0) as u64),
                        None => Ok(0),
                    })
            } else {
                query
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected())
            };
            if result.is_err() && script {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            match result {
                Ok(changed) => Ok(changed),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    Err(StoreError::Conflict)
                }
                Err(other) => Err(other.into()),
            }
        };
        if script {
            tokio::spawn(write).await.map_err(|e| {
                StoreError::Database(sqlx::Error::Protocol(format!("write task failed: {e}")))
            })?
        } else {
            write.await
        }
    }

    /// The write pool (for components that keep their own tables in the same file).
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn shared_pool(&self) -> SharedPool {
        SharedPool::Sqlite(self.writer.clone())
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn ensure_user(&self, user_id: &str, now: Timestamp) -> StoreResult<()> {
        sqlx::query("INSERT INTO users (id, total_tokens_used, created_at) VALUES (?1, 0, ?2) ON CONFLICT (id) DO NOTHING")
            .bind(user_id)
            .bind(ts(now))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn get_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, total_tokens_used, created_at FROM users WHERE id = ?1")
            .bind(user_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            Ok(User {
                id: row.try_get("id")?,
                total_tokens_used: row.try_get("total_tokens_used")?,
                created_at: parse_ts(row.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn create_conversation(&self, new: &NewConversation) -> StoreResult<Conversation> {
        let result = sqlx::query(
            "INSERT INTO conversations (id, user_id, title, system_prompt, model, metadata, message_count, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
        )
        .bind(new.id.to_string())
        .bind(&new.user_id)
        .bind(&new.title)
        .bind(&new.system_prompt)
        .bind(&new.model)
        .bind(new.metadata.to_string())
        .bind(ts(new.created_at))
        .execute(&self.writer)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict);
            }
            other => other?,
        };
        Ok(new.created())
    }

    async fn list_conversations(
        &self,
        user_id: &str,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Conversation>, u64)> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM conversations WHERE user_id = ?1")
                .bind(user_id)
                .fetch_one(&self.reader)
                .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE user_id = ?1 \
             ORDER BY updated_at DESC, id DESC LIMIT ?2 OFFSET ?3"
        )))
        .bind(user_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        let conversations = rows
            .iter()
            .map(conversation)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((conversations, u64::try_from(total).unwrap_or(0)))
    }

    async fn get_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<Option<Conversation>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1 AND user_id = ?2"
        )))
        .bind(id.to_string())
        .bind(user_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(conversation).transpose()
    }

    async fn delete_conversation(&self, user_id: &str, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM conversations WHERE id = ?1 AND user_id = ?2")
            .bind(id.to_string())
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_messages(&self, conversation_id: Uuid) -> StoreResult<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT id, conversation_id, role, content, tokens, model, metadata, created_at FROM messages \
             WHERE conversation_id = ?1 ORDER BY created_at, seq",
        )
        .bind(conversation_id.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(message).collect()
    }

    async fn recent_messages(
        &self,
        conversation_id: Uuid,
        limit: u64,
    ) -> StoreResult<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT seq, id, conversation_id, role, content, tokens, model, metadata, created_at \
             FROM messages WHERE conversation_id = ?1 ORDER BY created_at DESC, seq DESC LIMIT ?2) \
             ORDER BY created_at, seq",
        )
        .bind(conversation_id.to_string())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(message).collect()
    }

    async fn append_message(&self, msg: &Message, usage: Option<&UsageRecord>) -> StoreResult<()> {
        // One query, one trip to the connection's worker thread; nothing is written when the
        // conversation is missing. Values are bound owned, so the write can run in a task of
        // its own (see `run_write`).
        let script = if usage.is_some() {
            APPEND_WITH_USAGE
        } else {
            APPEND
        };
        let mut query = sqlx::query(script)
            .bind(msg.id.to_string())
            .bind(msg.conversation_id.to_string())
            .bind(msg.role.as_str())
            .bind(msg.content.clone())
            .bind(msg.tokens)
            .bind(msg.model.clone())
            .bind(msg.metadata.to_string())
            .bind(ts(msg.created_at));
        if let Some(usage) = usage {
            query = bind_usage(query, usage);
        }
        let changed = self.run_write(query, usage.is_some()).await?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn record_usage(&self, usage: &UsageRecord) -> StoreResult<()> {
        let query = bind_usage(sqlx::query(RECORD_USAGE), usage);
        self.run_write(query, false).await?;
        Ok(())
    }

    async fn usage_stats(&self, user_id: &str) -> StoreResult<UsageTotals> {
        let totals = sqlx::query(
            "SELECT COALESCE(SUM(prompt_tokens), 0) AS prompt, COALESCE(SUM(completion_tokens), 0) AS completion, \
             COUNT(*) AS requests, COALESCE(SUM(cost_usd), 0.0) AS cost, MAX(created_at) AS last \
             FROM usage_records WHERE user_id = ?1",
        )
        .bind(user_id)
        .fetch_one(&self.reader)
        .await?;
        let by_model = sqlx::query(
            "SELECT model, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt, SUM(completion_tokens) AS completion, \
             SUM(cost_usd) AS cost FROM usage_records WHERE user_id = ?1 GROUP BY model ORDER BY model",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        let conversations_count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM conversations WHERE user_id = ?1")
                .bind(user_id)
                .fetch_one(&self.reader)
                .await?;
        let messages = sqlx::query(
            "SELECT COUNT(*) AS n, MAX(m.created_at) AS last FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id WHERE c.user_id = ?1",
        )
        .bind(user_id)
        .fetch_one(&self.reader)
        .await?;

        let prompt_tokens: i64 = totals.try_get("prompt")?;
        let completion_tokens: i64 = totals.try_get("completion")?;
        let last_usage = totals
            .try_get::<Option<String>, _>("last")?
            .as_deref()
            .map(parse_ts)
            .transpose()?;
        let last_message = messages
            .try_get::<Option<String>, _>("last")?
            .as_deref()
            .map(parse_ts)
            .transpose()?;
        Ok(UsageTotals {
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens,
            completion_tokens,
            requests: totals.try_get("requests")?,
            cost_usd: totals.try_get("cost")?,
            conversations_count,
            messages_count: messages.try_get("n")?,
            last_used: last_usage.max(last_message),
            by_model: by_model
                .iter()
                .map(|row| {
                    Ok(ModelUsage {
                        model: row.try_get("model")?,
                        requests: row.try_get("requests")?,
                        prompt_tokens: row.try_get("prompt")?,
                        completion_tokens: row.try_get("completion")?,
                        cost_usd: row.try_get("cost")?,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?,
        })
    }

    async fn tokens_used_since(&self, user_id: &str, since: Timestamp) -> StoreResult<i64> {
        let used: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_records \
             WHERE user_id = ?1 AND created_at >= ?2",
        )
        .bind(user_id)
        .bind(ts(since))
        .fetch_one(&self.reader)
        .await?;
        Ok(used)
    }
}

type SqliteQuery = sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds a usage record (owned) after the parameters already bound.
fn bind_usage(query: SqliteQuery, usage: &UsageRecord) -> SqliteQuery {
    query
        .bind(usage.id.to_string())
        .bind(usage.user_id.clone())
        .bind(usage.conversation_id.map(|id| id.to_string()))
        .bind(usage.kind.clone())
        .bind(usage.model.clone())
        .bind(usage.prompt_tokens)
        .bind(usage.completion_tokens)
        .bind(usage.cost_usd)
        .bind(ts(usage.created_at))
}

/// Appends a message (`?1`..`?8`) if its conversation exists; a trigger moves the conversation.
const APPEND: &str =
    "INSERT INTO messages (id, conversation_id, role, content, tokens, model, metadata, created_at)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?2)";

/// `APPEND` and, only if the message was stored, its usage record (`?9`..`?17`; a trigger adds
/// it to the user's total), in one transaction; the one row it returns says whether the usage
/// record was stored. Every statement numbers its parameters from `?1` without gaps: sqlx
/// binds a multi-statement query correctly only then.
const APPEND_WITH_USAGE: &str = "BEGIN IMMEDIATE;
INSERT INTO messages (id, conversation_id, role, content, tokens, model, metadata, created_at)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?2);
INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, completion_tokens, cost_usd, created_at)
    SELECT ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17 FROM messages
     WHERE id = ?1 AND conversation_id = ?2 AND role = ?3 AND content = ?4 AND tokens = ?5
       AND model IS ?6 AND metadata = ?7 AND created_at = ?8;
SELECT changes();
COMMIT;";

/// A usage record (`?1`..`?9`); a trigger adds it to the user's total.
const RECORD_USAGE: &str = "INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, completion_tokens, cost_usd, created_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
