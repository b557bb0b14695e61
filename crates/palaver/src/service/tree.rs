//! Conversations as trees: the active path with where it branches, pages of a path, the whole
//! tree, the active leaf, edits with revisions, subtree deletes, and the exchanges that
//! regenerate a reply or rerun an edited message (run by the chat pipeline).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::chat::{Anchor, ChatInput, ExchangeOptions};
use super::{Notifier, ServiceError};
use crate::providers::tokens;
use crate::store::{self, Conversation, Message, RemovedMessages, Revision, Role, Store};

/// `{conversationId, activeLeafId}`: a conversation's active leaf moved (another device chose
/// a branch, or a delete moved it).
pub const CONVERSATION_BRANCH: &str = "conversation:branch";

/// A message on a path, with where the tree branches around it.
#[derive(Debug, Clone, PartialEq)]
pub struct PathMessage {
    pub message: Message,
    /// The messages with the same parent (this one included), oldest first.
    pub sibling_ids: Vec<Uuid>,
    pub child_count: usize,
}

/// A page of a path, oldest first; `has_more` when older messages precede it.
#[derive(Debug, Clone)]
pub struct PathPage {
    pub messages: Vec<PathMessage>,
    pub has_more: bool,
}

/// What a regenerate may change from the conversation's defaults.
#[derive(Debug, Clone, Default)]
pub struct Regeneration {
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

#[derive(Clone)]
pub struct TreeService {
    store: Arc<dyn Store>,
    notifier: Notifier,
    /// Counts the tokens of an edited message whose own model is not known.
    default_model: String,
}

impl TreeService {
    pub fn new(store: Arc<dyn Store>, notifier: Notifier, default_model: String) -> Self {
        Self {
            store,
            notifier,
            default_model,
        }
    }

    async fn conversation(&self, user_id: &str, id: Uuid) -> Result<Conversation, ServiceError> {
        self.store
            .get_conversation(user_id, id)
            .await?
            .ok_or(ServiceError::NotFound("Conversation"))
    }

    /// A message of one of the user's conversations.
    pub async fn message(&self, user_id: &str, id: Uuid) -> Result<Message, ServiceError> {
        self.store
            .get_message(user_id, id)
            .await?
            .ok_or(ServiceError::NotFound("Message"))
    }

    /// A conversation and its active path (root first), each message with its siblings.
    pub async fn active_path(
        &self,
        user_id: &str,
        id: Uuid,
    ) -> Result<(Conversation, Vec<PathMessage>), ServiceError> {
        let conversation = self.conversation(user_id, id).await?;
        let path = match conversation.active_leaf_id {
            Some(leaf) => self.store.path(id, leaf, u64::MAX).await?,
            None => Vec::new(),
        };
        let path = self.linked(id, path).await?;
        Ok((conversation, path))
    }

    /// Up to `limit` messages of a path, oldest first: the path to `leaf` (by default the
    /// active leaf), or with `before`, the messages before that one on its path.
    pub async fn page(
        &self,
        user_id: &str,
        id: Uuid,
        leaf: Option<Uuid>,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<PathPage, ServiceError> {
        let conversation = self.conversation(user_id, id).await?;
        let end = match (before, leaf) {
            (Some(before), _) => {
                let before = self.message(user_id, before).await?;
                if before.conversation_id != id {
                    return Err(ServiceError::NotFound("Message"));
                }
                before.parent_id
            }
            (None, Some(leaf)) => Some(leaf),
            (None, None) => conversation.active_leaf_id,
        };
        let mut path = match end {
            Some(end) => self.store.path(id, end, limit.saturating_add(1)).await?,
            None => Vec::new(),
        };
        if leaf.is_some() && before.is_none() && path.is_empty() {
            return Err(ServiceError::NotFound("Message"));
        }
        let has_more = path.len() as u64 > limit;
        if has_more {
            path.remove(0);
        }
        Ok(PathPage {
            messages: self.linked(id, path).await?,
            has_more,
        })
    }

    /// Every message of a conversation, parents before their children.
    pub async fn tree(
        &self,
        user_id: &str,
        id: Uuid,
    ) -> Result<(Conversation, Vec<Message>), ServiceError> {
        let conversation = self.conversation(user_id, id).await?;
        let messages = self.store.list_messages(id).await?;
        Ok((conversation, messages))
    }

    /// Adds to each message of a path its siblings and how many children it has.
    async fn linked(
        &self,
        conversation_id: Uuid,
        path: Vec<Message>,
    ) -> Result<Vec<PathMessage>, ServiceError> {
        let Some(first) = path.first() else {
            return Ok(Vec::new());
        };
        let roots = first.parent_id.is_none();
        let mut parents: Vec<Uuid> = path.iter().map(|m| m.id).collect();
        parents.extend(first.parent_id);
        let pairs = self
            .store
            .children(conversation_id, &parents, roots)
            .await?;
        let mut children: HashMap<Option<Uuid>, Vec<Uuid>> = HashMap::new();
        for (parent, child) in pairs {
            children.entry(parent).or_default().push(child);
        }
        Ok(path
            .into_iter()
            .map(|message| PathMessage {
                sibling_ids: children
                    .get(&message.parent_id)
                    .cloned()
                    .unwrap_or_else(|| vec![message.id]),
                child_count: children.get(&Some(message.id)).map_or(0, Vec::len),
                message,
            })
            .collect())
    }

    /// Shows the branch through `message_id` (its newest leaf becomes the active leaf), tells
    /// the owner's connections, and returns the conversation with its new active path.
    pub async fn set_active_leaf(
        &self,
        user_id: &str,
        id: Uuid,
        message_id: Uuid,
    ) -> Result<(Conversation, Vec<PathMessage>), ServiceError> {
        let leaf = self
            .store
            .set_active_leaf(user_id, id, message_id)
            .await?
            .ok_or(ServiceError::NotFound("Message"))?;
        self.branch_moved(user_id, id, Some(leaf)).await;
        self.active_path(user_id, id).await
    }

    async fn branch_moved(&self, user_id: &str, id: Uuid, leaf: Option<Uuid>) {
        let payload = json!({"conversationId": id, "activeLeafId": leaf});
        self.notifier
            .to_user(user_id, CONVERSATION_BRANCH, &payload)
            .await;
    }

    /// Edits a message in place; its previous content stays readable as a revision.
    pub async fn edit(
        &self,
        user_id: &str,
        message_id: Uuid,
        content: &str,
    ) -> Result<Message, ServiceError> {
        let message = self.message(user_id, message_id).await?;
        let model = message.model.as_deref().unwrap_or(&self.default_model);
        let counted = tokens::count_text(model, content) as i64;
        self.store
            .edit_message(user_id, message_id, content, counted, store::now())
            .await?
            .ok_or(ServiceError::NotFound("Message"))
    }

    /// A message and its earlier contents, oldest first.
    pub async fn revisions(
        &self,
        user_id: &str,
        message_id: Uuid,
    ) -> Result<(Message, Vec<Revision>), ServiceError> {
        let message = self.message(user_id, message_id).await?;
        let revisions = self.store.revisions(message_id).await?;
        Ok((message, revisions))
    }

    /// Deletes a message and its subtree; when the active leaf moves, the owner's
    /// connections are told.
    pub async fn delete(
        &self,
        user_id: &str,
        message_id: Uuid,
    ) -> Result<RemovedMessages, ServiceError> {
        let removed = self
            .store
            .delete_message(user_id, message_id)
            .await?
            .ok_or(ServiceError::NotFound("Message"))?;
        if removed.leaf_moved {
            self.branch_moved(user_id, removed.conversation_id, removed.active_leaf_id)
                .await;
        }
        Ok(removed)
    }

    /// The exchange that answers a message again: a new reply beside an assistant message
    /// (to its user message), or a new reply to a user message.
    pub async fn regeneration(
        &self,
        user_id: &str,
        message_id: Uuid,
        with: Regeneration,
    ) -> Result<(ChatInput, ExchangeOptions), ServiceError> {
        let message = self.message(user_id, message_id).await?;
        let answered = match message.role {
            Role::User => message.id,
            _ => match message.parent_id {
                Some(parent) => parent,
                None => return Err(not_answerable()),
            },
        };
        let input = ChatInput {
            conversation_id: Some(message.conversation_id),
            model: with
                .model
                .or(message.model.filter(|_| message.role == Role::Assistant)),
            temperature: with.temperature,
            max_tokens: with.max_tokens,
            ..ChatInput::default()
        };
        let options = ExchangeOptions {
            anchor: Anchor::Reply(answered),
            ..ExchangeOptions::default()
        };
        Ok((input, options))
    }

    /// The exchange that reruns an edited user message: a new user message beside it, with
    /// `content`, and a new reply.
    pub async fn rerun(
        &self,
        user_id: &str,
        message_id: Uuid,
        content: String,
    ) -> Result<(ChatInput, ExchangeOptions), ServiceError> {
        let message = self.message(user_id, message_id).await?;
        if message.role != Role::User {
            return Err(ServiceError::Invalid {
                field: "rerun".into(),
                message: "only a user message can be rerun; edit a reply with rerun: false"
                    .to_owned(),
            });
        }
        let input = ChatInput {
            conversation_id: Some(message.conversation_id),
            parent_message_id: message.parent_id,
            message: content,
            ..ChatInput::default()
        };
        let anchor = match message.parent_id {
            Some(_) => Anchor::Latest,
            None => Anchor::Root,
        };
        let options = ExchangeOptions {
            anchor,
            ..ExchangeOptions::default()
        };
        Ok((input, options))
    }
}

fn not_answerable() -> ServiceError {
    ServiceError::Invalid {
        field: "messageId".into(),
        message: "this message answers no user message".to_owned(),
    }
}
