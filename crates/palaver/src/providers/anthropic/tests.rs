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
fn request_body_with_system_and_merged_turns() {
    let request = ChatRequest {
        model: "claude-3-5-haiku-latest".into(),
        messages: vec![
            msg(ChatRole::System, "Be brief."),
            msg(ChatRole::System, "Be kind."),
            msg(ChatRole::Assistant, "Welcome!"),
            msg(ChatRole::User, "hello"),
            msg(ChatRole::User, "are you there?"),
            msg(ChatRole::Assistant, "yes"),
            msg(ChatRole::Assistant, ""),
            msg(ChatRole::User, "good"),
        ],
        max_tokens: 50,
        temperature: 0.0,
    };
    let body = serde_json::to_value(wire_request(&request, false)).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "claude-3-5-haiku-latest",
            "system": "Be brief.\n\nBe kind.",
            "messages": [
                {"role": "user", "content": "hello\n\nare you there?"},
                {"role": "assistant", "content": "yes"},
                {"role": "user", "content": "good"},
            ],
            "max_tokens": 50,
            "temperature": 0.0,
            "stream": false,
        })
    );
}

#[test]
fn no_system_no_field_and_temperature_clamped() {
    let request = ChatRequest {
        model: "m".into(),
        messages: vec![msg(ChatRole::User, "hi")],
        max_tokens: 5,
        temperature: 1.7,
    };
    let body = serde_json::to_value(wire_request(&request, true)).unwrap();
    assert!(body.get("system").is_none());
    assert_eq!(body["temperature"], json!(1.0));
    assert_eq!(body["stream"], json!(true));
}

#[test]
fn plain_reply() {
    let reply: WireMessageReply = serde_json::from_value(json!({
        "id": "msg_1", "type": "message", "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Hello"},
            {"type": "text", "text": " there"},
        ],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 12, "output_tokens": 2}
    }))
    .unwrap();
    let c = completion(reply);
    assert_eq!(c.content, "Hello there");
    assert_eq!(c.finish_reason, "length");
    assert_eq!(
        c.usage,
        Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 2
        })
    );
}

#[test]
fn stop_reasons() {
    assert_eq!(finish_reason(Some("end_turn".into())), "stop");
    assert_eq!(finish_reason(Some("stop_sequence".into())), "stop");
    assert_eq!(finish_reason(Some("max_tokens".into())), "length");
    assert_eq!(finish_reason(Some("tool_use".into())), "tool_use");
    assert_eq!(finish_reason(None), "stop");
}

const STREAM: &str = concat!(
    "event: message_start\r\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\n",
    "data: {\"type\": \"ping\"}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" wörld 😀\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
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
                        prompt_tokens: 25,
                        completion_tokens: 15
                    }),
                },
            ],
            "pieces of {piece}"
        );
    }
}

#[tokio::test]
async fn stream_cut_before_the_end() {
    let cut = STREAM.split("event: content_block_stop").next().unwrap();
    let events = decode_in_pieces(cut.as_bytes(), 10, StreamDecoder::default()).await;
    assert_eq!(events.len(), 3);
    assert!(matches!(events[2], Err(ProviderError::StreamCut { .. })));
}

#[tokio::test]
async fn error_events() {
    let body = concat!(
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\"}}\n\n",
        "event: error\n",
        "data: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
    );
    let events = decode_in_pieces(body.as_bytes(), 6, StreamDecoder::default()).await;
    assert_eq!(events.len(), 2);
    assert!(matches!(
        events[1],
        Err(ProviderError::Status { status: 529, .. })
    ));
    let unknown = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"new_error\",\"message\":\"x\"}}\n\n";
    let events = decode_in_pieces(unknown.as_bytes(), 6, StreamDecoder::default()).await;
    assert!(matches!(events[..], [Err(ProviderError::Protocol { .. })]));
    let limited = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"x\"}}\n\n";
    let events = decode_in_pieces(limited.as_bytes(), 6, StreamDecoder::default()).await;
    assert!(matches!(
        events[..],
        [Err(ProviderError::RateLimited { .. })]
    ));
}
