//! The providers' wire formats: plain replies, stream events and errors.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::chat::{Api, ChatRequest, Finish, Reply, now_secs};

fn finish_reason(api: Api, finish: Finish) -> &'static str {
    match (api, finish) {
        (Api::OpenAi, Finish::Stop) => "stop",
        (Api::OpenAi, Finish::Length) => "length",
        (Api::Anthropic, Finish::Stop) => "end_turn",
        (Api::Anthropic, Finish::Length) => "max_tokens",
        (Api::Gemini { .. }, Finish::Stop) => "STOP",
        (Api::Gemini { .. }, Finish::Length) => "MAX_TOKENS",
    }
}

/// A JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn gemini_usage(reply: &Reply) -> Value {
    let (p, c) = (reply.prompt_tokens, reply.completion_tokens());
    json!({"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c})
}

/// The non-streaming reply body.
pub(crate) fn plain(api: Api, id: u64, req: &ChatRequest, reply: &Reply) -> Value {
    let (p, c) = (reply.prompt_tokens, reply.completion_tokens());
    let text = reply.text();
    let finish = finish_reason(api, reply.finish);
    match api {
        Api::OpenAi => json!({
            "id": format!("chatcmpl-mock{id}"),
            "object": "chat.completion",
            "created": now_secs(),
            "model": req.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": finish,
            }],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
            "system_fingerprint": "fp_mock",
        }),
        Api::Anthropic => json!({
            "id": format!("msg_mock{id}"),
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": finish,
            "stop_sequence": null,
            "usage": {"input_tokens": p, "output_tokens": c},
        }),
        Api::Gemini { .. } => json!({
            "candidates": [{
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": finish,
                "index": 0,
            }],
            "usageMetadata": gemini_usage(reply),
            "modelVersion": req.model,
            "responseId": format!("mock{id}"),
        }),
    }
}

/// How one word event is written: `prefix + "<json string>" + suffix`, except for Gemini's last
/// chunk, which carries the finish reason and usage.
#[derive(Debug)]
pub(crate) struct WordFormat {
    prefix: String,
    suffix: String,
    /// Gemini: the suffix of the last word chunk.
    last_suffix: Option<String>,
    /// Gemini JSON-array streaming: `[` before the first chunk, `,` before the others.
    array: bool,
}

impl WordFormat {
    pub fn render(&self, i: usize, last: bool, piece: &str) -> Bytes {
        let piece = quoted(piece);
        let suffix = match (&self.last_suffix, last) {
            (Some(s), true) => s,
            _ => &self.suffix,
        };
        let mut out = String::with_capacity(self.prefix.len() + piece.len() + suffix.len() + 4);
        if self.array {
            out.push_str(if i == 0 { "[" } else { ",\r\n" });
        }
        out.push_str(&self.prefix);
        out.push_str(&piece);
        out.push_str(suffix);
        if self.array && last {
            out.push(']');
        }
        Bytes::from(out)
    }
}

/// A stream: fixed events before and after the words, which are rendered as they are sent.
#[derive(Debug)]
pub(crate) struct Plan {
    pub pre: Vec<Bytes>,
    pub reply: Reply,
    /// How many word events (Gemini sends one, empty, for an empty reply).
    pub word_events: usize,
    pub format: WordFormat,
    pub post: Vec<Bytes>,
}

impl Plan {
    pub fn word(&self, i: usize) -> Bytes {
        self.format
            .render(i, i + 1 == self.word_events, &self.reply.piece(i))
    }
}

fn sse_event(name: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

/// The streaming reply.
pub(crate) fn plan(api: Api, id: u64, req: &ChatRequest, reply: Reply) -> Plan {
    let finish = finish_reason(api, reply.finish);
    match api {
        Api::OpenAi => openai_plan(id, req, reply, finish),
        Api::Anthropic => anthropic_plan(id, req, reply, finish),
        Api::Gemini { sse } => gemini_plan(sse, id, req, reply, finish),
    }
}

/// `data:` chunks: the role, a chunk per word, the finish, the usage when asked, `[DONE]`.
fn openai_plan(id: u64, req: &ChatRequest, reply: Reply, finish: &str) -> Plan {
    let (p, c) = (reply.prompt_tokens, reply.completion_tokens());
    let model = quoted(&req.model);
    let created = now_secs();
    let head = format!(
        r#""id":"chatcmpl-mock{id}","object":"chat.completion.chunk","created":{created},"model":{model},"system_fingerprint":"fp_mock""#
    );
    let choice = |delta: &str, finish: &str| {
        Bytes::from(
            format!(
                r#"data: {{{head},"choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#
            ) + "\n\n",
        )
    };
    let pre = vec![choice(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    )];
    let mut post = vec![choice("{}", &quoted(finish))];
    if req.include_usage {
        post.push(Bytes::from(format!(
                r#"data: {{{head},"choices":[],"usage":{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{}}}}}"#,
                p + c
            ) + "\n\n"));
    }
    post.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let format = WordFormat {
        prefix: format!(r#"data: {{{head},"choices":[{{"index":0,"delta":{{"content":"#),
        suffix: r#"},"logprobs":null,"finish_reason":null}]}"#.to_owned() + "\n\n",
        last_suffix: None,
        array: false,
    };
    Plan {
        pre,
        word_events: c,
        reply,
        format,
        post,
    }
}

/// Named events: `message_start`, a `content_block_delta` per word, `message_delta` (stop
/// reason, output tokens), `message_stop`.
fn anthropic_plan(id: u64, req: &ChatRequest, reply: Reply, finish: &str) -> Plan {
    let (p, c) = (reply.prompt_tokens, reply.completion_tokens());
    let pre = vec![
        sse_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": format!("msg_mock{id}"), "type": "message", "role": "assistant", "model": req.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": p, "output_tokens": 1},
            }}),
        ),
        sse_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        sse_event("ping", &json!({"type": "ping"})),
    ];
    let post = vec![
        sse_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ),
        sse_event(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": finish, "stop_sequence": null},
                    "usage": {"output_tokens": c}}),
        ),
        sse_event("message_stop", &json!({"type": "message_stop"})),
    ];
    let format = WordFormat {
        prefix: concat!(
            "event: content_block_delta\n",
            r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"#
        )
        .to_owned(),
        suffix: "}}\n\n".to_owned(),
        last_suffix: None,
        array: false,
    };
    Plan {
        pre,
        word_events: c,
        reply,
        format,
        post,
    }
}

/// A whole response per word, the last with the finish reason and usage; SSE `data:`
/// events, or one JSON array.
fn gemini_plan(sse: bool, id: u64, req: &ChatRequest, reply: Reply, finish: &str) -> Plan {
    let c = reply.completion_tokens();
    let model = quoted(&req.model);
    let (lead, tail) = if sse {
        ("data: ", "\r\n\r\n")
    } else {
        ("", "")
    };
    let usage = gemini_usage(&reply);
    let format = WordFormat {
        prefix: format!(r#"{lead}{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"#),
        suffix: format!(
            r#"}}]}},"index":0}}],"modelVersion":{model},"responseId":"mock{id}"}}{tail}"#
        ),
        last_suffix: Some(format!(
            r#"}}]}},"finishReason":"{finish}","index":0}}],"usageMetadata":{usage},"modelVersion":{model},"responseId":"mock{id}"}}{tail}"#
        )),
        array: !sse,
    };
    // An empty reply still sends one (empty, final) chunk.
    let word_events = c.max(1);
    Plan {
        pre: Vec::new(),
        word_events,
        reply,
        format,
        post: Vec::new(),
    }
}

/// A provider-shaped error body for `status`; the message carries a detail that must never
/// reach the gateway's own clients.
pub(crate) fn error(api: Api, status: u16, message: Option<&str>) -> Value {
    let (openai_type, anthropic_type, gemini_status, text) = match status {
        400 => (
            "invalid_request_error",
            "invalid_request_error",
            "INVALID_ARGUMENT",
            "Invalid request",
        ),
        401 => (
            "invalid_request_error",
            "authentication_error",
            "UNAUTHENTICATED",
            "Invalid API key",
        ),
        403 => (
            "invalid_request_error",
            "permission_error",
            "PERMISSION_DENIED",
            "Permission denied",
        ),
        404 => (
            "invalid_request_error",
            "not_found_error",
            "NOT_FOUND",
            "Not found",
        ),
        429 => (
            "rate_limit_exceeded",
            "rate_limit_error",
            "RESOURCE_EXHAUSTED",
            "Rate limit reached",
        ),
        503 => (
            "server_error",
            "overloaded_error",
            "UNAVAILABLE",
            "The service is overloaded",
        ),
        529 => (
            "server_error",
            "overloaded_error",
            "UNAVAILABLE",
            "Overloaded",
        ),
        _ => (
            "server_error",
            "api_error",
            "INTERNAL",
            "Internal server error",
        ),
    };
    let message = match message {
        Some(m) => m.to_owned(),
        None => {
            format!("{text} (mock-upstream-secret-detail: org-mock-0042, key sk-mock-upstream-key)")
        }
    };
    match api {
        Api::OpenAi => {
            json!({"error": {"message": message, "type": openai_type, "param": null, "code": null}})
        }
        Api::Anthropic => {
            json!({"type": "error", "error": {"type": anthropic_type, "message": message}})
        }
        Api::Gemini { .. } => {
            json!({"error": {"code": status, "message": message, "status": gemini_status}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Directives;

    fn events(plan: &Plan) -> Vec<Value> {
        let mut all: Vec<Bytes> = plan.pre.clone();
        all.extend((0..plan.word_events).map(|i| plan.word(i)));
        all.extend(plan.post.iter().cloned());
        let text: String = all
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        text.replace("\r\n", "\n")
            .split("\n\n")
            .filter_map(|f| {
                f.lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .map(str::to_owned)
            })
            .filter(|d| d != "[DONE]")
            .map(|d| serde_json::from_str(d.trim()).unwrap())
            .collect()
    }

    #[test]
    fn every_streamed_event_is_valid_json() {
        let req = ChatRequest::openai(
            &json!({"model": "m\"q", "messages": [{"role": "user", "content": "héllo \"x\""}],
            "stream": true, "stream_options": {"include_usage": true}}),
        );
        for api in [Api::OpenAi, Api::Anthropic, Api::Gemini { sse: true }] {
            let reply = Reply::new("héllo \"x\"", &Directives::default(), None, 2);
            let plan = plan(api, 7, &req, reply);
            let evs = events(&plan);
            assert!(evs.len() >= 5, "{api:?} {evs:?}");
        }
        let reply = Reply::new("a", &Directives::default(), None, 2);
        let array = plan(Api::Gemini { sse: false }, 1, &req, reply);
        let text: String = (0..array.word_events)
            .map(|i| String::from_utf8(array.word(i).to_vec()).unwrap())
            .collect();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 4);
        assert_eq!(v[3]["candidates"][0]["finishReason"], "STOP");
    }
}
