//! Which provider serves a model name.
//!
//! `provider/model` names a provider explicitly. Otherwise `claude-*` goes to Anthropic and
//! `gemini-*` to Gemini when they are configured, and every other name to OpenAI (or the
//! OpenAI-compatible server of `OPENAI_BASE_URL`). With no provider configured at all,
//! the built-in mock answers everything.

use secrecy::SecretString;

use super::{HttpSettings, Provider, ProviderError, anthropic, gemini, mock, openai};
use crate::config::Config;

const OPENAI_BASE: &str = "https://api.openai.com/v1";

pub struct Providers {
    openai: Option<Provider>,
    anthropic: Option<Provider>,
    gemini: Option<Provider>,
    mock: Option<Provider>,
}

/// A routed model: the provider and the model name to send it (a part of the name asked).
pub struct Routed<'a, 'm> {
    pub provider: &'a Provider,
    pub model: &'m str,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("model `{model}` needs the {provider} provider, which is not configured")]
    NotConfigured {
        model: String,
        provider: &'static str,
    },
}

impl Providers {
    pub fn from_config(config: &Config) -> Result<Providers, ProviderError> {
        let s = &config.providers;
        let http = HttpSettings::new(
            s.connect_timeout,
            s.first_byte_timeout,
            s.idle_timeout,
            s.max_attempts,
            s.backoff_base,
        )?;
        let openai = match (&config.openai.api_key, &config.openai.base_url) {
            (None, None) => None,
            (key, base) => Some(Provider::OpenAi(openai::OpenAi::new(
                if base.is_some() {
                    "openai-compatible"
                } else {
                    "openai"
                },
                base.clone().unwrap_or_else(|| OPENAI_BASE.to_owned()),
                key.clone(),
                config.openai.org_id.clone(),
                http.clone(),
            ))),
        };
        let anthropic = config.anthropic_api_key.as_ref().map(|key: &SecretString| {
            Provider::Anthropic(anthropic::Anthropic::new(
                config.anthropic_base_url.clone(),
                key.clone(),
                http.clone(),
            ))
        });
        let gemini = config.gemini_api_key.as_ref().map(|key: &SecretString| {
            Provider::Gemini(gemini::Gemini::new(
                config.gemini_base_url.clone(),
                key.clone(),
                http.clone(),
            ))
        });
        let none = openai.is_none() && anthropic.is_none() && gemini.is_none();
        let mock = none.then(|| Provider::Mock(mock::Mock::new(s.mock_word_delay)));
        Ok(Providers {
            openai,
            anthropic,
            gemini,
            mock,
        })
    }

    /// True when no provider is configured and the built-in mock answers.
    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// Every configured provider (the mock alone when none is).
    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        [&self.openai, &self.anthropic, &self.gemini, &self.mock]
            .into_iter()
            .flatten()
    }

    pub fn route<'a, 'm>(&'a self, model: &'m str) -> Result<Routed<'a, 'm>, RouteError> {
        if let Some(mock) = &self.mock {
            let bare = model.strip_prefix("mock/").unwrap_or(model);
            return Ok(Routed {
                provider: mock,
                model: bare,
            });
        }
        if let Some((prefix, bare)) = model.split_once('/') {
            let explicit = match prefix {
                "openai" => Some((&self.openai, "openai")),
                "anthropic" => Some((&self.anthropic, "anthropic")),
                "gemini" | "google" => Some((&self.gemini, "gemini")),
                _ => None,
            };
            if let Some((slot, provider)) = explicit {
                return slot
                    .as_ref()
                    .map(|p| Routed {
                        provider: p,
                        model: bare,
                    })
                    .ok_or(RouteError::NotConfigured {
                        model: model.to_owned(),
                        provider,
                    });
            }
        }
        if model.starts_with("claude")
            && let Some(p) = &self.anthropic
        {
            return Ok(Routed { provider: p, model });
        }
        if model.starts_with("gemini")
            && let Some(p) = &self.gemini
        {
            return Ok(Routed { provider: p, model });
        }
        if let Some(p) = &self.openai {
            return Ok(Routed { provider: p, model });
        }
        let provider = if model.starts_with("claude") {
            "anthropic"
        } else if model.starts_with("gemini") {
            "gemini"
        } else {
            "openai"
        };
        Err(RouteError::NotConfigured {
            model: model.to_owned(),
            provider,
        })
    }
}
