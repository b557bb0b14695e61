use std::time::Duration;

use serde_json::json;

use super::wire::*;
use super::*;
use crate::providers::ChatMessage;
use crate::providers::sse::decode_in_pieces;
use crate::providers::{ChatRole, StreamEvent, Usage};

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            ChatMessage {
                role: ChatRole::System,
                content: "Be brief.".into(),
            },
            ChatMessage {
                role: ChatRole::User,
                content: "hello".into(),
            },
            ChatMessage {
                role: ChatRole::Assistant,
                content: "hi".into(),
            },
            ChatMessage {
                role: ChatRole::User,
                content: "again".into(),
            },
        ],
        max_tokens: 50,
        temperature: 0.0,
    }
}

#[test]
fn request_body() {
    let body = serde_json::to_value(wire_request(&request(), false)).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "again"},
            ],
            "max_tokens": 50,
            "temperature": 0.0,
            "stream": false,
        })
    );
    let mut warm = request();
    warm.temperature = 0.7;
    let body = serde_json::to_value(wire_request(&warm, true)).unwrap();
    assert_eq!(body["temperature"], json!(0.7));
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

fn http() -> HttpSettings {
    HttpSettings::new(
        Duration::from_secs(1),
        Duration::from_secs(1),
        Duration::from_secs(1),
        1,
        Duration::ZERO,
    )
    .unwrap()
}

#[test]
fn headers_with_and_without_key() {
    let with = OpenAi::new(
        "openai",
        "https://x/v1/".into(),
        Some("sk-k".into()),
        Some("org-1".into()),
        http(),
    );
    assert_eq!(with.base_url, "https://x/v1");
    let h = with.headers().unwrap();
    assert_eq!(h[AUTHORIZATION], "Bearer sk-k");
    assert!(h[AUTHORIZATION].is_sensitive());
    assert_eq!(h["OpenAI-Organization"], "org-1");
    let without = OpenAi::new(
        "openai-compatible",
        "http://127.0.0.1:1/v1".into(),
        None,
        None,
        http(),
    );
    assert!(without.headers().unwrap().is_empty());
    assert_eq!(without.name(), "openai-compatible");
}

#[test]
fn plain_completion() {
    let reply: WireCompletion = serde_json::from_value(json!({
        "id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    }))
    .unwrap();
    let c = completion(reply).unwrap();
    assert_eq!(c.content, "Hi!");
    assert_eq!(c.finish_reason, "length");
    assert_eq!(
        c.usage,
        Some(Usage {
            prompt_tokens: 9,
            completion_tokens: 2
        })
    );
    let empty: WireCompletion = serde_json::from_value(json!({"choices": []})).unwrap();
    assert!(matches!(
        completion(empty),
        Err(ProviderError::Protocol { .. })
    ));
}

#[test]
fn embeddings_in_input_order() {
    let reply: WireEmbeddings = serde_json::from_value(json!({
        "data": [
            {"index": 2, "embedding": [2.0]},
            {"index": 0, "embedding": [0.0]},
            {"index": 1, "embedding": [1.0]},
        ],
        "usage": {"prompt_tokens": 3, "total_tokens": 3}
    }))
    .unwrap();
    let e = embeddings(reply, 3).unwrap();
    assert_eq!(e.vectors, vec![vec![0.0], vec![1.0], vec![2.0]]);
    assert_eq!(e.prompt_tokens, Some(3));
    let missing: WireEmbeddings =
        serde_json::from_value(json!({"data": [{"index": 0, "embedding": [0.0]}]})).unwrap();
    assert!(embeddings(missing, 2).is_err());
    let out_of_range: WireEmbeddings =
        serde_json::from_value(json!({"data": [{"index": 5, "embedding": [0.0]}]})).unwrap();
    assert!(embeddings(out_of_range, 1).is_err());
}

const STREAM: &str = concat!(
    ": keep-alive\n\n",
    "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wörld 😀\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n",
    "data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n",
    "data: [DONE]\n\n",
);

fn expected() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Delta("Héllo".into()),
        StreamEvent::Delta(" wörld 😀".into()),
        StreamEvent::Finish {
            finish_reason: "stop".into(),
            usage: Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 3,
            }),
        },
    ]
}

#[tokio::test]
async fn stream_in_any_pieces() {
    for piece in [1, 2, 3, 5, 7, 13, 64, 1000] {
        let events = decode_in_pieces(STREAM.as_bytes(), piece, StreamDecoder::default()).await;
        let events: Vec<StreamEvent> = events.into_iter().map(|e| e.unwrap()).collect();
        assert_eq!(events, expected(), "pieces of {piece}");
    }
}

#[tokio::test]
async fn stream_without_done_finishes_at_eof_after_a_finish_reason() {
    let body = STREAM.replace("data: [DONE]\n\n", "");
    let events = decode_in_pieces(body.as_bytes(), 11, StreamDecoder::default()).await;
    let events: Vec<StreamEvent> = events.into_iter().map(|e| e.unwrap()).collect();
    assert_eq!(events, expected());
}

#[tokio::test]
async fn stream_cut_before_finish() {
    let cut = STREAM
        .split("data: {\"id\":\"1\",\"choices\":[{\"index\":0,\"delta\":{},")
        .next()
        .unwrap();
    let events = decode_in_pieces(cut.as_bytes(), 9, StreamDecoder::default()).await;
    assert_eq!(events.len(), 3);
    assert!(matches!(events[2], Err(ProviderError::StreamCut { .. })));
}

#[tokio::test]
async fn error_inside_the_stream() {
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\n";
    let events = decode_in_pieces(body.as_bytes(), 4, StreamDecoder::default()).await;
    assert_eq!(events.len(), 2);
    assert!(
        matches!(&events[1], Err(ProviderError::Protocol { detail }) if detail.contains("boom"))
    );
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let events = decode_in_pieces(b"data: {not json\n\n", 4, StreamDecoder::default()).await;
    assert!(matches!(events[..], [Err(ProviderError::Protocol { .. })]));
}
