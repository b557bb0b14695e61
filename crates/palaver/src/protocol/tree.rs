//! Wire shapes of conversation trees: paths, the whole tree, the active leaf, edits,
//! regenerates and deletes of messages.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::chat::not_blank;
use super::dto::{Conversation, Message, rfc3339};
use crate::service::{PathPage, Regeneration};
use crate::store::{RemovedMessages, Revision};

/// `GET /ai/conversations/{id}/messages`: a page of a path.
#[derive(Debug, Clone, Deserialize, IntoParams, garde::Validate)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// The end of the path (by default the active leaf).
    #[garde(skip)]
    pub leaf: Option<Uuid>,
    /// The page holds the messages before this one on its path (the next older page).
    #[garde(skip)]
    pub before: Option<Uuid>,
    /// Page size, 1 to 200.
    #[garde(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<u64>,
}

/// A page of a path, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Older messages precede the page: ask again with `before` = the first one's id.
    pub has_more: bool,
}

impl From<PathPage> for MessagePage {
    fn from(page: PathPage) -> Self {
        MessagePage {
            messages: page.messages.into_iter().map(Into::into).collect(),
            has_more: page.has_more,
        }
    }
}

/// `GET /ai/conversations/{id}/tree`: every message, flat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationTree {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// Every message, each after its parent (`parentId` links them).
    pub messages: Vec<Message>,
}

/// `PUT /ai/conversations/{id}/active-leaf`.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActiveLeafRequest {
    /// A message of the conversation: the newest message under it becomes the active leaf.
    #[garde(skip)]
    pub message_id: Uuid,
}

/// `POST /ai/messages/{id}/regenerate`: a new reply beside an assistant message (or to a
/// user message); only the fields given differ from the exchange's defaults.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegenerateRequest {
    /// By default the model of the reply regenerated (else the conversation's).
    #[garde(length(min = 1, max = 200))]
    pub model: Option<String>,
    #[garde(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    #[garde(range(min = 1, max = 8000))]
    pub max_tokens: Option<u32>,
    /// Answer as `text/event-stream`, with the events of a streamed chat.
    #[garde(skip)]
    pub stream: Option<bool>,
}

impl RegenerateRequest {
    pub fn regeneration(&self) -> Regeneration {
        Regeneration {
            model: self.model.clone(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        }
    }
}

/// `PATCH /ai/messages/{id}`.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditMessageRequest {
    /// The new content, 1 to 32000 characters.
    #[garde(length(chars, min = 1, max = 32000), custom(not_blank))]
    pub content: String,
    /// `false` (the default): edit in place, keeping the previous content as a revision.
    /// `true` (user messages only): a new user message beside this one, and a new reply.
    #[garde(skip)]
    #[serde(default)]
    pub rerun: bool,
    /// With `rerun`: answer as `text/event-stream`.
    #[garde(skip)]
    pub stream: Option<bool>,
}

/// An earlier content of a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionDto {
    pub content: String,
    pub tokens: i64,
    /// When this content was written.
    pub written_at: String,
    /// When it was replaced.
    pub replaced_at: String,
}

impl From<Revision> for RevisionDto {
    fn from(r: Revision) -> Self {
        RevisionDto {
            content: r.content,
            tokens: r.tokens,
            written_at: rfc3339(&r.written_at),
            replaced_at: rfc3339(&r.replaced_at),
        }
    }
}

/// `GET /ai/messages/{id}/revisions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageRevisions {
    /// The message as it is now.
    pub message: Message,
    /// Its earlier contents, oldest first.
    pub revisions: Vec<RevisionDto>,
}

/// `DELETE /ai/messages/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletedMessages {
    pub conversation_id: Uuid,
    /// The message and every message under it.
    pub deleted_count: u64,
    /// The conversation's active leaf now.
    pub active_leaf_id: Option<Uuid>,
}

impl From<RemovedMessages> for DeletedMessages {
    fn from(r: RemovedMessages) -> Self {
        DeletedMessages {
            conversation_id: r.conversation_id,
            deleted_count: r.count,
            active_leaf_id: r.active_leaf_id,
        }
    }
}
