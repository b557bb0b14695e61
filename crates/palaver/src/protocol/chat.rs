//! The chat request every transport accepts: `POST /ai/chat`, `chat:start` and the data of a
//! `generate-completion` job are validated as this one type (API.md's ChatRequest).

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::service::ChatInput;

#[derive(Debug, Clone, Deserialize, ToSchema, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct ChatRequest {
    /// The user's message, 1 to 32000 characters.
    #[garde(length(chars, min = 1, max = 32000), custom(not_blank))]
    pub message: String,
    /// Continue this conversation; a new one is created when absent (unless
    /// `parentMessageId` names it).
    #[garde(skip)]
    pub conversation_id: Option<Uuid>,
    /// Answer after this message of the conversation: by default the active leaf (the end
    /// of the branch shown); an earlier one starts a new branch there. A message of another
    /// conversation or user is a 404.
    #[garde(skip)]
    pub parent_message_id: Option<Uuid>,
    /// Defaults to `OPENAI_MODEL`; `claude-*`, `gemini-*` or `provider/model` route elsewhere.
    #[garde(length(min = 1, max = 200))]
    pub model: Option<String>,
    /// 1 to 8000, default 4096.
    #[garde(range(min = 1, max = 8000))]
    pub max_tokens: Option<u32>,
    /// 0 to 2, default 0.7; 0 is a real value.
    #[garde(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    #[garde(length(chars, max = 32000))]
    pub system_prompt: Option<String>,
    /// Answer as `text/event-stream` with the Socket.IO event names.
    #[garde(skip)]
    pub stream: Option<bool>,
    /// The client's key of this request (as the `Idempotency-Key` header, which takes
    /// precedence): a retry with the same key, by the same user, attaches to the run the
    /// first one started instead of starting (and paying for) another. 1 to 200 characters.
    #[garde(length(min = 1, max = 200))]
    pub client_request_id: Option<String>,
    /// A prompt template of the caller (`/ai/templates`): its system prompt and leading
    /// messages, rendered with `variables`, open the context, and its model, temperature and
    /// maxTokens are defaults this request overrides. Another user's template is a 404.
    #[garde(skip)]
    pub template_id: Option<Uuid>,
    /// The template's version to use (default: its newest).
    #[garde(range(min = 1))]
    pub template_version: Option<i64>,
    /// The template's variables by name (strings). A required one missing, or one the
    /// template does not declare, is a 400 naming it.
    #[garde(skip)]
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// `false` skips the response cache (as the `Cache-Control: no-cache` header does).
    #[garde(skip)]
    pub cache: Option<bool>,
    /// Sent by old clients; ignored (identity comes from the token).
    #[garde(skip)]
    #[schema(value_type = Option<String>, deprecated)]
    pub user_id: Option<serde_json::Value>,
}

pub(super) fn not_blank(value: &str, _: &()) -> garde::Result {
    if value.trim().is_empty() {
        Err(garde::Error::new("must not be blank"))
    } else {
        Ok(())
    }
}

impl ChatRequest {
    pub fn into_input(self) -> ChatInput {
        ChatInput {
            conversation_id: self.conversation_id,
            parent_message_id: self.parent_message_id,
            message: self.message,
            model: self.model,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            system_prompt: self.system_prompt,
            client_request_id: self.client_request_id,
            template_id: self.template_id,
            template_version: self.template_version,
            variables: self.variables,
            cache: self.cache,
            attribution: Default::default(),
        }
    }
}
