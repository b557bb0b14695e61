//! Conversations copied whole, as new conversations of the caller: a fork (the path from the
//! root to one message) and an import (a document written by export). Every copy gets new
//! ids, its parent links follow them, and the whole is stored in one transaction.

mod order;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use uuid::Uuid;

use self::order::Tree;
use super::conversations::{ConversationService, NewConversationInput};
use super::{PathMessage, ServiceError, TreeService};
use crate::providers::tokens;
use crate::store::{self, Conversation, Message, Role, Store, Timestamp};

/// A conversation to import (see `protocol::transfer` for its document and caps).
#[derive(Debug, Clone, Default)]
pub struct ImportInput {
    /// Blank or absent: "New Conversation".
    pub title: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub metadata: Option<Value>,
    /// By default the last message (once each is after its parent).
    pub active_leaf_id: Option<Uuid>,
    /// In any order: each is stored after its parent.
    pub messages: Vec<ImportMessage>,
}

/// A message to import: its id only links it to its children, it is stored under a new one.
#[derive(Debug, Clone)]
pub struct ImportMessage {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub role: Role,
    pub content: String,
    /// Counted when absent.
    pub tokens: Option<i64>,
    pub model: Option<String>,
    pub metadata: Option<Value>,
    /// Absent or later than the import: the time of the import.
    pub created_at: Option<Timestamp>,
    pub edited_at: Option<Timestamp>,
}

#[derive(Clone)]
pub struct TransferService {
    store: Arc<dyn Store>,
    tree: TreeService,
    /// Counts the tokens of an imported message that names no model.
    default_model: String,
}

impl TransferService {
    pub fn new(store: Arc<dyn Store>, tree: TreeService, default_model: String) -> Self {
        Self {
            store,
            tree,
            default_model,
        }
    }

    /// A new conversation holding copies of the path from the root to `message_id`: same
    /// title, system prompt and model, metadata with `forkedFrom`; the copy of `message_id`
    /// is its active leaf. Returns it with its active path.
    pub async fn fork(
        &self,
        user_id: &str,
        id: Uuid,
        message_id: Uuid,
    ) -> Result<(Conversation, Vec<PathMessage>), ServiceError> {
        let original = self
            .store
            .get_conversation(user_id, id)
            .await?
            .ok_or(ServiceError::NotFound("Conversation"))?;
        let message = self.tree.message(user_id, message_id).await?;
        if message.conversation_id != id {
            return Err(ServiceError::NotFound("Message"));
        }
        let path = self.store.path(id, message_id, u64::MAX).await?;
        let mut metadata = match original.metadata {
            Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        metadata.insert(
            "forkedFrom".to_owned(),
            json!({"conversationId": id, "messageId": message_id}),
        );
        let new = ConversationService::draft(
            user_id,
            NewConversationInput {
                title: Some(original.title),
                system_prompt: original.system_prompt,
                model: original.model,
                metadata: Some(Value::Object(metadata)),
            },
        );
        let (copies, _) = renumbered(new.id, path);
        let leaf = copies.last().map(|m| m.id);
        self.store.insert_conversation(&new, &copies, leaf).await?;
        self.tree.active_path(user_id, new.id).await
    }

    /// Stores `input` as a new conversation of `user_id` (new ids for everything, the links
    /// kept) and returns it with its active path. Nothing is stored when it is refused.
    pub async fn import(
        &self,
        user_id: &str,
        input: ImportInput,
    ) -> Result<(Conversation, Vec<PathMessage>), ServiceError> {
        let links: Vec<_> = input.messages.iter().map(|m| (m.id, m.parent_id)).collect();
        let tree = Tree::of(&links)?;
        let leaf = tree.leaf(input.active_leaf_id)?.map(|i| links[i].0);
        let new = ConversationService::draft(
            user_id,
            NewConversationInput {
                title: input.title,
                system_prompt: input.system_prompt,
                model: input.model,
                metadata: input.metadata,
            },
        );
        let model = new.model.as_deref().unwrap_or(&self.default_model);
        let now = store::now();
        let mut messages: Vec<Option<ImportMessage>> =
            input.messages.into_iter().map(Some).collect();
        let ordered = tree
            .order
            .iter()
            .filter_map(|&i| messages[i].take())
            .map(|m| stored(m, new.id, model, now))
            .collect();
        let (messages, ids) = renumbered(new.id, ordered);
        let leaf = leaf.and_then(|old| ids.get(&old).copied());
        self.store
            .insert_conversation(&new, &messages, leaf)
            .await?;
        self.tree.active_path(user_id, new.id).await
    }
}

/// An imported message as stored (still under its document id), in `conversation_id`.
fn stored(m: ImportMessage, conversation_id: Uuid, model: &str, now: Timestamp) -> Message {
    let tokens = m.tokens.unwrap_or_else(|| {
        let model = m.model.as_deref().unwrap_or(model);
        i64::try_from(tokens::count_text(model, &m.content)).unwrap_or(i64::MAX)
    });
    Message {
        id: m.id,
        conversation_id,
        parent_id: m.parent_id,
        role: m.role,
        content: m.content,
        tokens,
        model: m.model,
        metadata: m.metadata.unwrap_or_else(|| json!({})),
        created_at: m.created_at.map_or(now, |t| t.min(now)),
        edited_at: m.edited_at.map(|t| t.min(now)),
    }
}

/// Copies of `messages` (each after its parent) in `conversation_id` under new ids, their
/// parents following; and which new id each old one got.
fn renumbered(
    conversation_id: Uuid,
    messages: Vec<Message>,
) -> (Vec<Message>, HashMap<Uuid, Uuid>) {
    let mut ids = HashMap::with_capacity(messages.len());
    let copies = messages
        .into_iter()
        .map(|m| {
            let id = Uuid::now_v7();
            ids.insert(m.id, id);
            Message {
                id,
                conversation_id,
                parent_id: m.parent_id.and_then(|p| ids.get(&p).copied()),
                ..m
            }
        })
        .collect();
    (copies, ids)
}
