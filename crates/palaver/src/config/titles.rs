//! Conversation titles: the `generate-title` job queued after a conversation's first exchange.

use super::ConfigError;
use super::env::Env;

/// Automatic titles (`AUTO_TITLE`, `TITLE_MODEL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitlesConfig {
    /// Queue a `generate-title` job after the first exchange of an untitled conversation
    /// (`AUTO_TITLE`, default `true`).
    pub auto: bool,
    /// The model asked for titles (`TITLE_MODEL`); unset: the model of the exchange (the
    /// request's, else the conversation's, else `OPENAI_MODEL`).
    pub model: Option<String>,
}

/// `AUTO_TITLE` (`true` or `false`) and `TITLE_MODEL` (1 to 200 characters, no spaces).
pub(super) fn titles(env: &Env) -> Result<TitlesConfig, ConfigError> {
    let model = env.get("TITLE_MODEL").map(str::trim);
    if let Some(model) = model
        && (model.chars().count() > 200 || model.chars().any(char::is_whitespace))
    {
        return Err(ConfigError::new(
            "TITLE_MODEL",
            format!("`{model}` must be a model name of at most 200 characters, without spaces"),
        ));
    }
    Ok(TitlesConfig {
        auto: env.parse("AUTO_TITLE", true)?,
        model: model.map(str::to_owned),
    })
}
