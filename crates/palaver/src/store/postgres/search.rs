//! Conversation search on the GIN-indexed `messages.content_tsv`.

use sqlx::Row;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use super::super::{ConversationFilter, SearchHit, SearchQuery, StoreResult};
use super::conversation;

/// One ranked page of the user's matching conversations: `(conversation id, best message)`,
/// and the number of matches.
const RANKED: &str = "
WITH q AS (SELECT to_tsquery('simple', $1) AS query),
best AS (
    SELECT DISTINCT ON (m.conversation_id) m.conversation_id AS cid, m.id AS mid,
           ts_rank(m.content_tsv, q.query) AS rank
      FROM q, messages m
      JOIN conversations c ON c.id = m.conversation_id AND c.user_id = $2 AND c.archived = $3
     WHERE m.content_tsv @@ q.query
     ORDER BY m.conversation_id, rank DESC, m.seq
), hits AS (
    SELECT c.id AS cid, best.mid AS mid, c.title ILIKE $4 AS title_hit, COALESCE(best.rank, 0) AS rank
      FROM conversations c LEFT JOIN best ON best.cid = c.id
     WHERE c.user_id = $2 AND c.archived = $3 AND (best.cid IS NOT NULL OR c.title ILIKE $4)
)
SELECT cid, mid, COUNT(*) OVER () AS total FROM hits
 ORDER BY title_hit DESC, rank DESC, cid LIMIT $5 OFFSET $6";

/// The conversations of the page with the excerpt of their best message.
const PAGE: &str = "
SELECT c.id, c.user_id, c.title, c.system_prompt, c.model, c.metadata, c.message_count,
       c.created_at, c.updated_at, c.archived, c.pinned, c.active_leaf_id,
       (SELECT r.id FROM runs r WHERE r.conversation_id = c.id
         AND r.status IN ('queued', 'in_progress') ORDER BY r.created_at DESC LIMIT 1) AS active_run_id,
       ts_headline('simple', m.content, to_tsquery('simple', $1),
                   'StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords=24, MinWords=8')
           AS snippet
  FROM conversations c LEFT JOIN messages m ON m.id = $3
 WHERE c.id = $2";

pub(super) async fn search(
    pool: &PgPool,
    user_id: &str,
    query: &SearchQuery,
    filter: ConversationFilter,
    offset: u64,
    limit: u64,
) -> StoreResult<(Vec<SearchHit>, u64)> {
    let tsquery = query.tsquery();
    let ranked = sqlx::query(RANKED)
        .bind(&tsquery)
        .bind(user_id)
        .bind(filter.archived)
        .bind(query.title_pattern())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    let mut total = 0;
    let mut hits = Vec::with_capacity(ranked.len());
    for row in &ranked {
        total = row.try_get::<i64, _>("total")?;
        let message_id: Option<Uuid> = row.try_get("mid")?;
        let page = sqlx::query(PAGE)
            .bind(&tsquery)
            .bind(row.try_get::<Uuid, _>("cid")?)
            .bind(message_id)
            .fetch_one(pool)
            .await?;
        let conversation = conversation(&page)?;
        let snippet: Option<String> = page.try_get("snippet")?;
        hits.push(SearchHit {
            snippet: snippet.unwrap_or_else(|| conversation.title.clone()),
            conversation,
            message_id,
        });
    }
    Ok((hits, u64::try_from(total).unwrap_or(0)))
}
