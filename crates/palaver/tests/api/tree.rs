//! Conversations as trees, through the real HTTP stack on every backend: branches chosen on
//! the server, the context of a branch, regenerate, edit with revisions and rerun, delete.

use mock_llm::{MockConfig, MockLlm};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{TestApp, TestResponse};
use crate::support::db::backends;

/// An app answering from mock-llm (OpenAI's wire format), whose requests the tests read.
async fn spawn(backend: crate::support::db::Backend) -> (TestApp, MockLlm) {
    let mock = MockLlm::start(MockConfig::default()).await.unwrap();
    let base = format!("{}/v1", mock.base_url());
    let app = TestApp::spawn_with(
        backend,
        &[
            ("OPENAI_API_KEY", "sk-test-tree"),
            ("OPENAI_BASE_URL", &base),
        ],
    )
    .await;
    (app, mock)
}

async fn call(
    app: &TestApp,
    user: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> TestResponse {
    app.request(
        method,
        &format!("/api/v1/ai{path}"),
        Some(&app.token(user)),
        body,
    )
    .await
}

/// A chat that must succeed; returns `(user message id, reply id)`.
async fn exchange(app: &TestApp, user: &str, body: Value) -> (String, String, Value) {
    let r = app.chat(user, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = |k: &str| r.body[k].as_str().unwrap().to_owned();
    (id("userMessageId"), id("messageId"), r.body.clone())
}

/// The texts of the messages the upstream was last sent (the system prompt aside).
fn last_context(mock: &MockLlm) -> Vec<String> {
    let request = mock
        .requests()
        .into_iter()
        .rfind(|r| r.method == "POST")
        .unwrap();
    request.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

fn ids(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn a_branch_is_chosen_on_the_server_and_its_path_is_the_context() {
    for backend in backends() {
        let (app, mock) = spawn(backend).await;
        let (u1, a1, first) = exchange(&app, "bea", json!({"message": "one"})).await;
        let c = first["conversationId"].as_str().unwrap().to_owned();
        let (u2, a2, _) =
            exchange(&app, "bea", json!({"conversationId": c, "message": "two"})).await;
        let a1_text = first["content"].as_str().unwrap().to_owned();

        // A branch after the first reply: the context is that path, not the newest messages.
        let (u3, a3, _) = exchange(
            &app,
            "bea",
            json!({"conversationId": c, "parentMessageId": a1, "message": "branch"}),
        )
        .await;
        assert_eq!(
            last_context(&mock),
            vec!["one".to_owned(), a1_text, "branch".to_owned()],
            "{backend}"
        );

        let got = app.get_conversation("bea", &c).await;
        assert_eq!(got.status, 200);
        let path = &got.body["messages"];
        assert_eq!(
            ids(path),
            strs(&[&u1, &a1, &u3, &a3]),
            "{backend}: the new branch is shown"
        );
        assert_eq!(got.body["activeLeafId"], a3.as_str());
        assert_eq!(got.body["messageCount"], 6);
        assert_eq!(path[0]["parentId"], Value::Null);
        assert_eq!(path[2]["parentId"], a1.as_str());
        assert_eq!(
            path[1]["childCount"], 2,
            "{backend}: the path branches after a1"
        );
        assert_eq!(path[2]["siblingIds"], json!([u2, u3]), "{backend}");
        assert_eq!(path[3]["childCount"], 0);

        // Choosing the other branch by a message in it shows its newest leaf, on every device.
        let put = call(
            &app,
            "bea",
            Method::PUT,
            &format!("/conversations/{c}/active-leaf"),
            Some(json!({"messageId": u2})),
        )
        .await;
        assert_eq!(put.status, 200, "{}", put.body);
        assert_eq!(
            ids(&put.body["messages"]),
            strs(&[&u1, &a1, &u2, &a2]),
            "{backend}"
        );
        let again = app.get_conversation("bea", &c).await;
        assert_eq!(
            again.body["activeLeafId"],
            a2.as_str(),
            "{backend}: kept server-side"
        );
        // The next message continues the branch shown.
        exchange(
            &app,
            "bea",
            json!({"conversationId": c, "message": "three"}),
        )
        .await;
        let context = last_context(&mock);
        assert_eq!(context.len(), 5, "{backend}: {context:?}");
        assert_eq!(
            [&context[0], &context[2], &context[4]],
            ["one", "two", "three"]
        );
        assert!(
            !context.contains(&"branch".to_owned()),
            "{backend}: {context:?}"
        );

        // The whole tree, flat, each after its parent.
        let tree = call(
            &app,
            "bea",
            Method::GET,
            &format!("/conversations/{c}/tree"),
            None,
        )
        .await;
        assert_eq!(tree.status, 200);
        let nodes = tree.body["messages"].as_array().unwrap();
        assert_eq!(nodes.len(), 8, "{backend}");
        for (i, node) in nodes.iter().enumerate() {
            if let Some(parent) = node["parentId"].as_str() {
                assert!(
                    nodes[..i].iter().any(|n| n["id"] == parent),
                    "{backend}: parent first"
                );
            }
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_path_is_read_in_pages() {
    for backend in backends() {
        let (app, _mock) = spawn(backend).await;
        let (u1, a1, first) = exchange(&app, "pia", json!({"message": "one"})).await;
        let c = first["conversationId"].as_str().unwrap().to_owned();
        let (u2, a2, _) =
            exchange(&app, "pia", json!({"conversationId": c, "message": "two"})).await;
        let page = async |q: String| {
            let path = format!("/conversations/{c}/messages{q}");
            call(&app, "pia", Method::GET, &path, None).await
        };

        let newest = page("?limit=3".into()).await;
        assert_eq!(newest.status, 200, "{}", newest.body);
        assert_eq!(
            ids(&newest.body["messages"]),
            strs(&[&a1, &u2, &a2]),
            "{backend}"
        );
        assert_eq!(newest.body["hasMore"], true);
        let older = page(format!("?limit=3&before={a1}")).await;
        assert_eq!(ids(&older.body["messages"]), strs(&[&u1]), "{backend}");
        assert_eq!(older.body["hasMore"], false);
        let to_leaf = page(format!("?leaf={a1}")).await;
        assert_eq!(
            ids(&to_leaf.body["messages"]),
            strs(&[&u1, &a1]),
            "{backend}"
        );
        assert_eq!(to_leaf.body["messages"][1]["childCount"], 1);

        let other = exchange(&app, "pia", json!({"message": "elsewhere"})).await;
        page(format!("?leaf={}", other.1))
            .await
            .assert_error(404, "not_found");
        page("?limit=0".into())
            .await
            .assert_error(400, "validation_failed");
        page("?leaf=nope".into())
            .await
            .assert_error(400, "validation_failed");
        app.stop().await;
    }
}

#[tokio::test]
async fn regenerate_writes_a_sibling_reply() {
    for backend in backends() {
        let (app, mock) = spawn(backend).await;
        let (u1, a1, first) = exchange(&app, "rex", json!({"message": "one"})).await;
        let c = first["conversationId"].as_str().unwrap().to_owned();
        let (u2, a2, _) =
            exchange(&app, "rex", json!({"conversationId": c, "message": "two"})).await;

        let again = call(
            &app,
            "rex",
            Method::POST,
            &format!("/messages/{a2}/regenerate"),
            Some(json!({"temperature": 0.2})),
        )
        .await;
        assert_eq!(again.status, 200, "{}", again.body);
        assert_eq!(
            again.body["userMessageId"],
            u2.as_str(),
            "{backend}: answers the same message"
        );
        let r = again.body["messageId"].as_str().unwrap().to_owned();
        let context = last_context(&mock);
        assert_eq!(context.len(), 3, "{backend}: {context:?}");
        assert_eq!(context[2], "two");
        let sent = mock
            .requests()
            .into_iter()
            .rfind(|r| r.method == "POST")
            .unwrap();
        assert_eq!(sent.body["temperature"], 0.2, "{backend}");

        let got = app.get_conversation("rex", &c).await;
        assert_eq!(
            ids(&got.body["messages"]),
            strs(&[&u1, &a1, &u2, &r]),
            "{backend}"
        );
        assert_eq!(got.body["messages"][3]["siblingIds"], json!([a2, r]));
        assert_eq!(
            got.body["messageCount"], 5,
            "{backend}: no new user message"
        );

        // Streamed, with the events of a chat; a user message gets a new reply too.
        let streamed = call(
            &app,
            "rex",
            Method::POST,
            &format!("/messages/{u1}/regenerate"),
            Some(json!({"stream": true})),
        )
        .await;
        assert_eq!(streamed.status, 200);
        let events = crate::chat::parse_sse(streamed.body.as_str().unwrap());
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names.first(),
            Some(&"chat:user-message"),
            "{backend}: {names:?}"
        );
        assert_eq!(events[0].1["messageId"], u1.as_str());
        let end = &events.last().unwrap().1;
        assert_eq!(events.last().unwrap().0, "chat:end", "{backend}");
        assert_eq!(end["parentId"], u1.as_str());
        let tree = call(
            &app,
            "rex",
            Method::GET,
            &format!("/conversations/{c}/tree"),
            None,
        )
        .await;
        let children_of_u1 = tree.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["parentId"] == u1.as_str())
            .count();
        assert_eq!(children_of_u1, 2, "{backend}");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_edit_keeps_its_revisions_and_a_rerun_branches() {
    for backend in backends() {
        let (app, mock) = spawn(backend).await;
        let (u1, a1, first) = exchange(&app, "eve", json!({"message": "one"})).await;
        let c = first["conversationId"].as_str().unwrap().to_owned();
        let (u2, _a2, _) =
            exchange(&app, "eve", json!({"conversationId": c, "message": "two"})).await;

        let edited = call(
            &app,
            "eve",
            Method::PATCH,
            &format!("/messages/{u1}"),
            Some(json!({"content": "uno"})),
        )
        .await;
        assert_eq!(edited.status, 200, "{}", edited.body);
        assert_eq!(edited.body["content"], "uno");
        assert!(edited.body["editedAt"].is_string(), "{backend}");
        call(
            &app,
            "eve",
            Method::PATCH,
            &format!("/messages/{u1}"),
            Some(json!({"content": "eins", "rerun": false})),
        )
        .await;
        let revisions = call(
            &app,
            "eve",
            Method::GET,
            &format!("/messages/{u1}/revisions"),
            None,
        )
        .await;
        assert_eq!(revisions.status, 200);
        assert_eq!(revisions.body["message"]["content"], "eins");
        let old: Vec<&str> = revisions.body["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["content"].as_str().unwrap())
            .collect();
        assert_eq!(old, ["one", "uno"], "{backend}");
        // A reply is edited in place too, but never rerun.
        let reply = call(
            &app,
            "eve",
            Method::PATCH,
            &format!("/messages/{a1}"),
            Some(json!({"content": "fixed"})),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        call(
            &app,
            "eve",
            Method::PATCH,
            &format!("/messages/{a1}"),
            Some(json!({"content": "x", "rerun": true})),
        )
        .await
        .assert_error(400, "validation_failed");

        // Rerun: a new user message beside the edited one, and a reply; the path shows them.
        let rerun = call(
            &app,
            "eve",
            Method::PATCH,
            &format!("/messages/{u2}"),
            Some(json!({"content": "dos", "rerun": true})),
        )
        .await;
        assert_eq!(rerun.status, 200, "{}", rerun.body);
        let (n2, r2) = (
            rerun.body["userMessageId"].as_str().unwrap(),
            rerun.body["messageId"].as_str().unwrap(),
        );
        assert_eq!(
            last_context(&mock),
            strs(&["eins", "fixed", "dos"]),
            "{backend}"
        );
        let got = app.get_conversation("eve", &c).await;
        assert_eq!(
            ids(&got.body["messages"]),
            strs(&[&u1, &a1, n2, r2]),
            "{backend}"
        );
        assert_eq!(got.body["messages"][2]["siblingIds"], json!([u2, n2]));
        // Rerunning the first message makes a second root.
        let root = call(
            &app,
            "eve",
            Method::PATCH,
            &format!("/messages/{u1}"),
            Some(json!({"content": "first again", "rerun": true})),
        )
        .await;
        assert_eq!(root.status, 200, "{}", root.body);
        assert_eq!(last_context(&mock), strs(&["first again"]), "{backend}");
        let got = app.get_conversation("eve", &c).await;
        assert_eq!(got.body["messages"].as_array().unwrap().len(), 2);
        assert_eq!(got.body["messages"][0]["parentId"], Value::Null);
        assert_eq!(
            got.body["messages"][0]["siblingIds"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_delete_removes_the_subtree_and_mends_the_active_leaf() {
    for backend in backends() {
        let (app, _mock) = spawn(backend).await;
        let (u1, a1, first) = exchange(&app, "dan", json!({"message": "one"})).await;
        let c = first["conversationId"].as_str().unwrap().to_owned();
        let (_u2, a2, _) =
            exchange(&app, "dan", json!({"conversationId": c, "message": "two"})).await;
        let (u3, _a3, _) = exchange(
            &app,
            "dan",
            json!({"conversationId": c, "parentMessageId": a1, "message": "branch"}),
        )
        .await;

        let gone = call(
            &app,
            "dan",
            Method::DELETE,
            &format!("/messages/{u3}"),
            None,
        )
        .await;
        assert_eq!(gone.status, 200, "{}", gone.body);
        assert_eq!(
            gone.body,
            json!({"conversationId": c, "deletedCount": 2, "activeLeafId": a2}),
            "{backend}"
        );
        let got = app.get_conversation("dan", &c).await;
        assert_eq!(got.body["messageCount"], 4, "{backend}");
        assert_eq!(got.body["activeLeafId"], a2.as_str());
        assert_eq!(got.body["messages"][1]["childCount"], 1);

        // Deleting a message off the active path leaves the leaf where it is.
        let (_, side, _) = exchange(
            &app,
            "dan",
            json!({"conversationId": c, "parentMessageId": u1, "message": "aside"}),
        )
        .await;
        call(
            &app,
            "dan",
            Method::PUT,
            &format!("/conversations/{c}/active-leaf"),
            Some(json!({"messageId": a2})),
        )
        .await;
        let gone = call(
            &app,
            "dan",
            Method::DELETE,
            &format!("/messages/{side}"),
            None,
        )
        .await;
        assert_eq!(gone.body["activeLeafId"], a2.as_str(), "{backend}");

        let gone = call(
            &app,
            "dan",
            Method::DELETE,
            &format!("/messages/{u1}"),
            None,
        )
        .await;
        assert_eq!(
            gone.body["activeLeafId"],
            Value::Null,
            "{backend}: {}",
            gone.body
        );
        let got = app.get_conversation("dan", &c).await;
        assert_eq!(got.body["messageCount"], 0, "{backend}");
        assert_eq!(got.body["messages"], json!([]));
        call(
            &app,
            "dan",
            Method::DELETE,
            &format!("/messages/{u1}"),
            None,
        )
        .await
        .assert_error(404, "not_found");
        app.stop().await;
    }
}

#[tokio::test]
async fn messages_of_another_conversation_or_user_are_not_found_and_nothing_is_stored() {
    for backend in backends() {
        let (app, mock) = spawn(backend).await;
        let (_, a1, first) = exchange(&app, "ola", json!({"message": "mine"})).await;
        let c = first["conversationId"].as_str().unwrap().to_owned();
        let (_, other_a, other) = exchange(&app, "ola", json!({"message": "another one"})).await;
        let (_, foreign, _) = exchange(&app, "mallory", json!({"message": "theirs"})).await;
        let calls = mock.request_count();

        for body in [
            json!({"conversationId": c, "parentMessageId": other_a, "message": "x"}),
            json!({"conversationId": c, "parentMessageId": foreign, "message": "x"}),
            json!({"parentMessageId": foreign, "message": "x"}),
            json!({"conversationId": c, "parentMessageId": uuid::Uuid::now_v7(), "message": "x"}),
        ] {
            app.chat("ola", body).await.assert_error(404, "not_found");
        }
        let foreign_paths = [
            (
                Method::POST,
                format!("/messages/{foreign}/regenerate"),
                Some(json!({})),
            ),
            (
                Method::PATCH,
                format!("/messages/{foreign}"),
                Some(json!({"content": "x"})),
            ),
            (Method::DELETE, format!("/messages/{foreign}"), None),
            (Method::GET, format!("/messages/{foreign}/revisions"), None),
            (
                Method::PUT,
                format!("/conversations/{c}/active-leaf"),
                Some(json!({"messageId": other_a})),
            ),
        ];
        for (method, path, body) in foreign_paths {
            call(&app, "ola", method, &path, body)
                .await
                .assert_error(404, "not_found");
        }
        call(
            &app,
            "ola",
            Method::PUT,
            &format!("/conversations/{c}/active-leaf"),
            Some(json!({"messageId": a1, "extra": 1})),
        )
        .await
        .assert_error(400, "validation_failed");
        call(
            &app,
            "ola",
            Method::PATCH,
            &format!("/messages/{a1}"),
            Some(json!({"content": "  "})),
        )
        .await
        .assert_error(400, "validation_failed");
        assert_eq!(mock.request_count(), calls, "{backend}: no provider call");
        for (id, count) in [
            (&c, 2),
            (&other["conversationId"].as_str().unwrap().to_owned(), 2),
        ] {
            let got = app.get_conversation("ola", id).await;
            assert_eq!(got.body["messageCount"], count, "{backend}: nothing stored");
        }
        app.stop().await;
    }
}
