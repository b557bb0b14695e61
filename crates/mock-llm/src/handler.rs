//! Routing: the admin endpoints and one handler for every provider endpoint.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::chat::{Api, ChatRequest, Directives, Reply, parse_directives};
use crate::stream::{self, HangGuard};
use crate::{Fault, MockState, RecordedRequest, render};

const MAX_BODY: usize = 64 * 1024 * 1024;
const DEFAULT_DIMENSIONS: usize = 1536;

pub(crate) fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/__mock/stats", get(stats))
        .route("/__mock/faults", post(faults))
        .route("/__mock/reset", post(reset))
        .fallback(provider)
        .with_state(state)
}

async fn stats(State(state): State<Arc<MockState>>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "requests": state.request_count(),
            "openStreams": state.open_streams(),
            "cancelledStreams": state.cancelled_streams(),
            "faultsQueued": state.faults_queued(),
        }),
    )
}

/// One queued fault as `POST /__mock/faults` takes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultSpec {
    status: Option<u16>,
    retry_after: Option<u64>,
    body: Option<String>,
    #[serde(default)]
    hang: bool,
    delay_ms: Option<u64>,
    cut: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FaultSpecs {
    Many(Vec<FaultSpec>),
    One(FaultSpec),
}

impl FaultSpec {
    fn fault(self) -> Option<Fault> {
        if let Some(status) = self.status {
            return Some(Fault::Status {
                status,
                retry_after: self.retry_after,
                body: self.body,
            });
        }
        if self.hang {
            return Some(Fault::Hang);
        }
        if let Some(ms) = self.delay_ms {
            return Some(Fault::Delay(Duration::from_millis(ms)));
        }
        self.cut.map(|after_chunks| Fault::Cut { after_chunks })
    }
}

async fn faults(State(state): State<Arc<MockState>>, body: axum::body::Bytes) -> Response {
    let specs = match serde_json::from_slice::<FaultSpecs>(&body) {
        Ok(FaultSpecs::Many(specs)) => specs,
        Ok(FaultSpecs::One(spec)) => vec![spec],
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("bad faults: {e}")}),
            );
        }
    };
    let mut parsed = Vec::with_capacity(specs.len());
    for spec in specs {
        match spec.fault() {
            Some(fault) => parsed.push(fault),
            None => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "each fault needs status, hang, delayMs or cut"}),
                );
            }
        }
    }
    for fault in parsed {
        state.push_fault(fault);
    }
    json_response(
        StatusCode::OK,
        &json!({"faultsQueued": state.faults_queued()}),
    )
}

async fn reset(State(state): State<Arc<MockState>>) -> Response {
    state.clear();
    json_response(StatusCode::OK, &json!({"reset": true}))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// The provider endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
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
    fn api(&self) -> Api {
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

fn route(
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

/// Every request that is not `/__mock/*`: recorded, then answered as its provider would.
async fn provider(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let path = parts.uri.path();
    let query = parts.uri.query();
    state.record(RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: path.to_owned(),
        query: query.map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
    });

    let Some(endpoint) = route(&parts.method, path, query, &parts.headers) else {
        let message = format!("mock-llm: no route for {} {path}", parts.method);
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"message": message, "type": "invalid_request_error", "code": "not_found"}}),
        );
    };
    let api = endpoint.api();
    if let Some(refused) = check_auth(&endpoint, &parts.headers, query) {
        return refused;
    }

    let latency = state.config().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let chat = match &endpoint {
        Endpoint::OpenAiChat => Some(ChatRequest::openai(&body)),
        Endpoint::AnthropicMessages => Some(ChatRequest::anthropic(&body)),
        Endpoint::GeminiGenerate { model, stream, .. } => {
            Some(ChatRequest::gemini(&body, model, *stream))
        }
        _ => None,
    };
    let stream = chat.as_ref().is_some_and(|c| c.stream);
    let (clean, directives) = match &chat {
        Some(c) => parse_directives(&c.last_user),
        None => (String::new(), Directives::default()),
    };

    let mut cut = directives.cut;
    match state.pop_fault() {
        Some(Fault::Status {
            status,
            retry_after,
            body,
        }) => {
            return status_response(api, status, retry_after, body.as_deref());
        }
        Some(Fault::Hang) => return hang(state, stream).await,
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Cut { after_chunks }) => cut = Some(after_chunks),
        None => {}
    }
    if let Some(delay) = directives.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = directives.status {
        return status_response(api, status, (status == 429).then_some(1), None);
    }
    if directives.hang {
        return hang(state, stream).await;
    }

    let Some(chat) = chat else {
        return match endpoint {
            _ if cut.is_some() => Response::new(stream::abort()),
            Endpoint::OpenAiEmbeddings => embeddings(&body),
            Endpoint::OpenAiModels => json_response(
                StatusCode::OK,
                &json!({"object": "list", "data": [
                    {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
                    {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
                    {"id": "text-embedding-3-small", "object": "model", "created": 1705948997, "owned_by": "system"},
                ]}),
            ),
            Endpoint::AnthropicModels => json_response(
                StatusCode::OK,
                &json!({"data": [
                    {"id": "claude-3-5-haiku-latest", "type": "model", "display_name": "Claude Haiku 3.5", "created_at": "2024-10-22T00:00:00Z"},
                    {"id": "claude-sonnet-4-0", "type": "model", "display_name": "Claude Sonnet 4", "created_at": "2025-05-22T00:00:00Z"},
                ], "has_more": false, "first_id": "claude-3-5-haiku-latest", "last_id": "claude-sonnet-4-0"}),
            ),
            Endpoint::GeminiModels => json_response(
                StatusCode::OK,
                &json!({"models": [
                    {"name": "models/gemini-2.0-flash", "displayName": "Gemini 2.0 Flash",
                        "supportedGenerationMethods": ["generateContent", "streamGenerateContent"]},
                    {"name": "models/gemini-1.5-pro", "displayName": "Gemini 1.5 Pro",
                        "supportedGenerationMethods": ["generateContent", "streamGenerateContent"]},
                ]}),
            ),
            Endpoint::GeminiModel(model) => json_response(
                StatusCode::OK,
                &json!({"name": format!("models/{model}"), "displayName": model,
                    "supportedGenerationMethods": ["generateContent", "streamGenerateContent"]}),
            ),
            Endpoint::OpenAiChat
            | Endpoint::AnthropicMessages
            | Endpoint::GeminiGenerate { .. } => Response::new(stream::abort()),
        };
    };

    let reply = Reply::new(&clean, &directives, chat.max_tokens, chat.prompt_words);
    let id = state.next_id();
    if !chat.stream {
        if cut.is_some() {
            return Response::new(stream::abort());
        }
        return json_response(StatusCode::OK, &render::plain(api, id, &chat, &reply));
    }
    let plan = render::plan(api, id, &chat, reply);
    let content_type = match api {
        Api::Gemini { sse: false } => "application/json",
        _ => "text/event-stream",
    };
    let mut response = Response::new(stream::body(plan, state, cut));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn check_auth(endpoint: &Endpoint, headers: &HeaderMap, query: Option<&str>) -> Option<Response> {
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

fn status_response(
    api: Api,
    status: u16,
    retry_after: Option<u64>,
    body: Option<&str>,
) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match body {
        Some(body) => (
            code,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_owned(),
        )
            .into_response(),
        None => json_response(code, &render::error(api, status, None)),
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Never answers; the guard counts the request as cancelled when the client closes.
async fn hang(state: Arc<MockState>, stream: bool) -> Response {
    let _guard = HangGuard::new(state, stream);
    std::future::pending::<Response>().await
}

/// `POST /v1/embeddings`: deterministic unit vectors from each input's text.
fn embeddings(body: &Value) -> Response {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &render::error(
                    Api::OpenAi,
                    400,
                    Some("'input' is required: a string or an array of strings"),
                ),
            );
        }
    };
    let dimensions = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DIMENSIONS, |d| (d as usize).clamp(1, 65_536));
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("text-embedding-3-small");
    let tokens: usize = inputs
        .iter()
        .map(|t| t.split_whitespace().count().max(1))
        .sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": embedding(text, dimensions)}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// A unit vector seeded by an FNV-1a hash of the text (splitmix64 for the components).
pub(crate) fn embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let mut seed = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut values: Vec<f32> = (0..dimensions)
        .map(|_| {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
    values
}
