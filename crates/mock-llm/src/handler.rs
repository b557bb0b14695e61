//! Routing: the admin endpoints and one handler for every provider endpoint.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::admin::{faults, reset, stats};
use crate::chat::{Api, ChatRequest, Directives, Reply, parse_directives};
use crate::embeddings::embeddings;
use crate::endpoint::{Endpoint, check_auth, route};
use crate::response::{json_response, status_response};
use crate::stream::{self, HangGuard};
use crate::{Fault, MockState, RecordedRequest, render};

const MAX_BODY: usize = 64 * 1024 * 1024;

pub(crate) fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/__mock/stats", get(stats))
        .route("/__mock/faults", post(faults))
        .route("/__mock/reset", post(reset))
        .fallback(provider)
        .with_state(state)
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
    record(&state, &parts, &body);
    let path = parts.uri.path();
    let query = parts.uri.query();

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

    let cut = match failures(&state, api, stream, &directives).await {
        ControlFlow::Break(response) => return response,
        ControlFlow::Continue(cut) => cut,
    };
    match chat {
        Some(chat) => chat_reply(state, api, &chat, &clean, &directives, cut),
        None => other_reply(endpoint, &body, cut),
    }
}

fn record(state: &MockState, parts: &Parts, body: &Value) {
    state.record(RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
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
}

/// The failures asked for, a queued [`Fault`] first, then the message's directives: a
/// response that ends the request here, or the number of words after which to cut.
async fn failures(
    state: &Arc<MockState>,
    api: Api,
    stream: bool,
    directives: &Directives,
) -> ControlFlow<Response, Option<usize>> {
    let mut cut = directives.cut;
    match state.pop_fault() {
        Some(Fault::Status {
            status,
            retry_after,
            body,
        }) => {
            return ControlFlow::Break(status_response(api, status, retry_after, body.as_deref()));
        }
        Some(Fault::Hang) => return ControlFlow::Break(hang(state.clone(), stream).await),
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Cut { after_chunks }) => cut = Some(after_chunks),
        None => {}
    }
    if let Some(delay) = directives.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = directives.status {
        let retry_after = (status == 429).then_some(1);
        return ControlFlow::Break(status_response(api, status, retry_after, None));
    }
    if directives.hang {
        return ControlFlow::Break(hang(state.clone(), stream).await);
    }
    ControlFlow::Continue(cut)
}

/// A chat reply, plain or streamed (`cut`: drop the connection after that many words).
fn chat_reply(
    state: Arc<MockState>,
    api: Api,
    chat: &ChatRequest,
    clean: &str,
    directives: &Directives,
    cut: Option<usize>,
) -> Response {
    let reply = Reply::new(clean, directives, chat.max_tokens, chat.prompt_words);
    let id = state.next_id();
    if !chat.stream {
        if cut.is_some() {
            return Response::new(stream::abort());
        }
        return json_response(StatusCode::OK, &render::plain(api, id, chat, &reply));
    }
    let plan = render::plan(api, id, chat, reply);
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

/// The endpoints that are not chat: embeddings and the model lists (a cut: no response).
fn other_reply(endpoint: Endpoint, body: &Value, cut: Option<usize>) -> Response {
    match endpoint {
        _ if cut.is_some() => Response::new(stream::abort()),
        Endpoint::OpenAiEmbeddings => embeddings(body),
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
        Endpoint::OpenAiChat | Endpoint::AnthropicMessages | Endpoint::GeminiGenerate { .. } => {
            Response::new(stream::abort())
        }
    }
}

/// Never answers; the guard counts the request as cancelled when the client closes.
async fn hang(state: Arc<MockState>, stream: bool) -> Response {
    let _guard = HangGuard::new(state, stream);
    std::future::pending::<Response>().await
}
