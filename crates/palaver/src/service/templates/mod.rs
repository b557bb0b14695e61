//! Prompt templates: a user's named prompts (a system prompt, leading messages, chat
//! parameters) with `{{name}}` placeholders. Every change stores a new version; old versions
//! stay readable, and a chat names a template (and optionally a version) with its variables.

mod render;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::ServiceError;
use crate::store::{self, Store, StoreError, Template, TemplateDefinition};
use crate::store::{TemplateMessage, TemplateVariable};

/// A change to a template: the fields given replace the newest version's (`Some(None)`
/// clears an optional one).
#[derive(Debug, Clone, Default)]
pub struct TemplatePatch {
    pub name: Option<String>,
    pub system: Option<Option<String>>,
    pub messages: Option<Vec<TemplateMessage>>,
    pub variables: Option<Vec<TemplateVariable>>,
    pub model: Option<Option<String>>,
    pub temperature: Option<Option<f32>>,
    pub max_tokens: Option<Option<u32>>,
}

impl TemplatePatch {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.system.is_none()
            && self.messages.is_none()
            && self.variables.is_none()
            && self.model.is_none()
            && self.temperature.is_none()
            && self.max_tokens.is_none()
    }

    fn apply(self, d: &mut TemplateDefinition) {
        let TemplatePatch {
            system,
            messages,
            variables,
            model,
            temperature,
            max_tokens,
            ..
        } = self;
        d.system = system.unwrap_or(d.system.take());
        d.messages = messages.unwrap_or(std::mem::take(&mut d.messages));
        d.variables = variables.unwrap_or(std::mem::take(&mut d.variables));
        d.model = model.unwrap_or(d.model.take());
        d.temperature = temperature.unwrap_or(d.temperature);
        d.max_tokens = max_tokens.unwrap_or(d.max_tokens);
    }
}

/// A template applied to an exchange: which version, and its texts with the variables
/// filled in.
#[derive(Debug, Clone)]
pub struct AppliedTemplate {
    pub id: Uuid,
    pub version: i64,
    pub name: String,
    pub rendered: TemplateDefinition,
}

/// How many times a change is applied again over a version stored meanwhile.
const UPDATE_TRIES: u32 = 3;

#[derive(Clone)]
pub struct TemplateService {
    store: Arc<dyn Store>,
}

impl TemplateService {
    pub fn new(store: Arc<dyn Store>) -> TemplateService {
        TemplateService { store }
    }

    /// Creates a template (its version 1).
    pub async fn create(
        &self,
        user_id: &str,
        name: String,
        definition: TemplateDefinition,
    ) -> Result<Template, ServiceError> {
        validate::check(&name, &definition)?;
        let now = store::now();
        let template = Template {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            version: 1,
            name: name.trim().to_owned(),
            definition,
            created_at: now,
            updated_at: now,
        };
        self.store.create_template(&template).await?;
        Ok(template)
    }

    /// The user's templates, each its newest version, by name.
    pub async fn list(&self, user_id: &str) -> Result<Vec<Template>, ServiceError> {
        Ok(self.store.list_templates(user_id).await?)
    }

    /// A template of the user: its newest version, or `version`. 404 otherwise.
    pub async fn get(
        &self,
        user_id: &str,
        id: Uuid,
        version: Option<i64>,
    ) -> Result<Template, ServiceError> {
        self.store
            .get_template(user_id, id, version)
            .await?
            .ok_or(ServiceError::NotFound("Template"))
    }

    /// Applies `patch` to the newest version and stores the result as the next version.
    /// A version stored meanwhile by another change is read, and the patch applied over it.
    pub async fn update(
        &self,
        user_id: &str,
        id: Uuid,
        patch: TemplatePatch,
    ) -> Result<Template, ServiceError> {
        if patch.is_empty() {
            return Err(ServiceError::Invalid {
                field: "body".into(),
                message: "nothing to change: give at least one field".to_owned(),
            });
        }
        let mut tries = 0;
        loop {
            let mut template = self.get(user_id, id, None).await?;
            if let Some(name) = &patch.name {
                template.name = name.trim().to_owned();
            }
            patch.clone().apply(&mut template.definition);
            validate::check(&template.name, &template.definition)?;
            template.version += 1;
            template.updated_at = store::now();
            match self.store.add_template_version(&template).await {
                Ok(true) => return Ok(template),
                Ok(false) => return Err(ServiceError::NotFound("Template")),
                Err(StoreError::Conflict) if tries < UPDATE_TRIES => tries += 1,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Deletes a template with every version.
    pub async fn delete(&self, user_id: &str, id: Uuid) -> Result<(), ServiceError> {
        match self.store.delete_template(user_id, id).await? {
            true => Ok(()),
            false => Err(ServiceError::NotFound("Template")),
        }
    }

    /// A template of the user (`version`, else the newest) with `variables` filled in: 404
    /// when there is none, 400 naming a required variable without a value.
    pub async fn apply(
        &self,
        user_id: &str,
        id: Uuid,
        version: Option<i64>,
        variables: &BTreeMap<String, String>,
    ) -> Result<AppliedTemplate, ServiceError> {
        let template = self.get(user_id, id, version).await?;
        let rendered = render::render(&template.definition, variables)?;
        Ok(AppliedTemplate {
            id: template.id,
            version: template.version,
            name: template.name,
            rendered,
        })
    }
}
