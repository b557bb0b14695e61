//! What a template must be: bounded fields, variables with distinct names, and no
//! placeholder that names an undeclared variable.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::render::{is_name, placeholders};
use crate::service::ServiceError;
use crate::store::TemplateDefinition;

/// The most characters of a template's name, of its model, and of one text.
const NAME_MAX: usize = 200;
const TEXT_MAX: usize = 32_000;
/// The most leading messages and variables of a template.
const MESSAGES_MAX: usize = 50;
const VARIABLES_MAX: usize = 50;

fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks a template's name (trimmed, 1..200 characters) and definition.
pub(super) fn check(name: &str, definition: &TemplateDefinition) -> Result<(), ServiceError> {
    let chars = name.trim().chars().count();
    if chars == 0 || chars > NAME_MAX {
        return Err(invalid("name", "must be 1 to 200 characters"));
    }
    check_variables(definition)?;
    let declared: BTreeSet<&str> = definition
        .variables
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    let texts = definition
        .system
        .iter()
        .map(|s| (Cow::Borrowed("system"), s.as_str()))
        .chain(definition.messages.iter().enumerate().map(|(i, m)| {
            (
                Cow::Owned(format!("messages[{i}].content")),
                m.content.as_str(),
            )
        }));
    if definition.messages.len() > MESSAGES_MAX {
        return Err(invalid("messages", "at most 50 messages"));
    }
    for (field, text) in texts {
        if text.chars().count() > TEXT_MAX {
            return Err(invalid(field, "at most 32000 characters"));
        }
        if let Some(unknown) = placeholders(text).find(|p| !declared.contains(p)) {
            let message = format!(
                "the placeholder {{{{{unknown}}}}} names no declared variable: add `{unknown}` to variables"
            );
            return Err(invalid(field, message));
        }
    }
    check_parameters(definition)
}

fn check_variables(definition: &TemplateDefinition) -> Result<(), ServiceError> {
    if definition.variables.len() > VARIABLES_MAX {
        return Err(invalid("variables", "at most 50 variables"));
    }
    let mut seen = BTreeSet::new();
    for (i, variable) in definition.variables.iter().enumerate() {
        let field = || format!("variables[{i}].name");
        if !is_name(&variable.name) {
            let message = "a letter or `_`, then letters, digits or `_` (at most 64)";
            return Err(invalid(field(), message));
        }
        if !seen.insert(variable.name.as_str()) {
            return Err(invalid(
                field(),
                format!("`{}` is declared twice", variable.name),
            ));
        }
        if variable
            .default
            .as_ref()
            .is_some_and(|d| d.chars().count() > TEXT_MAX)
        {
            return Err(invalid(
                format!("variables[{i}].default"),
                "at most 32000 characters",
            ));
        }
    }
    Ok(())
}

/// The chat parameters a template sets, within the bounds of a chat request.
fn check_parameters(definition: &TemplateDefinition) -> Result<(), ServiceError> {
    if let Some(model) = &definition.model
        && (model.is_empty() || model.len() > NAME_MAX)
    {
        return Err(invalid("model", "must be 1 to 200 characters"));
    }
    if let Some(t) = definition.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(invalid("temperature", "must be between 0 and 2"));
    }
    if let Some(n) = definition.max_tokens
        && !(1..=8000).contains(&n)
    {
        return Err(invalid("maxTokens", "must be between 1 and 8000"));
    }
    Ok(())
}
