//! Wire shapes of conversations copied whole: the fork request, the conversation document
//! that export writes and import reads (`palaver.conversation`, version 1), and the Markdown
//! export of the active path.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::dto::{Role, is_object};
use super::validate::{parse_json, validate};
use crate::error::ApiError;
use crate::service::{ImportInput, ImportMessage, PathMessage};
use crate::store::{self, Timestamp};

/// The document's `format`.
pub const FORMAT: &str = "palaver.conversation";
/// The document's `version`: the only one written and read.
pub const VERSION: u32 = 1;
/// At most this many messages in a document.
pub const MAX_MESSAGES: usize = 10_000;
/// At most this many characters in a message of a document: above the 32000 of a chat
/// message, so that a long reply (up to 8000 tokens) exports and imports too.
pub const MAX_CONTENT_CHARS: usize = 100_000;
/// At most this many tokens counted for one message of a document.
pub const MAX_TOKENS: i64 = 1_000_000;

/// `POST /ai/conversations/{id}/fork`.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForkRequest {
    /// A message of the conversation: the fork holds copies of the path from the root to it.
    #[garde(skip)]
    pub message_id: Uuid,
}

/// `GET /ai/conversations/{id}/export`.
#[derive(Debug, Clone, Deserialize, IntoParams, garde::Validate)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (the default): the whole tree as a conversation document; `markdown`: the
    /// active path, to read.
    #[garde(skip)]
    pub format: Option<ExportFormat>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    #[default]
    Json,
    Markdown,
}

/// A whole conversation tree, as export writes it and import reads it. On import, fields
/// marked "ignored" may be left out, and so may every optional one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDocument {
    /// Always `palaver.conversation`.
    #[garde(custom(is_format))]
    #[schema(example = "palaver.conversation")]
    pub format: String,
    /// Always 1.
    #[garde(custom(is_version))]
    #[schema(example = 1)]
    pub version: u32,
    #[garde(dive)]
    pub conversation: DocumentConversation,
    /// The end of the branch shown. On import: by default the last message (once each is
    /// after its parent); a message with children stands for the newest message under it.
    #[garde(skip)]
    pub active_leaf_id: Option<Uuid>,
    /// Every message, each after its parent (on import: in any order), at most 10,000.
    #[garde(length(max = MAX_MESSAGES), dive)]
    pub messages: Vec<DocumentMessage>,
}

/// The conversation's own fields in a document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct DocumentConversation {
    /// The exported conversation's id; ignored on import.
    #[garde(skip)]
    pub id: Option<Uuid>,
    /// Up to 200 characters; blank or absent: "New Conversation".
    #[garde(length(chars, max = 200))]
    pub title: Option<String>,
    #[garde(length(chars, max = 32000))]
    pub system_prompt: Option<String>,
    #[garde(length(chars, min = 1, max = 200))]
    pub model: Option<String>,
    /// An object.
    #[garde(custom(is_object))]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Ignored on import (the new conversation is created at the import).
    #[garde(skip)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
    /// Ignored on import.
    #[garde(skip)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<Timestamp>,
}

/// A message in a document: `id` and `parentId` link the tree (import gives every message
/// a new id and keeps the links).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct DocumentMessage {
    /// Unique in the document.
    #[garde(skip)]
    pub id: Uuid,
    /// Another message of the document; null or absent for a first message.
    #[garde(skip)]
    pub parent_id: Option<Uuid>,
    #[garde(skip)]
    pub role: Role,
    /// Up to 100,000 characters; may be empty.
    #[garde(length(chars, max = MAX_CONTENT_CHARS))]
    pub content: String,
    /// 0 to 1,000,000; counted when absent.
    #[garde(range(min = 0, max = MAX_TOKENS))]
    pub tokens: Option<i64>,
    #[garde(length(chars, min = 1, max = 200))]
    pub model: Option<String>,
    /// An object (absent: `{}`).
    #[garde(custom(is_object))]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Absent, or later than the import: the time of the import.
    #[garde(skip)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<Timestamp>,
    #[garde(skip)]
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Timestamp>,
}

/// What a document is, read before the rest: a document of another format or version is
/// refused as such, not for the first field it lacks.
#[derive(Debug, Deserialize, garde::Validate)]
struct DocumentHeader {
    #[garde(custom(is_format))]
    format: String,
    #[garde(custom(is_version))]
    version: u32,
}

fn is_format(value: &str, _: &()) -> garde::Result {
    if value == FORMAT {
        Ok(())
    } else {
        Err(garde::Error::new(format!("must be \"{FORMAT}\"")))
    }
}

fn is_version(value: &u32, _: &()) -> garde::Result {
    if *value == VERSION {
        Ok(())
    } else {
        Err(garde::Error::new(format!(
            "version {value} is not supported (this server reads version {VERSION})"
        )))
    }
}

impl ConversationDocument {
    /// Reads an import body: the format and version first, then the whole, validated.
    pub fn parse(bytes: &[u8]) -> Result<ConversationDocument, ApiError> {
        validate(&parse_json::<DocumentHeader>(bytes)?)?;
        let document = parse_json::<ConversationDocument>(bytes)?;
        validate(&document)?;
        Ok(document)
    }

    /// The document of a conversation and its whole tree (each message after its parent).
    pub fn export(conversation: store::Conversation, messages: Vec<store::Message>) -> Self {
        ConversationDocument {
            format: FORMAT.to_owned(),
            version: VERSION,
            active_leaf_id: conversation.active_leaf_id,
            conversation: DocumentConversation {
                id: Some(conversation.id),
                title: Some(conversation.title),
                system_prompt: conversation.system_prompt,
                model: conversation.model,
                metadata: Some(conversation.metadata),
                created_at: Some(conversation.created_at),
                updated_at: Some(conversation.updated_at),
            },
            messages: messages.into_iter().map(DocumentMessage::from).collect(),
        }
    }
}

impl From<store::Message> for DocumentMessage {
    fn from(m: store::Message) -> Self {
        DocumentMessage {
            id: m.id,
            parent_id: m.parent_id,
            role: m.role.into(),
            content: m.content,
            tokens: Some(m.tokens),
            model: m.model,
            metadata: Some(m.metadata),
            created_at: Some(m.created_at),
            edited_at: m.edited_at,
        }
    }
}

impl From<ConversationDocument> for ImportInput {
    fn from(d: ConversationDocument) -> Self {
        ImportInput {
            title: d.conversation.title,
            system_prompt: d.conversation.system_prompt,
            model: d.conversation.model,
            metadata: d.conversation.metadata,
            active_leaf_id: d.active_leaf_id,
            messages: d.messages.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<DocumentMessage> for ImportMessage {
    fn from(m: DocumentMessage) -> Self {
        ImportMessage {
            id: m.id,
            parent_id: m.parent_id,
            role: m.role.into(),
            content: m.content,
            tokens: m.tokens,
            model: m.model,
            metadata: m.metadata,
            created_at: m.created_at,
            edited_at: m.edited_at,
        }
    }
}

/// The active path as Markdown: the title as a heading, the system prompt, then each
/// message under a heading naming its role (and a reply's model), its content as it is.
pub fn markdown(conversation: &store::Conversation, path: &[PathMessage]) -> String {
    let mut out = format!("# {}\n", one_line(&conversation.title));
    if let Some(prompt) = conversation.system_prompt.as_deref() {
        out.push_str(&format!("\n## System prompt\n\n{}\n", prompt.trim_end()));
    }
    for PathMessage { message, .. } in path {
        let role = match message.role {
            store::Role::User => "User".to_owned(),
            store::Role::System => "System".to_owned(),
            store::Role::Assistant => match message.model.as_deref() {
                Some(model) => format!("Assistant ({})", one_line(model)),
                None => "Assistant".to_owned(),
            },
        };
        out.push_str(&format!("\n## {role}\n\n{}\n", message.content.trim_end()));
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A file name for a download of `title`: its ASCII letters and digits, lower case, other
/// runs as one `-` (at most 60 characters; "conversation" when nothing is left).
pub fn file_name(title: &str, extension: &str) -> String {
    let mut stem = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            stem.push(c.to_ascii_lowercase());
        } else if !stem.is_empty() && !stem.ends_with('-') {
            stem.push('-');
        }
        if stem.len() >= 60 {
            break;
        }
    }
    let stem = stem.trim_end_matches('-');
    let stem = if stem.is_empty() {
        "conversation"
    } else {
        stem
    };
    format!("{stem}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain_ascii() {
        assert_eq!(
            file_name("Trip plans: Lisbon!", "json"),
            "trip-plans-lisbon.json"
        );
        assert_eq!(file_name("日本", "md"), "conversation.md");
        assert_eq!(file_name(&"a".repeat(100), "md").len(), 63);
    }
}
