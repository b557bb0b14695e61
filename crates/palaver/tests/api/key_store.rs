//! The `KeyStore` part of the store conformance suite (API keys, and usage records that name
//! their key and end user), run against each backend.

use chrono::Duration;
use palaver::store::{
    self, ApiKey, Checkpoint, Message, Role, Run, RunEnd, RunStatus, Store, StoreError,
};
use uuid::Uuid;

use crate::store_conformance::{message, new_conversation, open, usage};
use crate::support::db::{Backend, TestDb, backends};

fn key(user: &str, name: &str, hash: &str, at: store::Timestamp) -> ApiKey {
    ApiKey {
        id: Uuid::now_v7(),
        user_id: user.to_owned(),
        name: name.to_owned(),
        prefix: format!("pal_{}", &hash[..8]),
        secret_hash: hash.to_owned(),
        models: Some(vec!["gpt-4o-mini".to_owned(), "mock".to_owned()]),
        expires_at: Some(at + Duration::days(30)),
        rate_limit_per_minute: Some(60),
        token_quota_per_day: Some(5_000_000_000),
        created_at: at,
        revoked_at: None,
    }
}

fn run(conversation: Uuid, question: &Message, at: store::Timestamp) -> Run {
    Run {
        id: Uuid::now_v7(),
        user_id: "alice".to_owned(),
        conversation_id: conversation,
        message_id: Uuid::now_v7(),
        user_message_id: Some(question.id),
        status: RunStatus::InProgress,
        last_seq: 0,
        error_code: None,
        lease_until: Some(at + Duration::seconds(30)),
        request_key: None,
        created_at: at,
        updated_at: at,
    }
}

/// The API key and end user stored on usage record `id` (read as text on both backends).
pub(crate) async fn usage_attribution(db: &TestDb, id: Uuid) -> (Option<String>, Option<String>) {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
            let row: (Option<String>, Option<String>) =
                sqlx::query_as("SELECT api_key_id, end_user FROM usage_records WHERE id = ?1")
                    .bind(id.to_string())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            pool.close().await;
            row
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
            let row: (Option<String>, Option<String>) = sqlx::query_as(
                "SELECT api_key_id::text, end_user FROM usage_records WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            pool.close().await;
            row
        }
    }
}

#[tokio::test]
async fn api_keys_round_trip_by_owner_and_by_hash() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        let first = key("alice", "laptop", &"a".repeat(64), t0);
        let mut second = key("alice", "ci ✓", &"b".repeat(64), t0 + Duration::seconds(1));
        second.models = None;
        second.expires_at = None;
        second.rate_limit_per_minute = None;
        second.token_quota_per_day = None;
        let bobs = key("bob", "bob's", &"c".repeat(64), t0);
        for k in [&first, &second, &bobs] {
            store.create_api_key(k).await.unwrap();
        }
        let listed = store.list_api_keys("alice").await.unwrap();
        assert_eq!(
            listed,
            vec![second.clone(), first.clone()],
            "{backend}: newest first"
        );
        assert_eq!(store.list_api_keys("bob").await.unwrap(), vec![bobs]);
        assert!(store.list_api_keys("carol").await.unwrap().is_empty());
        let found = store.api_key_by_hash(&"a".repeat(64)).await.unwrap();
        assert_eq!(found, Some(first.clone()), "{backend}");
        assert_eq!(store.api_key_by_hash(&"d".repeat(64)).await.unwrap(), None);
        // A second key with the same secret (or id) is refused.
        let mut twin = key("carol", "twin", &"a".repeat(64), t0);
        assert!(
            matches!(store.create_api_key(&twin).await, Err(StoreError::Conflict)),
            "{backend}"
        );
        twin.secret_hash = "e".repeat(64);
        twin.id = first.id;
        assert!(
            matches!(store.create_api_key(&twin).await, Err(StoreError::Conflict)),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_revoked_key_stays_listed_and_is_revoked_once_by_its_owner_only() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        let k = key("alice", "laptop", &"f".repeat(64), t0);
        store.create_api_key(&k).await.unwrap();
        assert!(k.is_usable(t0));
        let at = t0 + Duration::seconds(5);
        assert!(
            !store.revoke_api_key("bob", k.id, at).await.unwrap(),
            "{backend}"
        );
        assert!(
            !store
                .revoke_api_key("alice", Uuid::now_v7(), at)
                .await
                .unwrap()
        );
        assert!(
            store.revoke_api_key("alice", k.id, at).await.unwrap(),
            "{backend}"
        );
        let later = at + Duration::seconds(5);
        assert!(
            !store.revoke_api_key("alice", k.id, later).await.unwrap(),
            "{backend}: revoked once"
        );
        let revoked = store
            .api_key_by_hash(&k.secret_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(at), "{backend}");
        assert!(!revoked.is_usable(at));
        assert_eq!(store.list_api_keys("alice").await.unwrap(), vec![revoked]);
    }
}

/// Every statement that writes a usage record keeps its key and end user: a lone record,
/// one appended with its message, one written with the end of an exchange, and one with
/// the last write over a checkpointed reply.
#[tokio::test]
async fn usage_records_keep_their_key_and_end_user() {
    for backend in backends() {
        let (store, db) = open(backend).await;
        let t0 = store::now();
        store.ensure_user("alice", t0).await.unwrap();
        let key_id = Uuid::now_v7();
        let attributed = |mut record: store::UsageRecord, who: &str| {
            record.api_key_id = Some(key_id);
            record.end_user = Some(who.to_owned());
            record
        };
        let lone = attributed(usage("alice", None, "mock", 3, 0, 0.0, t0), "user-1");
        store.record_usage(&lone).await.unwrap();
        let conversation = store
            .create_conversation(&new_conversation("alice", "c", t0))
            .await
            .unwrap();
        let question = message(conversation.id, Role::User, "hi", t0);
        let appended = attributed(
            usage("alice", Some(conversation.id), "mock", 2, 1, 0.0, t0),
            "user-2",
        );
        store
            .append_message(&question, Some(&appended))
            .await
            .unwrap();
        let run = run(conversation.id, &question, t0);
        store.begin_exchange(None, None, &run).await.unwrap();
        let mut reply = message(conversation.id, Role::Assistant, "hello", t0);
        reply.id = run.message_id;
        reply.parent_id = Some(question.id);
        let ended = attributed(
            usage("alice", Some(conversation.id), "mock", 4, 2, 0.0, t0),
            "user-3",
        );
        let end = RunEnd {
            status: RunStatus::Completed,
            last_seq: 0,
            error_code: None,
            at: t0,
        };
        store
            .end_exchange(&reply, &ended, run.id, &end)
            .await
            .unwrap();
        let again = self::run(conversation.id, &question, t0);
        store.begin_exchange(None, None, &again).await.unwrap();
        let mut second = message(conversation.id, Role::Assistant, "hel", t0);
        second.id = again.message_id;
        second.parent_id = Some(question.id);
        let checkpoint = Checkpoint {
            reply: &second,
            first: true,
            run_id: again.id,
            last_seq: 1,
            lease_until: t0 + Duration::seconds(30),
        };
        assert!(store.checkpoint_reply(&checkpoint).await.unwrap());
        second.content = "hello again".to_owned();
        let replaced = attributed(
            usage("alice", Some(conversation.id), "mock", 5, 3, 0.0, t0),
            "user-4",
        );
        store
            .replace_reply(&second, &replaced, again.id, Some(&end))
            .await
            .unwrap();
        let unattributed = usage("alice", None, "mock", 1, 0, 0.0, t0);
        store.record_usage(&unattributed).await.unwrap();
        let all = [
            (&lone, "user-1"),
            (&appended, "user-2"),
            (&ended, "user-3"),
            (&replaced, "user-4"),
        ];
        for (record, who) in all {
            assert_eq!(
                usage_attribution(&db, record.id).await,
                (Some(key_id.to_string()), Some(who.to_owned())),
                "{backend}"
            );
        }
        assert_eq!(usage_attribution(&db, unattributed.id).await, (None, None));
        assert_eq!(store.usage_stats("alice").await.unwrap().total_tokens, 21);
        // A key's tokens since a time: its records only, from that time on.
        let used = |since| store.tokens_used_by_key_since(key_id, since);
        assert_eq!(used(t0).await.unwrap(), 3 + 3 + 6 + 8, "{backend}");
        assert_eq!(used(t0 + Duration::seconds(1)).await.unwrap(), 0);
        assert_eq!(
            store
                .tokens_used_by_key_since(Uuid::now_v7(), t0)
                .await
                .unwrap(),
            0
        );
    }
}

/// Keys are per store: a hash is looked up across users (the caller is not known yet).
#[tokio::test]
async fn a_store_reads_keys_of_every_user_by_hash() {
    for backend in backends() {
        let (store, _db): (std::sync::Arc<dyn Store>, _) = open(backend).await;
        let t0 = store::now();
        for (i, user) in ["u1", "u2", "u3"].iter().enumerate() {
            let hash = format!("{i:064}");
            store
                .create_api_key(&key(user, "k", &hash, t0))
                .await
                .unwrap();
            let found = store.api_key_by_hash(&hash).await.unwrap().unwrap();
            assert_eq!(found.user_id, *user, "{backend}");
        }
    }
}
