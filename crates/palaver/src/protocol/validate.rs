//! Validation of client input, shared by every transport: JSON bodies, Socket.IO payloads and
//! job data are deserialized with field paths in errors, then validated with garde, and come
//! back as one `ApiError::Validation` with camelCase field paths.

use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

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
