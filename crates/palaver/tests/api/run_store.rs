//! The run operations of every `Store` (leases, checkpoints, interruption, request keys),
//! run against each backend.

use chrono::Duration;
use palaver::store::{
    self, Checkpoint, ConversationFilter, Role, Run, RunEnd, RunStatus, SearchQuery, Store,
    StoreError,
};
use serde_json::json;
use uuid::Uuid;

use crate::store_conformance::{message, new_conversation, open, usage};
use crate::support::db::backends;

fn live_run(user: &str, conversation: Uuid, user_message: Uuid, lease: Duration) -> Run {
    let now = store::now();
    Run {
        id: Uuid::now_v7(),
        user_id: user.to_owned(),
        conversation_id: conversation,
        message_id: Uuid::now_v7(),
        user_message_id: Some(user_message),
        status: RunStatus::InProgress,
        last_seq: 0,
        error_code: None,
        lease_until: Some(now + lease),
        request_key: None,
        created_at: now,
        updated_at: now,
    }
}

#[tokio::test]
async fn a_checkpointed_reply_is_written_then_replaced_and_its_run_ended() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let now = store::now();
        for user in ["alice", "bob", "carol", "dave"] {
            store.ensure_user(user, now).await.unwrap();
        }
        let new = new_conversation("alice", "Runs", now);
        let question = message(new.id, Role::User, "tell me", now);
        let run = live_run("alice", new.id, question.id, Duration::seconds(30));
        store
            .begin_exchange(Some(&new), Some(&question), &run)
            .await
            .unwrap();
        let mut reply = message(new.id, Role::Assistant, "Once", now);
        reply.id = run.message_id;
        reply.parent_id = Some(question.id);
        reply.metadata = json!({"partial": true});
        let lease_until = store::now() + Duration::seconds(30);
        let mut checkpoint = Checkpoint {
            reply: &reply,
            first: true,
            run_id: run.id,
            last_seq: 3,
            lease_until,
        };
        assert!(
            store.checkpoint_reply(&checkpoint).await.unwrap(),
            "{backend}"
        );
        let conversation = store
            .get_conversation("alice", new.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            conversation.message_count, 2,
            "{backend}: the partial reply is stored"
        );
        assert_eq!(conversation.active_leaf_id, Some(reply.id), "{backend}");
        let mut longer = reply.clone();
        longer.content = "Once upon".to_owned();
        checkpoint.reply = &longer;
        checkpoint.first = false;
        checkpoint.last_seq = 5;
        assert!(
            store.checkpoint_reply(&checkpoint).await.unwrap(),
            "{backend}"
        );
        let stored = store.get_message("alice", reply.id).await.unwrap().unwrap();
        assert_eq!(stored.content, "Once upon", "{backend}");
        let stored_run = store.get_run("alice", run.id).await.unwrap().unwrap();
        assert_eq!(
            stored_run.last_seq, 5,
            "{backend}: a checkpoint records the run's progress"
        );
        assert!(
            stored_run.lease_until.unwrap() > run.lease_until.unwrap(),
            "{backend}: renewed"
        );

        let mut done = longer.clone();
        done.content = "Once upon a time.".to_owned();
        done.metadata = json!({"finishReason": "stop"});
        let record = usage(
            "alice",
            Some(new.id),
            "gpt-4o-mini",
            10,
            4,
            0.0,
            store::now(),
        );
        let end = RunEnd {
            status: RunStatus::Completed,
            last_seq: 9,
            error_code: None,
            at: store::now(),
        };
        store
            .replace_reply(&done, &record, run.id, Some(&end))
            .await
            .unwrap();
        let stored = store.get_message("alice", reply.id).await.unwrap().unwrap();
        assert_eq!(stored.content, "Once upon a time.", "{backend}");
        assert_eq!(
            stored.metadata,
            json!({"finishReason": "stop"}),
            "{backend}"
        );
        let conversation = store
            .get_conversation("alice", new.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            conversation.message_count, 2,
            "{backend}: replaced, not appended"
        );
        let ended = store.get_run("alice", run.id).await.unwrap().unwrap();
        assert_eq!(
            (ended.status, ended.last_seq),
            (RunStatus::Completed, 9),
            "{backend}"
        );
        assert_eq!(
            store.usage_stats("alice").await.unwrap().total_tokens,
            14,
            "{backend}"
        );
        // An ended run takes no more checkpoints, and its reply stays as it is.
        assert!(
            !store.checkpoint_reply(&checkpoint).await.unwrap(),
            "{backend}"
        );
        assert!(
            !store.renew_run(run.id, store::now()).await.unwrap(),
            "{backend}"
        );
        let stored = store.get_message("alice", reply.id).await.unwrap().unwrap();
        assert_eq!(stored.content, "Once upon a time.", "{backend}");
        // A reply whose row is gone is not found.
        let mut missing = done.clone();
        missing.id = Uuid::now_v7();
        let err = store.replace_reply(&missing, &record, run.id, None).await;
        assert!(
            matches!(err, Err(StoreError::NotFound)),
            "{backend}: {err:?}"
        );
    }
}

#[tokio::test]
async fn runs_whose_lease_expired_are_interrupted_once_with_their_partial_reply() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let now = store::now();
        for user in ["alice", "bob", "carol", "dave"] {
            store.ensure_user(user, now).await.unwrap();
        }
        let new = new_conversation("bob", "Leases", now);
        let question = message(new.id, Role::User, "go", now);
        let expired = live_run("bob", new.id, question.id, Duration::seconds(-1));
        store
            .begin_exchange(Some(&new), Some(&question), &expired)
            .await
            .unwrap();
        let mut partial = message(new.id, Role::Assistant, "half an ans", now);
        partial.id = expired.message_id;
        partial.parent_id = Some(question.id);
        partial.metadata = json!({"partial": true});
        let checkpoint = Checkpoint {
            reply: &partial,
            first: true,
            run_id: expired.id,
            last_seq: 7,
            // Written with a lease already over (its producer then died).
            lease_until: now - Duration::seconds(1),
        };
        assert!(store.checkpoint_reply(&checkpoint).await.unwrap());
        let other = new_conversation("bob", "Healthy", now);
        let other_question = message(other.id, Role::User, "go", now);
        let healthy = live_run("bob", other.id, other_question.id, Duration::seconds(60));
        store
            .begin_exchange(Some(&other), Some(&other_question), &healthy)
            .await
            .unwrap();

        let interrupted = store
            .interrupt_expired_runs(store::now(), 10)
            .await
            .unwrap();
        assert_eq!(interrupted.len(), 1, "{backend}");
        assert_eq!(interrupted[0].id, expired.id, "{backend}");
        assert_eq!(interrupted[0].status, RunStatus::Interrupted, "{backend}");
        assert_eq!(interrupted[0].last_seq, 7, "{backend}");
        assert_eq!(
            interrupted[0].error_code.as_deref(),
            Some("interrupted"),
            "{backend}"
        );
        let reply = store.get_message("bob", partial.id).await.unwrap().unwrap();
        assert_eq!(
            reply.content, "half an ans",
            "{backend}: the partial reply is kept"
        );
        assert_eq!(
            reply.metadata,
            json!({"partial": true, "interrupted": true}),
            "{backend}"
        );
        assert!(
            store
                .interrupt_expired_runs(store::now(), 10)
                .await
                .unwrap()
                .is_empty(),
            "{backend}: once"
        );
        let still = store.get_run("bob", healthy.id).await.unwrap().unwrap();
        assert_eq!(still.status, RunStatus::InProgress, "{backend}");
        // The producer, had it been alive, learns that its run was taken for lost.
        assert!(
            !store.checkpoint_reply(&checkpoint).await.unwrap(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_request_key_names_one_run_per_user() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let now = store::now();
        for user in ["alice", "bob", "carol", "dave"] {
            store.ensure_user(user, now).await.unwrap();
        }
        let new = new_conversation("carol", "Keys", now);
        let question = message(new.id, Role::User, "once", now);
        let mut run = live_run("carol", new.id, question.id, Duration::seconds(30));
        run.request_key = Some("req-1".to_owned());
        store
            .begin_exchange(Some(&new), Some(&question), &run)
            .await
            .unwrap();
        let found = store.run_by_request_key("carol", "req-1").await.unwrap();
        assert_eq!(found.map(|r| r.id), Some(run.id), "{backend}");
        assert!(
            store
                .run_by_request_key("dave", "req-1")
                .await
                .unwrap()
                .is_none()
        );
        // The same key again: nothing of the second exchange is written.
        let twin = new_conversation("carol", "Twin", now);
        let twin_question = message(twin.id, Role::User, "once", now);
        let mut again = live_run("carol", twin.id, twin_question.id, Duration::seconds(30));
        again.request_key = Some("req-1".to_owned());
        let err = store
            .begin_exchange(Some(&twin), Some(&twin_question), &again)
            .await;
        assert!(
            matches!(err, Err(StoreError::Conflict)),
            "{backend}: {err:?}"
        );
        assert!(
            store
                .get_conversation("carol", twin.id)
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );
        // Another user may use the same key.
        let theirs = new_conversation("dave", "Keys", now);
        let their_question = message(theirs.id, Role::User, "once", now);
        let mut their_run = live_run("dave", theirs.id, their_question.id, Duration::seconds(30));
        their_run.request_key = Some("req-1".to_owned());
        store
            .begin_exchange(Some(&theirs), Some(&their_question), &their_run)
            .await
            .unwrap();
    }
}

/// How many of the user's conversations a search for `word` finds.
async fn found(store: &dyn Store, user: &str, word: &str) -> u64 {
    let query = SearchQuery::parse(word).unwrap();
    let filter = ConversationFilter { archived: false };
    store
        .search_conversations(user, &query, filter, 0, 10)
        .await
        .unwrap()
        .total
}

#[tokio::test]
async fn a_streaming_reply_is_searched_as_it_ends_and_as_it_was_interrupted() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let now = store::now();
        store.ensure_user("eli", now).await.unwrap();
        let mut runs = Vec::new();
        for title in ["Finished", "Cut"] {
            let new = new_conversation("eli", title, now);
            let question = message(new.id, Role::User, "tell", now);
            let run = live_run("eli", new.id, question.id, Duration::seconds(-1));
            store
                .begin_exchange(Some(&new), Some(&question), &run)
                .await
                .unwrap();
            let mut reply = message(new.id, Role::Assistant, "zebra partial", now);
            reply.id = run.message_id;
            reply.parent_id = Some(question.id);
            reply.metadata = json!({"partial": true, "streaming": true});
            for (first, text) in [(true, "zebra partial"), (false, "zebra partial giraffe")] {
                reply.content = text.to_owned();
                let checkpoint = Checkpoint {
                    reply: &reply,
                    first,
                    run_id: run.id,
                    last_seq: 3,
                    lease_until: now - Duration::seconds(1),
                };
                assert!(store.checkpoint_reply(&checkpoint).await.unwrap());
            }
            runs.push((run, reply));
        }
        // The first ends: its final text is what search finds, once.
        let (run, reply) = &runs[0];
        let mut done = reply.clone();
        done.content = "zebra partial giraffe okapi".to_owned();
        done.metadata = json!({"finishReason": "stop"});
        let record = usage(
            "eli",
            Some(done.conversation_id),
            "gpt-4o-mini",
            1,
            4,
            0.0,
            now,
        );
        let end = RunEnd {
            status: RunStatus::Completed,
            last_seq: 4,
            error_code: None,
            at: store::now(),
        };
        store
            .replace_reply(&done, &record, run.id, Some(&end))
            .await
            .unwrap();
        assert_eq!(found(&*store, "eli", "okapi").await, 1, "{backend}");
        // The other one's producer died: it is interrupted, and found as it was cut.
        let interrupted = store
            .interrupt_expired_runs(store::now(), 10)
            .await
            .unwrap();
        assert_eq!(interrupted.len(), 1, "{backend}");
        let cut = store
            .get_message("eli", runs[1].1.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            cut.metadata,
            json!({"partial": true, "interrupted": true}),
            "{backend}"
        );
        assert_eq!(found(&*store, "eli", "giraffe").await, 2, "{backend}");
        assert_eq!(
            found(&*store, "eli", "zebra").await,
            2,
            "{backend}: no stale entries"
        );
        // Deleting both leaves nothing behind in the index.
        for (run, _) in &runs {
            store
                .delete_conversation("eli", run.conversation_id)
                .await
                .unwrap();
        }
        assert_eq!(found(&*store, "eli", "zebra").await, 0, "{backend}");
    }
}
