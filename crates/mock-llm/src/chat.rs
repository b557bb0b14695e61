//! What a chat request asks for, whatever the provider: the text to echo, directives, limits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The wire format of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    OpenAi,
    Anthropic,
    /// `sse`: `alt=sse` streaming; otherwise a streamed JSON array.
    Gemini {
        sse: bool,
    },
}

/// A chat request reduced to what the mock needs.
#[derive(Debug, Clone)]
pub(crate) struct ChatRequest {
    pub model: String,
    /// The text of the last user message, directives included.
    pub last_user: String,
    /// Whitespace-separated words across every message, system included.
    pub prompt_words: usize,
    pub max_tokens: Option<u64>,
    pub stream: bool,
    pub include_usage: bool,
}

/// The text of a message content: a string, or an array of `{text}` parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut out = String::new();
            for text in parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
            {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(text);
            }
            out
        }
        _ => String::new(),
    }
}

fn words_of(content: &Value) -> usize {
    match content {
        Value::String(s) => s.split_whitespace().count(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| t.split_whitespace().count())
            .sum(),
        _ => 0,
    }
}

fn model_or(body: &Value, default: &str) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_owned()
}

fn bool_at(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(|n| {
        n.as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    })
}

impl ChatRequest {
    /// `POST /v1/chat/completions`.
    pub fn openai(body: &Value) -> Self {
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        Self {
            model: model_or(body, "gpt-4o-mini"),
            last_user: last_user(messages, "content"),
            prompt_words: messages
                .iter()
                .map(|m| m.get("content").map_or(0, words_of))
                .sum(),
            max_tokens: u64_at(body, "max_completion_tokens")
                .or_else(|| u64_at(body, "max_tokens")),
            stream: bool_at(body, "stream"),
            include_usage: body
                .get("stream_options")
                .is_some_and(|o| bool_at(o, "include_usage")),
        }
    }

    /// `POST /v1/messages`.
    pub fn anthropic(body: &Value) -> Self {
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let system = body.get("system").map_or(0, words_of);
        Self {
            model: model_or(body, "claude-3-5-haiku-latest"),
            last_user: last_user(messages, "content"),
            prompt_words: system
                + messages
                    .iter()
                    .map(|m| m.get("content").map_or(0, words_of))
                    .sum::<usize>(),
            max_tokens: u64_at(body, "max_tokens"),
            stream: bool_at(body, "stream"),
            include_usage: true,
        }
    }

    /// `POST /v1beta/models/{model}:generateContent` or `:streamGenerateContent`.
    pub fn gemini(body: &Value, model: &str, stream: bool) -> Self {
        let contents = body
            .get("contents")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let parts_of = |v: &Value| v.get("parts").cloned().unwrap_or(Value::Null);
        let system = body
            .get("systemInstruction")
            .map_or(0, |s| words_of(&parts_of(s)));
        let last_user = contents
            .iter()
            .rev()
            .find(|c| {
                c.get("role")
                    .and_then(Value::as_str)
                    .is_none_or(|r| r == "user")
            })
            .map(|c| text_of(&parts_of(c)))
            .unwrap_or_default();
        Self {
            model: model.to_owned(),
            last_user,
            prompt_words: system
                + contents
                    .iter()
                    .map(|c| words_of(&parts_of(c)))
                    .sum::<usize>(),
            max_tokens: body
                .get("generationConfig")
                .and_then(|g| u64_at(g, "maxOutputTokens")),
            stream,
            include_usage: true,
        }
    }
}

fn last_user(messages: &[Value], content_key: &str) -> String {
    messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get(content_key))
        .map(text_of)
        .unwrap_or_default()
}

/// `[[mock:...]]` directives found in the last user message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub status: Option<u16>,
    pub hang: bool,
    pub cut: Option<usize>,
    pub words: Option<usize>,
    pub delay: Option<Duration>,
    pub stamp: bool,
}

const OPEN: &str = "[[mock:";
const CLOSE: &str = "]]";

/// Removes every `[[mock:...]]` from `text`; returns the trimmed rest and the directives.
pub(crate) fn parse_directives(text: &str) -> (String, Directives) {
    let mut d = Directives::default();
    if !text.contains(OPEN) {
        return (text.trim().to_owned(), d);
    }
    let mut clean = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else { break };
        clean.push_str(&rest[..start]);
        apply(&mut d, after[..end].trim());
        rest = &after[end + CLOSE.len()..];
    }
    clean.push_str(rest);
    (clean.trim().to_owned(), d)
}

fn apply(d: &mut Directives, directive: &str) {
    let (name, value) = match directive.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (directive, None),
    };
    let number = value.and_then(|v| v.parse::<u64>().ok());
    match name {
        "hang" => d.hang = true,
        "stamp" => d.stamp = true,
        "cut" => d.cut = Some(number.unwrap_or(0) as usize),
        "words" => d.words = number.map(|n| n as usize),
        "delay" => d.delay = number.map(Duration::from_millis),
        _ => {
            if let Ok(status) = name.parse::<u16>()
                && (100..=599).contains(&status)
            {
                d.status = Some(status);
            }
        }
    }
}

/// Why the reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Stop,
    Length,
}

/// The reply's words (first without, others with a leading space when streamed).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub words: Vec<String>,
    /// Every word is the time it is written, in µs since the epoch.
    pub stamp: bool,
    pub finish: Finish,
    pub prompt_tokens: usize,
}

impl Reply {
    pub fn new(clean: &str, d: &Directives, max_tokens: Option<u64>, prompt_tokens: usize) -> Self {
        let mut words: Vec<String> = ["Mock", "reply", "to:"]
            .into_iter()
            .chain(clean.split_whitespace())
            .map(str::to_owned)
            .collect();
        if let Some(n) = d.words {
            words.truncate(n);
            let have = words.len();
            words.extend((have + 1..=n).map(|i| format!("word{i}")));
        }
        let mut finish = Finish::Stop;
        if let Some(max) = max_tokens
            && (max as usize) < words.len()
        {
            words.truncate(max as usize);
            finish = Finish::Length;
        }
        Self {
            words,
            stamp: d.stamp,
            finish,
            prompt_tokens,
        }
    }

    pub fn completion_tokens(&self) -> usize {
        self.words.len()
    }

    /// The whole text, stamping now when `stamp`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, w) in self.words.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            if self.stamp {
                out.push_str(&now_us().to_string());
            } else {
                out.push_str(w);
            }
        }
        out
    }

    /// The streamed piece for word `i`: stamped now when `stamp`.
    pub fn piece(&self, i: usize) -> String {
        let sep = if i == 0 { "" } else { " " };
        if self.stamp {
            format!("{sep}{}", now_us())
        } else {
            format!("{sep}{}", self.words.get(i).map_or("", String::as_str))
        }
    }
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn directives_are_removed_and_parsed() {
        let (clean, d) = parse_directives(
            "hi [[mock:words=7]] there [[mock:stamp]][[mock:429]] [[mock:delay=20]]",
        );
        assert_eq!(clean, "hi  there");
        assert_eq!(
            d,
            Directives {
                status: Some(429),
                words: Some(7),
                stamp: true,
                delay: Some(Duration::from_millis(20)),
                ..Default::default()
            }
        );
        let (clean, d) = parse_directives(" [[mock:cut=3]] [[mock:hang]] unterminated [[mock:x");
        assert_eq!(clean, "unterminated [[mock:x");
        assert_eq!(d.cut, Some(3));
        assert!(d.hang);
    }

    #[test]
    fn words_pads_and_truncates_then_max_tokens_cuts() {
        let d = Directives {
            words: Some(6),
            ..Default::default()
        };
        let r = Reply::new("a", &d, None, 0);
        assert_eq!(r.text(), "Mock reply to: a word5 word6");
        let d = Directives {
            words: Some(2),
            ..Default::default()
        };
        assert_eq!(Reply::new("a b c", &d, None, 0).text(), "Mock reply");
        let r = Reply::new("one two three", &Directives::default(), Some(4), 0);
        assert_eq!(
            (r.text(), r.finish),
            ("Mock reply to: one".to_owned(), Finish::Length)
        );
        let r = Reply::new("one", &Directives::default(), Some(4), 0);
        assert_eq!(r.finish, Finish::Stop);
    }

    #[test]
    fn requests_are_read_per_provider() {
        let o = ChatRequest::openai(&json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "x y"},
            {"role": "user", "content": [{"type": "text", "text": "last one"}]}],
            "max_completion_tokens": 9, "stream": true, "stream_options": {"include_usage": true}}));
        assert_eq!(
            (o.last_user.as_str(), o.prompt_words, o.max_tokens),
            ("last one", 7, Some(9))
        );
        assert!(o.stream && o.include_usage);
        let a = ChatRequest::anthropic(
            &json!({"system": "s t", "messages": [{"role": "user", "content": "u"}], "max_tokens": 5}),
        );
        assert_eq!(
            (a.last_user.as_str(), a.prompt_words, a.max_tokens),
            ("u", 3, Some(5))
        );
        let g = ChatRequest::gemini(
            &json!({"systemInstruction": {"parts": [{"text": "sys"}]}, "contents": [{"role": "user", "parts": [{"text": "g h"}]}],
                "generationConfig": {"maxOutputTokens": 3}}),
            "gemini-2.0-flash",
            false,
        );
        assert_eq!(
            (g.last_user.as_str(), g.prompt_words, g.max_tokens),
            ("g h", 3, Some(3))
        );
    }
}
