//! Prompt templates: thin handlers over `TemplateService`. Per user; another user's
//! template is a 404.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{ApiJson, IdPath};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody};
use crate::protocol::templates::{
    CreateTemplateRequest, Template, TemplateList, UpdateTemplateRequest,
};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_template, list_templates))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(get_template_version))
}

/// Create a prompt template (its version 1).
#[utoipa::path(post, path = "/ai/templates", tag = "templates",
    request_body = CreateTemplateRequest,
    responses((status = 201, body = Template), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn create_template(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateTemplateRequest>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let (name, definition) = body.into_parts();
    let template = state.templates.create(&user.id, name, definition).await?;
    Ok((StatusCode::CREATED, Json(template.into())))
}

/// List the caller's templates, each its newest version, by name.
#[utoipa::path(get, path = "/ai/templates", tag = "templates",
    responses((status = 200, body = TemplateList), (status = 401, body = ErrorBody)))]
async fn list_templates(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<TemplateList>, ApiError> {
    let templates = state.templates.list(&user.id).await?;
    Ok(Json(TemplateList {
        data: templates.into_iter().map(Into::into).collect(),
    }))
}

/// Get a template: its newest version.
#[utoipa::path(get, path = "/ai/templates/{id}", tag = "templates",
    params(("id" = Uuid, Path, description = "Template id")),
    responses((status = 200, body = Template), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_template(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<Json<Template>, ApiError> {
    Ok(Json(state.templates.get(&user.id, id, None).await?.into()))
}

/// Get one version of a template (every version is kept).
#[utoipa::path(get, path = "/ai/templates/{id}/versions/{version}", tag = "templates",
    params(("id" = Uuid, Path, description = "Template id"), ("version" = i64, Path, description = "Version, from 1")),
    responses((status = 200, body = Template), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_template_version(
    State(state): State<AppState>,
    user: AuthUser,
    VersionPath(id, version): VersionPath,
) -> Result<Json<Template>, ApiError> {
    let template = state.templates.get(&user.id, id, Some(version)).await?;
    Ok(Json(template.into()))
}

/// Change a template: the fields given replace the newest version's, stored as the next
/// version (`version` + 1); the older versions stay readable.
#[utoipa::path(patch, path = "/ai/templates/{id}", tag = "templates",
    params(("id" = Uuid, Path, description = "Template id")),
    request_body = UpdateTemplateRequest,
    responses((status = 200, body = Template), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_template(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<UpdateTemplateRequest>,
) -> Result<Json<Template>, ApiError> {
    let template = state.templates.update(&user.id, id, body.into()).await?;
    Ok(Json(template.into()))
}

/// Delete a template with every version (conversations keep naming the version they used).
#[utoipa::path(delete, path = "/ai/templates/{id}", tag = "templates",
    params(("id" = Uuid, Path, description = "Template id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_template(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.templates.delete(&user.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `/{id}/versions/{version}`: a UUID and a version from 1, or a 400 naming the bad one.
struct VersionPath(Uuid, i64);

impl<S: Send + Sync> FromRequestParts<S> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((id, version)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::validation("id", "must be a UUID"))?;
        let id = Uuid::parse_str(&id).map_err(|_| ApiError::validation("id", "must be a UUID"))?;
        let version = version
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| ApiError::validation("version", "must be an integer from 1"))?;
        Ok(VersionPath(id, version))
    }
}
