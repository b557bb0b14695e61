//! Fork, export and import on every backend, through the real HTTP stack (the built-in mock
//! provider answers the chats that build the trees).

use std::collections::{HashMap, HashSet};

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::app::{TestApp, TestResponse};
use crate::support::db::{Backend, backends};

async fn call(
    app: &TestApp,
    user: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> TestResponse {
    let path = format!("/api/v1/ai{path}");
    app.request(method, &path, Some(&app.token(user)), body)
        .await
}

/// A chat exchange that succeeded.
struct Exchange {
    conversation: String,
    user: String,
    reply: String,
    content: String,
    model: String,
}

async fn chat(app: &TestApp, user: &str, body: Value) -> Exchange {
    let r = app.chat(user, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let text = |k: &str| r.body[k].as_str().unwrap().to_owned();
    Exchange {
        conversation: text("conversationId"),
        user: text("userMessageId"),
        reply: text("messageId"),
        content: text("content"),
        model: text("model"),
    }
}

async fn tree(app: &TestApp, user: &str, id: &str) -> Value {
    let r = call(
        app,
        user,
        Method::GET,
        &format!("/conversations/{id}/tree"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn total(app: &TestApp, user: &str) -> u64 {
    let r = app.list_conversations(user, "").await;
    r.body["meta"]["total"].as_u64().unwrap()
}

fn ids(messages: &Value) -> Vec<String> {
    let list = messages.as_array().unwrap();
    list.iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Each message as (role, content, index of its parent in the list): the tree without ids.
fn shape(messages: &Value) -> Vec<(String, String, Option<usize>)> {
    let order = ids(messages);
    let at: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let list = messages.as_array().unwrap();
    list.iter()
        .map(|m| {
            let parent = m["parentId"].as_str().map(|p| at[p]);
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
                parent,
            )
        })
        .collect()
}

/// Each message as the (role, content) path from the root to it, sorted: the tree without
/// ids or the order of siblings.
fn root_paths(messages: &Value) -> Vec<Vec<(String, String)>> {
    let list = messages.as_array().unwrap();
    let by_id: HashMap<&str, &Value> = list
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m))
        .collect();
    let mut paths: Vec<_> = list
        .iter()
        .map(|mut m| {
            let mut path = vec![];
            loop {
                path.push((
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"].as_str().unwrap().to_owned(),
                ));
                match m["parentId"].as_str() {
                    Some(p) => m = by_id[p],
                    None => break,
                }
            }
            path.reverse();
            path
        })
        .collect();
    paths.sort();
    paths
}

#[tokio::test]
async fn fork_copies_the_path_to_a_message() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        fork_on(backend).await;
    }
}

async fn fork_on(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = chat(
        &app,
        "alice",
        json!({"message": "first question", "systemPrompt": "Be brief."}),
    )
    .await;
    let (id, u1, a1) = (first.conversation, first.user, first.reply);
    let u2 = chat(
        &app,
        "alice",
        json!({"message": "second question", "conversationId": id}),
    )
    .await
    .user;
    // A branch after the first reply becomes the active one: the fork is of a path not shown.
    chat(
        &app,
        "alice",
        json!({"message": "other question", "parentMessageId": a1}),
    )
    .await;
    let patched = call(
        &app,
        "alice",
        Method::PATCH,
        &format!("/conversations/{id}"),
        Some(json!({"title": "Trip", "metadata": {"tag": "x"}})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let before = tree(&app, "alice", &id).await;

    let forked = call(
        &app,
        "alice",
        Method::POST,
        &format!("/conversations/{id}/fork"),
        Some(json!({"messageId": u2})),
    )
    .await;
    assert_eq!(forked.status, 201, "{}", forked.body);
    let f = &forked.body;
    let fork_id = f["id"].as_str().unwrap();
    assert_ne!(fork_id, id);
    assert_eq!(f["userId"], "alice");
    assert_eq!(f["title"], "Trip");
    assert_eq!(f["systemPrompt"], "Be brief.");
    assert_eq!(f["model"], before["model"]);
    assert_eq!(
        f["metadata"],
        json!({"tag": "x", "forkedFrom": {"conversationId": id, "messageId": u2}})
    );
    assert_eq!(f["messageCount"], 3);

    // The copies: the original path root..=u2, under new ids, linked in a chain.
    let original = before["messages"].as_array().unwrap();
    let by_id: HashMap<&str, &Value> = original
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m))
        .collect();
    let copies = f["messages"].as_array().unwrap();
    let path = [u1.as_str(), a1.as_str(), u2.as_str()];
    assert_eq!(copies.len(), path.len());
    let old_ids: HashSet<String> = ids(&before["messages"]).into_iter().collect();
    for (i, (copy, old)) in copies.iter().zip(path).enumerate() {
        let old = by_id[old];
        assert!(!old_ids.contains(copy["id"].as_str().unwrap()), "{copy}");
        assert_eq!(copy["conversationId"], fork_id);
        for field in [
            "role",
            "content",
            "tokens",
            "model",
            "metadata",
            "createdAt",
        ] {
            assert_eq!(copy[field], old[field], "{field} of copy {i}");
        }
        let parent = if i == 0 {
            Value::Null
        } else {
            copies[i - 1]["id"].clone()
        };
        assert_eq!(copy["parentId"], parent);
        assert_eq!(copy["siblingIds"], json!([copy["id"]]));
    }
    assert_eq!(f["activeLeafId"], copies[2]["id"]);
    // GET answers the same; the original is as it was.
    let got = app.get_conversation("alice", fork_id).await;
    assert_eq!(got.body["messages"], f["messages"]);
    assert_eq!(got.body["activeLeafId"], f["activeLeafId"]);
    assert_eq!(tree(&app, "alice", &id).await, before);
    assert_eq!(total(&app, "alice").await, 2);
}

#[tokio::test]
async fn fork_of_what_is_not_yours_is_not_found() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        fork_not_found_on(backend).await;
    }
}

async fn fork_not_found_on(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let one = chat(&app, "alice", json!({"message": "one"})).await;
    let (c1, a1) = (one.conversation, one.reply);
    let two = chat(&app, "alice", json!({"message": "two"})).await;
    let (c2, a2) = (two.conversation, two.reply);
    let bobs = chat(&app, "bob", json!({"message": "bob's"})).await;
    let (bob_conversation, b1) = (bobs.conversation, bobs.reply);
    let fork = |user: &'static str, conversation: String, message: String| {
        let app = &app;
        async move {
            call(
                app,
                user,
                Method::POST,
                &format!("/conversations/{conversation}/fork"),
                Some(json!({"messageId": message})),
            )
            .await
        }
    };
    // Another user's conversation, a message of another conversation, of another user, none.
    fork("bob", c1.clone(), a1.clone())
        .await
        .assert_error(404, "not_found");
    fork("alice", c1.clone(), a2.clone())
        .await
        .assert_error(404, "not_found");
    fork("alice", c1.clone(), b1.clone())
        .await
        .assert_error(404, "not_found");
    fork("bob", bob_conversation, a1.clone())
        .await
        .assert_error(404, "not_found");
    fork("alice", c2, Uuid::now_v7().to_string())
        .await
        .assert_error(404, "not_found");
    let bad = call(
        &app,
        "alice",
        Method::POST,
        &format!("/conversations/{c1}/fork"),
        Some(json!({})),
    )
    .await;
    bad.assert_error(400, "validation_failed");
    assert_eq!(bad.body["errors"][0]["field"], "messageId");
    assert_eq!(
        (total(&app, "alice").await, total(&app, "bob").await),
        (2, 1)
    );
}

#[tokio::test]
async fn export_and_import_round_trip_a_branched_tree() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        round_trip_on(backend).await;
    }
}

async fn round_trip_on(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = chat(
        &app,
        "alice",
        json!({"message": "hello there", "systemPrompt": "Be kind."}),
    )
    .await;
    let (id, a1) = (first.conversation, first.reply);
    let a2 = chat(
        &app,
        "alice",
        json!({"message": "tell me more", "conversationId": id}),
    )
    .await
    .reply;
    let regenerated = call(
        &app,
        "alice",
        Method::POST,
        &format!("/messages/{a2}/regenerate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(regenerated.status, 200, "{}", regenerated.body);
    // An edit in place: the document carries `editedAt`.
    let edited = call(
        &app,
        "alice",
        Method::PATCH,
        &format!("/messages/{}", first.user),
        Some(json!({"content": "hello there, edited"})),
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    chat(
        &app,
        "alice",
        json!({"message": "another branch", "parentMessageId": a1}),
    )
    .await;
    // The active leaf is an older reply, not the newest message.
    let moved = call(
        &app,
        "alice",
        Method::PUT,
        &format!("/conversations/{id}/active-leaf"),
        Some(json!({"messageId": a2})),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let original = tree(&app, "alice", &id).await;
    assert_eq!(original["messages"].as_array().unwrap().len(), 7);

    let exported = call(
        &app,
        "alice",
        Method::GET,
        &format!("/conversations/{id}/export"),
        None,
    )
    .await;
    assert_eq!(exported.status, 200, "{}", exported.body);
    assert!(
        exported.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let disposition = exported.headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"") && disposition.ends_with(".json\""),
        "{disposition}"
    );
    let doc = exported.body;
    assert_eq!(
        (doc["format"].as_str(), doc["version"].as_u64()),
        (Some("palaver.conversation"), Some(1))
    );
    assert_eq!(doc["conversation"]["title"], original["title"]);
    assert_eq!(doc["conversation"]["systemPrompt"], "Be kind.");
    assert_eq!(doc["conversation"]["id"], id.as_str());
    assert_eq!(doc["activeLeafId"], a2.as_str());
    assert_eq!(ids(&doc["messages"]), ids(&original["messages"]));
    assert_eq!(shape(&doc["messages"]), shape(&original["messages"]));
    for (d, o) in doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .zip(original["messages"].as_array().unwrap())
    {
        assert_eq!(
            (&d["tokens"], &d["model"], &d["metadata"]),
            (&o["tokens"], &o["model"], &o["metadata"])
        );
        assert!(d["createdAt"].is_string(), "{d}");
    }
    assert_eq!(doc["messages"][0]["content"], "hello there, edited");
    assert!(doc["messages"][0]["editedAt"].is_string(), "{doc}");
    let exported_again = call(
        &app,
        "alice",
        Method::GET,
        &format!("/conversations/{id}/export?format=json"),
        None,
    )
    .await;
    assert_eq!(exported_again.body, doc);

    // Imported by another user: a new conversation, new ids, the same tree and active leaf.
    let imported = call(
        &app,
        "bob",
        Method::POST,
        "/conversations/import",
        Some(doc.clone()),
    )
    .await;
    assert_eq!(imported.status, 201, "{}", imported.body);
    let new_id = imported.body["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(imported.body["userId"], "bob");
    assert_eq!(imported.body["messageCount"], 7);
    for field in ["title", "systemPrompt", "model", "metadata"] {
        assert_eq!(imported.body[field], original[field], "{field}");
    }
    let copy = tree(&app, "bob", &new_id).await;
    assert_eq!(shape(&copy["messages"]), shape(&original["messages"]));
    let pairs = copy["messages"]
        .as_array()
        .unwrap()
        .iter()
        .zip(original["messages"].as_array().unwrap());
    for (c, o) in pairs {
        for field in ["tokens", "model", "metadata", "createdAt", "editedAt"] {
            assert_eq!(c[field], o[field], "{field}");
        }
    }
    let old: HashSet<String> = ids(&original["messages"]).into_iter().collect();
    assert!(ids(&copy["messages"]).iter().all(|i| !old.contains(i)));
    let leaf_at = |t: &Value| {
        ids(&t["messages"])
            .iter()
            .position(|i| t["activeLeafId"] == i.as_str())
    };
    assert_eq!(leaf_at(&copy), leaf_at(&original));
    assert!(leaf_at(&copy).is_some());
    let strip = |v: &Value| -> Vec<(Value, Value)> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["role"].clone(), m["content"].clone()))
            .collect()
    };
    assert_eq!(
        strip(&imported.body),
        strip(&app.get_conversation("alice", &id).await.body)
    );

    // The same document with its messages in reverse order: each is stored after its parent.
    let mut reversed = doc.clone();
    reversed["messages"].as_array_mut().unwrap().reverse();
    let again = call(
        &app,
        "bob",
        Method::POST,
        "/conversations/import",
        Some(reversed),
    )
    .await;
    assert_eq!(again.status, 201, "{}", again.body);
    let again_tree = tree(&app, "bob", again.body["id"].as_str().unwrap()).await;
    assert_eq!(
        root_paths(&again_tree["messages"]),
        root_paths(&original["messages"])
    );
    assert_eq!(strip(&again.body), strip(&imported.body));
    assert_eq!(total(&app, "bob").await, 2);
    assert_eq!(tree(&app, "alice", &id).await, original);
}

#[tokio::test]
async fn markdown_export_is_the_active_path() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        markdown_on(backend).await;
    }
}

async fn markdown_on(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = app
        .create_conversation(
            "alice",
            json!({"title": "Trip plans: Lisbon", "systemPrompt": "Be brief."}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let first = chat(
        &app,
        "alice",
        json!({"message": "Where to *eat*?", "conversationId": id}),
    )
    .await;
    chat(
        &app,
        "alice",
        json!({"message": "hidden branch", "conversationId": id}),
    )
    .await;
    let shown = chat(
        &app,
        "alice",
        json!({"message": "shown branch", "parentMessageId": first.reply}),
    )
    .await;

    let r = call(
        &app,
        "alice",
        Method::GET,
        &format!("/conversations/{id}/export?format=markdown"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["content-type"], "text/markdown; charset=utf-8");
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"trip-plans-lisbon.md\""
    );
    let text = r.body.as_str().unwrap();
    assert!(
        text.starts_with("# Trip plans: Lisbon\n\n## System prompt\n\nBe brief.\n"),
        "{text}"
    );
    assert!(!text.contains("hidden branch"), "{text}");
    let sections = [
        "## User\n\nWhere to *eat*?\n".to_owned(),
        format!(
            "## Assistant ({})\n\n{}\n",
            first.model,
            first.content.trim_end()
        ),
        "## User\n\nshown branch\n".to_owned(),
        format!(
            "## Assistant ({})\n\n{}\n",
            shown.model,
            shown.content.trim_end()
        ),
    ];
    let mut from = 0;
    for section in &sections {
        let at = text[from..]
            .find(section.as_str())
            .unwrap_or_else(|| panic!("{section:?} not after {from} in {text}"));
        from += at + section.len();
    }
    assert_eq!(from, text.len(), "{text}");

    let bad = call(
        &app,
        "alice",
        Method::GET,
        &format!("/conversations/{id}/export?format=pdf"),
        None,
    )
    .await;
    bad.assert_error(400, "validation_failed");
    assert_eq!(bad.body["errors"][0]["field"], "format");
    call(
        &app,
        "bob",
        Method::GET,
        &format!("/conversations/{id}/export?format=markdown"),
        None,
    )
    .await
    .assert_error(404, "not_found");
    call(
        &app,
        "bob",
        Method::GET,
        &format!("/conversations/{id}/export"),
        None,
    )
    .await
    .assert_error(404, "not_found");
}

/// A valid document: a root, a reply to it, and a second reply beside the first.
fn document() -> Value {
    let (root, reply, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    json!({
        "format": "palaver.conversation",
        "version": 1,
        "conversation": {"title": "Imported"},
        "messages": [
            {"id": root, "parentId": null, "role": "USER", "content": "hi"},
            {"id": reply, "parentId": root, "role": "ASSISTANT", "content": "hello", "model": "gpt-4o-mini"},
            {"id": other, "parentId": root, "role": "ASSISTANT", "content": "hey"},
        ],
    })
}

#[tokio::test]
async fn import_refuses_bad_documents_naming_the_field() {
    for backend in backends() {
        eprintln!("backend: {backend:?}");
        import_validation_on(backend).await;
    }
}

async fn import_validation_on(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut d = document();
        f(&mut d);
        d
    };
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"id": Uuid::now_v7(), "role": "USER", "content": ""}))
        .collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "format",
            edit(&|d| d["format"] = json!("other.format")),
            "format",
        ),
        (
            "version",
            edit(&|d| {
                d["version"] = json!(2);
                d["messages"] = json!("a version 2 shape");
            }),
            "version",
        ),
        (
            "parent",
            edit(&|d| d["messages"][1]["parentId"] = json!(Uuid::now_v7())),
            "messages[1].parentId",
        ),
        (
            "duplicate",
            edit(&|d| d["messages"][2]["id"] = d["messages"][1]["id"].clone()),
            "messages[2].id",
        ),
        (
            "role",
            edit(&|d| d["messages"][0]["role"] = json!("BOT")),
            "messages[0].role",
        ),
        (
            "cycle",
            edit(&|d| d["messages"][0]["parentId"] = d["messages"][2]["id"].clone()),
            "messages[0].parentId",
        ),
        (
            "content",
            edit(&|d| d["messages"][2]["content"] = json!("x".repeat(100_001))),
            "messages[2].content",
        ),
        (
            "tokens",
            edit(&|d| d["messages"][0]["tokens"] = json!(-1)),
            "messages[0].tokens",
        ),
        (
            "metadata",
            edit(&|d| d["messages"][1]["metadata"] = json!([1])),
            "messages[1].metadata",
        ),
        (
            "leaf",
            edit(&|d| d["activeLeafId"] = json!(Uuid::now_v7())),
            "activeLeafId",
        ),
        (
            "too many",
            edit(&|d| d["messages"] = json!(many)),
            "messages",
        ),
    ];
    for (case, body, field) in cases {
        let r = call(
            &app,
            "carol",
            Method::POST,
            "/conversations/import",
            Some(body),
        )
        .await;
        r.assert_error(400, "validation_failed");
        let fields: Vec<&str> = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [field], "{case}: {}", r.body);
    }
    // Nothing was stored by any of them.
    assert_eq!(total(&app, "carol").await, 0);

    // The valid document, an explicit active leaf with children (the newest under it), and
    // an empty tree are all imported.
    let r = call(
        &app,
        "carol",
        Method::POST,
        "/conversations/import",
        Some(document()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["title"], "Imported");
    let contents: Vec<&str> = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["hi", "hey"]);
    assert_eq!(r.body["messages"][0]["childCount"], 2);
    assert!(
        r.body["messages"][1]["tokens"].as_i64().unwrap() > 0,
        "counted: {}",
        r.body
    );
    let mut at_root = document();
    at_root["activeLeafId"] = at_root["messages"][0]["id"].clone();
    at_root["messages"][1]["createdAt"] = json!("2020-01-02T03:04:05.123456Z");
    let r = call(
        &app,
        "carol",
        Method::POST,
        "/conversations/import",
        Some(at_root),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["messages"][1]["content"], "hey");
    let copy = tree(&app, "carol", r.body["id"].as_str().unwrap()).await;
    assert_eq!(copy["messages"][1]["createdAt"], "2020-01-02T03:04:05.123Z");
    let empty =
        json!({"format": "palaver.conversation", "version": 1, "conversation": {}, "messages": []});
    let r = call(
        &app,
        "carol",
        Method::POST,
        "/conversations/import",
        Some(empty),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.body["title"].as_str(), r.body["messageCount"].as_i64()),
        (Some("New Conversation"), Some(0))
    );
    assert_eq!(
        (&r.body["activeLeafId"], &r.body["messages"]),
        (&Value::Null, &json!([]))
    );
    assert_eq!(total(&app, "carol").await, 3);

    let small = TestApp::spawn_with(backend, &[("BODY_LIMIT_BYTES", "2048")]).await;
    let big = edit(&|d| d["messages"][0]["content"] = json!("y".repeat(4096)));
    call(
        &small,
        "carol",
        Method::POST,
        "/conversations/import",
        Some(big),
    )
    .await
    .assert_error(413, "payload_too_large");
    assert_eq!(total(&small, "carol").await, 0);
}
