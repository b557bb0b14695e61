//! Conversation search on the FTS5 index `message_search`, where each message's owner is a
//! token of its own so that a query reads only that user's entries.
//!
//! One index read finds the user's newest matching messages, up to `ranked + 1` (or
//! `recent`), each with its conversation and text. At most `ranked`: every match is scored
//! here (BM25 over its text, see [`Words`]) and each conversation comes by its best message.
//! More: the newest `recent` are kept and their conversations come newest match first. The
//! excerpts of the page's hits are made here from those texts too. (Walking the index
//! backwards reads the owner's whole list, about 1 ms for 100,000 messages, where a rare
//! word's entries could be skipped to; counting forwards first and then reading backwards
//! cost a common word twice that.)
//!
//! SQLite's own `bm25()` and `snippet()` were most of a search's time: `bm25()` counts every
//! index entry of the owner token to weigh it (100,000 for a user with that many messages,
//! about 8 ms), though that column weighs nothing, and `snippet()` runs the query again for
//! each message of the page.

use std::collections::HashMap;

use rusqlite::params;
use uuid::Uuid;

use super::super::search_text::Words;
use super::super::{ConversationFilter, SearchHit, SearchPage, SearchQuery};
use super::conversations::{conversation, conversation_columns, uuid_at};

/// The user's newest `?2` matches, newest first.
const NEWEST: &str = "
SELECT f.rowid, m.conversation_id, m.id, m.content
  FROM (SELECT rowid FROM message_search WHERE message_search MATCH ?1
         ORDER BY rowid DESC LIMIT ?2) f
  JOIN messages m ON m.seq = f.rowid";

/// The user's conversations under the filter, and whether each title matches.
const CONVERSATIONS: &str = "
SELECT id, title LIKE ?3 FROM conversations WHERE user_id = ?1 AND archived = ?2";

/// A matching message.
struct Found {
    conversation: String,
    id: Uuid,
    content: String,
}

/// A conversation's best match: how good (higher first), and which of the found messages.
type Score = (f64, usize);
type Best = HashMap<String, Score>;

pub(super) fn search(
    c: &rusqlite::Connection,
    user_id: &str,
    query: &SearchQuery,
    filter: ConversationFilter,
    offset: i64,
    limit: i64,
) -> rusqlite::Result<SearchPage> {
    let fts = query.fts5(user_id);
    let bounds = query.bounds();
    let words = query.words();
    let read = bounds.ranked.saturating_add(1).max(bounds.recent);
    let mut found = matches(c, &fts, read)?;
    let exact = found.len() <= usize::try_from(bounds.ranked).unwrap_or(usize::MAX);
    let best = if exact {
        by_score(&words, &found)
    } else {
        found.truncate(usize::try_from(bounds.recent).unwrap_or(usize::MAX));
        by_recency(&found)
    };
    let mut listed: Vec<(bool, Option<Score>, String)> = Vec::new();
    let mut statement = c.prepare_cached(CONVERSATIONS)?;
    let mut rows = statement.query(params![user_id, filter.archived, query.title_pattern()])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let title_hit: bool = row.get(1)?;
        let best = best.get(&id).copied();
        if title_hit || best.is_some() {
            listed.push((title_hit, best, id));
        }
    }
    // Title matches first, then conversations with a matching message by how good (or how
    // new) the best one is; the id breaks ties.
    listed.sort_by(|a, b| {
        let key = |x: &Option<Score>| x.map_or(f64::NEG_INFINITY, |(k, _)| k);
        b.0.cmp(&a.0)
            .then(key(&b.1).total_cmp(&key(&a.1)))
            .then_with(|| a.2.cmp(&b.2))
    });
    let total = listed.len();
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(0);
    let mut hits = Vec::new();
    for (_, best, cid) in listed.into_iter().skip(start).take(take) {
        let excerpt = best.map(|(_, i)| (Some(found[i].id), words.excerpt(&found[i].content)));
        hits.push(hit(c, &cid, excerpt)?);
    }
    Ok(SearchPage {
        hits,
        total: u64::try_from(total).unwrap_or(u64::MAX),
        exact,
    })
}

fn matches(c: &rusqlite::Connection, fts: &str, limit: u32) -> rusqlite::Result<Vec<Found>> {
    c.prepare_cached(NEWEST)?
        .query_map(params![fts, limit], |r| {
            Ok(Found {
                conversation: r.get(1)?,
                id: uuid_at(r, 2)?,
                content: r.get(3)?,
            })
        })?
        .collect()
}

/// Each conversation by its best-scoring message (BM25 among the found messages; the newest
/// of equals).
fn by_score(words: &Words, found: &[Found]) -> Best {
    let counts: Vec<_> = found.iter().map(|f| words.counts(&f.content)).collect();
    let words_in_all: f64 = counts.iter().map(|c| f64::from(c.len)).sum();
    let avg_len = words_in_all / counts.len().max(1) as f64;
    let mut best = Best::new();
    for (i, (f, counts)) in found.iter().zip(&counts).enumerate() {
        let score = Words::bm25(counts, avg_len);
        best.entry(f.conversation.clone())
            .and_modify(|b| {
                if score > b.0 {
                    *b = (score, i);
                }
            })
            .or_insert((score, i));
    }
    best
}

/// Each conversation by its newest message among `found` (newest first).
fn by_recency(found: &[Found]) -> Best {
    let mut best = Best::new();
    let n = found.len() as f64;
    for (i, f) in found.iter().enumerate() {
        // Newer (earlier in `found`) is better.
        best.entry(f.conversation.clone())
            .or_insert((n - i as f64, i));
    }
    best
}

/// The conversation `cid` with the id and excerpt of its best message, or its title.
fn hit(
    c: &rusqlite::Connection,
    cid: &str,
    excerpt: Option<(Option<Uuid>, String)>,
) -> rusqlite::Result<SearchHit> {
    let conversation = c
        .prepare_cached(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE id = ?1"
        ))?
        .query_row([cid], conversation)?;
    let (message_id, snippet) = excerpt.unwrap_or_else(|| (None, conversation.title.clone()));
    Ok(SearchHit {
        conversation,
        message_id,
        snippet,
    })
}
