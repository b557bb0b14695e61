//! One exchange, step by step: decide the turn (model, context, ids), store the user message
//! while the provider is asked, receive the answer, conclude (store the reply and its usage).

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use serde_json::json;
use uuid::Uuid;

use super::attach::begin_error;
use super::context::build_context;
use super::scope::{JobScope, job_reply_id, tag};
use super::stream::{Answer, Mode, receive};
use super::template::{leading, mark};
use super::turn::Turn;
use super::{Admitted, ChatEvent, ChatFailure, ChatInput, ChatOutcome, ChatService, Place};
use super::{ExchangeOptions, NewConversationInput};
use crate::providers::ChatRequest;
use crate::providers::tokens;
use crate::service::ServiceError;
use crate::store::{self, Conversation, Message, Role, StoreError};

/// How many stored messages are considered for the context before trimming by tokens.
const HISTORY_WINDOW: u64 = 500;

impl ChatService {
    /// Runs an admitted exchange to its end, then releases its conversation.
    pub(super) async fn exchange(
        &self,
        user_id: &str,
        admitted: Admitted,
        input: ChatInput,
        options: ExchangeOptions,
        mode: Mode<'_>,
    ) -> Result<ChatOutcome, ChatFailure> {
        let Admitted {
            conversation,
            created,
            claim,
            place,
            run_id,
            template,
        } = admitted;
        let conversation_id = conversation.id;
        let draft = Draft {
            conversation,
            created,
            place,
            input,
            run_id,
            template,
        };
        let result = self.run_turn(user_id, draft, options, mode).await;
        drop(claim);
        result.map_err(|error| ChatFailure {
            error,
            conversation_id: Some(conversation_id),
        })
    }

    async fn run_turn(
        &self,
        user_id: &str,
        draft: Draft,
        options: ExchangeOptions,
        mode: Mode<'_>,
    ) -> Result<ChatOutcome, ServiceError> {
        let template_model = draft
            .template
            .as_ref()
            .and_then(|t| t.rendered.model.clone());
        let requested = draft
            .input
            .model
            .clone()
            .or(template_model)
            .or_else(|| draft.conversation.model.clone())
            .unwrap_or_else(|| self.defaults.model.clone());
        draft.input.attribution.permits(&requested)?;
        let turn = self.prepare_turn(&requested, draft, options.job).await?;
        // Reserve the most this exchange can cost, so a parallel burst cannot overshoot the
        // quota by more than one request; held until the reply and its usage are stored.
        let worst_case = i64::from(turn.counted_prompt) + i64::from(turn.request.max_tokens);
        let _quota = self.admission.reserve(user_id, worst_case).await?;
        let answer = self.ask(user_id, &turn, mode).await?;
        // The sequence number of the run's last event: the one after the chunks (a run not
        // streamed has none).
        let last_seq = match mode {
            Mode::Stream { sink, .. } => sink.last_seq() + 1,
            Mode::Plain => 0,
        };
        self.conclude(user_id, turn, answer, last_seq).await
    }

    /// Decides the model, the context and the ids of the exchange (reads the path it
    /// continues).
    /// The model a turn's messages are stored under: the mock's own name when it answers.
    pub(super) fn stored_model(&self, requested: &str) -> String {
        match self.providers.is_mock() {
            true => "mock".to_owned(),
            false => requested.to_owned(),
        }
    }

    async fn prepare_turn<'a>(
        &'a self,
        requested: &'a str,
        draft: Draft,
        scope: Option<JobScope>,
    ) -> Result<Turn<'a>, ServiceError> {
        let Draft {
            conversation,
            created,
            place,
            input,
            run_id,
            template,
        } = draft;
        let defaults = template.as_ref().map(|t| &t.rendered);
        let routed = self.providers.route(requested)?;
        let (provider, upstream_model) = (routed.provider, routed.model.to_owned());
        let model = self.stored_model(requested);
        // A job is idempotent by its own id (each attempt is a run of its own).
        let request_key = input.client_request_id.clone().filter(|_| scope.is_none());
        let max_tokens = (input.max_tokens)
            .or(defaults.and_then(|d| d.max_tokens))
            .unwrap_or(self.defaults.max_tokens);
        let temperature = (input.temperature)
            .or(defaults.and_then(|d| d.temperature))
            .unwrap_or(self.defaults.temperature);
        let system_prompt = (input.system_prompt.clone())
            .or_else(|| defaults.and_then(|d| d.system.clone()))
            .or_else(|| conversation.system_prompt.clone());
        let (user_message, new_user_message) = match place {
            Place::Reply(stored) => (stored, false),
            Place::After(parent_id) => {
                let mut message = user_message(&conversation, parent_id, &model, input.message);
                tag(&mut message.metadata, scope.as_ref());
                if let Some(template) = &template {
                    message.metadata["template"] = mark(template);
                }
                (message, true)
            }
        };
        let history = self.history(&conversation, user_message.parent_id).await?;
        let (messages, counted_prompt) = build_context(
            &model,
            system_prompt.as_deref(),
            &leading(template.as_ref()),
            &history,
            &user_message,
            max_tokens,
        )?;
        let reply_id = scope
            .as_ref()
            .map_or_else(Uuid::now_v7, |s| job_reply_id(s.job_id));
        Ok(Turn {
            run_id,
            conversation,
            created,
            user_message,
            new_user_message,
            requested,
            model,
            provider,
            request: ChatRequest {
                model: upstream_model,
                messages,
                max_tokens,
                temperature,
            },
            counted_prompt,
            reply_id,
            scope,
            request_key,
            attribution: input.attribution,
            checkpointed: OnceLock::new(),
            cache: input.cache != Some(false),
            cached: AtomicBool::new(false),
        })
    }

    /// The stored messages the context is built from: the path from the root to `parent`
    /// (its newest [`HISTORY_WINDOW`]), none for a first message. A parent that is not in
    /// the conversation (deleted meanwhile) is a 404.
    async fn history(
        &self,
        conversation: &Conversation,
        parent: Option<Uuid>,
    ) -> Result<Vec<Message>, ServiceError> {
        let Some(parent) = parent else {
            return Ok(Vec::new());
        };
        let path = self
            .store
            .path(conversation.id, parent, HISTORY_WINDOW)
            .await?;
        if path.is_empty() {
            return Err(ServiceError::NotFound("Message"));
        }
        Ok(path)
    }

    /// Stores the user message (and a new conversation with it) unless it is stored already
    /// (a regenerate, a job's retry), with the exchange's run, in one write.
    async fn store_user_message(&self, user_id: &str, turn: &Turn<'_>) -> Result<(), StoreError> {
        let run = self.new_run(user_id, turn);
        let new = turn.created.then(|| turn.conversation.as_new());
        let message = turn.new_user_message.then_some(&turn.user_message);
        self.store.begin_exchange(new.as_ref(), message, &run).await
    }

    /// Asks the provider while the user message is stored (the write and the upstream call
    /// overlap), and goes on only once it is: a reply or a failure is never recorded without
    /// it, and a stream's events start with it.
    async fn ask(
        &self,
        user_id: &str,
        turn: &Turn<'_>,
        mode: Mode<'_>,
    ) -> Result<Answer, ServiceError> {
        let keyed = turn.request_key.is_some();
        let stored = async {
            self.store_user_message(user_id, turn)
                .await
                .map_err(|e| begin_error(keyed, e))
        };
        let Mode::Stream { sink, cancel } = mode else {
            let answered = alongside(stored, self.complete_turn(turn)).await?;
            return Ok(match answered {
                Ok(done) => Answer::Complete {
                    content: done.content,
                    finish_reason: done.finish_reason,
                    reported: done.usage,
                },
                Err(err) => Answer::Failed(err),
            });
        };
        let started = async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => Err(false),
                () = self.interrupt.cancelled() => Err(true),
                started = self.open_stream(turn) => Ok(started),
            }
        };
        let started = alongside(stored, started).await?;
        // Only now is the new conversation sure to stay.
        if turn.created {
            sink.emit(ChatEvent::ConversationCreated(&turn.conversation));
        }
        sink.emit(ChatEvent::UserMessage(&turn.user_message));
        Ok(match started {
            Err(false) => Answer::Stopped {
                content: String::new(),
            },
            Err(true) => Answer::Interrupted {
                content: String::new(),
            },
            Ok(Err(err)) => Answer::Failed(err),
            Ok(Ok(stream)) => receive(self, turn, stream, sink, cancel).await,
        })
    }
}

/// An admitted exchange before its turn is decided.
struct Draft {
    conversation: Conversation,
    created: bool,
    place: Place,
    input: ChatInput,
    run_id: Uuid,
    template: Option<crate::service::AppliedTemplate>,
}

/// The new user message of an exchange, after `parent_id`.
fn user_message(
    conversation: &Conversation,
    parent_id: Option<Uuid>,
    model: &str,
    content: String,
) -> Message {
    Message {
        id: Uuid::now_v7(),
        conversation_id: conversation.id,
        parent_id,
        role: Role::User,
        tokens: tokens::count_text(model, &content) as i64,
        content,
        model: None,
        metadata: json!({}),
        created_at: store::now(),
        edited_at: None,
    }
}

/// Drafts the conversation of an exchange that names none.
pub(super) fn untitled(input: &ChatInput) -> NewConversationInput {
    NewConversationInput {
        title: Some(crate::service::DEFAULT_TITLE.to_owned()),
        system_prompt: input.system_prompt.clone(),
        model: input.model.clone(),
        metadata: None,
    }
}

/// Runs the write of the user message and the upstream call together, and returns the call's
/// outcome once both are done. When the write fails, the call is dropped at once (which
/// closes its upstream connection: no reply is generated, and paid for, that could not be
/// stored); when the call ends first, the write is still awaited.
pub(super) async fn alongside<T, E>(
    store: impl Future<Output = Result<(), E>>,
    call: impl Future<Output = T>,
) -> Result<T, E> {
    tokio::pin!(store, call);
    tokio::select! {
        stored = &mut store => {
            stored?;
            Ok(call.await)
        }
        answered = &mut call => {
            store.await?;
            Ok(answered)
        }
    }
}

#[cfg(test)]
mod tests;
