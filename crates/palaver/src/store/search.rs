//! Conversation search (`GET /ai/conversations?q=`): the words of a query, the hits a backend
//! returns, and the marked excerpt of a hit split into plain and highlighted parts.

use super::Conversation;
use uuid::Uuid;

/// Marks the start of a matched word in a backend's excerpt (a control character, which
/// message text typed by people does not hold, so no escaping is needed).
pub const MARK_START: char = '\u{2}';
/// Marks the end of a matched word.
pub const MARK_END: char = '\u{3}';

/// The most words a query keeps.
const MAX_TERMS: usize = 16;

/// The words of a search: runs of letters and digits (everything else separates them, as
/// both backends' tokenizers do), at most 16; every word must occur, the last as a prefix
/// (so that a search box can search as one types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<String>,
}

impl SearchQuery {
    /// `None` when the text holds no letter or digit.
    pub fn parse(text: &str) -> Option<SearchQuery> {
        let terms: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .take(MAX_TERMS)
            .map(str::to_lowercase)
            .collect();
        (!terms.is_empty()).then_some(SearchQuery { terms })
    }

    /// The FTS5 query: each word quoted (no operator can be smuggled in), the last a prefix.
    pub fn fts5(&self) -> String {
        let quoted: Vec<String> = self.terms.iter().map(|t| format!("\"{t}\"")).collect();
        format!("{}*", quoted.join(" "))
    }

    /// The PostgreSQL `to_tsquery('simple', ..)` text: words joined by `&`, the last a prefix.
    /// Words hold only letters and digits, so none needs quoting.
    pub fn tsquery(&self) -> String {
        format!("{}:*", self.terms.join(" & "))
    }

    /// A `LIKE` (SQLite) or `ILIKE` (PostgreSQL) pattern that a title matching every word, in
    /// order, satisfies.
    pub fn title_pattern(&self) -> String {
        format!("%{}%", self.terms.join("%"))
    }
}

/// A conversation that matches, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub conversation: Conversation,
    /// The best-matching message; `None` when only the title matches.
    pub message_id: Option<Uuid>,
    /// An excerpt of that message (or the title) with each matched word between
    /// [`MARK_START`] and [`MARK_END`].
    pub snippet: String,
}

/// One run of an excerpt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnippetPart {
    pub text: String,
    pub highlight: bool,
}

impl SearchHit {
    /// The excerpt without marks.
    pub fn plain_snippet(&self) -> String {
        self.snippet
            .chars()
            .filter(|c| *c != MARK_START && *c != MARK_END)
            .collect()
    }

    /// The excerpt as runs of plain and matched text.
    pub fn snippet_parts(&self) -> Vec<SnippetPart> {
        let mut parts: Vec<SnippetPart> = Vec::new();
        let mut highlight = false;
        let mut text = String::new();
        let mut flush = |text: &mut String, highlight: bool| {
            if !text.is_empty() {
                parts.push(SnippetPart {
                    text: std::mem::take(text),
                    highlight,
                });
            }
        };
        for c in self.snippet.chars() {
            match c {
                MARK_START => {
                    flush(&mut text, highlight);
                    highlight = true;
                }
                MARK_END => {
                    flush(&mut text, highlight);
                    highlight = false;
                }
                c => text.push(c),
            }
        }
        flush(&mut text, highlight);
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_keeps_words_only_and_quotes_them() {
        let q = SearchQuery::parse(r#"  "Trip" AND (paris*) NEAR/2 x' OR 1=1 -- "#).unwrap();
        assert_eq!(
            q.fts5(),
            r#""trip" "and" "paris" "near" "2" "x" "or" "1" "1"*"#
        );
        assert_eq!(
            q.tsquery(),
            "trip & and & paris & near & 2 & x & or & 1 & 1:*"
        );
        assert_eq!(
            SearchQuery::parse("Café déjà").unwrap().tsquery(),
            "café & déjà:*"
        );
        assert_eq!(SearchQuery::parse("a b").unwrap().title_pattern(), "%a%b%");
        assert!(SearchQuery::parse(" *?!-- ").is_none());
        assert_eq!(
            SearchQuery::parse(&"w ".repeat(40)).unwrap().terms.len(),
            16
        );
    }

    #[test]
    fn an_excerpt_splits_into_marked_parts() {
        let hit = SearchHit {
            conversation: crate::store::NewConversation {
                id: Uuid::nil(),
                user_id: "u".into(),
                title: "t".into(),
                system_prompt: None,
                model: None,
                metadata: serde_json::json!({}),
                created_at: crate::store::now(),
            }
            .created(),
            message_id: None,
            snippet: "…we fly to \u{2}Paris\u{3} in \u{2}June\u{3}".into(),
        };
        assert_eq!(hit.plain_snippet(), "…we fly to Paris in June");
        let parts = hit.snippet_parts();
        let parts: Vec<(&str, bool)> = parts
            .iter()
            .map(|p| (p.text.as_str(), p.highlight))
            .collect();
        assert_eq!(
            parts,
            vec![
                ("…we fly to ", false),
                ("Paris", true),
                (" in ", false),
                ("June", true)
            ]
        );
    }
}
