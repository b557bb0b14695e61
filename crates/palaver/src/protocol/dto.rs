//! Wire shapes of API.md (camelCase JSON) and their conversions from store rows.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::service::{Page, PathMessage};
use crate::store::{self, Timestamp};

pub fn rfc3339(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: Uuid,
    #[schema(example = "New Conversation")]
    pub title: String,
    pub user_id: String,
    pub message_count: i64,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[schema(example = "2026-01-01T00:00:00.000Z")]
    pub created_at: String,
    /// Moves with every new message.
    pub updated_at: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    /// Left out of the default listing (`?archived=true` lists these).
    pub archived: bool,
    /// Listed first.
    pub pinned: bool,
    /// The end of the branch shown (`GET` returns the path to it); null while empty.
    pub active_leaf_id: Option<Uuid>,
    /// The run producing a reply in it right now (`GET /ai/runs/{id}/events` follows it).
    pub active_run_id: Option<Uuid>,
    /// In search results only (`?q=`): where the conversation matched.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub search_match: Option<SearchMatch>,
}

/// Where a conversation matched a search.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchMatch {
    /// The best-matching message; null when only the title matched.
    pub message_id: Option<Uuid>,
    /// An excerpt of that message (or the title), as plain text.
    pub snippet: String,
    /// The same excerpt in runs, the matched words with `highlight: true` (render these
    /// rather than parsing markup: message text is never HTML here).
    pub parts: Vec<SnippetPart>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SnippetPart {
    pub text: String,
    pub highlight: bool,
}

impl From<store::SearchHit> for Conversation {
    fn from(hit: store::SearchHit) -> Self {
        let search_match = SearchMatch {
            message_id: hit.message_id,
            snippet: hit.plain_snippet(),
            parts: hit
                .snippet_parts()
                .into_iter()
                .map(|p| SnippetPart {
                    text: p.text,
                    highlight: p.highlight,
                })
                .collect(),
        };
        Conversation {
            search_match: Some(search_match),
            ..hit.conversation.into()
        }
    }
}

impl From<store::Conversation> for Conversation {
    fn from(c: store::Conversation) -> Self {
        Conversation {
            id: c.id,
            title: c.title,
            user_id: c.user_id,
            message_count: c.message_count,
            metadata: c.metadata,
            created_at: rfc3339(&c.created_at),
            updated_at: rfc3339(&c.updated_at),
            model: c.model,
            system_prompt: c.system_prompt,
            archived: c.archived,
            pinned: c.pinned,
            active_leaf_id: c.active_leaf_id,
            active_run_id: c.active_run_id,
            search_match: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    User,
    Assistant,
    System,
}

impl From<store::Role> for Role {
    fn from(r: store::Role) -> Self {
        match r {
            store::Role::User => Role::User,
            store::Role::Assistant => Role::Assistant,
            store::Role::System => Role::System,
        }
    }
}

impl From<Role> for store::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::User => store::Role::User,
            Role::Assistant => store::Role::Assistant,
            Role::System => store::Role::System,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// The message this one follows; null for a first message.
    pub parent_id: Option<Uuid>,
    pub role: Role,
    pub content: String,
    pub tokens: i64,
    pub model: Option<String>,
    /// For example `{"stopped": true}` for a stream cut short.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: String,
    /// When the content was last edited in place (`GET /ai/messages/{id}/revisions` has the
    /// earlier ones); absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// On a path only: the messages with the same parent, this one included, oldest first
    /// (more than one: the path branches here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sibling_ids: Option<Vec<Uuid>>,
    /// On a path only: how many messages follow this one (more than one: branches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_count: Option<usize>,
}

impl From<store::Message> for Message {
    fn from(m: store::Message) -> Self {
        Message {
            id: m.id,
            conversation_id: m.conversation_id,
            parent_id: m.parent_id,
            role: m.role.into(),
            content: m.content,
            tokens: m.tokens,
            model: m.model,
            metadata: m.metadata,
            created_at: rfc3339(&m.created_at),
            edited_at: m.edited_at.as_ref().map(rfc3339),
            sibling_ids: None,
            child_count: None,
        }
    }
}

impl From<PathMessage> for Message {
    fn from(p: PathMessage) -> Self {
        Message {
            sibling_ids: Some(p.sibling_ids),
            child_count: Some(p.child_count),
            ..p.message.into()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationWithMessages {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// The active path, oldest first.
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct CreateConversationRequest {
    /// Defaults to "New Conversation".
    #[garde(length(chars, max = 200))]
    pub title: Option<String>,
    #[garde(length(chars, max = 32000))]
    pub system_prompt: Option<String>,
    #[garde(length(chars, min = 1, max = 200))]
    pub model: Option<String>,
    #[garde(custom(is_object))]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// `PATCH /ai/conversations/:id`: only the fields given change.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateConversationRequest {
    /// 1 to 200 characters (trimmed).
    #[garde(length(chars, min = 1, max = 200))]
    pub title: Option<String>,
    #[garde(skip)]
    pub archived: Option<bool>,
    #[garde(skip)]
    pub pinned: Option<bool>,
    /// Replaces the metadata object.
    #[garde(custom(is_object))]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

pub(super) fn is_object(value: &Option<serde_json::Value>, _: &()) -> garde::Result {
    match value {
        None | Some(serde_json::Value::Object(_)) => Ok(()),
        Some(_) => Err(garde::Error::new("must be a JSON object")),
    }
}

#[derive(Debug, Clone, Deserialize, IntoParams, garde::Validate)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page number, from 1.
    #[garde(range(min = 1))]
    #[param(minimum = 1, default = 1)]
    pub page: Option<u64>,
    /// Page size, 1 to 100.
    #[garde(range(min = 1, max = 100))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<u64>,
    /// `true` lists the archived conversations only; by default they are left out.
    #[garde(skip)]
    #[param(default = false)]
    pub archived: Option<bool>,
    /// Search: conversations whose messages hold every word (the last as a prefix; on
    /// PostgreSQL also in order inside other words, ranked below), or whose title holds them
    /// in order; title matches first, then by relevance, each with `match`. Words in more
    /// than 2,000 of the caller's messages: by newest match instead (see `totalExact`).
    #[garde(length(chars, min = 1, max = 200))]
    pub q: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    /// How many match in all; with `q`, a lower bound when `totalExact` is false.
    pub total: u64,
    /// False only for a search whose words occur in more messages than it scores (over
    /// 2,000 of the caller's): it then returns the conversations of the newest 2,000 matching
    /// messages, newest match first, and `total` counts those (a lower bound). Also false on
    /// PostgreSQL past 500 substring-only matches.
    pub total_exact: bool,
    pub page: u64,
    pub limit: u64,
    pub total_pages: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConversationPage {
    pub data: Vec<Conversation>,
    pub meta: PageMeta,
}

impl<T: Into<Conversation>> From<Page<T>> for ConversationPage {
    fn from(page: Page<T>) -> Self {
        let meta = PageMeta {
            total: page.total,
            total_exact: page.total_exact,
            page: page.page,
            limit: page.limit,
            total_pages: page.total_pages(),
        };
        ConversationPage {
            data: page.items.into_iter().map(Into::into).collect(),
            meta,
        }
    }
}
