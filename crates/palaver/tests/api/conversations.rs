//! Conversation endpoints on every backend, through the real HTTP stack.

use palaver::store::{self, Message, Role};
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::support::app::TestApp;
use crate::support::db::{Backend, backends};

/// Appends a message after the conversation's newest (on its active path).
async fn add_message(app: &TestApp, conversation: &str, content: &str) {
    let conversation_id = conversation.parse().unwrap();
    let stored = app
        .state
        .store
        .list_messages(conversation_id)
        .await
        .unwrap();
    let message = Message {
        id: Uuid::now_v7(),
        conversation_id,
        parent_id: stored.last().map(|m| m.id),
        role: Role::User,
        content: content.into(),
        tokens: 3,
        model: None,
        metadata: json!({}),
        created_at: store::now(),
        edited_at: None,
    };
    app.state
        .store
        .append_message(&message, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn create_get_list_delete() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        create_get_list_delete_on(backend).await;
    }
}

async fn create_get_list_delete_on(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let created = app.create_conversation("alice", json!({})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let c = &created.body;
    assert_eq!(c["title"], "New Conversation");
    assert_eq!(c["userId"], "alice");
    assert_eq!(c["messageCount"], 0);
    assert_eq!(c["metadata"], json!({}));
    assert_eq!(c["createdAt"], c["updatedAt"]);
    let id: Uuid = c["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7);
    chrono::DateTime::parse_from_rfc3339(c["createdAt"].as_str().unwrap()).unwrap();

    let full = app
        .create_conversation(
            "alice",
            json!({"title": "Trip plans", "systemPrompt": "Be brief.", "model": "gpt-4o-mini", "metadata": {"tag": "travel", "n": 1}}),
        )
        .await;
    assert_eq!(full.status, 201);
    assert_eq!(full.body["title"], "Trip plans");
    assert_eq!(full.body["systemPrompt"], "Be brief.");
    assert_eq!(full.body["model"], "gpt-4o-mini");
    assert_eq!(full.body["metadata"], json!({"tag": "travel", "n": 1}));
    let full_id = full.body["id"].as_str().unwrap().to_owned();

    // Activity on the older conversation moves it to the top.
    let first_id = id.to_string();
    add_message(&app, &first_id, "hello").await;
    add_message(&app, &first_id, "naïve 日本 ✓").await;

    let list = app.list_conversations("alice", "").await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body["meta"],
        json!({"total": 2, "totalExact": true, "page": 1, "limit": 20, "totalPages": 1})
    );
    assert_eq!(list.body["data"][0]["id"], first_id.as_str());
    assert_eq!(list.body["data"][0]["messageCount"], 2);
    assert_eq!(list.body["data"][1]["id"], full_id.as_str());

    let got = app.get_conversation("alice", &first_id).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["title"], "New Conversation");
    let messages = got.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "hello");
    assert_eq!(messages[1]["content"], "naïve 日本 ✓");
    assert_eq!(messages[0]["role"], "USER");
    assert_eq!(messages[0]["conversationId"], first_id.as_str());
    assert_eq!(messages[0]["tokens"], 3);
    assert_ne!(got.body["updatedAt"], got.body["createdAt"]);

    let deleted = app.delete_conversation("alice", &first_id).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_null());
    app.get_conversation("alice", &first_id)
        .await
        .assert_error(404, "not_found");
    assert!(
        app.state.store.list_messages(id).await.unwrap().is_empty(),
        "messages go with the conversation"
    );
    app.delete_conversation("alice", &first_id)
        .await
        .assert_error(404, "not_found");
    assert_eq!(
        app.list_conversations("alice", "").await.body["meta"]["total"],
        1
    );
}

#[tokio::test]
async fn pagination() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        let app = TestApp::spawn(backend).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            let r = app
                .create_conversation("paula", json!({"title": format!("c{i}")}))
                .await;
            ids.push(r.body["id"].as_str().unwrap().to_owned());
        }
        let page2 = app.list_conversations("paula", "?page=2&limit=2").await;
        assert_eq!(page2.status, 200);
        assert_eq!(
            page2.body["meta"],
            json!({"total": 5, "totalExact": true, "page": 2, "limit": 2, "totalPages": 3})
        );
        let titles: Vec<_> = page2.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["title"].clone())
            .collect();
        assert_eq!(titles, vec![json!("c2"), json!("c1")], "newest first");
        let page3 = app.list_conversations("paula", "?page=3&limit=2").await;
        assert_eq!(page3.body["data"].as_array().unwrap().len(), 1);
        let beyond = app.list_conversations("paula", "?page=9&limit=2").await;
        assert_eq!(beyond.status, 200);
        assert!(beyond.body["data"].as_array().unwrap().is_empty());

        for (query, field) in [
            ("?limit=0", "limit"),
            ("?limit=101", "limit"),
            ("?page=0", "page"),
            ("?limit=abc", "limit"),
        ] {
            let r = app.list_conversations("paula", query).await;
            r.assert_error(400, "validation_failed");
            assert_eq!(r.body["errors"][0]["field"], field, "{query}: {}", r.body);
        }
        assert_eq!(
            app.list_conversations("paula", "?limit=100").await.status,
            200
        );
    }
}

#[tokio::test]
async fn another_users_conversation_is_not_found_for_every_verb() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        let app = TestApp::spawn(backend).await;
        let r = app
            .create_conversation("owner", json!({"title": "private"}))
            .await;
        let id = r.body["id"].as_str().unwrap().to_owned();

        let get = app.get_conversation("intruder", &id).await;
        get.assert_error(404, "not_found");
        let unknown = app
            .get_conversation("intruder", &Uuid::now_v7().to_string())
            .await;
        assert_eq!(
            get.body["message"], unknown.body["message"],
            "a foreign id looks exactly like a missing one"
        );
        app.delete_conversation("intruder", &id)
            .await
            .assert_error(404, "not_found");
        assert_eq!(
            app.list_conversations("intruder", "").await.body["meta"]["total"],
            0
        );
        // Still there for its owner.
        assert_eq!(app.get_conversation("owner", &id).await.status, 200);

        let bad = app.get_conversation("owner", "not-a-uuid").await;
        bad.assert_error(400, "validation_failed");
        assert_eq!(bad.body["errors"][0]["field"], "id");
    }
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("BODY_LIMIT_BYTES", "2048")]).await;
    let token = app.token("vera");
    let url = format!("{}/api/v1/ai/conversations", app.base);

    let malformed = app
        .raw(
            app.client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{\"title\": "),
        )
        .await;
    malformed.assert_error(400, "validation_failed");
    assert!(
        malformed.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Malformed JSON")
    );

    let wrong_type = app.create_conversation("vera", json!({"title": 42})).await;
    wrong_type.assert_error(400, "validation_failed");
    assert_eq!(wrong_type.body["errors"][0]["field"], "title");

    let long_title = app
        .create_conversation("vera", json!({"title": "x".repeat(201)}))
        .await;
    long_title.assert_error(400, "validation_failed");
    assert_eq!(long_title.body["errors"][0]["field"], "title");

    let metadata = app
        .create_conversation("vera", json!({"metadata": [1, 2]}))
        .await;
    metadata.assert_error(400, "validation_failed");
    assert_eq!(metadata.body["errors"][0]["field"], "metadata");

    let not_object = app
        .raw(
            app.client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("[]"),
        )
        .await;
    not_object.assert_error(400, "validation_failed");

    let huge = app
        .create_conversation(
            "vera",
            json!({"title": "t", "metadata": {"blob": "y".repeat(4096)}}),
        )
        .await;
    huge.assert_error(413, "payload_too_large");

    let chunked = app
        .raw(
            app.client
                .post(&url)
                .bearer_auth(&token)
                .body(reqwest::Body::wrap_stream(futures::stream::iter(
                    (0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])),
                ))),
        )
        .await;
    chunked.assert_error(413, "payload_too_large");

    // Nothing was stored by any of the refused requests.
    assert_eq!(
        app.list_conversations("vera", "").await.body["meta"]["total"],
        0
    );
    let unknown_method = app
        .request(Method::PUT, "/api/v1/ai/conversations", Some(&token), None)
        .await;
    assert_eq!(unknown_method.status, 405);
}

/// A "New chat" button that posts nothing: no body, no `Content-Type` (issue #14 item 1).
#[tokio::test]
async fn a_post_with_no_body_creates_an_untitled_conversation() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = format!("{}/api/v1/ai/conversations", app.base);
    let token = app.token("nobody-body");
    let bare = app.raw(app.client.post(&url).bearer_auth(&token)).await;
    assert_eq!(bare.status, 201, "{}", bare.body);
    assert_eq!(bare.body["title"], "New Conversation");
    let empty = app
        .raw(
            app.client
                .post(&url)
                .bearer_auth(&token)
                .header("content-length", "0")
                .header("content-type", "application/json")
                .body(""),
        )
        .await;
    assert_eq!(empty.status, 201, "{}", empty.body);
    // A body whose fields are not all optional names the missing one.
    let chat = app
        .raw(
            app.client
                .post(format!("{}/api/v1/ai/chat", app.base))
                .bearer_auth(&token),
        )
        .await;
    chat.assert_error(400, "validation_failed");
    assert_eq!(chat.body["errors"][0]["field"], "message", "{}", chat.body);
}

/// Issue #16: `PATCH /ai/conversations/:id` renames, archives, pins and re-tags; the listing
/// leaves archived ones out unless asked and puts pinned ones first; bad input is a clear 400
/// that changes nothing, and another user's conversation is 404.
#[tokio::test]
async fn conversations_are_patched_archived_and_pinned() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let mut ids = Vec::new();
        for title in ["first", "second", "third"] {
            let c = app
                .create_conversation("pia", json!({"title": title}))
                .await;
            ids.push(c.body["id"].as_str().unwrap().to_owned());
        }
        let token = app.token("pia");
        let patch = |id: &str, body: serde_json::Value| {
            let (token, path) = (token.clone(), format!("/api/v1/ai/conversations/{id}"));
            let app = &app;
            async move {
                app.request(Method::PATCH, &path, Some(&token), Some(body))
                    .await
            }
        };
        let titles = |query: &'static str| {
            let app = &app;
            async move {
                let list = app.list_conversations("pia", query).await;
                assert_eq!(list.status, 200, "{}", list.body);
                let titles: Vec<String> = list.body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["title"].as_str().unwrap().to_owned())
                    .collect();
                (titles, list.body["meta"]["total"].as_u64().unwrap())
            }
        };

        let pinned = patch(&ids[0], json!({"pinned": true})).await;
        assert_eq!(pinned.status, 200, "{backend:?}: {}", pinned.body);
        assert_eq!(pinned.body["pinned"], true);
        assert_eq!(pinned.body["archived"], false);
        assert_eq!(pinned.body["title"], "first");
        let archived = patch(
            &ids[1],
            json!({"title": "  Trip plans ", "archived": true, "metadata": {"tag": "travel"}}),
        )
        .await;
        assert_eq!(archived.status, 200, "{backend:?}: {}", archived.body);
        assert_eq!(archived.body["title"], "Trip plans", "trimmed");
        assert_eq!(archived.body["metadata"], json!({"tag": "travel"}));
        assert_eq!(archived.body["updatedAt"], archived.body["createdAt"]);

        assert_eq!(titles("").await, (vec!["first".into(), "third".into()], 2));
        assert_eq!(titles("?archived=false").await.1, 2);
        assert_eq!(
            titles("?archived=true").await,
            (vec!["Trip plans".into()], 1)
        );
        let got = app.get_conversation("pia", &ids[1]).await;
        assert_eq!(
            (got.body["archived"].clone(), got.body["pinned"].clone()),
            (json!(true), json!(false))
        );

        // Unarchived, it is back in the listing, after the pinned one.
        let back = patch(&ids[1], json!({"archived": false})).await;
        assert_eq!(back.status, 200);
        assert_eq!(
            titles("").await.0,
            vec!["first".to_owned(), "third".into(), "Trip plans".into()]
        );

        for (body, why) in [
            (json!({"title": "   "}), "blank title"),
            (json!({"title": "x".repeat(201)}), "title too long"),
            (json!({"archived": "yes"}), "wrong type"),
            (json!({"pinned": 1}), "wrong type"),
            (json!({"metadata": [1, 2]}), "metadata not an object"),
            (json!({"archive": true}), "unknown field"),
            (json!([]), "not an object"),
        ] {
            let r = patch(&ids[2], body).await;
            r.assert_error(400, "validation_failed");
            assert!(r.body["message"].is_string(), "{why}: {}", r.body);
        }
        let unchanged = app.get_conversation("pia", &ids[2]).await;
        assert_eq!(unchanged.body["title"], "third");
        assert_eq!(unchanged.body["pinned"], false);

        let intruder = app.token("intruder");
        let path = format!("/api/v1/ai/conversations/{}", ids[2]);
        app.request(
            Method::PATCH,
            &path,
            Some(&intruder),
            Some(json!({"pinned": true})),
        )
        .await
        .assert_error(404, "not_found");
        let unknown = format!("/api/v1/ai/conversations/{}", Uuid::now_v7());
        app.request(
            Method::PATCH,
            &unknown,
            Some(&token),
            Some(json!({"pinned": true})),
        )
        .await
        .assert_error(404, "not_found");
        app.request(Method::PATCH, &path, None, Some(json!({"pinned": true})))
            .await
            .assert_error(401, "unauthorized");
        assert_eq!(
            app.get_conversation("pia", &ids[2]).await.body["pinned"],
            false
        );
    }
}

/// Issue #16 search through HTTP: `?q=` ranks the caller's conversations and says where each
/// matched; a query with no word, or too long, is a 400.
#[tokio::test]
async fn conversations_are_searched_with_a_snippet_per_hit() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let trip = app
            .create_conversation("sam", json!({"title": "Holiday"}))
            .await;
        let trip = trip.body["id"].as_str().unwrap().to_owned();
        add_message(&app, &trip, "Book a table for two in Lisbon").await;
        let other = app
            .create_conversation("sam", json!({"title": "Lisbon ideas"}))
            .await;
        let other = other.body["id"].as_str().unwrap().to_owned();
        app.create_conversation("sam", json!({"title": "Nothing here"}))
            .await;
        let theirs = app
            .create_conversation("kim", json!({"title": "Lisbon"}))
            .await;
        assert_eq!(theirs.status, 201);

        let found = app.list_conversations("sam", "?q=lisbon").await;
        assert_eq!(found.status, 200, "{backend:?}: {}", found.body);
        assert_eq!(
            found.body["meta"]["total"], 2,
            "{backend:?}: {}",
            found.body
        );
        assert_eq!(found.body["meta"]["totalExact"], true, "{backend:?}");
        let data = found.body["data"].as_array().unwrap();
        assert_eq!(data[0]["id"], other, "{backend:?}: the title match first");
        assert_eq!(data[0]["match"]["messageId"], serde_json::Value::Null);
        assert_eq!(data[1]["id"], trip);
        let hit = &data[1]["match"];
        assert!(hit["messageId"].is_string(), "{backend:?}: {hit}");
        assert_eq!(
            hit["snippet"], "Book a table for two in Lisbon",
            "{backend:?}"
        );
        let highlighted: Vec<&str> = hit["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["highlight"] == true)
            .map(|p| p["text"].as_str().unwrap())
            .collect();
        assert_eq!(highlighted, vec!["Lisbon"], "{backend:?}: {hit}");
        assert_eq!(data[1]["title"], "Holiday");

        // A plain listing carries no `match`.
        let plain = app.list_conversations("sam", "").await;
        assert!(plain.body["data"][0].get("match").is_none());
        // Pages of a search.
        let page2 = app
            .list_conversations("sam", "?q=lisbon&limit=1&page=2")
            .await;
        assert_eq!(page2.body["data"][0]["id"], trip, "{backend:?}");
        assert_eq!(page2.body["meta"]["totalPages"], 2);

        for query in ["?q=%20%2A%21", "?q=", &format!("?q={}", "a".repeat(201))] {
            let r = app.list_conversations("sam", query).await;
            r.assert_error(400, "validation_failed");
        }
    }
}
