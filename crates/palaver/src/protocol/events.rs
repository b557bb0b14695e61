//! The chat events of API.md, their names and payloads, shared by the SSE and Socket.IO
//! transports.

use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};
use uuid::Uuid;

use super::dto::{Conversation, rfc3339};
use crate::error::ApiError;
use crate::service::chat::runs::{EventEncoder, Stamp};
use crate::service::{ChatEvent, ChatFailure, ChatOutcome};

pub const CONVERSATION: &str = "chat:conversation";
pub const USER_MESSAGE: &str = "chat:user-message";
pub const MESSAGE: &str = "chat:message";
pub const END: &str = "chat:end";
pub const ERROR: &str = "chat:error";
pub const STOPPED: &str = "chat:stopped";
/// `{conversationId, title}`: a `generate-title` job set a conversation's title.
pub const CONVERSATION_TITLE: &str = "conversation:title";

/// Encodes pipeline events as every transport sends them: the API.md name, and a JSON
/// payload that also carries the event's `runId` and `seq`. Chunks (the hot path) are
/// serialized from a typed payload, without building a JSON tree.
pub struct WireEncoder;

impl EventEncoder for WireEncoder {
    fn encode(&self, stamp: Stamp, event: &ChatEvent<'_>) -> (&'static str, Box<RawValue>) {
        if let ChatEvent::Chunk {
            conversation_id,
            message_id,
            index,
            content,
        } = *event
        {
            let chunk = Chunk {
                content,
                is_complete: false,
                conversation_id,
                message_id,
                index,
                run_id: stamp.run_id,
                seq: stamp.seq,
            };
            return (MESSAGE, raw(&chunk));
        }
        let (name, mut payload) = wire(event);
        if let Value::Object(fields) = &mut payload {
            fields.insert("runId".to_owned(), json!(stamp.run_id));
            fields.insert("seq".to_owned(), json!(stamp.seq));
        }
        (name, raw(&payload))
    }

    fn error_code(&self, failure: &ChatFailure) -> &'static str {
        ApiError::from(&failure.error).code()
    }

    fn names(&self) -> &'static [&'static str] {
        &[CONVERSATION, USER_MESSAGE, MESSAGE, END, ERROR, STOPPED]
    }
}

/// A payload serialized once, as the JSON every transport sends.
fn raw<T: serde::Serialize>(payload: &T) -> Box<RawValue> {
    to_raw_value(payload).unwrap_or_else(|_| to_raw_value(&Value::Null).unwrap_or_default())
}

/// The name and payload of an event other than a chunk.
fn wire(event: &ChatEvent<'_>) -> (&'static str, Value) {
    match event {
        ChatEvent::ConversationCreated(c) => (
            CONVERSATION,
            json!({"conversationId": c.id, "conversation": Conversation::from((*c).clone())}),
        ),
        ChatEvent::UserMessage(m) => (
            USER_MESSAGE,
            json!({"messageId": m.id, "content": m.content, "conversationId": m.conversation_id, "parentId": m.parent_id, "createdAt": rfc3339(&m.created_at)}),
        ),
        ChatEvent::Chunk { content, .. } => (MESSAGE, json!({"content": content})),
        ChatEvent::Finished(outcome) => finished(outcome),
        ChatEvent::Failed(failure) => failed(failure),
    }
}

/// The `chat:message` payload.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunk<'a> {
    pub content: &'a str,
    pub is_complete: bool,
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub index: u32,
    pub run_id: Uuid,
    pub seq: u64,
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
