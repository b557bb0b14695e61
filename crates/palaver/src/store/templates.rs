//! Prompt templates: a user's named prompts with `{{name}}` placeholders, every version kept.
//! A template is its newest version; a change stores the next one beside the others.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{StoreResult, Timestamp};

/// Who says a template message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateRole {
    #[serde(alias = "SYSTEM")]
    System,
    #[serde(alias = "USER")]
    User,
    #[serde(alias = "ASSISTANT")]
    Assistant,
}

/// One leading message of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateMessage {
    pub role: TemplateRole,
    pub content: String,
}

/// A variable a template declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateVariable {
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// What a version of a template says (stored as one JSON document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default)]
    pub messages: Vec<TemplateMessage>,
    #[serde(default)]
    pub variables: Vec<TemplateVariable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// One version of a template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: Uuid,
    pub user_id: String,
    /// From 1, one more per change.
    pub version: i64,
    pub name: String,
    pub definition: TemplateDefinition,
    /// When the template (its first version) was created.
    pub created_at: Timestamp,
    /// When this version was.
    pub updated_at: Timestamp,
}

/// The operations on prompt templates (every [`Store`](super::Store) has them). Every read
/// and write is scoped to the template's owner.
#[async_trait]
pub trait TemplateStore: Send + Sync + 'static {
    /// Stores the first version of a new template (`version` 1); `Conflict` when its id
    /// exists.
    async fn create_template(&self, template: &Template) -> StoreResult<()>;

    /// Stores the next version of a template of `template.user_id`, only when
    /// `template.version - 1` is its newest; false when there is no such template.
    /// `Conflict` when that version was stored meanwhile (a concurrent change).
    async fn add_template_version(&self, template: &Template) -> StoreResult<bool>;

    /// A template of `user_id`: its newest version, or the version asked for.
    async fn get_template(
        &self,
        user_id: &str,
        id: Uuid,
        version: Option<i64>,
    ) -> StoreResult<Option<Template>>;

    /// The user's templates (each its newest version), by name, then id.
    async fn list_templates(&self, user_id: &str) -> StoreResult<Vec<Template>>;

    /// Deletes a template of `user_id` with every version; false when there is none.
    async fn delete_template(&self, user_id: &str, id: Uuid) -> StoreResult<bool>;
}
