//! Conversation titles (`AUTO_TITLE`): after the first exchange of an untitled conversation
//! the chat pipeline queues a `generate-title` job through a [`TitleQueue`] (the job
//! service); the job asks the model for a short title ([`TitleService::generate`]) and sets
//! it, unless the user renamed the conversation meanwhile.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::conversations::DEFAULT_TITLE;
use super::{Admission, ServiceError};
use crate::pricing::PriceTable;
use crate::providers::tokens;
use crate::providers::{ChatMessage, ChatRequest, ChatRole, Providers, Usage};
use crate::providers::{TITLE_MESSAGE_LABEL, TITLE_PROMPT};
use crate::store::{self, Message, Role, Store, UsageRecord};

/// A title is short: the model may answer this many tokens.
pub const TITLE_MAX_TOKENS: u32 = 20;
/// A stored title has at most this many characters.
pub const TITLE_MAX_CHARS: usize = 80;
/// How much of the first message and of its reply the model is shown (characters).
const MESSAGE_EXCERPT: usize = 500;
const REPLY_EXCERPT: usize = 300;

/// Queues a conversation's `generate-title` job (the job service does).
#[async_trait]
pub trait TitleQueue: Send + Sync {
    /// Queues the job that titles `conversation_id` with `model`; returns the job's id.
    async fn queue_title(
        &self,
        user_id: &str,
        conversation_id: Uuid,
        model: &str,
    ) -> Result<Uuid, ServiceError>;
}

/// Automatic titles, as the chat pipeline holds them (absent with `AUTO_TITLE=false`).
#[derive(Clone)]
pub struct AutoTitle {
    pub queue: Arc<dyn TitleQueue>,
    /// `TITLE_MODEL`; `None`: the model of the exchange.
    pub model: Option<String>,
}

/// Asks a model for a conversation's title and sets it. Cheap to clone.
#[derive(Clone)]
pub struct TitleService {
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    prices: Arc<PriceTable>,
    admission: Admission,
}

impl TitleService {
    pub fn new(
        store: Arc<dyn Store>,
        providers: Arc<Providers>,
        prices: Arc<PriceTable>,
        admission: Admission,
    ) -> TitleService {
        TitleService {
            store,
            providers,
            prices,
            admission,
        }
    }

    /// Titles a conversation of `user_id` from its first message and reply, asking `model`,
    /// and returns the title it set; `None` when it set none: the conversation is gone or was
    /// renamed (before the call, or during it: the write is conditional), or the model's
    /// answer held no title. The call's usage is recorded (kind `title`) either way.
    pub async fn generate(
        &self,
        user_id: &str,
        conversation_id: Uuid,
        model: &str,
    ) -> Result<Option<String>, ServiceError> {
        let conversation = self
            .store
            .get_conversation(user_id, conversation_id)
            .await?;
        if conversation.is_none_or(|c| c.title != DEFAULT_TITLE) {
            return Ok(None);
        }
        let messages = self.store.list_messages(conversation_id).await?;
        let Some(first) = messages.iter().find(|m| m.role == Role::User) else {
            return Ok(None);
        };
        let reply = messages.iter().find(|m| m.role == Role::Assistant);
        let answer = self
            .ask(user_id, conversation_id, model, first, reply)
            .await?;
        let Some(title) = clean_title(&answer) else {
            tracing::info!(%conversation_id, "titles: the model's answer held no title");
            return Ok(None);
        };
        let set = self
            .store
            .set_title_if(user_id, conversation_id, DEFAULT_TITLE, &title)
            .await?;
        Ok(set.then_some(title))
    }

    /// Calls the model (within the quota) and records the call's usage.
    async fn ask(
        &self,
        user_id: &str,
        conversation_id: Uuid,
        model: &str,
        first: &Message,
        reply: Option<&Message>,
    ) -> Result<String, ServiceError> {
        let routed = self.providers.route(model)?;
        let shown = if self.providers.is_mock() {
            "mock"
        } else {
            model
        };
        let request = ChatRequest {
            model: routed.model.to_owned(),
            messages: title_messages(&first.content, reply.map_or("", |r| r.content.as_str())),
            max_tokens: TITLE_MAX_TOKENS,
            temperature: 0.2,
        };
        let counted = tokens::count_messages(shown, &request.messages) as u32;
        let worst_case = i64::from(counted) + i64::from(TITLE_MAX_TOKENS);
        let _quota = self.admission.reserve(user_id, worst_case).await?;
        let answer = routed.provider.chat(&request).await.map_err(|err| {
            tracing::warn!(error = %err, model = shown, "titles: provider failed");
            ServiceError::Provider(err)
        })?;
        let usage = answer.usage.unwrap_or_else(|| Usage {
            prompt_tokens: counted,
            completion_tokens: tokens::count_text(shown, &answer.content) as u32,
        });
        let (prompt, completion) = (
            i64::from(usage.prompt_tokens),
            i64::from(usage.completion_tokens),
        );
        let record = UsageRecord {
            api_key_id: None,
            end_user: None,
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            conversation_id: Some(conversation_id),
            kind: "title".to_owned(),
            model: shown.to_owned(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost_usd: self.prices.cost(shown, prompt, completion),
            created_at: store::now(),
        };
        self.store.record_usage(&record).await?;
        Ok(answer.content)
    }
}

/// The title request: [`TITLE_PROMPT`], then the first message (on one line, after
/// [`TITLE_MESSAGE_LABEL`]) and the beginning of its reply.
fn title_messages(first: &str, reply: &str) -> Vec<ChatMessage> {
    let content = format!(
        "{TITLE_MESSAGE_LABEL}{}\nReply: {}",
        excerpt(first, MESSAGE_EXCERPT),
        excerpt(reply, REPLY_EXCERPT)
    );
    vec![
        ChatMessage {
            role: ChatRole::System,
            content: TITLE_PROMPT.to_owned(),
        },
        ChatMessage {
            role: ChatRole::User,
            content,
        },
    ]
}

/// `text` on one line (runs of whitespace as one space), at most `max` characters.
fn excerpt(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(max).collect()
}

/// Quotes and marks a model may wrap a title in.
fn is_wrapping(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | '*' | '#' | '“' | '”' | '‘' | '’' | '«' | '»' | '„'
        )
}

/// Punctuation a title does not end with.
fn is_trailing(c: char) -> bool {
    is_wrapping(c) || matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | '…' | '-' | '–' | '—')
}

/// A model's answer as a title: its first non-empty line, without a `Title:` label, quotes,
/// markdown marks or trailing punctuation, runs of whitespace as one space, at most
/// [`TITLE_MAX_CHARS`] characters (cut at a word when it can be); `None` when nothing is left.
pub fn clean_title(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_matches(is_wrapping);
    let line = match line.get(..6) {
        Some(label) if label.eq_ignore_ascii_case("title:") => &line[6..],
        _ => line,
    };
    let line = line
        .trim_start_matches(is_wrapping)
        .trim_end_matches(is_trailing);
    let words = line.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut = match words.char_indices().nth(TITLE_MAX_CHARS) {
        None => words.as_str(),
        Some((at, next)) => {
            let head = &words[..at];
            match head.rfind(' ') {
                Some(space) if next != ' ' && space > 0 => &head[..space],
                _ => head,
            }
        }
    };
    let title = cut.trim_end_matches(is_trailing);
    (!title.is_empty()).then(|| title.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_cleaned_into_titles() {
        for (answer, title) in [
            ("Trip to Lisbon", "Trip to Lisbon"),
            ("  \"Trip to Lisbon.\"  ", "Trip to Lisbon"),
            ("“Trip to Lisbon”", "Trip to Lisbon"),
            ("Title: Trip to Lisbon!", "Trip to Lisbon"),
            ("**title: 'Trip   to\tLisbon'**", "Trip to Lisbon"),
            ("\n\nTrip to Lisbon\nHere is why: ...", "Trip to Lisbon"),
            ("Why is the sky blue?", "Why is the sky blue"),
            ("# Rust lifetimes...", "Rust lifetimes"),
            ("C++ templates", "C++ templates"),
        ] {
            assert_eq!(clean_title(answer).as_deref(), Some(title), "{answer:?}");
        }
    }

    #[test]
    fn nothing_left_is_no_title() {
        for answer in ["", "   ", "\n\n", "\"\"", "...", "Title:", "**"] {
            assert_eq!(clean_title(answer), None, "{answer:?}");
        }
    }

    #[test]
    fn long_titles_are_cut_at_a_word() {
        let answer = "word ".repeat(30);
        let title = clean_title(&answer).unwrap();
        assert!(title.chars().count() <= TITLE_MAX_CHARS, "{title}");
        assert!(title.ends_with("word"), "{title}");
        let one = "x".repeat(200);
        assert_eq!(clean_title(&one).unwrap().chars().count(), TITLE_MAX_CHARS);
        // Characters, not bytes.
        let accents = "é".repeat(100);
        assert_eq!(clean_title(&accents).unwrap(), "é".repeat(TITLE_MAX_CHARS));
    }

    #[test]
    fn the_request_holds_the_exchange_on_one_line_each() {
        let messages = title_messages("plan a\ntrip   please", &"long ".repeat(200));
        assert_eq!(messages[0].role, ChatRole::System);
        assert_eq!(messages[0].content, TITLE_PROMPT);
        let mut lines = messages[1].content.lines();
        assert_eq!(lines.next(), Some("First message: plan a trip please"));
        let reply = lines.next().unwrap();
        assert!(reply.starts_with("Reply: long long"));
        assert_eq!(reply.chars().count(), "Reply: ".len() + REPLY_EXCERPT);
        assert_eq!(lines.next(), None);
    }
}
