//! `POST /v1/chat/completions`: OpenAI's request translated to the chat pipeline's, the
//! answer translated back. Stateless by default (`ChatService::complete`); with
//! `X-Conversation-Id` (or `metadata.conversationId`) the last user message is an exchange
//! of that Palaver conversation (`ChatService::chat`/`start_stream`), whose stored path is
//! the context.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::stream::{self, Meta};
use super::wire::{
    AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, WireContent, WireMessage,
};
use crate::api::extract::body_bytes;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::protocol::{from_value, parse_json};
use crate::providers::{ChatMessage, ChatRole, Usage};
use crate::service::{Attribution, ChatInput, CompletionInput, ExchangeOptions};
use crate::state::AppState;

/// The request fields Palaver applies; any other is named in `x-palaver-ignored-params`.
const APPLIED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "n",
];

/// Create a chat completion (OpenAI-compatible). Plain, or with `stream: true` an event
/// stream of `chat.completion.chunk`s ending with `data: [DONE]`. Fields Palaver does not
/// apply are listed in the `x-palaver-ignored-params` header; `tools`, a `tool_choice` that
/// asks for a tool and a `response_format` other than `text` are refused (400), not ignored.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body = ChatCompletionRequest,
    params(
        ("X-Conversation-Id" = Option<Uuid>, Header, description = "Store the exchange in this Palaver conversation (its stored messages are the context)"),
        ("X-OpenWebUI-User-Id" = Option<String>, Header, description = "The end user behind a shared key (as `user`)"),
    ),
    responses(
        (status = 200, description = "The completion (or an event stream with `stream: true`)", body = ChatCompletion,
            headers(("x-palaver-ignored-params" = String, description = "Request fields that had no effect, comma-separated"))),
        (status = 400, body = super::errors::OpenAiErrorBody), (status = 401, body = super::errors::OpenAiErrorBody),
        (status = 404, body = super::errors::OpenAiErrorBody), (status = 429, body = super::errors::OpenAiErrorBody),
        (status = 502, body = super::errors::OpenAiErrorBody),
    ))]
pub(super) async fn chat_completions(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(request, &()).await?;
    let fields: Map<String, Value> = parse_json(&bytes)?;
    let ignored = ignored_params(&fields)?;
    let body: ChatCompletionRequest = from_value(Value::Object(fields))?;
    let end_user = end_user(body.user.as_deref(), &headers)?;
    let attribution = Attribution::of(&user, end_user);
    let conversation = conversation_id(&headers, body.metadata.as_ref())?;
    let meta = Meta::new(
        body.model.clone(),
        body.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    );
    let streaming = body.stream.unwrap_or(false);
    let mut response = match conversation {
        Some(id) => {
            let input = exchange_input(id, body, attribution)?;
            in_conversation(&state, &user, input, meta, streaming).await?
        }
        None => {
            let input = completion_input(body, attribution)?;
            stateless(&state, &user, input, meta, streaming).await?
        }
    };
    if !ignored.is_empty()
        && let Ok(value) = HeaderValue::from_str(&ignored.join(", "))
    {
        response
            .headers_mut()
            .insert("x-palaver-ignored-params", value);
    }
    Ok(response)
}

async fn stateless(
    state: &AppState,
    user: &AuthUser,
    input: CompletionInput,
    meta: Meta,
    streaming: bool,
) -> Result<Response, ApiError> {
    if streaming {
        let started = state.chat.complete_stream(&user.id, input).await?;
        let meta = meta.named(started.id, started.model);
        return Ok(stream::respond(
            state,
            meta,
            stream::completion_events(started.events),
        ));
    }
    let done = state.chat.complete(&user.id, input).await?;
    let meta = meta.named(done.id, done.model);
    Ok(Json(completion(
        &meta,
        done.content,
        &done.finish_reason,
        done.usage,
    ))
    .into_response())
}

async fn in_conversation(
    state: &AppState,
    user: &AuthUser,
    input: ChatInput,
    meta: Meta,
    streaming: bool,
) -> Result<Response, ApiError> {
    let options = ExchangeOptions::default();
    let (mut response, conversation_id) = if streaming {
        let (sink, events) = stream::ExchangeSink::new();
        let handle = state
            .chat
            .start_stream(&user.id, input, sink, options)
            .await
            .map_err(|f| ApiError::from(f.error))?;
        let model = meta.model.clone();
        let meta = meta.named(handle.run_id, model);
        let conversation_id = handle.conversation_id;
        (stream::respond(state, meta, events), conversation_id)
    } else {
        let outcome = state
            .chat
            .chat(&user.id, input, options)
            .await
            .map_err(|f| ApiError::from(f.error))?;
        let meta = meta.named(outcome.reply.id, outcome.model.clone());
        let content = outcome.reply.content.clone();
        let body = completion(&meta, content, &outcome.finish_reason, outcome.usage);
        (Json(body).into_response(), outcome.conversation.id)
    };
    if let Ok(value) = HeaderValue::from_str(&conversation_id.to_string()) {
        response
            .headers_mut()
            .insert("x-palaver-conversation-id", value);
    }
    Ok(response)
}

fn completion(meta: &Meta, content: String, finish_reason: &str, usage: Usage) -> ChatCompletion {
    ChatCompletion {
        id: meta.id.clone(),
        object: "chat.completion".to_owned(),
        created: meta.created,
        model: meta.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".to_owned(),
                content,
                refusal: None,
            },
            logprobs: None,
            finish_reason: stream::finish_reason(finish_reason).to_owned(),
        }],
        usage: usage.into(),
    }
}

/// The top-level fields Palaver does not apply, sorted; `Err` for the ones it cannot ignore
/// without answering something else than was asked (tools, a forced tool, a JSON format).
fn ignored_params(fields: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let mut ignored = Vec::new();
    for (name, value) in fields {
        if APPLIED.contains(&name.as_str()) {
            continue;
        }
        let harmless = match name.as_str() {
            "tools" | "functions" => value.is_null() || value.as_array().is_some_and(Vec::is_empty),
            "tool_choice" | "function_call" => {
                value.is_null() || value == "none" || value == "auto"
            }
            "response_format" => value.is_null() || value["type"] == "text",
            _ => true,
        };
        if !harmless {
            return Err(ApiError::validation(
                name.clone(),
                "tool calls and structured output are not supported by Palaver's /v1 yet",
            ));
        }
        ignored.push(name.clone());
    }
    ignored.sort();
    Ok(ignored)
}

/// The end user behind a shared key: `user`, else the `X-OpenWebUI-User-Id` header.
fn end_user(user: Option<&str>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let named = match user {
        Some(user) => Some(user.to_owned()),
        None => match headers.get("x-openwebui-user-id") {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .filter(|v| v.len() <= 256)
                    .ok_or_else(|| {
                        ApiError::validation("X-OpenWebUI-User-Id", "must be up to 256 characters")
                    })?
                    .to_owned(),
            ),
        },
    };
    Ok(named.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()))
}

/// The Palaver conversation named by `X-Conversation-Id`, else by `metadata.conversationId`.
fn conversation_id(
    headers: &HeaderMap,
    metadata: Option<&Value>,
) -> Result<Option<Uuid>, ApiError> {
    if let Some(value) = headers.get("x-conversation-id") {
        let id = value
            .to_str()
            .ok()
            .and_then(|v| Uuid::parse_str(v.trim()).ok());
        return id
            .map(Some)
            .ok_or_else(|| ApiError::validation("X-Conversation-Id", "must be a UUID"));
    }
    match metadata.map(|m| &m["conversationId"]) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => Uuid::parse_str(id)
            .map(Some)
            .map_err(|_| ApiError::validation("metadata.conversationId", "must be a UUID")),
        Some(_) => Err(ApiError::validation(
            "metadata.conversationId",
            "must be a UUID",
        )),
    }
}

fn max_tokens(body: &ChatCompletionRequest) -> Option<u32> {
    body.max_completion_tokens.or(body.max_tokens)
}

fn completion_input(
    body: ChatCompletionRequest,
    attribution: Attribution,
) -> Result<CompletionInput, ApiError> {
    Ok(CompletionInput {
        max_tokens: max_tokens(&body),
        temperature: body.temperature,
        messages: messages(body.messages)?,
        model: body.model,
        attribution,
    })
}

/// An exchange of a conversation: the last message (a user's) is the new one; the request's
/// system messages, when there are any, are its system prompt; the rest of the request's
/// messages are not read (the conversation's stored path is the context).
fn exchange_input(
    conversation_id: Uuid,
    body: ChatCompletionRequest,
    attribution: Attribution,
) -> Result<ChatInput, ApiError> {
    let max_tokens = max_tokens(&body);
    let mut messages = messages(body.messages)?;
    let last = messages
        .pop()
        .filter(|m| m.role == ChatRole::User)
        .ok_or_else(|| {
            ApiError::validation(
                "messages",
                "with a conversation, the last message must be the user's new message",
            )
        })?;
    let system: Vec<String> = messages
        .into_iter()
        .filter(|m| m.role == ChatRole::System)
        .map(|m| m.content)
        .collect();
    Ok(ChatInput {
        conversation_id: Some(conversation_id),
        message: last.content,
        model: Some(body.model),
        max_tokens,
        temperature: body.temperature,
        system_prompt: (!system.is_empty()).then(|| system.join("\n\n")),
        attribution,
        ..ChatInput::default()
    })
}

/// The request's messages as the provider layer takes them: text only.
fn messages(wire: Vec<WireMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    wire.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => ChatRole::System,
                "user" => ChatRole::User,
                "assistant" => ChatRole::Assistant,
                other => {
                    return Err(ApiError::validation(
                        format!("messages[{i}].role"),
                        format!("`{other}` messages are not supported (system, developer, user, assistant)"),
                    ));
                }
            };
            let content = match m.content {
                Some(WireContent::Text(text)) => text,
                Some(WireContent::Parts(parts)) => {
                    let mut text = Vec::with_capacity(parts.len());
                    for (j, part) in parts.into_iter().enumerate() {
                        match (part.kind.as_str(), part.text) {
                            ("text", Some(t)) => text.push(t),
                            _ => {
                                return Err(ApiError::validation(
                                    format!("messages[{i}].content[{j}]"),
                                    "only text parts are supported",
                                ));
                            }
                        }
                    }
                    text.join("\n")
                }
                None if role == ChatRole::Assistant => String::new(),
                None => {
                    return Err(ApiError::validation(
                        format!("messages[{i}].content"),
                        "is required",
                    ));
                }
            };
            Ok(ChatMessage { role, content })
        })
        .collect()
}
