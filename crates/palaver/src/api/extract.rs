//! Extractors whose rejections are `ApiError`s: malformed JSON, wrong types and failed
//! validation all come back in the API.md error shape with camelCase field paths.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::protocol::validate::{parse_json, validate};

/// A JSON body, deserialized with field paths in errors and then validated.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + garde::Validate<Context = ()>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        // No body at all (a "New chat" button posting nothing, `Content-Length: 0`, no
        // `Content-Type`) is an empty object: a body whose fields are all optional is valid,
        // and one with required fields names the first that is missing.
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value = parse_json::<T>(bytes)?;
        validate(&value)?;
        Ok(ApiJson(value))
    }
}

/// The whole body, within the configured limit (over it: `PayloadTooLarge`, naming it).
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map(|l| l.0)
        .unwrap_or(0);
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::validation("body", rejection.body_text())
        }
    })
}

/// The configured body limit, put in request extensions so rejections can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Query parameters, with the same error treatment as bodies.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + garde::Validate<Context = ()>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let value: T = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            ApiError::validation(path, err.into_inner().to_string())
        })?;
        validate(&value)?;
        Ok(ApiQuery(value))
    }
}

/// A `{id}` path segment that must be a UUID.
pub struct IdPath(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::validation("id", "must be a UUID"))?;
        uuid::Uuid::parse_str(&raw)
            .map(IdPath)
            .map_err(|_| ApiError::validation("id", "must be a UUID"))
    }
}
