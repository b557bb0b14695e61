//! Prompt templates on the wire: `/ai/templates` (API.md's Template).

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::dto::rfc3339;
use crate::service::TemplatePatch;
use crate::store::{self, TemplateDefinition, TemplateMessage, TemplateVariable};

/// A template version as it is answered.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub id: Uuid,
    /// From 1; every change makes the next.
    pub version: i64,
    pub name: String,
    pub system: Option<String>,
    pub messages: Vec<TemplateMessage>,
    pub variables: Vec<TemplateVariable>,
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// When the template was created (its version 1).
    #[schema(example = "2026-01-01T00:00:00.000Z")]
    pub created_at: String,
    /// When this version was.
    pub updated_at: String,
}

impl From<store::Template> for Template {
    fn from(t: store::Template) -> Self {
        let d = t.definition;
        Template {
            id: t.id,
            version: t.version,
            name: t.name,
            system: d.system,
            messages: d.messages,
            variables: d.variables,
            model: d.model,
            temperature: d.temperature,
            max_tokens: d.max_tokens,
            created_at: rfc3339(&t.created_at),
            updated_at: rfc3339(&t.updated_at),
        }
    }
}

/// The caller's templates, each its newest version, by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    pub data: Vec<Template>,
}

/// `POST /ai/templates`. Every `{{name}}` placeholder in `system` and `messages` must name a
/// declared variable.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTemplateRequest {
    /// 1 to 200 characters (trimmed).
    #[garde(skip)]
    pub name: String,
    #[garde(skip)]
    pub system: Option<String>,
    /// Leading messages (at most 50), put before the conversation's history.
    #[garde(skip)]
    #[serde(default)]
    pub messages: Vec<TemplateMessage>,
    /// At most 50, with distinct names (a letter or `_`, then letters, digits or `_`).
    #[garde(skip)]
    #[serde(default)]
    pub variables: Vec<TemplateVariable>,
    /// The chat's model unless the request names one.
    #[garde(skip)]
    pub model: Option<String>,
    /// 0 to 2; the chat's unless the request sets one.
    #[garde(skip)]
    pub temperature: Option<f32>,
    /// 1 to 8000; the chat's unless the request sets one.
    #[garde(skip)]
    pub max_tokens: Option<u32>,
}

impl CreateTemplateRequest {
    pub fn into_parts(self) -> (String, TemplateDefinition) {
        let definition = TemplateDefinition {
            system: self.system,
            messages: self.messages,
            variables: self.variables,
            model: self.model,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        };
        (self.name, definition)
    }
}

/// `PATCH /ai/templates/:id`: the fields given replace the newest version's (`null` clears
/// an optional one), stored as the next version.
#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateTemplateRequest {
    #[garde(skip)]
    pub name: Option<String>,
    #[garde(skip)]
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub system: Option<Option<String>>,
    #[garde(skip)]
    pub messages: Option<Vec<TemplateMessage>>,
    #[garde(skip)]
    pub variables: Option<Vec<TemplateVariable>>,
    #[garde(skip)]
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    #[garde(skip)]
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f32>)]
    pub temperature: Option<Option<f32>>,
    #[garde(skip)]
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub max_tokens: Option<Option<u32>>,
}

/// A field that is present, `null` or not: `Some(None)` is an explicit `null`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl From<UpdateTemplateRequest> for TemplatePatch {
    fn from(r: UpdateTemplateRequest) -> Self {
        TemplatePatch {
            name: r.name,
            system: r.system,
            messages: r.messages,
            variables: r.variables,
            model: r.model,
            temperature: r.temperature,
            max_tokens: r.max_tokens,
        }
    }
}
