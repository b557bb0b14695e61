//! Conversation search on two GIN indexes that hold the owner beside the text
//! (`messages_search_words` over `content_tsv`, `messages_search_substrings` over trigrams).
//!
//! A message matches when it holds the words (the last as a prefix) or, for a query with a
//! word of three characters or more, holds them in order anywhere, even inside other words
//! (`ndex` finds `index`); whole-word matches rank above substring-only ones. First the
//! whole-word matches are counted up to `ranked + 1`. At most `ranked`: every one is scored
//! (`ts_rank`), and up to `substrings` substring-only matches follow them. More: the user's
//! newest messages are read newest first (at most `window`) until `recent` whole-word
//! matches are found, and their conversations come newest match first; substring-only
//! matches, which would rank below all of those, are not looked for. A last query reads the
//! page's conversations and excerpts.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::super::{ConversationFilter, SearchHit, SearchPage, SearchQuery, StoreResult};
use super::conversation;

/// How many messages of the user hold the words, up to `$3`.
const PROBE: &str = "
SELECT COUNT(*) AS n FROM (
    SELECT 1 FROM messages WHERE user_id = $2 AND content_tsv @@ to_tsquery('simple', $1) LIMIT $3
) AS found";

/// One ranked page of the user's matching conversations: `(conversation id, best message,
/// whether it holds the words)`, the number of matches, and how many substring-only matches
/// were read (up to `$8`).
const RANKED: &str = "
WITH q AS (SELECT to_tsquery('simple', $1) AS query),
words AS (
    SELECT m.conversation_id AS cid, m.id AS mid, m.seq AS seq, TRUE AS word,
           ts_rank(m.content_tsv, q.query) AS rank
      FROM q, messages m
     WHERE m.user_id = $2 AND m.content_tsv @@ q.query
), parts AS MATERIALIZED (
    SELECT m.conversation_id AS cid, m.id AS mid, m.seq AS seq, FALSE AS word, 0::real AS rank
      FROM q, messages m
     WHERE m.user_id = $2 AND m.content ILIKE $3 AND NOT (m.content_tsv @@ q.query)
     LIMIT $8
), best AS (
    SELECT DISTINCT ON (cid) cid, mid, word, rank
      FROM (SELECT * FROM words UNION ALL SELECT * FROM parts) AS found
     ORDER BY cid, word DESC, rank DESC, seq
), hits AS (
    SELECT c.id AS cid, best.mid AS mid, c.title ILIKE $4 AS title_hit,
           COALESCE(best.word, FALSE) AS word, COALESCE(best.rank, 0) AS rank
      FROM conversations c LEFT JOIN best ON best.cid = c.id
     WHERE c.user_id = $2 AND c.archived = $5 AND (best.cid IS NOT NULL OR c.title ILIKE $4)
)
SELECT cid, mid, word, COUNT(*) OVER () AS total, (SELECT COUNT(*) FROM parts) AS parts
  FROM hits ORDER BY title_hit DESC, word DESC, rank DESC, cid LIMIT $6 OFFSET $7";

/// The same page by recency: the newest `$9` messages holding the words among the user's
/// newest `$8`, each conversation by its newest one. (`newer` is `-seq`, which the index
/// `messages_user_newest` serves in order and the primary key cannot: walking that one
/// backwards would read every other user's newer messages first.)
const RECENT: &str = "
WITH q AS (SELECT to_tsquery('simple', $1) AS query),
newest AS (
    SELECT conversation_id, id, -seq AS newer, content_tsv FROM messages
     WHERE user_id = $2 ORDER BY -seq LIMIT $8
), found AS (
    SELECT n.conversation_id AS cid, n.id AS mid, n.newer AS newer
      FROM q, newest n
     WHERE n.content_tsv @@ q.query
     ORDER BY n.newer LIMIT $9
), best AS (
    SELECT DISTINCT ON (cid) cid, mid, newer FROM found ORDER BY cid, newer
), hits AS (
    SELECT c.id AS cid, best.mid AS mid, c.title ILIKE $4 AS title_hit, best.newer AS newer
      FROM conversations c LEFT JOIN best ON best.cid = c.id
     WHERE c.user_id = $2 AND c.archived = $5 AND (best.cid IS NOT NULL OR c.title ILIKE $4)
)
SELECT cid, mid, mid IS NOT NULL AS word, COUNT(*) OVER () AS total, 0::bigint AS parts
  FROM hits ORDER BY title_hit DESC, newer NULLS LAST, cid LIMIT $6 OFFSET $7";

/// The page's conversations (`$2`, in that order) with the excerpt of their best message
/// (`$3`): marked by `ts_headline` when it holds the words (`$4`), else its text (marked by
/// the caller).
const PAGE: &str = "
SELECT c.id, c.user_id, c.title, c.system_prompt, c.model, c.metadata, c.message_count,
       c.created_at, c.updated_at, c.archived, c.pinned, c.active_leaf_id,
       (SELECT r.id FROM runs r WHERE r.conversation_id = c.id
         AND r.status IN ('queued', 'in_progress') ORDER BY r.created_at DESC LIMIT 1) AS active_run_id,
       p.mid,
       CASE WHEN p.word THEN ts_headline('simple', m.content, to_tsquery('simple', $1),
                   'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=24, MinWords=8')
       END AS snippet,
       CASE WHEN p.word THEN NULL ELSE m.content END AS content
  FROM UNNEST($2::uuid[], $3::uuid[], $4::bool[]) WITH ORDINALITY AS p(cid, mid, word, ord)
  JOIN conversations c ON c.id = p.cid
  LEFT JOIN messages m ON m.id = p.mid
 ORDER BY p.ord";

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) async fn search(
    pool: &PgPool,
    user_id: &str,
    query: &SearchQuery,
    filter: ConversationFilter,
    offset: u64,
    limit: u64,
) -> StoreResult<SearchPage> {
    let tsquery = query.tsquery();
    let substring = query.substring_pattern();
    let bounds = query.bounds();
    // Unnamed statements: planned for these words each time. A cached generic plan, made
    // without them, reads a common word's whole GIN entry for the count (16 ms for 80,000
    // matches) where its own plan stops after the first `ranked + 1` rows.
    let matches: i64 = sqlx::query(PROBE)
        .persistent(false)
        .bind(&tsquery)
        .bind(user_id)
        .bind(i64::from(bounds.ranked) + 1)
        .fetch_one(pool)
        .await?
        .try_get("n")?;
    let ranked = matches <= i64::from(bounds.ranked);
    let page = sqlx::query(if ranked { RANKED } else { RECENT })
        .persistent(false)
        .bind(&tsquery)
        .bind(user_id)
        .bind(&substring)
        .bind(query.title_pattern())
        .bind(filter.archived)
        .bind(int(limit))
        .bind(int(offset));
    let page = if ranked {
        page.bind(i64::from(bounds.substrings) + 1)
    } else {
        page.bind(i64::from(bounds.window))
            .bind(i64::from(bounds.recent))
    };
    let rows = page.fetch_all(pool).await?;
    let (mut total, mut parts) = (0, 0);
    let mut found = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        total = row.try_get::<i64, _>("total")?;
        parts = row.try_get::<i64, _>("parts")?;
        found.0.push(row.try_get::<Uuid, _>("cid")?);
        found.1.push(row.try_get::<Option<Uuid>, _>("mid")?);
        found.2.push(row.try_get::<bool, _>("word")?);
    }
    Ok(SearchPage {
        hits: hits(pool, query, &tsquery, found).await?,
        total: u64::try_from(total).unwrap_or(0),
        exact: ranked && parts <= i64::from(bounds.substrings),
    })
}

/// The page's hits, in order, from its conversations, best messages and whether each holds
/// the words.
async fn hits(
    pool: &PgPool,
    query: &SearchQuery,
    tsquery: &str,
    (cids, mids, words): (Vec<Uuid>, Vec<Option<Uuid>>, Vec<bool>),
) -> StoreResult<Vec<SearchHit>> {
    if cids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(PAGE)
        .bind(tsquery)
        .bind(cids)
        .bind(mids)
        .bind(words)
        .fetch_all(pool)
        .await?;
    let mut hits = Vec::with_capacity(rows.len());
    for row in &rows {
        let conversation = conversation(row)?;
        let snippet: Option<String> = row.try_get("snippet")?;
        let content: Option<String> = row.try_get("content")?;
        let snippet = match (snippet, content) {
            (Some(snippet), _) => snippet,
            (None, Some(content)) => query.substring_excerpt(&content),
            (None, None) => conversation.title.clone(),
        };
        hits.push(SearchHit {
            snippet,
            conversation,
            message_id: row.try_get("mid")?,
        });
    }
    Ok(hits)
}
