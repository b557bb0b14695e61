//! One conformance suite for every `Store` operation, run against each backend.

use std::sync::Arc;

use chrono::Duration;
use palaver::store::{
    self, ConversationFilter, ConversationPatch, Message, NewConversation, PgStore, Role,
    SearchHit, SearchQuery, SqliteStore, Store, StoreError, UsageRecord,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::db::{Backend, TestDb, backends};

pub(crate) async fn open(backend: Backend) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(backend).await;
    let store: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(SqliteStore::connect(&db.url()).await.unwrap()),
        Backend::Postgres => Arc::new(PgStore::connect(&db.url()).await.unwrap()),
    };
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    (store, db)
}

pub(crate) fn new_conversation(user: &str, title: &str, at: store::Timestamp) -> NewConversation {
    NewConversation {
        id: Uuid::new_v4(),
        user_id: user.to_owned(),
        title: title.to_owned(),
        system_prompt: Some("Be brief.".to_owned()),
        model: Some("gpt-4o-mini".to_owned()),
        metadata: json!({"topic": "tests", "nested": {"n": 1}}),
        created_at: at,
    }
}

pub(crate) fn message(
    conversation: Uuid,
    role: Role,
    content: &str,
    at: store::Timestamp,
) -> Message {
    Message {
        id: Uuid::new_v4(),
        conversation_id: conversation,
        parent_id: None,
        role,
        content: content.to_owned(),
        tokens: content.split_whitespace().count() as i64,
        model: (role == Role::Assistant).then(|| "gpt-4o-mini".to_owned()),
        metadata: json!({"finishReason": "stop"}),
        created_at: at,
        edited_at: None,
    }
}

pub(crate) fn usage(
    user: &str,
    conversation: Option<Uuid>,
    model: &str,
    prompt: i64,
    completion: i64,
    cost: f64,
    at: store::Timestamp,
) -> UsageRecord {
    UsageRecord {
        id: Uuid::new_v4(),
        user_id: user.to_owned(),
        conversation_id: conversation,
        kind: if conversation.is_some() {
            "chat"
        } else {
            "embedding"
        }
        .to_owned(),
        model: model.to_owned(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_usd: cost,
        created_at: at,
        api_key_id: None,
        end_user: None,
    }
}

#[tokio::test]
async fn users_are_created_once() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        assert_eq!(store.backend(), backend.to_string());
        store.ping().await.unwrap();
        let t0 = store::now();
        assert!(store.get_user("alice").await.unwrap().is_none());
        store.ensure_user("alice", t0).await.unwrap();
        store
            .ensure_user("alice", t0 + Duration::seconds(5))
            .await
            .unwrap();
        let user = store.get_user("alice").await.unwrap().unwrap();
        assert_eq!(user.id, "alice");
        assert_eq!(user.total_tokens_used, 0);
        assert_eq!(
            user.created_at, t0,
            "{backend}: a second sight does not change the user"
        );
    }
}

#[tokio::test]
async fn conversations_round_trip_and_are_scoped_to_their_owner() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        store.ensure_user("bob", t0).await.unwrap();
        let new = new_conversation("alice", "Trip ✈️ to Zürich", t0);
        let created = store.create_conversation(&new).await.unwrap();
        assert_eq!(created.id, new.id);
        assert_eq!(created.updated_at, t0);
        assert_eq!(created.message_count, 0);

        let fetched = store
            .get_conversation("alice", new.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            fetched, created,
            "{backend}: what is read is what was written"
        );
        assert!(
            store
                .get_conversation("bob", new.id)
                .await
                .unwrap()
                .is_none(),
            "{backend}: bob cannot see it"
        );
        assert!(
            store
                .get_conversation("alice", Uuid::new_v4())
                .await
                .unwrap()
                .is_none()
        );

        // The same id twice is a conflict, not a second row.
        assert!(
            matches!(
                store.create_conversation(&new).await,
                Err(StoreError::Conflict)
            ),
            "{backend}"
        );

        assert!(
            !store.delete_conversation("bob", new.id).await.unwrap(),
            "{backend}: bob cannot delete it"
        );
        assert!(
            store
                .get_conversation("alice", new.id)
                .await
                .unwrap()
                .is_some()
        );
        assert!(store.delete_conversation("alice", new.id).await.unwrap());
        assert!(
            store
                .get_conversation("alice", new.id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store.delete_conversation("alice", new.id).await.unwrap(),
            "{backend}: gone is gone"
        );
    }
}

#[tokio::test]
async fn a_conversation_starts_with_its_first_message_or_not_at_all() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        let new = new_conversation("alice", "Started", t0);
        let first = message(
            new.id,
            Role::User,
            "hello there",
            t0 + Duration::milliseconds(3),
        );
        store.start_conversation(&new, &first).await.unwrap();

        let conversation = store
            .get_conversation("alice", new.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conversation.message_count, 1, "{backend}");
        assert_eq!(conversation.updated_at, first.created_at, "{backend}");
        assert_eq!(conversation.title, "Started", "{backend}");
        assert_eq!(
            store.list_messages(new.id).await.unwrap(),
            vec![first.clone()],
            "{backend}"
        );

        // The same conversation id again: refused, and its message is not stored either.
        let again = message(new.id, Role::User, "second", t0 + Duration::milliseconds(5));
        assert!(
            matches!(
                store.start_conversation(&new, &again).await,
                Err(StoreError::Conflict)
            ),
            "{backend}"
        );
        // A new conversation with a message id that exists: refused, no conversation left.
        let other = new_conversation("alice", "Other", t0);
        let reused = Message {
            conversation_id: other.id,
            ..first.clone()
        };
        assert!(
            matches!(
                store.start_conversation(&other, &reused).await,
                Err(StoreError::Conflict)
            ),
            "{backend}"
        );
        assert!(
            store
                .get_conversation("alice", other.id)
                .await
                .unwrap()
                .is_none(),
            "{backend}: nothing of a refused start is kept"
        );
        assert_eq!(
            store.list_messages(new.id).await.unwrap().len(),
            1,
            "{backend}"
        );

        // A first message of another conversation: refused, nothing stored.
        let third = new_conversation("alice", "Third", t0);
        let stray = message(new.id, Role::User, "stray", t0);
        assert!(
            matches!(
                store.start_conversation(&third, &stray).await,
                Err(StoreError::NotFound)
            ),
            "{backend}"
        );
        assert!(
            store
                .get_conversation("alice", third.id)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn listing_pages_by_latest_activity() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        store.ensure_user("bob", t0).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            let c = store
                .create_conversation(&new_conversation(
                    "alice",
                    &format!("c{i}"),
                    t0 + Duration::seconds(i),
                ))
                .await
                .unwrap();
            ids.push(c.id);
        }
        store
            .create_conversation(&new_conversation("bob", "bob's", t0))
            .await
            .unwrap();

        let (page, total) = store
            .list_conversations("alice", ConversationFilter::default(), 0, 2)
            .await
            .unwrap();
        assert_eq!(total, 5, "{backend}: only alice's are counted");
        assert_eq!(
            page.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![ids[4], ids[3]],
            "{backend}"
        );

        // A new message in the oldest conversation moves it to the front.
        store
            .append_message(
                &message(ids[0], Role::User, "hello", t0 + Duration::seconds(60)),
                None,
            )
            .await
            .unwrap();
        let (page, _) = store
            .list_conversations("alice", ConversationFilter::default(), 0, 10)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![ids[0], ids[4], ids[3], ids[2], ids[1]],
            "{backend}"
        );
        assert_eq!(page[0].updated_at, t0 + Duration::seconds(60));
        assert_eq!(page[0].message_count, 1);

        let (page, total) = store
            .list_conversations("alice", ConversationFilter::default(), 4, 10)
            .await
            .unwrap();
        assert_eq!((page.len(), total), (1, 5), "{backend}: the last page");
        let (page, total) = store
            .list_conversations("alice", ConversationFilter::default(), 10, 10)
            .await
            .unwrap();
        assert_eq!((page.len(), total), (0, 5), "{backend}: past the end");
        let (page, total) = store
            .list_conversations("carol", ConversationFilter::default(), 0, 10)
            .await
            .unwrap();
        assert_eq!(
            (page.len(), total),
            (0, 0),
            "{backend}: a user with nothing"
        );
    }
}

/// Issue #16: a patch changes only the fields it names, never `updated_at`; listings show
/// archived or unarchived conversations, pinned ones first.
#[tokio::test]
async fn conversations_are_renamed_archived_and_pinned() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        store.ensure_user("bob", t0).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..4 {
            let new = new_conversation("alice", &format!("c{i}"), t0 + Duration::seconds(i));
            ids.push(store.create_conversation(&new).await.unwrap().id);
        }
        let listed = |archived: bool| {
            let store = store.clone();
            async move {
                let filter = ConversationFilter { archived };
                let (page, total) = store
                    .list_conversations("alice", filter, 0, 10)
                    .await
                    .unwrap();
                assert_eq!(total, page.len() as u64, "{backend}");
                page.iter().map(|c| c.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(listed(false).await, vec![ids[3], ids[2], ids[1], ids[0]]);
        assert!(listed(true).await.is_empty());

        let pin = ConversationPatch {
            pinned: Some(true),
            ..ConversationPatch::default()
        };
        let pinned = store
            .update_conversation("alice", ids[0], &pin)
            .await
            .unwrap()
            .unwrap();
        assert!(pinned.pinned && !pinned.archived, "{backend}");
        assert_eq!(pinned.title, "c0", "{backend}: untouched");
        assert_eq!(pinned.updated_at, t0, "{backend}: a patch is not activity");
        let rename = ConversationPatch {
            title: Some("Trip plans".to_owned()),
            archived: Some(true),
            metadata: Some(json!({"color": "blue"})),
            ..ConversationPatch::default()
        };
        let renamed = store
            .update_conversation("alice", ids[2], &rename)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (renamed.title.as_str(), renamed.archived, renamed.pinned),
            ("Trip plans", true, false),
            "{backend}"
        );
        assert_eq!(renamed.metadata, json!({"color": "blue"}), "{backend}");
        assert_eq!(
            store
                .get_conversation("alice", ids[2])
                .await
                .unwrap()
                .unwrap(),
            renamed,
            "{backend}: stored as returned"
        );
        assert_eq!(
            listed(false).await,
            vec![ids[0], ids[3], ids[1]],
            "{backend}"
        );
        assert_eq!(listed(true).await, vec![ids[2]], "{backend}");

        // Someone else's conversation, or none at all: nothing changes.
        assert!(
            store
                .update_conversation("bob", ids[1], &pin)
                .await
                .unwrap()
                .is_none()
        );
        let unknown = store
            .update_conversation("alice", Uuid::new_v4(), &pin)
            .await
            .unwrap();
        assert!(unknown.is_none(), "{backend}");
        assert_eq!(
            listed(false).await,
            vec![ids[0], ids[3], ids[1]],
            "{backend}"
        );
        // An empty patch returns the conversation as it is.
        let same = store
            .update_conversation("alice", ids[3], &ConversationPatch::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(same.title, "c3", "{backend}");
    }
}

/// Issue #16: a title job sets the title only while it is still the one it expected, in one
/// statement, so a rename between its check and its write is never overwritten.
#[tokio::test]
async fn a_title_is_set_only_over_the_expected_one() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        let c = store
            .create_conversation(&new_conversation("alice", "New Conversation", t0))
            .await
            .unwrap();
        let title = |store: Arc<dyn Store>| async move {
            store
                .get_conversation("alice", c.id)
                .await
                .unwrap()
                .unwrap()
        };
        // Someone else's conversation, or none at all: nothing changes.
        for (user, id) in [("bob", c.id), ("alice", Uuid::new_v4())] {
            let set = store
                .set_title_if(user, id, "New Conversation", "Stolen")
                .await
                .unwrap();
            assert!(!set, "{backend}");
        }
        assert!(
            store
                .set_title_if("alice", c.id, "New Conversation", "Trip plans")
                .await
                .unwrap(),
            "{backend}"
        );
        let now = title(store.clone()).await;
        assert_eq!(now.title, "Trip plans", "{backend}");
        assert_eq!(now.updated_at, t0, "{backend}: a title is not activity");
        // The title is no longer the expected one: the second writer loses.
        assert!(
            !store
                .set_title_if("alice", c.id, "New Conversation", "Other")
                .await
                .unwrap(),
            "{backend}"
        );
        assert_eq!(title(store.clone()).await.title, "Trip plans", "{backend}");
    }
}

/// Issue #16 search: words in message text (any case, the last as a prefix) or in order in
/// the title; title matches first; only the caller's, with the archived filter; an excerpt
/// that marks the words; deleted messages are no longer found; query syntax is inert.
#[tokio::test]
async fn conversations_are_searched_by_message_text_and_title() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        for user in ["alice", "bob"] {
            store.ensure_user(user, t0).await.unwrap();
        }
        let add = |user: &'static str, title: &'static str, texts: &'static [&'static str]| {
            let store = store.clone();
            async move {
                let c = store
                    .create_conversation(&new_conversation(user, title, t0))
                    .await
                    .unwrap();
                let mut ids = Vec::new();
                for (i, text) in texts.iter().enumerate() {
                    let m = message(c.id, Role::User, text, t0 + Duration::seconds(i as i64));
                    store.append_message(&m, None).await.unwrap();
                    ids.push(m.id);
                }
                (c.id, ids)
            }
        };
        let (trip, trip_msgs) = add(
            "alice",
            "Holiday",
            &["We fly to Paris in June.", "Hotels near the Louvre, please"],
        )
        .await;
        let (titled, _) = add("alice", "Paris budget", &["How much is a museum pass?"]).await;
        let (other, _) = add("alice", "Groceries", &["milk, eggs, bread"]).await;
        let (bobs, _) = add("bob", "Paris too", &["I love Paris"]).await;
        let _ = (other, bobs);

        let find = |text: &'static str, archived: bool| {
            let store = store.clone();
            async move {
                let query = SearchQuery::parse(text).unwrap();
                let filter = ConversationFilter { archived };
                let found = store
                    .search_conversations("alice", &query, filter, 0, 10)
                    .await
                    .unwrap();
                assert_eq!(found.total, found.hits.len() as u64, "{backend} {text}");
                assert!(found.exact, "{backend} {text}");
                found.hits
            }
        };
        let hits = find("paris", false).await;
        let ids: Vec<_> = hits.iter().map(|h| h.conversation.id).collect();
        assert_eq!(
            ids,
            vec![titled, trip],
            "{backend}: the title match first, bob's left out"
        );
        assert_eq!(hits[1].message_id, Some(trip_msgs[0]), "{backend}");
        let parts = hits[1].snippet_parts();
        assert!(
            parts.iter().any(|p| p.highlight && p.text == "Paris"),
            "{backend}: {parts:?}"
        );
        assert!(
            hits[1].plain_snippet().contains("We fly to Paris"),
            "{backend}"
        );
        assert_eq!(
            hits[0].message_id, None,
            "{backend}: only its title matched"
        );

        // Every word must occur; the last one is a prefix; case does not matter.
        let ids = |hits: Vec<SearchHit>| hits.iter().map(|h| h.conversation.id).collect::<Vec<_>>();
        assert_eq!(
            ids(find("HOTELS lou", false).await),
            vec![trip],
            "{backend}"
        );
        assert!(find("hotels milk", false).await.is_empty(), "{backend}");
        assert_eq!(ids(find("egg", false).await), vec![other], "{backend}");
        // Operators and quotes are just words.
        assert!(
            find("\"paris\" OR milk*", false).await.is_empty(),
            "{backend}"
        );
        assert_eq!(
            ids(find("(museum) pass!", false).await),
            vec![titled],
            "{backend}"
        );

        // Archived conversations are searched only when asked.
        let archive = ConversationPatch {
            archived: Some(true),
            ..ConversationPatch::default()
        };
        store
            .update_conversation("alice", trip, &archive)
            .await
            .unwrap();
        assert_eq!(
            ids(find("louvre", false).await),
            Vec::<Uuid>::new(),
            "{backend}"
        );
        assert_eq!(ids(find("louvre", true).await), vec![trip], "{backend}");

        // A deleted conversation's messages are gone from the index.
        store.delete_conversation("alice", other).await.unwrap();
        assert!(find("eggs", false).await.is_empty(), "{backend}");
    }
}

#[tokio::test]
async fn messages_keep_order_and_content() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        let c = store
            .create_conversation(&new_conversation("alice", "t", t0))
            .await
            .unwrap();
        let mut sent = Vec::new();
        for i in 0..6 {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            // Two messages within the same microsecond keep their insertion order.
            let at = t0 + Duration::seconds(i / 2);
            let mut m = message(c.id, role, &format!("message {i} — ünïcödé"), at);
            m.parent_id = sent.last().map(|p: &Message| p.id);
            store.append_message(&m, None).await.unwrap();
            sent.push(m);
        }
        let all = store.list_messages(c.id).await.unwrap();
        assert_eq!(all, sent, "{backend}: every field round-trips, in order");

        let leaf = sent[5].id;
        let recent = store.path(c.id, leaf, 3).await.unwrap();
        assert_eq!(
            recent,
            sent[3..].to_vec(),
            "{backend}: the three nearest the leaf, oldest first"
        );
        assert_eq!(store.path(c.id, leaf, 100).await.unwrap(), sent);
        assert!(
            store
                .path(Uuid::new_v4(), leaf, 100)
                .await
                .unwrap()
                .is_empty(),
            "{backend}: a leaf of another conversation has no path"
        );

        let conversation = store
            .get_conversation("alice", c.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conversation.message_count, 6);
        assert_eq!(conversation.updated_at, t0 + Duration::seconds(2));
        assert_eq!(
            conversation.active_leaf_id,
            Some(leaf),
            "{backend}: the newest is the leaf"
        );

        // A message for a conversation that does not exist is refused and stores nothing.
        let orphan = message(Uuid::new_v4(), Role::User, "lost", t0);
        assert!(
            matches!(
                store.append_message(&orphan, None).await,
                Err(StoreError::NotFound)
            ),
            "{backend}"
        );
        // The same message id twice is refused without moving the conversation.
        assert!(
            matches!(
                store.append_message(&sent[0], None).await,
                Err(StoreError::Conflict)
            ),
            "{backend}"
        );
        assert_eq!(
            store
                .get_conversation("alice", c.id)
                .await
                .unwrap()
                .unwrap()
                .message_count,
            6
        );

        // Deleting the conversation deletes its messages.
        store.delete_conversation("alice", c.id).await.unwrap();
        assert!(
            store.list_messages(c.id).await.unwrap().is_empty(),
            "{backend}: cascade"
        );
    }
}

#[tokio::test]
async fn usage_is_recorded_with_messages_and_aggregated() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        store.ensure_user("bob", t0).await.unwrap();

        let empty = store.usage_stats("alice").await.unwrap();
        assert_eq!(empty.requests, 0);
        assert_eq!(empty.total_tokens, 0);
        assert!(empty.last_used.is_none());
        assert!(empty.by_model.is_empty());

        let c = store
            .create_conversation(&new_conversation("alice", "t", t0))
            .await
            .unwrap();
        store
            .append_message(&message(c.id, Role::User, "one two three", t0), None)
            .await
            .unwrap();
        let reply_at = t0 + Duration::seconds(1);
        store
            .append_message(
                &message(c.id, Role::Assistant, "four five", reply_at),
                Some(&usage(
                    "alice",
                    Some(c.id),
                    "gpt-4o-mini",
                    10,
                    5,
                    0.25,
                    reply_at,
                )),
            )
            .await
            .unwrap();
        store
            .record_usage(&usage(
                "alice",
                None,
                "text-embedding-3-small",
                7,
                0,
                0.5,
                t0 + Duration::seconds(2),
            ))
            .await
            .unwrap();
        store
            .record_usage(&usage(
                "alice",
                Some(c.id),
                "gpt-4o-mini",
                3,
                0,
                0.125,
                t0 + Duration::seconds(3),
            ))
            .await
            .unwrap();
        store
            .record_usage(&usage("bob", None, "gpt-4o-mini", 1000, 1000, 9.0, t0))
            .await
            .unwrap();

        let stats = store.usage_stats("alice").await.unwrap();
        assert_eq!(stats.prompt_tokens, 20, "{backend}");
        assert_eq!(stats.completion_tokens, 5, "{backend}");
        assert_eq!(stats.total_tokens, 25, "{backend}");
        assert_eq!(stats.requests, 3, "{backend}");
        assert!(
            (stats.cost_usd - 0.875).abs() < 1e-9,
            "{backend}: {}",
            stats.cost_usd
        );
        assert_eq!(stats.conversations_count, 1);
        assert_eq!(stats.messages_count, 2);
        assert_eq!(
            stats.last_used,
            Some(t0 + Duration::seconds(3)),
            "{backend}"
        );
        let models: Vec<_> = stats
            .by_model
            .iter()
            .map(|m| {
                (
                    m.model.as_str(),
                    m.requests,
                    m.prompt_tokens,
                    m.completion_tokens,
                )
            })
            .collect();
        assert_eq!(
            models,
            vec![
                ("gpt-4o-mini", 2, 13, 5),
                ("text-embedding-3-small", 1, 7, 0)
            ],
            "{backend}"
        );

        assert_eq!(
            store
                .get_user("alice")
                .await
                .unwrap()
                .unwrap()
                .total_tokens_used,
            25,
            "{backend}"
        );
        assert_eq!(
            store
                .get_user("bob")
                .await
                .unwrap()
                .unwrap()
                .total_tokens_used,
            2000,
            "{backend}"
        );

        assert_eq!(
            store.tokens_used_since("alice", t0).await.unwrap(),
            25,
            "{backend}"
        );
        assert_eq!(
            store
                .tokens_used_since("alice", t0 + Duration::seconds(2))
                .await
                .unwrap(),
            10,
            "{backend}"
        );
        assert_eq!(
            store
                .tokens_used_since("alice", t0 + Duration::hours(1))
                .await
                .unwrap(),
            0,
            "{backend}"
        );

        // Usage outlives a deleted conversation: what was spent stays spent.
        store.delete_conversation("alice", c.id).await.unwrap();
        let after = store.usage_stats("alice").await.unwrap();
        assert_eq!(
            (
                after.total_tokens,
                after.conversations_count,
                after.messages_count
            ),
            (25, 0, 0),
            "{backend}"
        );
    }
}

/// Midnight UTC of the day `days` before today.
fn midnight(days_ago: i64) -> store::Timestamp {
    (chrono::Utc::now().date_naive() - Duration::days(days_ago))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// Issue #14 item 10: totals and quotas come from the per-day rollup, exact across day
/// boundaries, and pruning raw records changes neither.
#[tokio::test]
async fn usage_is_rolled_up_per_day_and_pruning_records_changes_no_total() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        store.ensure_user("alice", midnight(5)).await.unwrap();
        let spent = [
            // (at, model, prompt, completion, cost)
            (midnight(3) + Duration::hours(1), "gpt-4o", 100, 10, 1.0),
            (
                midnight(3) + Duration::hours(2),
                "gpt-4o-mini",
                200,
                20,
                0.5,
            ),
            (midnight(3) + Duration::hours(3), "gpt-4o", 300, 30, 1.0),
            (midnight(1) + Duration::hours(6), "gpt-4o", 1_000, 0, 0.25),
            (midnight(1) + Duration::hours(23), "gpt-4o", 2_000, 0, 0.25),
            (midnight(0), "gpt-4o-mini", 4, 1, 0.125),
            (midnight(0) + Duration::seconds(1), "gpt-4o", 40, 5, 0.125),
        ];
        for (at, model, prompt, completion, cost) in spent {
            let u = usage("alice", None, model, prompt, completion, cost, at);
            store.record_usage(&u).await.unwrap();
        }
        store
            .record_usage(&usage("bob", None, "gpt-4o", 7, 7, 7.0, midnight(0)))
            .await
            .unwrap();

        let check = |label: &'static str| {
            let store = store.clone();
            async move {
                let stats = store.usage_stats("alice").await.unwrap();
                assert_eq!(stats.requests, 7, "{backend} {label}");
                assert_eq!(stats.prompt_tokens, 3_644, "{backend} {label}");
                assert_eq!(stats.completion_tokens, 66, "{backend} {label}");
                assert_eq!(stats.total_tokens, 3_710, "{backend} {label}");
                assert!((stats.cost_usd - 3.25).abs() < 1e-9, "{backend} {label}");
                assert_eq!(
                    stats.last_used,
                    Some(midnight(0) + Duration::seconds(1)),
                    "{backend} {label}"
                );
                let models: Vec<_> = stats
                    .by_model
                    .iter()
                    .map(|m| {
                        (
                            m.model.as_str(),
                            m.requests,
                            m.prompt_tokens,
                            m.completion_tokens,
                        )
                    })
                    .collect();
                assert_eq!(
                    models,
                    vec![("gpt-4o", 5, 3_440, 45), ("gpt-4o-mini", 2, 204, 21)],
                    "{backend} {label}"
                );
                // The daily quota's question: since today's midnight (rollup only).
                let today = store.tokens_used_since("alice", midnight(0)).await.unwrap();
                assert_eq!(today, 50, "{backend} {label}");
                // A since inside a day: the rest of that day from records, then whole days.
                let noon = store
                    .tokens_used_since("alice", midnight(1) + Duration::hours(12))
                    .await
                    .unwrap();
                assert_eq!(noon, 2_050, "{backend} {label}");
            }
        };
        check("before pruning").await;
        assert_eq!(
            store
                .tokens_used_since("alice", midnight(3) + Duration::hours(2))
                .await
                .unwrap(),
            220 + 330 + 3_050,
            "{backend}"
        );

        // Records older than two days go, in batches of two; newer ones stay.
        let before = midnight(2);
        let mut batches = Vec::new();
        loop {
            let deleted = store.prune_usage(before, 2).await.unwrap();
            batches.push(deleted);
            if deleted < 2 {
                break;
            }
        }
        assert_eq!(batches, vec![2, 1], "{backend}");
        assert_eq!(store.prune_usage(before, 2).await.unwrap(), 0, "{backend}");
        check("after pruning").await;
        assert_eq!(
            store.usage_stats("bob").await.unwrap().total_tokens,
            14,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_failed_append_records_no_usage() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        let orphan = message(Uuid::new_v4(), Role::Assistant, "x", t0);
        let spent = usage(
            "alice",
            Some(orphan.conversation_id),
            "gpt-4o-mini",
            10,
            10,
            1.0,
            t0,
        );
        assert!(store.append_message(&orphan, Some(&spent)).await.is_err());
        let stats = store.usage_stats("alice").await.unwrap();
        assert_eq!(stats.requests, 0, "{backend}: the transaction rolled back");
        assert_eq!(
            store
                .get_user("alice")
                .await
                .unwrap()
                .unwrap()
                .total_tokens_used,
            0
        );
    }
}

#[tokio::test]
async fn concurrent_appends_lose_nothing() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        let c = store
            .create_conversation(&new_conversation("alice", "t", t0))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let m = message(c.id, Role::User, &format!("m{i}"), store::now());
                let u = usage("alice", Some(c.id), "gpt-4o-mini", 1, 1, 0.0, store::now());
                store.append_message(&m, Some(&u)).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            store
                .get_conversation("alice", c.id)
                .await
                .unwrap()
                .unwrap()
                .message_count,
            40,
            "{backend}"
        );
        assert_eq!(store.list_messages(c.id).await.unwrap().len(), 40);
        assert_eq!(
            store
                .get_user("alice")
                .await
                .unwrap()
                .unwrap()
                .total_tokens_used,
            80,
            "{backend}"
        );
    }
}

/// A chain deeper than any cascade or trigger depth: its path is read whole, the newest leaf
/// under its root found, and deleting its root removes every message in one statement.
#[tokio::test]
async fn a_deep_tree_is_walked_and_deleted_whole() {
    const DEPTH: usize = 1_500;
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("deep", t0).await.unwrap();
        let new = new_conversation("deep", "deep", t0);
        let mut chain: Vec<Message> = Vec::with_capacity(DEPTH + 1);
        for i in 0..DEPTH {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            let mut m = message(new.id, role, &format!("m{i}"), t0);
            m.parent_id = chain.last().map(|p| p.id);
            chain.push(m);
        }
        // A side branch after the first message, written last: the newest leaf.
        let mut side = message(new.id, Role::Assistant, "side", t0);
        side.parent_id = Some(chain[0].id);
        chain.push(side.clone());
        let stored = store
            .insert_conversation(&new, &chain, Some(chain[DEPTH - 1].id))
            .await
            .unwrap();
        assert_eq!(stored.message_count, (DEPTH + 1) as i64, "{backend}");
        let got = store
            .get_conversation("deep", new.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.active_leaf_id, Some(chain[DEPTH - 1].id), "{backend}");
        assert_eq!(got.message_count, (DEPTH + 1) as i64, "{backend}");

        let path = store
            .path(new.id, chain[DEPTH - 1].id, u64::MAX)
            .await
            .unwrap();
        assert_eq!(path, chain[..DEPTH].to_vec(), "{backend}: root to leaf");
        let children = store
            .children(new.id, &[chain[0].id, chain[1].id], true)
            .await
            .unwrap();
        let of = |parent: Option<Uuid>| -> Vec<Uuid> {
            children
                .iter()
                .filter(|(p, _)| *p == parent)
                .map(|(_, c)| *c)
                .collect()
        };
        assert_eq!(children.len(), 4, "{backend}: {children:?}");
        assert_eq!(of(None), vec![chain[0].id], "{backend}");
        assert_eq!(
            of(Some(chain[0].id)),
            vec![chain[1].id, side.id],
            "{backend}: in order"
        );
        assert_eq!(of(Some(chain[1].id)), vec![chain[2].id], "{backend}");
        let leaf = store
            .set_active_leaf("deep", new.id, chain[0].id)
            .await
            .unwrap();
        assert_eq!(leaf, Some(side.id), "{backend}: the newest under the root");
        assert_eq!(
            store
                .set_active_leaf("intruder", new.id, chain[0].id)
                .await
                .unwrap(),
            None
        );

        let edited = store
            .edit_message("deep", chain[1].id, "changed", 1, t0 + Duration::seconds(1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(edited.content, "changed");
        let revisions = store.revisions(chain[1].id).await.unwrap();
        assert_eq!(revisions.len(), 1, "{backend}");
        assert_eq!(revisions[0].content, "m1");
        assert!(
            store
                .edit_message("intruder", chain[1].id, "x", 1, t0)
                .await
                .unwrap()
                .is_none(),
            "{backend}: another user's message is not edited"
        );

        let removed = store
            .delete_message("deep", chain[1].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            removed.count,
            (DEPTH - 1) as u64,
            "{backend}: the whole chain under m0"
        );
        assert_eq!(
            removed.active_leaf_id,
            Some(side.id),
            "{backend}: the leaf stays"
        );
        assert!(!removed.leaf_moved, "{backend}");
        let left = store.list_messages(new.id).await.unwrap();
        assert_eq!(left, vec![chain[0].clone(), side.clone()], "{backend}");
        let removed = store
            .delete_message("deep", chain[0].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (removed.count, removed.active_leaf_id),
            (2, None),
            "{backend}"
        );
        assert!(removed.leaf_moved, "{backend}");
        let got = store
            .get_conversation("deep", new.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.message_count, got.active_leaf_id),
            (0, None),
            "{backend}"
        );
        assert!(store.delete_conversation("deep", new.id).await.unwrap());
    }
}

/// A message's parent must be a message of the same conversation.
#[tokio::test]
async fn a_parent_in_another_conversation_is_refused() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("pat", t0).await.unwrap();
        let a = store
            .create_conversation(&new_conversation("pat", "a", t0))
            .await
            .unwrap();
        let b = store
            .create_conversation(&new_conversation("pat", "b", t0))
            .await
            .unwrap();
        let in_a = message(a.id, Role::User, "in a", t0);
        store.append_message(&in_a, None).await.unwrap();
        let mut stray = message(b.id, Role::User, "in b", t0);
        stray.parent_id = Some(in_a.id);
        assert!(
            matches!(
                store.append_message(&stray, None).await,
                Err(StoreError::NotFound)
            ),
            "{backend}"
        );
        assert!(
            store.list_messages(b.id).await.unwrap().is_empty(),
            "{backend}"
        );
        // Deleting a conversation deletes its tree (the self-reference does not hold it back).
        let mut reply = message(a.id, Role::Assistant, "reply", t0);
        reply.parent_id = Some(in_a.id);
        store.append_message(&reply, None).await.unwrap();
        assert!(
            store.delete_conversation("pat", a.id).await.unwrap(),
            "{backend}"
        );
        assert!(store.list_messages(a.id).await.unwrap().is_empty());
    }
}
