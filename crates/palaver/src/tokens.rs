//! Token counting: exact for OpenAI-family models (tiktoken, the model's own encoding),
//! cl100k as a close estimate for the others, whose own counts arrive in usage reports.

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

use crate::providers::ChatMessage;

/// Tokens OpenAI adds around each chat message, and to prime the reply
/// (the "num_tokens_from_messages" recipe of the OpenAI cookbook).
const PER_MESSAGE: usize = 3;
const REPLY_PRIMING: usize = 3;

fn bpe_for(model: &str) -> &'static CoreBPE {
    let model = model.rsplit('/').next().unwrap_or(model);
    match get_tokenizer(model) {
        Some(Tokenizer::O200kBase) => tiktoken_rs::o200k_base_singleton(),
        _ => tiktoken_rs::cl100k_base_singleton(),
    }
}

/// Tokens of a text in the model's encoding.
pub fn count_text(model: &str, text: &str) -> usize {
    bpe_for(model).encode_ordinary(text).len()
}

/// Tokens a chat prompt costs: the messages plus OpenAI's per-message framing.
pub fn count_messages(model: &str, messages: &[ChatMessage]) -> usize {
    let bpe = bpe_for(model);
    messages
        .iter()
        .map(|m| PER_MESSAGE + 1 + bpe.encode_ordinary(&m.content).len())
        .sum::<usize>()
        + REPLY_PRIMING
}

/// Framing cost of one stored message whose content costs `content_tokens`.
pub fn message_overhead() -> usize {
    PER_MESSAGE + 1
}

/// The context window of a model, in tokens.
pub fn context_window(model: &str) -> usize {
    let model = model.rsplit('/').next().unwrap_or(model);
    if model.starts_with("claude") {
        200_000
    } else if model.starts_with("gemini") {
        1_000_000
    } else if model.starts_with("gpt-4.1") {
        1_047_576
    } else if model.starts_with("gpt-5") {
        400_000
    } else if model.starts_with("o3") || model.starts_with("o4") {
        200_000
    } else if model.starts_with("gpt-") || model.starts_with("o1") {
        tiktoken_rs::model::get_context_size(model)
    } else if model.starts_with("mock") {
        128_000
    } else {
        // OpenAI-compatible servers (Ollama, vLLM, llama.cpp) commonly run 8k contexts.
        8_192
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatRole;

    #[test]
    fn counts_match_the_reference_encodings() {
        // Known values: "hello world" is 2 tokens in both cl100k and o200k.
        assert_eq!(count_text("gpt-4", "hello world"), 2);
        assert_eq!(count_text("gpt-4o", "hello world"), 2);
        // cl100k and o200k differ on longer text.
        let text = "Palaver keeps per-user conversations server-side, 日本語も.";
        assert_ne!(count_text("gpt-4", text), 0);
        assert_eq!(count_text("openai/gpt-4", text), count_text("gpt-4", text));
    }

    #[test]
    fn message_framing_is_counted() {
        let messages = vec![
            ChatMessage {
                role: ChatRole::System,
                content: "hello world".into(),
            },
            ChatMessage {
                role: ChatRole::User,
                content: "hello world".into(),
            },
        ];
        assert_eq!(count_messages("gpt-4", &messages), 2 * (4 + 2) + 3);
    }

    #[test]
    fn windows() {
        assert_eq!(context_window("gpt-4"), 8192);
        assert_eq!(context_window("gpt-4o-mini"), 128_000);
        assert_eq!(context_window("claude-3-5-sonnet-latest"), 200_000);
        assert_eq!(context_window("llama3"), 8192);
    }
}
