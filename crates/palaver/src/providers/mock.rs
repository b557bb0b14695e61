//! The built-in mock provider: used when no provider key is configured, so every feature
//! can be tried at once. Deterministic replies, streamed word by word.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use futures::StreamExt;

use super::{
    ChatCompletion, ChatRequest, ChatRole, ChatStream, EmbeddingRequest, Embeddings, ProviderError,
    StreamEvent, TITLE_MESSAGE_LABEL, TITLE_PROMPT, tokens,
};

/// How many words of the first message a mock title keeps.
const TITLE_WORDS: usize = 5;

pub const EMBEDDING_DIMS: usize = 1536;

pub struct Mock {
    /// Pause between streamed words, so streaming is visible in a demo.
    word_delay: Duration,
}

impl Mock {
    pub fn new(word_delay: Duration) -> Mock {
        Mock { word_delay }
    }

    /// The reply and its finish reason, at most `max_tokens` tokens.
    fn reply(request: &ChatRequest) -> (Vec<String>, &'static str) {
        let last = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == ChatRole::User)
            .map_or("", |m| m.content.as_str());
        let text = if is_title_request(request) {
            title_of(last)
        } else {
            format!(
                "This is Palaver's built-in mock provider: no provider key is configured, so no real model answered. You said: {last}"
            )
        };
        let limit = request.max_tokens.max(1) as usize;
        let mut words = Vec::new();
        let mut used = 0;
        for word in text.split_inclusive(' ') {
            let cost = tokens::count_text("mock", word);
            if used + cost > limit {
                return (words, "length");
            }
            used += cost;
            words.push(word.to_owned());
        }
        (words, "stop")
    }

    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatCompletion, ProviderError> {
        let (words, finish_reason) = Mock::reply(request);
        Ok(ChatCompletion {
            content: words.concat(),
            finish_reason: finish_reason.to_owned(),
            usage: None,
        })
    }

    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<ChatStream, ProviderError> {
        let (words, finish_reason) = Mock::reply(request);
        let delay = self.word_delay;
        let deltas = futures::stream::iter(words).then(move |word| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(StreamEvent::Delta(word))
        });
        let finish = futures::stream::once(async move {
            Ok(StreamEvent::Finish {
                finish_reason: finish_reason.to_owned(),
                usage: None,
            })
        });
        Ok(Box::pin(deltas.chain(finish)))
    }

    pub async fn embed(&self, request: &EmbeddingRequest) -> Result<Embeddings, ProviderError> {
        Ok(Embeddings {
            vectors: request
                .inputs
                .iter()
                .map(|t| shortened(embedding(t), request.dimensions))
                .collect(),
            prompt_tokens: None,
        })
    }

    pub fn list_models(&self) -> Vec<String> {
        vec!["mock".to_owned()]
    }
}

/// Whether `request` asks for a conversation's title (its system prompt is [`TITLE_PROMPT`]).
fn is_title_request(request: &ChatRequest) -> bool {
    request
        .messages
        .first()
        .is_some_and(|m| m.role == ChatRole::System && m.content == TITLE_PROMPT)
}

/// The mock's title for a title request's user message: the first few words of the
/// conversation's first message, without punctuation around them, the first one capitalised.
fn title_of(request_text: &str) -> String {
    let first_line = request_text.lines().next().unwrap_or("");
    let message = first_line
        .strip_prefix(TITLE_MESSAGE_LABEL)
        .unwrap_or(first_line);
    let words: Vec<&str> = message
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .take(TITLE_WORDS)
        .collect();
    let title = words.join(" ");
    let mut chars = title.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => title,
    }
}

/// A deterministic unit vector derived from the text.
/// A vector cut to `dimensions` and scaled back to unit length (what OpenAI's
/// `text-embedding-3-*` models do).
fn shortened(mut v: Vec<f32>, dimensions: Option<u32>) -> Vec<f32> {
    let Some(n) = dimensions
        .map(|n| n as usize)
        .filter(|&n| n > 0 && n < v.len())
    else {
        return v;
    };
    v.truncate(n);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn embedding(text: &str) -> Vec<f32> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let mut state = hasher.finish() | 1;
    let mut v: Vec<f32> = (0..EMBEDDING_DIMS)
        .map(|_| {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatMessage;

    fn request(text: &str, max_tokens: u32) -> ChatRequest {
        ChatRequest {
            model: "mock".into(),
            messages: vec![ChatMessage {
                role: ChatRole::User,
                content: text.into(),
            }],
            max_tokens,
            temperature: 0.0,
        }
    }

    #[tokio::test]
    async fn stream_concatenates_to_the_plain_reply() {
        let mock = Mock::new(Duration::ZERO);
        let plain = mock.chat(&request("hello there", 100)).await.unwrap();
        assert!(plain.content.ends_with("You said: hello there"));
        let events: Vec<_> = mock
            .chat_stream(&request("hello there", 100))
            .await
            .unwrap()
            .collect()
            .await;
        let mut text = String::new();
        for e in &events[..events.len() - 1] {
            let Ok(StreamEvent::Delta(d)) = e else {
                panic!("{e:?}")
            };
            text.push_str(d);
        }
        assert_eq!(text, plain.content);
        assert!(matches!(
            events.last(),
            Some(Ok(StreamEvent::Finish { .. }))
        ));
    }

    #[tokio::test]
    async fn max_tokens_truncates() {
        let reply = Mock::new(Duration::ZERO)
            .chat(&request("hi", 3))
            .await
            .unwrap();
        assert_eq!(reply.finish_reason, "length");
        assert!(tokens::count_text("mock", &reply.content) <= 3);
        assert!(!reply.content.is_empty());
    }

    #[tokio::test]
    async fn a_title_request_gets_the_first_words_of_the_first_message() {
        let mut title = request(
            "First message: plan a trip, to lisbon next spring?\nReply: Sure",
            20,
        );
        title.messages.insert(
            0,
            ChatMessage {
                role: ChatRole::System,
                content: TITLE_PROMPT.into(),
            },
        );
        let reply = Mock::new(Duration::ZERO).chat(&title).await.unwrap();
        assert_eq!(reply.content, "Plan a trip to lisbon");
        assert_eq!(title_of("First message: ¿qué tal?"), "Qué tal");
        assert_eq!(title_of("First message: ?!"), "");
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello");
        assert_eq!(a, embedding("hello"));
        assert_ne!(a, embedding("world"));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
