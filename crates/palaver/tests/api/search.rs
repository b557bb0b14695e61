//! Issue #16 search at the store: confined to the caller inside the index, bounded for words
//! in more messages than it scores, and (PostgreSQL) words found inside other words.

use std::sync::Arc;

use chrono::Duration;
use palaver::store::{
    self, ConversationFilter, ConversationPatch, Message, NewConversation, PgStore, Role,
    SearchBounds, SearchPage, SearchQuery, SqliteStore, Store, owner_token,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::db::{Backend, TestDb, backends};

async fn open(backend: Backend) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(backend).await;
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(SqliteStore::connect(&db.url()).await.unwrap()),
        Backend::Postgres => Arc::new(PgStore::connect(&db.url()).await.unwrap()),
    };
    store.migrate().await.unwrap();
    (store, db)
}

/// A conversation of `user` titled `title` holding `texts`, one second apart after `at`.
async fn conversation(
    store: &Arc<dyn Store>,
    user: &str,
    title: &str,
    texts: &[&str],
    at: store::Timestamp,
) -> (Uuid, Vec<Uuid>) {
    let new = NewConversation {
        id: Uuid::now_v7(),
        user_id: user.to_owned(),
        title: title.to_owned(),
        system_prompt: None,
        model: None,
        metadata: json!({}),
        created_at: at,
    };
    let c = store.create_conversation(&new).await.unwrap();
    let mut ids = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let m = Message {
            id: Uuid::now_v7(),
            conversation_id: c.id,
            parent_id: ids.last().copied(),
            role: Role::User,
            content: (*text).to_owned(),
            tokens: 1,
            model: None,
            metadata: json!({}),
            created_at: at + Duration::seconds(i as i64),
            edited_at: None,
        };
        store.append_message(&m, None).await.unwrap();
        ids.push(m.id);
    }
    (c.id, ids)
}

async fn search(
    store: &Arc<dyn Store>,
    user: &str,
    query: SearchQuery,
    archived: bool,
) -> SearchPage {
    store
        .search_conversations(user, &query, ConversationFilter { archived }, 0, 20)
        .await
        .unwrap()
}

fn ids(page: &SearchPage) -> Vec<Uuid> {
    page.hits.iter().map(|h| h.conversation.id).collect()
}

/// Users whose ids are prefixes of one another, differ in case or punctuation only, or whose
/// token another user writes in a message, each find their own messages and no one else's,
/// before and after a conversation is deleted, and on the bounded path too.
#[tokio::test]
async fn search_is_confined_to_the_caller_inside_the_index() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        let users = ["al", "al1", "Al", "a-l", "al.x"];
        let mut theirs = Vec::new();
        for user in users {
            store.ensure_user(user, t0).await.unwrap();
            let (c, _) = conversation(&store, user, "t", &["shared secret words"], t0).await;
            theirs.push(c);
        }
        // Someone writes al's token into a message: it is text, not ownership.
        let token = owner_token("al");
        let text = format!("{token} shared secret");
        let (planted, _) = conversation(&store, "al1", "t", &[&text], t0).await;
        for (user, mine) in users.iter().zip(&theirs) {
            let found = search(&store, user, SearchQuery::parse("secret").unwrap(), false).await;
            let mut expected = vec![*mine];
            if *user == "al1" {
                expected.push(planted);
            }
            let mut got = ids(&found);
            got.sort();
            expected.sort();
            assert_eq!(got, expected, "{backend} {user}");
            assert!(found.exact, "{backend} {user}");
        }
        let by_token = SearchQuery::parse(&token).unwrap();
        assert_eq!(
            ids(&search(&store, "al", by_token.clone(), false).await),
            Vec::<Uuid>::new(),
            "{backend}: al's own token is no word of al's"
        );
        assert_eq!(
            ids(&search(&store, "al1", by_token, false).await),
            vec![planted]
        );

        // Many matches of another user do not crowd out the caller's few, bounded or not.
        let many: Vec<String> = (0..12).map(|i| format!("secret number {i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (crowd, _) = conversation(&store, "al1", "t", &many, t0).await;
        let tight = SearchBounds {
            ranked: 3,
            recent: 3,
            window: 10,
            substrings: 3,
        };
        let q = SearchQuery::parse("secret").unwrap().with_bounds(tight);
        let found = search(&store, "al", q.clone(), false).await;
        assert_eq!(ids(&found), vec![theirs[0]], "{backend}");
        assert!(found.exact, "{backend}: al has one match");
        let bounded = search(&store, "al1", q, false).await;
        assert!(!bounded.exact, "{backend}: al1 has 14 matches");
        assert_eq!(ids(&bounded), vec![crowd], "{backend}: the newest three");

        // Deleting a conversation takes out its messages and nobody else's.
        store.delete_conversation("al", theirs[0]).await.unwrap();
        let q = || SearchQuery::parse("shared").unwrap();
        assert!(search(&store, "al", q(), false).await.hits.is_empty());
        assert_eq!(
            ids(&search(&store, "Al", q(), false).await),
            vec![theirs[2]]
        );
        let (again, _) = conversation(&store, "al", "t", &["shared again"], t0).await;
        assert_eq!(ids(&search(&store, "al", q(), false).await), vec![again]);
    }
}

/// A word in more of the caller's messages than the search scores: title matches first, then
/// the conversations of the newest matches, newest first, with `total` a lower bound; the
/// archived filter still holds; a rarer word is still ranked by relevance, exactly.
#[tokio::test]
async fn a_word_in_more_messages_than_are_scored_ranks_by_newest_match() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("ann", t0).await.unwrap();
        let at = |s: i64| t0 + Duration::seconds(s);
        // Stored oldest first: `old` holds the word only in its first messages.
        let (old, _) = conversation(&store, "ann", "a", &["tea time", "tea again"], at(0)).await;
        let (archived, _) = conversation(&store, "ann", "b", &["tea in the archive"], at(10)).await;
        let (middle, _) = conversation(
            &store,
            "ann",
            "c",
            &["tea here", "rare tea leaf", "no"],
            at(20),
        )
        .await;
        let (newest, _) = conversation(&store, "ann", "d", &["more tea", "tea!"], at(30)).await;
        let (titled, _) = conversation(&store, "ann", "Tea notes", &["nothing"], at(40)).await;
        let (rare, _) = conversation(&store, "ann", "e", &["leaf leaf tea"], at(50)).await;
        let patch = ConversationPatch {
            archived: Some(true),
            ..ConversationPatch::default()
        };
        store
            .update_conversation("ann", archived, &patch)
            .await
            .unwrap();
        // Eight messages hold "tea"; the newest six: rare, newest ×2, middle ×2, archived.
        let bounds = SearchBounds {
            ranked: 5,
            recent: 6,
            window: 100,
            substrings: 5,
        };
        let tea = SearchQuery::parse("tea").unwrap().with_bounds(bounds);
        let found = search(&store, "ann", tea.clone(), false).await;
        assert_eq!(
            ids(&found),
            vec![titled, rare, newest, middle],
            "{backend}: the title first, then by newest match; `old` lies beyond the newest six"
        );
        assert!(!found.exact, "{backend}");
        assert_eq!(found.total, 4, "{backend}");
        assert!(
            found.hits[2].plain_snippet().contains("tea!"),
            "{backend}: the excerpt of the newest match: {:?}",
            found.hits[2]
        );
        let found = search(&store, "ann", tea, true).await;
        assert_eq!(ids(&found), vec![archived], "{backend}");

        // Unbounded, every match is scored and `old` is found too, exactly counted.
        let all = search(&store, "ann", SearchQuery::parse("tea").unwrap(), false).await;
        assert!(all.exact, "{backend}");
        assert_eq!(all.total, 5, "{backend}");
        assert_eq!(all.hits[0].conversation.id, titled, "{backend}");
        assert!(ids(&all).contains(&old), "{backend}");
        // Two messages hold "leaf": under the bound, ranked by relevance (twice beats once).
        let leaf = SearchQuery::parse("leaf").unwrap().with_bounds(bounds);
        let found = search(&store, "ann", leaf, false).await;
        assert!(found.exact, "{backend}");
        assert_eq!(ids(&found), vec![rare, middle], "{backend}");
    }
}

/// PostgreSQL finds a word inside another (pg_trgm), below whole-word matches, and marks it in
/// the excerpt; SQLite matches whole words and prefixes only.
#[tokio::test]
async fn words_are_found_inside_other_words_on_postgres() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("ivy", t0).await.unwrap();
        let (inside, inside_msgs) = conversation(
            &store,
            "ivy",
            "a",
            &["Please reindex the getUserById table"],
            t0,
        )
        .await;
        let (whole, _) = conversation(&store, "ivy", "b", &["the index is stale"], t0).await;
        conversation(&store, "ivy", "c", &["nothing to see"], t0).await;

        let found = search(&store, "ivy", SearchQuery::parse("ndex").unwrap(), false).await;
        let by_word = search(&store, "ivy", SearchQuery::parse("index").unwrap(), false).await;
        let by_part = search(&store, "ivy", SearchQuery::parse("userby").unwrap(), false).await;
        match backend {
            Backend::Sqlite => {
                assert!(found.hits.is_empty());
                assert_eq!(ids(&by_word), vec![whole]);
                assert!(by_part.hits.is_empty(), "no word starts with `userby`");
            }
            Backend::Postgres => {
                let mut got = ids(&found);
                got.sort();
                let mut expected = vec![inside, whole];
                expected.sort();
                assert_eq!(got, expected);
                assert_eq!(found.total, 2);
                assert_eq!(ids(&by_word), vec![whole, inside], "whole words first");
                let hit = &by_word.hits[1];
                assert_eq!(hit.message_id, Some(inside_msgs[0]));
                let marked: Vec<String> = hit
                    .snippet_parts()
                    .into_iter()
                    .filter(|p| p.highlight)
                    .map(|p| p.text)
                    .collect();
                assert_eq!(marked, vec!["index"], "{hit:?}");
                // Part of an identifier, case ignored.
                assert_eq!(ids(&by_part), vec![inside]);
                // Substring-only matches beyond the bound: `total` is then a lower bound.
                let one = SearchBounds {
                    substrings: 1,
                    ..SearchBounds::default()
                };
                let q = SearchQuery::parse("ndex").unwrap().with_bounds(one);
                let capped = search(&store, "ivy", q, false).await;
                assert!(!capped.exact && !capped.hits.is_empty(), "{capped:?}");
                // Fewer than three characters: whole words and prefixes only.
                let short = search(&store, "ivy", SearchQuery::parse("nd").unwrap(), false).await;
                assert!(short.hits.is_empty());
            }
        }
    }
}
