//! The input of an exchange, as every transport gives it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One exchange as every transport asks for it (API.md's ChatRequest, validated). Also the
/// stored `data` of a `generate-completion` job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatInput {
    pub conversation_id: Option<Uuid>,
    /// The message to answer after: a new branch when it is not the active leaf (which is
    /// the default). Names the conversation when `conversation_id` does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_message_id: Option<Uuid>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The client's key of this request (`Idempotency-Key`, `clientRequestId`): a retry with
    /// the same key attaches to the run it started instead of starting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// The API key and end user the exchange's usage is attributed to, and the models the
    /// key allows (not part of a job's data: a job runs as its user).
    #[serde(skip)]
    pub attribution: crate::service::Attribution,
    /// A prompt template of the user: its system prompt and leading messages, rendered with
    /// `variables`, open the context; its parameters are defaults the request overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<Uuid>,
    /// The template's version (default: its newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<i64>,
    /// The template's variables, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// `false`: never answer from the response cache (nor store the reply in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
}
