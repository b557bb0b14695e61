//! Extractors whose rejections are `ApiError`s: malformed JSON, wrong types and failed
//! validation all come back in the API.md error shape with camelCase field paths.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// A JSON body, deserialized with field paths in errors and then validated.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + garde::Validate<Context = ()>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::validation("body", rejection.body_text())
            }
        })?;
        let value = parse_json::<T>(&bytes)?;
        validate(&value)?;
        Ok(ApiJson(value))
    }
}

/// The configured body limit, put in request extensions so rejections can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Parses JSON, reporting the path of the field that has the wrong type.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(
            "body",
            "Request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::validation("body", format!("Malformed JSON: {inner}"))
        } else {
            let message = strip_position(&inner.to_string());
            ApiError::validation(field_of(&path, &message), message)
        }
    })
}

/// The field a deserialization error is about: a missing field is reported under its own
/// name (`message`), not its parent's (`body`).
fn field_of(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        (path, None) => path.to_owned(),
    }
}

/// Deserializes and validates a JSON value (a Socket.IO payload, a job's data) exactly as a body.
pub fn from_value<T>(value: serde_json::Value) -> Result<T, ApiError>
where
    T: DeserializeOwned + garde::Validate<Context = ()>,
{
    if !value.is_object() {
        return Err(ApiError::validation(
            "body",
            "payload must be a JSON object",
        ));
    }
    let parsed: T = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = strip_position(&err.into_inner().to_string());
        ApiError::validation(field_of(&path, &message), message)
    })?;
    validate(&parsed)?;
    Ok(parsed)
}

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

/// Runs garde validation and reports camelCase field paths.
pub fn validate<T: garde::Validate<Context = ()>>(value: &T) -> Result<(), ApiError> {
    value.validate().map_err(|report| {
        ApiError::Validation(
            report
                .iter()
                .map(|(path, error)| FieldError {
                    field: camel_path(&path.to_string()),
                    message: error.to_string(),
                })
                .collect(),
        )
    })
}

fn camel_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        "body".to_owned()
    } else {
        out
    }
}

/// serde_json appends " at line 1 column 20": useless to an API client once the field is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_paths() {
        assert_eq!(camel_path("max_tokens"), "maxTokens");
        assert_eq!(camel_path("input[3]"), "input[3]");
        assert_eq!(camel_path(""), "body");
    }

    #[derive(Debug, serde::Deserialize, garde::Validate)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        #[garde(range(min = 1, max = 10))]
        max_tokens: u32,
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse_json::<Body>(br#"{"maxTokens": "many"}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("not a validation error")
        };
        assert_eq!(errors[0].field, "maxTokens");
        assert!(!errors[0].message.contains("line"));
    }

    #[test]
    fn malformed_json_is_a_body_error() {
        let err = parse_json::<Body>(br#"{"maxTokens": "#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("not a validation error")
        };
        assert_eq!(errors[0].field, "body");
        assert!(errors[0].message.starts_with("Malformed JSON"));
    }

    #[test]
    fn garde_errors_are_camel_case() {
        let body = parse_json::<Body>(br#"{"maxTokens": 11}"#).unwrap();
        let ApiError::Validation(errors) = validate(&body).unwrap_err() else {
            panic!()
        };
        assert_eq!(errors[0].field, "maxTokens");
    }
}
