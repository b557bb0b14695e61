use serde_json::json;

use super::wire::*;
use super::*;
use crate::providers::ChatMessage;
use crate::providers::sse::decode_in_pieces;
use crate::providers::{ChatRole, StreamEvent, Usage};

fn msg(role: ChatRole, content: &str) -> ChatMessage {
    ChatMessage {
        role,
        content: content.into(),
    }
}

#[test]
fn request_body() {
    let request = ChatRequest {
        model: "gemini-2.0-flash".into(),
        messages: vec![
            msg(ChatRole::System, "Be brief."),
            msg(ChatRole::User, "hello"),
            msg(ChatRole::User, "there"),
            msg(ChatRole::Assistant, "hi"),
            msg(ChatRole::User, "again"),
        ],
        max_tokens: 50,
        temperature: 0.0,
    };
    let body = serde_json::to_value(wire_request(&request)).unwrap();
    assert_eq!(
        body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "hello\n\nthere"}]},
                {"role": "model", "parts": [{"text": "hi"}]},
                {"role": "user", "parts": [{"text": "again"}]},
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"temperature": 0.0, "maxOutputTokens": 50},
        })
    );
    let no_system = ChatRequest {
        messages: vec![msg(ChatRole::User, "x")],
        ..request
    };
    assert!(
        serde_json::to_value(wire_request(&no_system))
            .unwrap()
            .get("systemInstruction")
            .is_none()
    );
}

#[test]
fn model_paths() {
    assert_eq!(model_segment("gemini-2.0-flash"), "gemini-2.0-flash");
    assert_eq!(model_segment("models/gemini-1.5-pro"), "gemini-1.5-pro");
    assert_eq!(model_segment("../x?key=1#"), "..%2Fx%3Fkey%3D1%23");
}

#[test]
fn finish_reasons() {
    assert_eq!(finish_reason("STOP"), "stop");
    assert_eq!(finish_reason("MAX_TOKENS"), "length");
    assert_eq!(finish_reason("SAFETY"), "content_filter");
    assert_eq!(finish_reason("RECITATION"), "content_filter");
    assert_eq!(
        finish_reason("MALFORMED_FUNCTION_CALL"),
        "malformed_function_call"
    );
}

#[test]
fn plain_reply() {
    let reply: WireResponse = serde_json::from_value(json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": "thinking…", "thought": true}, {"text": "Hello"}, {"text": " there"}]},
            "finishReason": "MAX_TOKENS",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "totalTokenCount": 10},
        "modelVersion": "gemini-2.0-flash"
    }))
    .unwrap();
    let c = completion(reply).unwrap();
    assert_eq!(c.content, "Hello there");
    assert_eq!(c.finish_reason, "length");
    assert_eq!(
        c.usage,
        Some(Usage {
            prompt_tokens: 8,
            completion_tokens: 2
        })
    );

    let blocked: WireResponse = serde_json::from_value(json!({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}
    }))
    .unwrap();
    let c = completion(blocked).unwrap();
    assert_eq!(
        (c.content.as_str(), c.finish_reason.as_str()),
        ("", "content_filter")
    );

    let empty: WireResponse = serde_json::from_value(json!({})).unwrap();
    assert!(matches!(
        completion(empty),
        Err(ProviderError::Protocol { .. })
    ));
}

const STREAM: &str = concat!(
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Héllo\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 6,\"totalTokenCount\": 6},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" wörld\"}, {\"text\": \" 😀\"}],\"role\": \"model\"},\"index\": 0}],\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 6,\"candidatesTokenCount\": 4,\"totalTokenCount\": 10},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n",
);

#[tokio::test]
async fn stream_in_any_pieces() {
    for piece in [1, 2, 3, 5, 7, 13, 64, 1000] {
        let events = decode_in_pieces(STREAM.as_bytes(), piece, StreamDecoder::default()).await;
        let events: Vec<StreamEvent> = events.into_iter().map(|e| e.unwrap()).collect();
        assert_eq!(
            events,
            vec![
                StreamEvent::Delta("Héllo".into()),
                StreamEvent::Delta(" wörld 😀".into()),
                StreamEvent::Finish {
                    finish_reason: "stop".into(),
                    usage: Some(Usage {
                        prompt_tokens: 6,
                        completion_tokens: 4
                    }),
                },
            ],
            "pieces of {piece}"
        );
    }
}

#[tokio::test]
async fn stream_cut_without_finish_reason() {
    let cut = STREAM
        .split("data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"\"}]")
        .next()
        .unwrap();
    let events = decode_in_pieces(cut.as_bytes(), 17, StreamDecoder::default()).await;
    assert_eq!(events.len(), 3);
    assert!(matches!(events[2], Err(ProviderError::StreamCut { .. })));
}

#[tokio::test]
async fn error_in_the_stream() {
    let body = "data: {\"error\": {\"code\": 503, \"message\": \"overloaded\", \"status\": \"UNAVAILABLE\"}}\n\n";
    let events = decode_in_pieces(body.as_bytes(), 5, StreamDecoder::default()).await;
    assert!(matches!(
        events[..],
        [Err(ProviderError::Status { status: 503, .. })]
    ));
}
