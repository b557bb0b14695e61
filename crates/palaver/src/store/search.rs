//! Conversation search (`GET /ai/conversations?q=`): the words of a query, how much work a
//! search may do, the hits a backend returns, and the marked excerpt of a hit split into plain
//! and highlighted parts.

use super::Conversation;
use uuid::Uuid;

pub use super::search_text::{MARK_END, MARK_START};
use super::search_text::{Words, excerpt};

/// The most words a query keeps.
const MAX_TERMS: usize = 16;

/// The shortest word that PostgreSQL also finds inside other words (a trigram needs three).
const MIN_SUBSTRING: usize = 3;

/// How much work one search may do, so that a word in nearly every message costs about what
/// a rare one does (issue #16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchBounds {
    /// When the user's messages that match number at most this many, every one is scored
    /// (bm25 or `ts_rank`) and conversations come by their best message, `total` exact.
    pub ranked: u32,
    /// Beyond `ranked`, only the newest this-many matching messages are looked at and their
    /// conversations come newest match first; `total` counts those (a lower bound).
    pub recent: u32,
    /// PostgreSQL reads at most this many of the user's newest messages to find them.
    pub window: u32,
    /// PostgreSQL reads at most this many substring-only matches (which rank below whole
    /// words); beyond, `total` is a lower bound.
    pub substrings: u32,
}

impl Default for SearchBounds {
    fn default() -> Self {
        SearchBounds {
            ranked: 2_000,
            recent: 2_000,
            window: 10_000,
            substrings: 500,
        }
    }
}

/// The words of a search: runs of letters and digits (everything else separates them, as
/// both backends' tokenizers do), at most 16; every word must occur, the last as a prefix
/// (so that a search box can search as one types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<String>,
    bounds: SearchBounds,
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
        (!terms.is_empty()).then_some(SearchQuery {
            terms,
            bounds: SearchBounds::default(),
        })
    }

    /// The same words under other bounds (tests use small ones).
    pub fn with_bounds(mut self, bounds: SearchBounds) -> SearchQuery {
        self.bounds = bounds;
        self
    }

    pub fn bounds(&self) -> SearchBounds {
        self.bounds
    }

    /// The FTS5 query over `message_search`: the owner's token (see [`owner_token`]) and
    /// the words in the `content` column, each quoted (no operator can be smuggled in), the
    /// last a prefix.
    pub fn fts5(&self, user_id: &str) -> String {
        let quoted: Vec<String> = self.terms.iter().map(|t| format!("\"{t}\"")).collect();
        format!(
            "owner : \"{}\" AND content : ({}*)",
            owner_token(user_id),
            quoted.join(" ")
        )
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

    /// The `ILIKE` pattern of PostgreSQL's substring matching (the words in order, anywhere,
    /// even inside other words); `None` when no word has three characters, as a trigram index
    /// could not narrow the search.
    pub fn substring_pattern(&self) -> Option<String> {
        self.terms
            .iter()
            .any(|t| t.chars().count() >= MIN_SUBSTRING)
            .then(|| self.title_pattern())
    }
}

impl SearchQuery {
    /// An excerpt of `text` around the first place where a word of the query occurs, case
    /// ignored, even inside another word, with every such place marked: the excerpt of a
    /// message that PostgreSQL found by substring only, which `ts_headline` cannot mark.
    pub fn substring_excerpt(&self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let lower: Vec<char> = chars
            .iter()
            .map(|c| c.to_lowercase().next().unwrap_or(*c))
            .collect();
        let terms: Vec<Vec<char>> = self.terms.iter().map(|t| t.chars().collect()).collect();
        let at = |i: usize| {
            terms
                .iter()
                .filter(|t| lower[i..].starts_with(t))
                .map(Vec::len)
                .max()
        };
        excerpt(&chars, at)
    }

    /// The words as SQLite's index matches them (folded, the last a prefix): for scoring and
    /// excerpting the messages a search keeps.
    pub fn words(&self) -> Words {
        Words::new(&self.terms)
    }
}

/// The token that stands for a user in SQLite's index: `u` and the hex of the id's bytes, one
/// run of letters and digits that no other id shares (the tokenizer lower-cases it).
pub fn owner_token(user_id: &str) -> String {
    use std::fmt::Write;
    let mut token = String::with_capacity(1 + 2 * user_id.len());
    token.push('u');
    for b in user_id.bytes() {
        let _ = write!(token, "{b:02x}");
    }
    token
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// How many conversations match: exact when `exact`, else how many the bounded search
    /// found (more may match in older messages).
    pub total: u64,
    pub exact: bool,
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
            q.fts5("al-1"),
            r#"owner : "u616c2d31" AND content : ("trip" "and" "paris" "near" "2" "x" "or" "1" "1"*)"#
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
        assert_eq!(
            SearchQuery::parse("a bc").unwrap().substring_pattern(),
            None
        );
        assert_eq!(
            SearchQuery::parse("a ndex").unwrap().substring_pattern(),
            Some("%a%ndex%".to_owned())
        );
        // Ids that differ only in case or punctuation have tokens of their own.
        assert_ne!(owner_token("Al-1"), owner_token("al-1"));
        assert_ne!(owner_token("al-1"), owner_token("al1"));
        assert!(SearchQuery::parse(" *?!-- ").is_none());
        assert_eq!(
            SearchQuery::parse(&"w ".repeat(40)).unwrap().terms.len(),
            16
        );
    }

    #[test]
    fn a_substring_excerpt_marks_the_words_inside_others() {
        let q = SearchQuery::parse("NDEX").unwrap();
        assert_eq!(
            q.substring_excerpt("Rebuild the Index, then reindex."),
            "Rebuild the I\u{2}ndex\u{3}, then rei\u{2}ndex\u{3}."
        );
        let long = format!("{} the index {}", "word ".repeat(40), "tail ".repeat(60));
        let excerpt = q.substring_excerpt(&long);
        assert!(excerpt.starts_with("…word "), "{excerpt}");
        assert!(excerpt.contains("i\u{2}ndex\u{3}"), "{excerpt}");
        assert!(
            excerpt.ends_with('…') && excerpt.chars().count() < 230,
            "{excerpt}"
        );
        // No match (the caller's text moved on): the start of the text.
        assert_eq!(q.substring_excerpt("short"), "short");
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
