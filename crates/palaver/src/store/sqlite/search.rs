//! Conversation search on the FTS5 index of message text (`messages_fts`).

use rusqlite::{OptionalExtension, params};

use super::super::{ConversationFilter, SearchHit, SearchQuery};
use super::conversations::{conversation, conversation_columns, uuid_at};

/// One ranked page of the user's matching conversations: `(conversation id, seq of the best
/// message)`, and the number of matches. FTS5's `rank` (bm25) is lower for better matches.
const RANKED: &str = "
WITH fts AS MATERIALIZED (
    SELECT rowid AS seq, rank FROM messages_fts WHERE messages_fts MATCH ?1
), best AS (
    SELECT m.conversation_id AS cid, m.seq AS seq, MIN(fts.rank) AS rank
      FROM fts JOIN messages m ON m.seq = fts.seq
      JOIN conversations c ON c.id = m.conversation_id AND c.user_id = ?2 AND c.archived = ?3
     GROUP BY m.conversation_id
), hits AS (
    SELECT c.id AS cid, best.seq AS seq, c.title LIKE ?4 AS title_hit, COALESCE(best.rank, 0) AS rank
      FROM conversations c LEFT JOIN best ON best.cid = c.id
     WHERE c.user_id = ?2 AND c.archived = ?3 AND (best.cid IS NOT NULL OR c.title LIKE ?4)
)
SELECT cid, seq, COUNT(*) OVER () FROM hits ORDER BY title_hit DESC, rank, cid LIMIT ?5 OFFSET ?6";

pub(super) fn search(
    c: &rusqlite::Connection,
    user_id: &str,
    query: &SearchQuery,
    filter: ConversationFilter,
    offset: i64,
    limit: i64,
) -> rusqlite::Result<(Vec<SearchHit>, u64)> {
    let fts = query.fts5();
    let mut total = 0;
    let ranked: Vec<(String, Option<i64>)> = c
        .prepare_cached(RANKED)?
        .query_map(
            params![
                fts,
                user_id,
                filter.archived,
                query.title_pattern(),
                limit,
                offset
            ],
            |r| {
                total = r.get::<_, i64>(2)?;
                Ok((r.get(0)?, r.get(1)?))
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut hits = Vec::with_capacity(ranked.len());
    for (cid, seq) in ranked {
        let conversation = c
            .prepare_cached(concat!(
                "SELECT ",
                conversation_columns!(),
                " FROM conversations WHERE id = ?1"
            ))?
            .query_row([&cid], conversation)?;
        let (message_id, snippet) = match seq {
            Some(seq) => excerpt(c, &fts, seq)?,
            None => (None, conversation.title.clone()),
        };
        hits.push(SearchHit {
            conversation,
            message_id,
            snippet,
        });
    }
    Ok((hits, u64::try_from(total).unwrap_or(0)))
}

/// The id of the message `seq` and an excerpt of it around the matched words.
fn excerpt(
    c: &rusqlite::Connection,
    fts: &str,
    seq: i64,
) -> rusqlite::Result<(Option<uuid::Uuid>, String)> {
    let id = c
        .prepare_cached("SELECT id FROM messages WHERE seq = ?1")?
        .query_row([seq], |r| uuid_at(r, 0))
        .optional()?;
    let snippet: Option<String> = c
        .prepare_cached(
            "SELECT snippet(messages_fts, 0, char(2), char(3), '…', 24) FROM messages_fts \
             WHERE messages_fts MATCH ?1 AND rowid = ?2",
        )?
        .query_row(params![fts, seq], |r| r.get(0))
        .optional()?;
    Ok((id, snippet.unwrap_or_default()))
}
