//! Token counting: exact for OpenAI-family models (tiktoken, the model's own encoding),
//! cl100k as a close estimate for the others, whose own counts arrive in usage reports.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
use tokio::runtime::RuntimeFlavor;

use super::ChatMessage;

/// Tokens OpenAI adds around each chat message, and to prime the reply
/// (the "num_tokens_from_messages" recipe of the OpenAI cookbook).
const PER_MESSAGE: usize = 3;
const REPLY_PRIMING: usize = 3;

static O200K: OnceLock<&'static CoreBPE> = OnceLock::new();
static CL100K: OnceLock<&'static CoreBPE> = OnceLock::new();

fn bpe_for(model: &str) -> &'static CoreBPE {
    let model = model.rsplit('/').next().unwrap_or(model);
    let (cell, load): (_, fn() -> &'static CoreBPE) = match get_tokenizer(model) {
        Some(Tokenizer::O200kBase) => (&O200K, tiktoken_rs::o200k_base_singleton),
        _ => (&CL100K, tiktoken_rs::cl100k_base_singleton),
    };
    if let Some(bpe) = cell.get() {
        return bpe;
    }
    // The tables load on first use (idle memory stays low), which takes tens of milliseconds
    // (o200k: about 80 ms on the 2-core benchmark VM). On a multi-threaded runtime the worker
    // hands its other tasks to another thread first, so that no other request or stream
    // waits behind the load.
    let load = || *cell.get_or_init(load);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(load)
        }
        _ => load(),
    }
}

/// Tokens of a text in the model's encoding.
pub fn count_text(model: &str, text: &str) -> usize {
    bpe_for(model).encode_ordinary(text).len()
}

/// The text of token ids in the model's encoding; `None` for an id the encoding lacks.
pub fn decode(model: &str, ids: &[u32]) -> Option<String> {
    bpe_for(model).decode(ids.to_vec()).ok()
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
    // OpenAI-compatible servers (Ollama, vLLM, llama.cpp) commonly run 8k contexts.
    known_context_window(model).unwrap_or(8_192)
}

/// The context window of a model whose family Palaver knows, in tokens.
pub fn known_context_window(model: &str) -> Option<usize> {
    let model = model.rsplit('/').next().unwrap_or(model);
    let window = if model.starts_with("claude") {
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
        return None;
    };
    Some(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatRole;

    /// The first use may happen on any runtime: `block_in_place` only where it is allowed.
    #[expect(
        clippy::disallowed_methods,
        reason = "the test needs a task on a runtime worker"
    )]
    #[test]
    fn counts_on_either_runtime_flavor() {
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            current.block_on(async { count_text("gpt-4o", "hello world") }),
            2
        );
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let counted = multi.block_on(async {
            tokio::spawn(async { count_text("gpt-4", "hello world") })
                .await
                .unwrap()
        });
        assert_eq!(counted, 2);
        // Outside a worker (the thread of `block_on`) too.
        assert_eq!(multi.block_on(async { count_text("gpt-4", "hello") }), 1);
    }

    /// The token ids tiktoken's own tests give for "hello world": cl100k_base
    /// `[15339, 1917]`, o200k_base `[24912, 2375]` ("hello", " world" in each vocabulary).
    const CL100K_HELLO: [u32; 2] = [15339, 1917];
    const O200K_HELLO: [u32; 2] = [24912, 2375];

    #[test]
    fn each_model_uses_its_own_encoding() {
        for model in ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o1", "openai/gpt-4o"] {
            assert_eq!(
                bpe_for(model).encode_ordinary("hello world"),
                O200K_HELLO,
                "{model} is counted with o200k_base"
            );
        }
        // cl100k for GPT-4 and 3.5, and as the estimate for everything else.
        for model in [
            "gpt-4",
            "gpt-3.5-turbo",
            "openai/gpt-4",
            "claude-3-5-sonnet",
            "mock",
        ] {
            assert_eq!(
                bpe_for(model).encode_ordinary("hello world"),
                CL100K_HELLO,
                "{model} is counted with cl100k_base"
            );
        }
    }

    #[test]
    fn counts_match_the_reference_encodings() {
        // "hello world" is 2 tokens in both encodings.
        assert_eq!(count_text("gpt-4", "hello world"), 2);
        assert_eq!(count_text("gpt-4o", "hello world"), 2);
        // o200k's larger vocabulary holds whole non-Latin words that cl100k splits:
        // cl100k "日" "本" and 語 as two byte pieces; o200k "日本" "語".
        assert_eq!(count_text("gpt-4", "日本語"), 4);
        assert_eq!(count_text("gpt-4o", "日本語"), 2);
        // cl100k "Пр" "ив" "ет" "," " м" "ир" "!"; o200k "Пр" "ивет" "," " мир" "!".
        assert_eq!(count_text("gpt-4", "Привет, мир!"), 7);
        assert_eq!(count_text("gpt-4o", "Привет, мир!"), 5);
        // English splits alike ("Pal" "aver" " keeps" ...); only the Japanese differs.
        let text = "Palaver keeps per-user conversations server-side, 日本語も.";
        assert_eq!(count_text("gpt-4", text), 15);
        assert_eq!(count_text("gpt-4o", text), 13);
        assert_eq!(count_text("openai/gpt-4", text), 15);
        assert_eq!(count_text("openai/gpt-4o", text), 13);
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
