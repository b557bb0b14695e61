//! Conversations copied whole: fork, export (JSON or Markdown) and import. Thin handlers
//! over `TransferService` and `TreeService`; no provider is called, so none is metered.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiJson, ApiQuery, IdPath, body_bytes};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::dto::ConversationWithMessages;
use crate::protocol::transfer::{
    ConversationDocument, ExportFormat, ExportQuery, ForkRequest, file_name, markdown,
};
use crate::service::PathMessage;
use crate::state::AppState;
use crate::store::Conversation;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fork_conversation))
        .routes(routes!(export_conversation))
        .routes(routes!(import_conversation))
}

/// Fork a conversation at a message: a new conversation holding copies (new ids) of the path
/// from the root to `messageId`, with the same title, system prompt and model; its metadata
/// records `forkedFrom: {conversationId, messageId}` and the copy of `messageId` is its
/// active leaf. Answers as `GET /ai/conversations/{id}` for the new conversation.
#[utoipa::path(post, path = "/ai/conversations/{id}/fork", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = ForkRequest,
    responses(
        (status = 201, body = ConversationWithMessages),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn fork_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ForkRequest>,
) -> Result<(StatusCode, Json<ConversationWithMessages>), ApiError> {
    let forked = state.transfer.fork(&user.id, id, body.message_id).await?;
    Ok((StatusCode::CREATED, with_messages(forked)))
}

/// Download a conversation: `format=json` (the default) is the whole tree as a conversation
/// document, which `POST /ai/conversations/import` reads back; `format=markdown` is the
/// active path, to read. Either comes as an attachment named after the title.
#[utoipa::path(get, path = "/ai/conversations/{id}/export", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id"), ExportQuery),
    responses(
        (status = 200, description = "The conversation document, or the active path as Markdown",
            content(
                (ConversationDocument = "application/json"),
                (String = "text/markdown"),
            ),
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"<title>.json\"` (or `.md`)"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn export_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    match query.format.unwrap_or_default() {
        ExportFormat::Json => {
            let (conversation, messages) = state.tree.tree(&user.id, id).await?;
            let disposition = attachment(&file_name(&conversation.title, "json"))?;
            let document = ConversationDocument::export(conversation, messages);
            Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(document)).into_response())
        }
        ExportFormat::Markdown => {
            let (conversation, path) = state.tree.active_path(&user.id, id).await?;
            let disposition = attachment(&file_name(&conversation.title, "md"))?;
            let content_type = HeaderValue::from_static("text/markdown; charset=utf-8");
            let headers = [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_DISPOSITION, disposition),
            ];
            Ok((headers, markdown(&conversation, &path)).into_response())
        }
    }
}

/// Import a conversation document (as export writes it) as a new conversation of the caller:
/// every message gets a new id, the parent links and the active leaf follow. Messages may come
/// in any order; a refused document stores nothing. Answers as `GET /ai/conversations/{id}`.
#[utoipa::path(post, path = "/ai/conversations/import", tag = "conversations",
    request_body = ConversationDocument,
    responses(
        (status = 201, body = ConversationWithMessages),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
    ))]
async fn import_conversation(
    State(state): State<AppState>,
    user: AuthUser,
    DocumentBody(document): DocumentBody,
) -> Result<(StatusCode, Json<ConversationWithMessages>), ApiError> {
    let imported = state.transfer.import(&user.id, document.into()).await?;
    Ok((StatusCode::CREATED, with_messages(imported)))
}

/// An import body: read as [`ConversationDocument::parse`] does (format and version first).
struct DocumentBody(ConversationDocument);

impl<S: Send + Sync> FromRequest<S> for DocumentBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        ConversationDocument::parse(&bytes).map(DocumentBody)
    }
}

fn with_messages(
    (conversation, path): (Conversation, Vec<PathMessage>),
) -> Json<ConversationWithMessages> {
    Json(ConversationWithMessages {
        conversation: conversation.into(),
        messages: path.into_iter().map(Into::into).collect(),
    })
}

fn attachment(name: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).map_err(ApiError::internal)
}
