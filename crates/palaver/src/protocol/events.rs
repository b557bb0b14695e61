//! The chat events of API.md, their names and payloads, shared by the SSE and Socket.IO
//! transports.

use serde_json::{Value, json};
use uuid::Uuid;

use super::dto::{Conversation, rfc3339};
use crate::error::ApiError;
use crate::service::{ChatEvent, ChatFailure, ChatOutcome};

pub const CONVERSATION: &str = "chat:conversation";
pub const USER_MESSAGE: &str = "chat:user-message";
pub const MESSAGE: &str = "chat:message";
pub const END: &str = "chat:end";
pub const ERROR: &str = "chat:error";
pub const STOPPED: &str = "chat:stopped";
/// `{conversationId, title}`: a `generate-title` job set a conversation's title.
pub const CONVERSATION_TITLE: &str = "conversation:title";

/// A pipeline event as a transport sends it: chunks (the hot path) as a typed payload that
/// serializes without building a JSON tree, everything else as a name and a JSON value.
pub enum Wire<'a> {
    Chunk(Chunk<'a>),
    Other(&'static str, Value),
}

/// Translates a pipeline event into its API.md name and payload.
pub fn wire(event: ChatEvent<'_>) -> Wire<'_> {
    match event {
        ChatEvent::ConversationCreated(c) => Wire::Other(
            CONVERSATION,
            json!({"conversationId": c.id, "conversation": Conversation::from(c.clone())}),
        ),
        ChatEvent::UserMessage(m) => Wire::Other(
            USER_MESSAGE,
            json!({"messageId": m.id, "content": m.content, "conversationId": m.conversation_id, "parentId": m.parent_id, "createdAt": rfc3339(&m.created_at)}),
        ),
        ChatEvent::Chunk {
            conversation_id,
            message_id,
            index,
            content,
        } => Wire::Chunk(Chunk {
            content,
            is_complete: false,
            conversation_id,
            message_id,
            index,
        }),
        ChatEvent::Finished(outcome) => {
            let (name, payload) = finished(outcome);
            Wire::Other(name, payload)
        }
        ChatEvent::Failed(failure) => {
            let (name, payload) = failed(failure);
            Wire::Other(name, payload)
        }
    }
}

/// The `chat:message` payload, serialized without building a JSON tree (the hot path).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk<'a> {
    pub content: &'a str,
    pub is_complete: bool,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub index: u32,
}

/// `chat:end`, or `chat:stopped` for a cancelled stream.
pub fn finished(outcome: &ChatOutcome) -> (&'static str, Value) {
    if outcome.stopped {
        return (
            STOPPED,
            json!({
                "message": "Chat stream stopped",
                "conversationId": outcome.conversation.id,
                "messageId": outcome.reply.id,
                "content": outcome.reply.content,
            }),
        );
    }
    (
        END,
        json!({
            "messageId": outcome.reply.id,
            "conversationId": outcome.conversation.id,
            "parentId": outcome.user_message.id,
            "totalTokens": outcome.total_tokens(),
            "model": outcome.model,
            "finishReason": outcome.finish_reason,
            "content": outcome.reply.content,
            "usage": usage(outcome),
        }),
    )
}

pub fn usage(outcome: &ChatOutcome) -> Value {
    json!({
        "promptTokens": outcome.usage.prompt_tokens,
        "completionTokens": outcome.usage.completion_tokens,
        "totalTokens": outcome.total_tokens(),
    })
}

/// `chat:error` for a failed exchange, with the same code and message as REST.
pub fn failed(failure: &ChatFailure) -> (&'static str, Value) {
    error_payload((&failure.error).into(), failure.conversation_id)
}

pub fn error_payload(error: ApiError, conversation_id: Option<Uuid>) -> (&'static str, Value) {
    let mut body = json!({"message": error.public_message(), "code": error.code(), "conversationId": conversation_id});
    if let ApiError::Validation(errors) = &error {
        body["errors"] = json!(errors);
    }
    // Logged once here, as the HTTP path logs in `into_response`.
    error.log();
    (ERROR, body)
}
