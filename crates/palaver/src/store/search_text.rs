//! A search's words inside one message's text, worked out in Rust for the messages a search
//! keeps (at most [`super::SearchBounds::ranked`]): the text's words folded as SQLite's index
//! folds them (case and diacritics), how often each query word occurs (for a BM25 score),
//! and excerpts with the matches marked.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Marks the start of a matched word in a backend's excerpt (a control character, which
/// message text typed by people does not hold, so no escaping is needed).
pub const MARK_START: char = '\u{2}';
/// Marks the end of a matched word.
pub const MARK_END: char = '\u{3}';

/// `word` lower-cased and without diacritics (`Café` → `cafe`), as the index's
/// `unicode61 remove_diacritics 2` tokenizer folds a word.
pub fn fold(word: &str) -> String {
    word.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// BM25's term-frequency saturation and length normalisation (SQLite's own `bm25()` uses
/// the same constants).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// The words of a query, folded; a text's word matches the last one when it starts with it.
#[derive(Debug, Clone)]
pub struct Words {
    terms: Vec<String>,
}

/// How often each query word occurs in one text, and how many words the text has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub per_term: Vec<u32>,
    pub len: u32,
}

impl Words {
    pub fn new(terms: &[String]) -> Words {
        Words {
            terms: terms.iter().map(|t| fold(t)).collect(),
        }
    }

    /// Whether the folded word `word` matches the query word `i`.
    fn matches(&self, i: usize, word: &str) -> bool {
        let term = &self.terms[i];
        if i + 1 == self.terms.len() {
            word.starts_with(term.as_str())
        } else {
            word == term
        }
    }

    /// Calls `f` with each query word that the text's word `word` matches. Most words are
    /// ASCII, compared without folding (or allocating).
    fn each_match(&self, word: &str, mut f: impl FnMut(usize)) {
        let last = self.terms.len().saturating_sub(1);
        if word.is_ascii() {
            for (i, term) in self.terms.iter().enumerate() {
                let hit = if i == last {
                    word.len() >= term.len()
                        && word.as_bytes()[..term.len()].eq_ignore_ascii_case(term.as_bytes())
                } else {
                    word.eq_ignore_ascii_case(term)
                };
                if hit {
                    f(i);
                }
            }
        } else {
            let word = fold(word);
            for i in 0..self.terms.len() {
                if self.matches(i, &word) {
                    f(i);
                }
            }
        }
    }

    fn matches_any(&self, word: &str) -> bool {
        let mut any = false;
        self.each_match(word, |_| any = true);
        any
    }

    /// Counts each query word's occurrences in `text`.
    pub fn counts(&self, text: &str) -> Counts {
        let mut per_term = vec![0u32; self.terms.len()];
        let mut len = 0u32;
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            len = len.saturating_add(1);
            self.each_match(word, |i| per_term[i] += 1);
        }
        Counts { per_term, len }
    }

    /// The BM25 score of a text (higher is better) among texts of `avg_len` words on average.
    /// Every query word weighs the same: all of them occur in every text that is scored, and
    /// their rarity would cost a read of every index entry of each.
    pub fn bm25(counts: &Counts, avg_len: f64) -> f64 {
        let norm = 1.0 - B + B * f64::from(counts.len) / avg_len.max(1.0);
        counts
            .per_term
            .iter()
            .map(|&tf| {
                let tf = f64::from(tf);
                tf * (K1 + 1.0) / (tf + K1 * norm)
            })
            .sum()
    }

    /// An excerpt of `text` around its first word that matches, with every matching word
    /// marked (the whole word, also when only its start is the query's last word).
    pub fn excerpt(&self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let at = |i: usize| {
            if !chars[i].is_alphanumeric() || (i > 0 && chars[i - 1].is_alphanumeric()) {
                return None;
            }
            let len = chars[i..]
                .iter()
                .position(|c| !c.is_alphanumeric())
                .unwrap_or(chars.len() - i);
            let word: String = chars[i..i + len].iter().collect();
            self.matches_any(&word).then_some(len)
        };
        excerpt(&chars, at)
    }
}

/// Characters of an excerpt kept before its first match, and in all.
const EXCERPT_BEFORE: usize = 60;
const EXCERPT_CHARS: usize = 200;

/// An excerpt of `chars` around the first place where `at` finds a match (`at(i)`: the
/// length of the match that starts at `i`), every match marked.
pub fn excerpt(chars: &[char], at: impl Fn(usize) -> Option<usize>) -> String {
    let first = (0..chars.len()).find(|&i| at(i).is_some()).unwrap_or(0);
    let start = word_start(chars, first.saturating_sub(EXCERPT_BEFORE));
    let end = word_end(chars, (start + EXCERPT_CHARS).min(chars.len()));
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut i = start;
    while i < end {
        match at(i) {
            Some(len) => {
                let stop = (i + len).min(end);
                out.push(MARK_START);
                out.extend(&chars[i..stop]);
                out.push(MARK_END);
                i = stop;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    if end < chars.len() {
        out.push('…');
    }
    out
}

/// `i` moved forward to the start of a word (unless that leaves nothing of the text).
fn word_start(chars: &[char], i: usize) -> usize {
    if i == 0 {
        return 0;
    }
    match chars[i..].iter().position(|c| c.is_whitespace()) {
        Some(p) if i + p + 1 < chars.len() => i + p + 1,
        _ => i,
    }
}

/// `i` moved forward to the end of a word.
fn word_end(chars: &[char], i: usize) -> usize {
    chars[i..]
        .iter()
        .position(|c| c.is_whitespace())
        .map_or(chars.len(), |p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(terms: &[&str]) -> Words {
        Words::new(&terms.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn words_fold_case_and_diacritics_and_the_last_is_a_prefix() {
        assert_eq!(fold("Café DÉJÀ"), "cafe deja");
        let w = words(&["cafe", "par"]);
        let counts = w.counts("Le Café de Paris, café parisien; cafés");
        assert_eq!(counts.per_term, vec![2, 2]);
        assert_eq!(counts.len, 7);
        assert_eq!(
            w.excerpt("Le Café de Paris"),
            "Le \u{2}Café\u{3} de \u{2}Paris\u{3}"
        );
        // Not inside words, and only the last word as a prefix.
        assert_eq!(w.excerpt("decafe cafes pa"), "decafe cafes pa");
    }

    #[test]
    fn bm25_prefers_more_occurrences_and_shorter_texts() {
        let w = words(&["leaf"]);
        let twice = Words::bm25(&w.counts("leaf leaf tea"), 3.0);
        let once = Words::bm25(&w.counts("rare tea leaf"), 3.0);
        let long = Words::bm25(&w.counts("leaf and many other words here"), 3.0);
        assert!(twice > once && once > long, "{twice} {once} {long}");
        assert_eq!(Words::bm25(&w.counts("none"), 3.0), 0.0);
    }
}
