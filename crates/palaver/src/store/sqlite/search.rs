//! Conversation search on the FTS5 index `message_search`, where each message's owner is a
//! token of its own so that a query reads only that user's entries.
//!
//! First the matching messages are counted, up to `ranked + 1`. At most `ranked`: every match is scored (bm25) and each conversation
//! comes by its best message. More: the newest `recent` matches are taken, without scores (in
//! rowid order, newest first, which the index reads cheaply), and their conversations come
//! newest match first (scoring 80,000 matches of a common word
//! took 1.4 s; this takes a few milliseconds).

use std::collections::HashMap;

use rusqlite::params;

use super::super::{ConversationFilter, SearchHit, SearchPage, SearchQuery};
use super::conversations::{conversation, conversation_columns, uuid_at};

/// How many matches there are, up to `?2` (in rowid order: walking backwards, FTS5 reads the
/// owner's whole list instead of skipping along it to a rare word's few entries).
const PROBE: &str = "
SELECT COUNT(*) FROM (SELECT rowid FROM message_search WHERE message_search MATCH ?1 LIMIT ?2)";

/// One ranked page of the user's matching conversations: `(conversation id, seq of the best
/// message)`, and the number of matches. bm25 is lower for better matches; the owner column
/// weighs nothing.
const RANKED: &str = "
WITH fts AS MATERIALIZED (
    SELECT rowid AS seq, bm25(message_search, 1.0, 0.0) AS rank
      FROM message_search WHERE message_search MATCH ?1
), best AS (
    SELECT m.conversation_id AS cid, m.seq AS seq, MIN(fts.rank) AS rank
      FROM fts JOIN messages m ON m.seq = fts.seq
     GROUP BY m.conversation_id
), hits AS (
    SELECT c.id AS cid, best.seq AS seq, c.title LIKE ?4 AS title_hit, COALESCE(best.rank, 0) AS rank
      FROM conversations c LEFT JOIN best ON best.cid = c.id
     WHERE c.user_id = ?2 AND c.archived = ?3 AND (best.cid IS NOT NULL OR c.title LIKE ?4)
)
SELECT cid, seq, COUNT(*) OVER () FROM hits ORDER BY title_hit DESC, rank, cid LIMIT ?5 OFFSET ?6";

/// The same page by recency: the conversations of the newest `?7` matches, each by its
/// newest one.
const RECENT: &str = "
WITH recent AS (
    SELECT m.conversation_id AS cid, MAX(f.seq) AS seq
      FROM (SELECT rowid AS seq FROM message_search WHERE message_search MATCH ?1
             ORDER BY rowid DESC LIMIT ?7) f
      JOIN messages m ON m.seq = f.seq
     GROUP BY m.conversation_id
), hits AS (
    SELECT c.id AS cid, recent.seq AS seq, c.title LIKE ?4 AS title_hit
      FROM conversations c LEFT JOIN recent ON recent.cid = c.id
     WHERE c.user_id = ?2 AND c.archived = ?3 AND (recent.cid IS NOT NULL OR c.title LIKE ?4)
)
SELECT cid, seq, COUNT(*) OVER () FROM hits
 ORDER BY title_hit DESC, seq IS NULL, seq DESC, cid LIMIT ?5 OFFSET ?6";

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
    let newest: i64 = c
        .prepare_cached(PROBE)?
        .query_row(params![fts, i64::from(bounds.ranked) + 1], |r| r.get(0))?;
    let exact = newest <= i64::from(bounds.ranked);
    let pattern = query.title_pattern();
    let (sql, window) = if exact {
        (RANKED, None)
    } else {
        (RECENT, Some(i64::from(bounds.recent)))
    };
    let mut statement = c.prepare_cached(sql)?;
    let mut total = 0;
    let mut read = |r: &rusqlite::Row<'_>| {
        total = r.get::<_, i64>(2)?;
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
    };
    let archived = filter.archived;
    let ranked: Vec<(String, Option<i64>)> = match window {
        None => statement
            .query_map(
                params![fts, user_id, archived, pattern, limit, offset],
                &mut read,
            )?
            .collect::<rusqlite::Result<_>>()?,
        Some(w) => statement
            .query_map(
                params![fts, user_id, archived, pattern, limit, offset, w],
                &mut read,
            )?
            .collect::<rusqlite::Result<_>>()?,
    };
    let seqs: Vec<i64> = ranked.iter().filter_map(|(_, seq)| *seq).collect();
    let mut excerpts = excerpts(c, &fts, &seqs)?;
    let mut hits = Vec::with_capacity(ranked.len());
    for (cid, seq) in ranked {
        let excerpt = seq.and_then(|seq| excerpts.remove(&seq));
        hits.push(hit(c, &cid, excerpt)?);
    }
    Ok(SearchPage {
        hits,
        total: u64::try_from(total).unwrap_or(0),
        exact,
    })
}

/// The conversation `cid` with the id and excerpt of its best message, or its title.
fn hit(
    c: &rusqlite::Connection,
    cid: &str,
    excerpt: Option<(Option<uuid::Uuid>, String)>,
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

/// The excerpts of the messages `seqs` around the matched words, in one query: every FTS5
/// query merges again the entries of all the words a prefix starts, so twenty of them cost
/// twenty merges. Only the matches between the first and the last of `seqs` are read.
const EXCERPTS: &str = "
SELECT f.rowid, m.id, snippet(message_search, 0, char(2), char(3), '…', 24)
  FROM message_search f JOIN messages m ON m.seq = f.rowid
 WHERE message_search MATCH ?1 AND f.rowid BETWEEN ?2 AND ?3
   AND f.rowid IN (SELECT value FROM json_each(?4))";

fn excerpts(
    c: &rusqlite::Connection,
    fts: &str,
    seqs: &[i64],
) -> rusqlite::Result<HashMap<i64, (Option<uuid::Uuid>, String)>> {
    let (Some(first), Some(last)) = (seqs.iter().min(), seqs.iter().max()) else {
        return Ok(HashMap::new());
    };
    let list = serde_json::to_string(seqs).unwrap_or_default();
    c.prepare_cached(EXCERPTS)?
        .query_map(params![fts, first, last, list], |r| {
            Ok((r.get(0)?, (Some(uuid_at(r, 1)?), r.get(2)?)))
        })?
        .collect()
}
