use std::sync::Arc;

use uuid::Uuid;

use super::ServiceError;
use crate::store::{
    self, Conversation, ConversationFilter, ConversationPatch, Message, NewConversation, SearchHit,
    SearchQuery, Store,
};

pub const DEFAULT_TITLE: &str = "New Conversation";

#[derive(Debug, Clone, Default)]
pub struct NewConversationInput {
    pub title: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many items there are in all; a lower bound when `total_exact` is false (a search
    /// for words in more messages than it scores).
    pub total: u64,
    pub total_exact: bool,
    pub page: u64,
    pub limit: u64,
}

impl<T> Page<T> {
    pub fn total_pages(&self) -> u64 {
        self.total.div_ceil(self.limit.max(1))
    }
}

/// Page `page` (counted from 1) of `limit` items, from `read(offset)`: the items and the total.
async fn read_page<T, F, Fut>(page: u64, limit: u64, read: F) -> Result<Page<T>, ServiceError>
where
    F: FnOnce(u64) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, u64), store::StoreError>>,
{
    let (items, total) = read(page.saturating_sub(1).saturating_mul(limit)).await?;
    Ok(Page {
        items,
        total,
        total_exact: true,
        page,
        limit,
    })
}

#[derive(Clone)]
pub struct ConversationService {
    store: Arc<dyn Store>,
}

impl ConversationService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn create(
        &self,
        user_id: &str,
        input: NewConversationInput,
    ) -> Result<Conversation, ServiceError> {
        let new = Self::draft(user_id, input);
        Ok(self.store.create_conversation(&new).await?)
    }

    /// A new conversation of `user_id`, not stored yet.
    pub fn draft(user_id: &str, input: NewConversationInput) -> NewConversation {
        let title = input
            .title
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        NewConversation {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            title: title.unwrap_or_else(|| DEFAULT_TITLE.to_owned()),
            system_prompt: input.system_prompt,
            model: input.model,
            metadata: input.metadata.unwrap_or_else(|| serde_json::json!({})),
            created_at: store::now(),
        }
    }

    /// `page` counts from 1.
    pub async fn list(
        &self,
        user_id: &str,
        filter: ConversationFilter,
        page: u64,
        limit: u64,
    ) -> Result<Page<Conversation>, ServiceError> {
        read_page(page, limit, |offset| {
            self.store
                .list_conversations(user_id, filter, offset, limit)
        })
        .await
    }

    /// Searches the user's conversations (see [`SearchQuery`]); `page` counts from 1.
    pub async fn search(
        &self,
        user_id: &str,
        text: &str,
        filter: ConversationFilter,
        page: u64,
        limit: u64,
    ) -> Result<Page<SearchHit>, ServiceError> {
        let query = SearchQuery::parse(text).ok_or_else(|| ServiceError::Invalid {
            field: "q".into(),
            message: "q must hold at least one letter or digit".to_owned(),
        })?;
        let offset = page.saturating_sub(1).saturating_mul(limit);
        let found = self
            .store
            .search_conversations(user_id, &query, filter, offset, limit)
            .await?;
        Ok(Page {
            items: found.hits,
            total: found.total,
            total_exact: found.exact,
            page,
            limit,
        })
    }

    pub async fn get(&self, user_id: &str, id: Uuid) -> Result<Conversation, ServiceError> {
        self.store
            .get_conversation(user_id, id)
            .await?
            .ok_or(ServiceError::NotFound("Conversation"))
    }

    pub async fn get_with_messages(
        &self,
        user_id: &str,
        id: Uuid,
    ) -> Result<(Conversation, Vec<Message>), ServiceError> {
        let conversation = self.get(user_id, id).await?;
        let messages = self.store.list_messages(id).await?;
        Ok((conversation, messages))
    }

    /// Renames, archives, pins or re-tags a conversation of `user_id` (the title is trimmed
    /// and may not be blank); its `updated_at` stays with its messages.
    pub async fn update(
        &self,
        user_id: &str,
        id: Uuid,
        mut patch: ConversationPatch,
    ) -> Result<Conversation, ServiceError> {
        if let Some(title) = patch.title.as_mut() {
            *title = title.trim().to_owned();
            if title.is_empty() {
                return Err(ServiceError::Invalid {
                    field: "title".into(),
                    message: "title must not be blank".to_owned(),
                });
            }
        }
        self.store
            .update_conversation(user_id, id, &patch)
            .await?
            .ok_or(ServiceError::NotFound("Conversation"))
    }

    pub async fn delete(&self, user_id: &str, id: Uuid) -> Result<(), ServiceError> {
        if self.store.delete_conversation(user_id, id).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound("Conversation"))
        }
    }
}
