//! Which provider endpoint a request is for, and whether it carries that provider's
//! credentials.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;

use crate::chat::Api;
use crate::render;
use crate::response::json_response;

/// The provider endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    OpenAiChat,
    OpenAiEmbeddings,
    OpenAiModels,
    AnthropicMessages,
    AnthropicModels,
    GeminiGenerate {
        model: String,
        stream: bool,
        sse: bool,
    },
    GeminiModels,
    GeminiModel(String),
}

impl Endpoint {
    pub(crate) fn api(&self) -> Api {
        match self {
            Endpoint::OpenAiChat | Endpoint::OpenAiEmbeddings | Endpoint::OpenAiModels => {
                Api::OpenAi
            }
            Endpoint::AnthropicMessages | Endpoint::AnthropicModels => Api::Anthropic,
            Endpoint::GeminiGenerate { sse, .. } => Api::Gemini { sse: *sse },
            Endpoint::GeminiModels | Endpoint::GeminiModel(_) => Api::Gemini { sse: false },
        }
    }
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

pub(crate) fn route(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Option<Endpoint> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    match (method.as_str(), path) {
        ("POST", "/v1/chat/completions") => Some(Endpoint::OpenAiChat),
        ("POST", "/v1/embeddings") => Some(Endpoint::OpenAiEmbeddings),
        ("POST", "/v1/messages") => Some(Endpoint::AnthropicMessages),
        ("GET", "/v1/models") => {
            if !headers.contains_key(header::AUTHORIZATION) && headers.contains_key("x-api-key") {
                Some(Endpoint::AnthropicModels)
            } else {
                Some(Endpoint::OpenAiModels)
            }
        }
        ("GET", "/v1beta/models") => Some(Endpoint::GeminiModels),
        (method, path) => {
            let rest = path.strip_prefix("/v1beta/models/")?;
            match (method, rest.rsplit_once(':')) {
                ("POST", Some((model, "generateContent"))) => Some(Endpoint::GeminiGenerate {
                    model: model.to_owned(),
                    stream: false,
                    sse: false,
                }),
                ("POST", Some((model, "streamGenerateContent"))) => {
                    Some(Endpoint::GeminiGenerate {
                        model: model.to_owned(),
                        stream: true,
                        sse: query_param(query, "alt") == Some("sse"),
                    })
                }
                ("GET", None) => Some(Endpoint::GeminiModel(rest.to_owned())),
                _ => None,
            }
        }
    }
}

pub(crate) fn check_auth(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<Response> {
    let api = endpoint.api();
    let message = match endpoint {
        Endpoint::AnthropicMessages | Endpoint::AnthropicModels => {
            if !headers.contains_key("x-api-key") {
                "x-api-key header is required"
            } else if !headers.contains_key("anthropic-version") {
                "anthropic-version header is required"
            } else {
                return None;
            }
        }
        Endpoint::GeminiGenerate { .. } | Endpoint::GeminiModels | Endpoint::GeminiModel(_) => {
            if headers.contains_key("x-goog-api-key")
                || query_param(query, "key").is_some_and(|k| !k.is_empty())
            {
                return None;
            }
            "Method doesn't allow unregistered callers. Please use an API key."
        }
        _ => return None,
    };
    Some(json_response(
        StatusCode::UNAUTHORIZED,
        &render::error(api, 401, Some(message)),
    ))
}
