//! An exchange ready to ask the provider.

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use uuid::Uuid;

use super::scope::JobScope;
use crate::providers::{ChatRequest, Provider};
use crate::store::{self, Conversation, Message};

/// An exchange ready to ask the provider: everything is decided, nothing is sent yet.
pub(super) struct Turn<'a> {
    pub run_id: Uuid,
    pub conversation: Conversation,
    pub created: bool,
    /// The message the reply answers: new (stored by this exchange), or already stored (a
    /// regenerate, a job's retry).
    pub user_message: Message,
    pub new_user_message: bool,
    /// The model asked for (the request's, else the conversation's, else the default).
    pub requested: &'a str,
    /// The model that really answers (the mock says so rather than pretending to be gpt-4).
    pub model: String,
    pub provider: &'a Provider,
    pub request: ChatRequest,
    pub counted_prompt: u32,
    pub reply_id: Uuid,
    pub scope: Option<JobScope>,
    /// The client's key of the request (`Idempotency-Key`), stored with the run.
    pub request_key: Option<String>,
    /// The API key and end user its usage is attributed to.
    pub attribution: crate::service::Attribution,
    /// When the reply was first checkpointed (its row stored while it streamed).
    pub checkpointed: OnceLock<store::Timestamp>,
    /// Whether the response cache may answer or keep this turn (`cache: false` skips it).
    pub cache: bool,
    /// Answered from the response cache: its usage costs nothing.
    pub cached: AtomicBool,
}
