//! Messages of a conversation tree: regenerate a reply, edit (in place or rerun), read the
//! earlier contents, delete a subtree. Thin handlers over `TreeService` and the chat pipeline.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::chat::{ChatResponse, answer};
use super::extract::{ApiJson, IdPath};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::dto::Message;
use crate::protocol::tree::RegenerateRequest;
use crate::protocol::tree::{DeletedMessages, EditMessageRequest, MessageRevisions};
use crate::state::AppState;

/// Routes that call a provider (metered by the rate limit).
pub fn metered_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(regenerate))
        .routes(routes!(edit_message))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(delete_message))
        .routes(routes!(revisions))
}

/// Generate a new reply beside an assistant message (for a user message: a new reply to
/// it). The conversation's active leaf becomes the new reply. With `stream: true`, the events
/// of a streamed chat (`chat:user-message` names the message answered).
#[utoipa::path(post, path = "/ai/messages/{id}/regenerate", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Message id")),
    request_body = RegenerateRequest,
    responses(
        (status = 200, description = "The new reply (or an event stream with `stream: true`)", body = ChatResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 502, body = ErrorBody),
    ))]
async fn regenerate(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<RegenerateRequest>,
) -> Result<Response, ApiError> {
    let (input, options) = state
        .tree
        .regeneration(&user.id, id, body.regeneration())
        .await?;
    answer(&state, &user, input, options, body.stream.unwrap_or(false)).await
}

/// The outcome of an edit: the message edited in place, or (with `rerun`) the new exchange.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum EditOutcome {
    Edited(Message),
    #[expect(
        dead_code,
        reason = "the schema of a rerun's answer, which `answer` writes as POST /ai/chat does"
    )]
    Rerun(ChatResponse),
}

/// Edit a message. `rerun: false` changes it in place (its previous content stays readable
/// under `/revisions`); `rerun: true` (user messages only) writes a new user message beside it
/// and a new reply, which become the active branch.
#[utoipa::path(patch, path = "/ai/messages/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Message id")),
    request_body = EditMessageRequest,
    responses(
        (status = 200, description = "The edited message, or with `rerun` the new exchange as `POST /ai/chat` answers it", body = EditOutcome),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 502, body = ErrorBody),
    ))]
async fn edit_message(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<EditMessageRequest>,
) -> Result<Response, ApiError> {
    if !body.rerun {
        let edited = state.tree.edit(&user.id, id, &body.content).await?;
        return Ok(Json(EditOutcome::Edited(edited.into())).into_response());
    }
    let (input, options) = state.tree.rerun(&user.id, id, body.content).await?;
    answer(&state, &user, input, options, body.stream.unwrap_or(false)).await
}

/// A message and its earlier contents (edits in place), oldest first.
#[utoipa::path(get, path = "/ai/messages/{id}/revisions", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Message id")),
    responses((status = 200, body = MessageRevisions), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revisions(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<MessageRevisions>, ApiError> {
    let (message, revisions) = state.tree.revisions(&user.id, id).await?;
    Ok(Json(MessageRevisions {
        message: message.into(),
        revisions: revisions.into_iter().map(Into::into).collect(),
    }))
}

/// Delete a message and every message under it. When the active leaf was among them, the
/// newest message left under its parent becomes the active leaf (`conversation:branch`).
#[utoipa::path(delete, path = "/ai/messages/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Message id")),
    responses((status = 200, body = DeletedMessages), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_message(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<DeletedMessages>, ApiError> {
    Ok(Json(state.tree.delete(&user.id, id).await?.into()))
}
