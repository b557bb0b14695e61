//! A prompt template in an exchange: resolved at admission (a missing required variable is
//! refused before anything is stored), recorded on the conversation, and rendered into the
//! context (its system prompt and leading messages before the history).

use serde_json::json;

use super::{ChatInput, ChatService};
use crate::providers::{ChatMessage, ChatRole};
use crate::service::{AppliedTemplate, ServiceError, TemplateService};
use crate::store::{Conversation, ConversationPatch, TemplateRole};

impl ChatService {
    /// The template an exchange names, applied to its variables; `None` when it names none.
    /// Variables or a version without a template are a 400.
    pub(super) async fn template_of(
        &self,
        user_id: &str,
        input: &ChatInput,
    ) -> Result<Option<AppliedTemplate>, ServiceError> {
        let Some(id) = input.template_id else {
            let stray = match (input.template_version, input.variables.is_empty()) {
                (Some(_), _) => Some("templateVersion"),
                (None, false) => Some("variables"),
                (None, true) => None,
            };
            return match stray {
                Some(field) => Err(ServiceError::Invalid {
                    field: field.into(),
                    message: "only with templateId".to_owned(),
                }),
                None => Ok(None),
            };
        };
        let templates = TemplateService::new(self.store.clone());
        let applied = templates
            .apply(user_id, id, input.template_version, &input.variables)
            .await?;
        Ok(Some(applied))
    }

    /// Records on the conversation which template version its latest exchange used
    /// (`metadata.template`): written at once for a stored conversation, with it for a new one.
    pub(super) async fn record_template(
        &self,
        user_id: &str,
        conversation: &mut Conversation,
        created: bool,
        template: &AppliedTemplate,
    ) -> Result<(), ServiceError> {
        let mark = mark(template);
        if conversation.metadata.get("template") == Some(&mark) {
            return Ok(());
        }
        if !conversation.metadata.is_object() {
            conversation.metadata = json!({});
        }
        conversation.metadata["template"] = mark;
        if created {
            return Ok(());
        }
        let patch = ConversationPatch {
            metadata: Some(conversation.metadata.clone()),
            ..ConversationPatch::default()
        };
        self.store
            .update_conversation(user_id, conversation.id, &patch)
            .await?
            .ok_or(ServiceError::NotFound("Conversation"))?;
        Ok(())
    }
}

/// How a conversation or message names the template version it used.
pub(super) fn mark(template: &AppliedTemplate) -> serde_json::Value {
    json!({"id": template.id, "version": template.version, "name": template.name})
}

/// A template's leading messages, rendered, as the provider receives them.
pub(super) fn leading(template: Option<&AppliedTemplate>) -> Vec<ChatMessage> {
    let Some(template) = template else {
        return Vec::new();
    };
    template
        .rendered
        .messages
        .iter()
        .map(|m| ChatMessage {
            role: match m.role {
                TemplateRole::System => ChatRole::System,
                TemplateRole::User => ChatRole::User,
                TemplateRole::Assistant => ChatRole::Assistant,
            },
            content: m.content.clone(),
        })
        .collect()
}
