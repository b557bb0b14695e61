//! Conversation CRUD: thin handlers over `ConversationService`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiQuery, IdPath};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::dto::{
    ConversationPage, ConversationWithMessages, CreateConversationRequest, ListQuery,
    UpdateConversationRequest,
};
use crate::protocol::tree::{ActiveLeafRequest, ConversationTree, MessagePage, PathQuery};
use crate::service::NewConversationInput;
use crate::state::AppState;
use crate::store::{ConversationFilter, ConversationPatch};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_conversation, list_conversations))
        .routes(routes!(
            get_conversation,
            update_conversation,
            delete_conversation
        ))
        .routes(routes!(get_tree))
        .routes(routes!(get_path))
        .routes(routes!(set_active_leaf))
}

/// Create a conversation.
#[utoipa::path(post, path = "/ai/conversations", tag = "conversations",
    request_body = CreateConversationRequest,
    responses(
        (status = 201, body = crate::protocol::dto::Conversation),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ))]
async fn create_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateConversationRequest>,
) -> Result<(StatusCode, Json<crate::protocol::dto::Conversation>), ApiError> {
    let input = NewConversationInput {
        title: body.title,
        system_prompt: body.system_prompt,
        model: body.model,
        metadata: body.metadata,
    };
    let conversation = state.conversations.create(&user.id, input).await?;
    Ok((StatusCode::CREATED, Json(conversation.into())))
}

/// List the caller's conversations: pinned first, then latest activity first; archived ones
/// only with `?archived=true`. With `?q=`, search them instead (ranked, each with `match`).
#[utoipa::path(get, path = "/ai/conversations", tag = "conversations",
    params(ListQuery),
    responses((status = 200, body = ConversationPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_conversations(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ConversationPage>, ApiError> {
    let filter = ConversationFilter {
        archived: query.archived.unwrap_or(false),
    };
    let (page, limit) = (query.page.unwrap_or(1), query.limit.unwrap_or(20));
    let conversations = &state.conversations;
    Ok(Json(match query.q {
        Some(q) => conversations
            .search(&user.id, &q, filter, page, limit)
            .await?
            .into(),
        None => conversations
            .list(&user.id, filter, page, limit)
            .await?
            .into(),
    }))
}

/// Get a conversation with its active path (the branch shown), oldest first; each message
/// names its parent, its siblings and how many messages follow it.
#[utoipa::path(get, path = "/ai/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationWithMessages), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<ConversationWithMessages>, ApiError> {
    let (conversation, path) = state.tree.active_path(&user.id, id).await?;
    Ok(Json(ConversationWithMessages {
        conversation: conversation.into(),
        messages: path.into_iter().map(Into::into).collect(),
    }))
}

/// Every message of a conversation, flat (each after its parent), for tree views.
#[utoipa::path(get, path = "/ai/conversations/{id}/tree", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationTree), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_tree(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<ConversationTree>, ApiError> {
    let (conversation, messages) = state.tree.tree(&user.id, id).await?;
    Ok(Json(ConversationTree {
        conversation: conversation.into(),
        messages: messages.into_iter().map(Into::into).collect(),
    }))
}

/// A page of a path, oldest first: the newest `limit` messages of the path to `leaf` (by
/// default the active leaf); with `before`, the page before that message.
#[utoipa::path(get, path = "/ai/conversations/{id}/messages", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id"), PathQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_path(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    let page = state
        .tree
        .page(&user.id, id, query.leaf, query.before, limit)
        .await?;
    Ok(Json(page.into()))
}

/// Show another branch: the newest message under `messageId` becomes the active leaf, on
/// every device (`conversation:branch` tells the owner's connections). Answers as `GET`.
#[utoipa::path(put, path = "/ai/conversations/{id}/active-leaf", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = ActiveLeafRequest,
    responses((status = 200, body = ConversationWithMessages), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_active_leaf(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ActiveLeafRequest>,
) -> Result<Json<ConversationWithMessages>, ApiError> {
    let (conversation, path) = state
        .tree
        .set_active_leaf(&user.id, id, body.message_id)
        .await?;
    Ok(Json(ConversationWithMessages {
        conversation: conversation.into(),
        messages: path.into_iter().map(Into::into).collect(),
    }))
}

/// Rename, archive, pin or re-tag a conversation (only the fields given change).
#[utoipa::path(patch, path = "/ai/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = UpdateConversationRequest,
    responses(
        (status = 200, body = crate::protocol::dto::Conversation),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn update_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<UpdateConversationRequest>,
) -> Result<Json<crate::protocol::dto::Conversation>, ApiError> {
    let patch = ConversationPatch {
        title: body.title,
        archived: body.archived,
        pinned: body.pinned,
        metadata: body.metadata,
    };
    let conversation = state.conversations.update(&user.id, id, patch).await?;
    Ok(Json(conversation.into()))
}

/// Delete a conversation and its messages.
#[utoipa::path(delete, path = "/ai/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.conversations.delete(&user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
