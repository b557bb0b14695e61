//! Providers' keys, base URLs and defaults, and the timeouts and retries of upstream calls.

use std::time::Duration;

use secrecy::SecretString;

use super::env::Env;
use super::{Config, ConfigError};

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    pub api_key: Option<SecretString>,
    pub org_id: Option<String>,
    pub base_url: Option<String>,
    pub model: String,
    pub max_tokens: u32,
    pub temperature: f32,
}

/// Timeouts and retries of upstream calls.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub connect_timeout: Duration,
    /// Until the response headers arrive.
    pub first_byte_timeout: Duration,
    /// Between two chunks of a body.
    pub idle_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    /// Pause between words of the built-in mock provider's streams.
    pub mock_word_delay: Duration,
}

pub(super) fn openai(env: &Env) -> Result<OpenAiConfig, ConfigError> {
    Ok(OpenAiConfig {
        api_key: secret(env, "OPENAI_API_KEY"),
        org_id: env.get("OPENAI_ORG_ID").map(str::to_owned),
        base_url: env
            .get("OPENAI_BASE_URL")
            .map(|s| s.trim_end_matches('/').to_owned()),
        model: env.get("OPENAI_MODEL").unwrap_or("gpt-4").to_owned(),
        max_tokens: env.parse_range(&["OPENAI_MAX_TOKENS", "MAX_TOKENS"], 4096, 1..=1_000_000)?,
        temperature: env.parse_float(&["OPENAI_TEMPERATURE", "TEMPERATURE"], 0.7, 0.0, 2.0)?,
    })
}

pub(super) fn provider_settings(env: &Env) -> Result<ProviderSettings, ConfigError> {
    let ms = |name, default| env.parse(name, default).map(Duration::from_millis);
    Ok(ProviderSettings {
        connect_timeout: ms("PROVIDER_CONNECT_TIMEOUT_MS", 5_000)?,
        first_byte_timeout: ms("PROVIDER_FIRST_BYTE_TIMEOUT_MS", 60_000)?,
        idle_timeout: ms("PROVIDER_IDLE_TIMEOUT_MS", 30_000)?,
        max_attempts: env.parse_range(&["PROVIDER_MAX_ATTEMPTS"], 3, 1..=10)?,
        backoff_base: ms("PROVIDER_BACKOFF_MS", 250)?,
        mock_word_delay: ms("MOCK_WORD_DELAY_MS", 15)?,
    })
}

pub(super) fn secret(env: &Env, name: &str) -> Option<SecretString> {
    env.get(name).map(|s| SecretString::from(s.to_owned()))
}

/// Refuses keys that cannot be keys; [`Config::key_warnings`] only warns on odd ones.
pub(super) fn check_keys(env: &Env) -> Result<(), ConfigError> {
    for var in ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"] {
        if let Some(key) = env.get(var) {
            // A self-hosted OpenAI-compatible server takes whatever its docs say to set:
            // Ollama's say `ollama`, vLLM's `EMPTY`.
            let self_hosted = var == "OPENAI_API_KEY" && env.get("OPENAI_BASE_URL").is_some();
            check_key(var, key, self_hosted)?;
        }
    }
    Ok(())
}

/// A vendor's key must at least look like a key: 8 characters or more, no spaces, quotes
/// or placeholders. A self-hosted server's key only has no whitespace.
fn check_key(var: &'static str, key: &str, self_hosted: bool) -> Result<(), ConfigError> {
    if self_hosted {
        if key.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(var, "has spaces: is it the right key?"));
        }
        return Ok(());
    }
    if key.len() < 8
        || key
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '<' || c == '>')
    {
        return Err(ConfigError::new(
            var,
            "does not look like an API key (too short, or has spaces, quotes or <placeholders>)",
        ));
    }
    Ok(())
}

impl Config {
    /// Keys whose prefix is not the provider's usual one: worth a warning, not a refusal.
    pub fn key_warnings(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut warnings = Vec::new();
        let mut check = |var: &str, key: &Option<SecretString>, prefix: &str| {
            if let Some(key) = key
                && !key.expose_secret().starts_with(prefix)
            {
                warnings.push(format!(
                    "{var} does not start with `{prefix}`: is it the right key?"
                ));
            }
        };
        if self.openai.base_url.is_none() {
            check("OPENAI_API_KEY", &self.openai.api_key, "sk-");
        }
        check("ANTHROPIC_API_KEY", &self.anthropic_api_key, "sk-ant-");
        check("GEMINI_API_KEY", &self.gemini_api_key, "AIza");
        warnings
    }
}
