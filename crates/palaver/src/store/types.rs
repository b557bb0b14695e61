use chrono::{DateTime, NaiveDate, NaiveTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub type Timestamp = DateTime<Utc>;

/// The text form SQLite keeps an instant in: fixed-width RFC 3339 UTC
/// (`2026-01-01T00:00:00.000000Z`), which sorts and compares like the instant it names.
pub fn to_sqlite_text(t: Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Reads [`to_sqlite_text`] (or any RFC 3339 text) back.
pub fn from_sqlite_text(s: &str) -> Result<Timestamp, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

/// How a "tokens used since" question is answered without scanning every record: whole UTC
/// days from the rollup (`usage_daily`), and the records of a partial first day (none when
/// `since` is a midnight, as the daily quota's is) from the raw table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSpan {
    /// The first whole day read from the rollup.
    pub days_from: NaiveDate,
    /// Raw records with `from <= created_at < until`.
    pub partial_from: Timestamp,
    pub partial_until: Timestamp,
}

impl UsageSpan {
    pub fn since(since: Timestamp) -> UsageSpan {
        let day = since.date_naive();
        if since.time() == NaiveTime::MIN {
            return UsageSpan {
                days_from: day,
                partial_from: since,
                partial_until: since,
            };
        }
        let next = day.succ_opt().unwrap_or(day);
        UsageSpan {
            days_from: next,
            partial_from: since,
            partial_until: next.and_time(NaiveTime::MIN).and_utc(),
        }
    }
}

/// "Now", truncated to microseconds so that every backend stores and returns the same instant.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub total_tokens_used: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewConversation {
    pub id: Uuid,
    pub user_id: String,
    pub title: String,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: Timestamp,
}

impl Conversation {
    /// The conversation as it is first stored (the inverse of [`NewConversation::created`]).
    pub fn as_new(&self) -> NewConversation {
        NewConversation {
            id: self.id,
            user_id: self.user_id.clone(),
            title: self.title.clone(),
            system_prompt: self.system_prompt.clone(),
            model: self.model.clone(),
            metadata: self.metadata.clone(),
            created_at: self.created_at,
        }
    }
}

impl NewConversation {
    /// The conversation as stored: no messages yet, last activity at creation.
    pub fn created(&self) -> Conversation {
        Conversation {
            id: self.id,
            user_id: self.user_id.clone(),
            title: self.title.clone(),
            system_prompt: self.system_prompt.clone(),
            model: self.model.clone(),
            metadata: self.metadata.clone(),
            message_count: 0,
            archived: false,
            pinned: false,
            active_leaf_id: None,
            active_run_id: None,
            created_at: self.created_at,
            updated_at: self.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: Uuid,
    pub user_id: String,
    pub title: String,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub metadata: serde_json::Value,
    pub message_count: i64,
    /// Left out of the default listing (`?archived=true` lists these).
    pub archived: bool,
    /// Listed before the others.
    pub pinned: bool,
    /// The end of the branch its owner sees (`None` while it has no messages): the newest
    /// message written, or the one chosen with `PUT active-leaf`.
    pub active_leaf_id: Option<Uuid>,
    /// The run producing a reply in it right now, if any.
    pub active_run_id: Option<Uuid>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A change to a conversation's own fields (`PATCH`): `None` leaves a field as it is. It does
/// not move `updated_at`, which follows the messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationPatch {
    pub title: Option<String>,
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
    /// Replaces the whole metadata object.
    pub metadata: Option<serde_json::Value>,
}

/// Which of a user's conversations a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    /// The archived ones only (else only the others).
    pub archived: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    User,
    Assistant,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Assistant => "ASSISTANT",
            Role::System => "SYSTEM",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "USER" => Some(Role::User),
            "ASSISTANT" => Some(Role::Assistant),
            "SYSTEM" => Some(Role::System),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// The message this one follows (`None` for a first message); siblings are branches.
    pub parent_id: Option<Uuid>,
    pub role: Role,
    pub content: String,
    pub tokens: i64,
    pub model: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: Timestamp,
    /// When the content was last edited in place (its earlier contents are [`Revision`]s).
    pub edited_at: Option<Timestamp>,
}

/// An earlier content of a message edited in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub content: String,
    pub tokens: i64,
    /// When this content was written (the message's creation, or the edit before).
    pub written_at: Timestamp,
    pub replaced_at: Timestamp,
}

/// What deleting a message (and its subtree) did.
#[derive(Debug, Clone, PartialEq)]
pub struct RemovedMessages {
    pub conversation_id: Uuid,
    /// The message and every message under it.
    pub count: u64,
    /// The conversation's active leaf now (moved when it was among the deleted).
    pub active_leaf_id: Option<Uuid>,
    /// Whether the active leaf moved.
    pub leaf_moved: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub id: Uuid,
    pub user_id: String,
    pub conversation_id: Option<Uuid>,
    /// "chat" or "embedding".
    pub kind: String,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd: f64,
    pub created_at: Timestamp,
    /// The API key the call was made with (none for a JWT).
    pub api_key_id: Option<Uuid>,
    /// The end user named behind a shared key (`user`, `X-OpenWebUI-User-Id`).
    pub end_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelUsage {
    pub model: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UsageTotals {
    pub total_tokens: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub requests: i64,
    pub cost_usd: f64,
    pub conversations_count: i64,
    pub messages_count: i64,
    /// Newest usage record or conversation activity of the user.
    pub last_used: Option<Timestamp>,
    pub by_model: Vec<ModelUsage>,
}

impl UsageTotals {
    /// The totals of per-model sums (each backend reads those from its rollup).
    pub fn from_models(
        by_model: Vec<ModelUsage>,
        conversations_count: i64,
        messages_count: i64,
        last_used: Option<Timestamp>,
    ) -> UsageTotals {
        let sum = |f: fn(&ModelUsage) -> i64| by_model.iter().map(f).sum::<i64>();
        let (prompt_tokens, completion_tokens) =
            (sum(|m| m.prompt_tokens), sum(|m| m.completion_tokens));
        UsageTotals {
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens,
            completion_tokens,
            requests: sum(|m| m.requests),
            cost_usd: by_model.iter().map(|m| m.cost_usd).sum(),
            conversations_count,
            messages_count,
            last_used,
            by_model,
        }
    }
}
