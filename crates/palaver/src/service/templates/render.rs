//! `{{name}}` placeholders: found, checked against a template's variables, and filled in.

use std::collections::BTreeMap;

use crate::service::ServiceError;
use crate::store::{TemplateDefinition, TemplateVariable};

/// The most characters of a variable's name.
const NAME_MAX: usize = 64;

/// Whether `name` can be a variable: a letter or `_`, then letters, digits or `_`.
pub(super) fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= NAME_MAX
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One piece of a template text: literal text, or a placeholder's name.
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits `text` at its placeholders: `{{name}}`, spaces allowed inside the braces. Braces
/// around anything that is not a name stay text.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let name = after[..close].trim();
        if is_name(name) {
            out.push(Piece::Text(&rest[..open]));
            out.push(Piece::Placeholder(name));
            rest = &after[close + 2..];
        } else {
            out.push(Piece::Text(&rest[..open + 2]));
            rest = after;
        }
    }
    out.push(Piece::Text(rest));
    out
}

/// The placeholders of `text`, in order.
pub(super) fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    pieces(text).into_iter().filter_map(|p| match p {
        Piece::Placeholder(name) => Some(name),
        Piece::Text(_) => None,
    })
}

/// `text` with each placeholder replaced by its value (every one has a value).
fn fill(text: &str, values: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(name) => out.push_str(values.get(name).copied().unwrap_or("")),
        }
    }
    out
}

/// The value of each variable: given, else its default, else empty when it is optional. A
/// required variable without a value, or a value for a variable the template does not
/// declare, is a 400 naming it.
fn values<'a>(
    declared: &'a [TemplateVariable],
    given: &'a BTreeMap<String, String>,
) -> Result<BTreeMap<&'a str, &'a str>, ServiceError> {
    if let Some(unknown) = given
        .keys()
        .find(|k| !declared.iter().any(|v| &v.name == *k))
    {
        return Err(ServiceError::Invalid {
            field: format!("variables.{unknown}").into(),
            message: format!("the template declares no variable `{unknown}`"),
        });
    }
    let mut values = BTreeMap::new();
    for variable in declared {
        let value = match (given.get(&variable.name), &variable.default) {
            (Some(value), _) | (None, Some(value)) => value.as_str(),
            (None, None) if variable.required => {
                return Err(ServiceError::Invalid {
                    field: format!("variables.{}", variable.name).into(),
                    message: format!("the template requires the variable `{}`", variable.name),
                });
            }
            (None, None) => "",
        };
        values.insert(variable.name.as_str(), value);
    }
    Ok(values)
}

/// A template's definition with its variables filled in.
pub(super) fn render(
    definition: &TemplateDefinition,
    given: &BTreeMap<String, String>,
) -> Result<TemplateDefinition, ServiceError> {
    let values = values(&definition.variables, given)?;
    let mut rendered = definition.clone();
    rendered.system = definition.system.as_deref().map(|s| fill(s, &values));
    for message in &mut rendered.messages {
        message.content = fill(&message.content, &values);
    }
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<&str> {
        placeholders(text).collect()
    }

    #[test]
    fn placeholders_are_names_in_double_braces() {
        assert_eq!(texts("Hi {{name}}, {{ lang }}!"), ["name", "lang"]);
        assert_eq!(texts("{{}} {{a b}} {{1x}} {x} {{ok"), Vec::<&str>::new());
        assert_eq!(texts("{{{{x}}}}"), ["x"]);
    }

    #[test]
    fn values_come_from_the_request_then_the_defaults() {
        let variable = |name: &str, required, default: Option<&str>| TemplateVariable {
            name: name.into(),
            required,
            default: default.map(str::to_owned),
        };
        let definition = TemplateDefinition {
            system: Some("{{a}}/{{ b }}/{{c}}/{{d}}".into()),
            variables: vec![
                variable("a", true, None),
                variable("b", false, Some("B")),
                variable("c", false, None),
                variable("d", true, Some("D")),
            ],
            ..TemplateDefinition::default()
        };
        let given = BTreeMap::from([("a".to_owned(), "{{b}}".to_owned())]);
        let rendered = render(&definition, &given).unwrap();
        assert_eq!(rendered.system.as_deref(), Some("{{b}}/B//D"));
        let missing = render(&definition, &BTreeMap::new()).unwrap_err();
        assert!(
            matches!(missing, ServiceError::Invalid { ref field, .. } if field == "variables.a")
        );
        let unknown = BTreeMap::from([("a".into(), "x".into()), ("zz".into(), "y".into())]);
        let unknown = render(&definition, &unknown).unwrap_err();
        assert!(
            matches!(unknown, ServiceError::Invalid { ref field, .. } if field == "variables.zz")
        );
    }
}
