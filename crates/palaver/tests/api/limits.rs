//! Rate limits, token quotas and failed-auth throttling: exact on one instance, shared on Redis.

use futures::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::support::app::TestApp;
use crate::support::db::{Backend, backends, redis_url};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn rate_limit_is_exact_and_headers_are_present() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("RATE_LIMIT_PER_MINUTE", "5"), ("MOCK_WORD_DELAY_MS", "0")],
    )
    .await;
    let user = unique("rl");
    let mut statuses = Vec::new();
    for i in 0..7 {
        let r = app.chat(&user, json!({"message": format!("hi {i}")})).await;
        statuses.push(r.status.as_u16());
        assert_eq!(r.headers["ratelimit-limit"], "5");
        assert!(r.headers.contains_key("ratelimit-remaining"));
        assert!(r.headers.contains_key("ratelimit-reset"));
        if i < 5 {
            assert_eq!(
                r.headers["ratelimit-remaining"],
                (4 - i).to_string().as_str()
            );
        } else {
            r.assert_error(429, "rate_limited");
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=12).contains(&retry), "retry-after {retry}");
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429]);
    // Embeddings share the budget; conversations and usage are not metered.
    let token = app.token(&user);
    let e = app
        .request(
            Method::POST,
            "/api/v1/ai/embeddings",
            Some(&token),
            Some(json!({"text": "x"})),
        )
        .await;
    e.assert_error(429, "rate_limited");
    assert_eq!(app.list_conversations(&user, "").await.status, 200);
    // Another user has a budget of their own.
    assert_eq!(
        app.chat(&unique("other"), json!({"message": "hi"}))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn rate_limit_is_shared_by_two_instances_on_redis() {
    let Some(redis) = redis_url() else { return };
    for backend in backends() {
        let env = [
            ("RATE_LIMIT_PER_MINUTE", "6"),
            ("MOCK_WORD_DELAY_MS", "0"),
            ("REDIS_URL", redis.as_str()),
        ];
        let a = TestApp::spawn_with(backend, &env).await;
        let db_url = a.db.url();
        let mut env_b = env.to_vec();
        env_b.push(("DATABASE_URL", db_url.as_str()));
        let b = TestApp::spawn_with(backend, &env_b).await;
        let user = unique("shared");
        let mut refused = 0;
        for i in 0..8 {
            let app = if i % 2 == 0 { &a } else { &b };
            let r = app.chat(&user, json!({"message": format!("m{i}")})).await;
            match r.status.as_u16() {
                200 => {}
                429 => refused += 1,
                other => panic!("unexpected {other}: {}", r.body),
            }
        }
        assert_eq!(
            refused, 2,
            "N+2 requests across two instances: exactly 2 refused ({backend:?})"
        );
        // Both instances see the same conversations.
        assert_eq!(
            a.list_conversations(&user, "").await.body["meta"]["total"],
            6
        );
        assert_eq!(
            b.list_conversations(&user, "").await.body["meta"]["total"],
            6
        );
    }
}

#[tokio::test]
async fn quotas_refuse_once_spent_also_under_a_parallel_burst() {
    // Reservations in process on each backend, and in Redis when it is configured.
    let mut setups: Vec<(Backend, Option<String>)> =
        backends().into_iter().map(|b| (b, None)).collect();
    if let Some(redis) = redis_url() {
        setups.push((Backend::Sqlite, Some(redis)));
    }
    for (backend, redis) in setups {
        let mut env = vec![
            ("QUOTA_TOKENS_PER_DAY", "400"),
            ("RATE_LIMIT_PER_MINUTE", "1000"),
            ("MOCK_WORD_DELAY_MS", "0"),
        ];
        if let Some(redis) = &redis {
            env.push(("REDIS_URL", redis));
        }
        let app = TestApp::spawn_with(backend, &env).await;
        let user = unique("quota");
        let usage = app
            .request(
                Method::GET,
                "/api/v1/ai/usage",
                Some(&app.token(&user)),
                None,
            )
            .await;
        assert_eq!(usage.body["limits"]["tokenQuota"], 400);
        assert_eq!(usage.body["limits"]["tokensRemaining"], 400);

        // A burst of 20 parallel requests, each allowed up to 20 completion tokens.
        let requests = (0..20).map(|i| {
            app.chat(
                &user,
                json!({"message": format!("burst {i}"), "maxTokens": 20}),
            )
        });
        let results = join_all(requests).await;
        let ok: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
        let refused = results.iter().filter(|r| r.status == 429).count();
        assert!(
            !ok.is_empty() && refused > 0,
            "{} ok, {refused} refused",
            ok.len()
        );
        for r in results.iter().filter(|r| r.status == 429) {
            r.assert_error(429, "quota_exceeded");
        }
        let spent: u64 = ok
            .iter()
            .map(|r| r.body["usage"]["totalTokens"].as_u64().unwrap())
            .sum();
        // One request can cost at most its prompt plus maxTokens.
        let biggest_prompt = ok
            .iter()
            .map(|r| r.body["usage"]["promptTokens"].as_u64().unwrap())
            .max()
            .unwrap();
        assert!(
            spent <= 400 + biggest_prompt + 20,
            "overshoot beyond one request: spent {spent}"
        );

        // Spent: refused before anything is stored or sent upstream.
        let before =
            app.list_conversations(&user, "?limit=100").await.body["meta"]["total"].clone();
        while app
            .chat(&user, json!({"message": "more", "maxTokens": 20}))
            .await
            .status
            == 200
        {}
        let refused = app.chat(&user, json!({"message": "more"})).await;
        refused.assert_error(429, "quota_exceeded");
        assert!(refused.headers.contains_key("retry-after"));
        let after = app.list_conversations(&user, "?limit=100").await.body["meta"]["total"].clone();
        assert!(after.as_u64() >= before.as_u64());
        let usage = app
            .request(
                Method::GET,
                "/api/v1/ai/usage",
                Some(&app.token(&user)),
                None,
            )
            .await;
        assert_eq!(usage.body["limits"]["tokensRemaining"], 0);
    }
}

#[tokio::test]
async fn failed_authentications_are_throttled_per_ip() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("AUTH_FAILURES_PER_MINUTE", "3")]).await;
    for _ in 0..3 {
        app.request(
            Method::GET,
            "/api/v1/ai/conversations",
            Some("forged.token.here"),
            None,
        )
        .await
        .assert_error(401, "unauthorized");
    }
    let throttled = app
        .request(
            Method::GET,
            "/api/v1/ai/conversations",
            Some("forged.token.here"),
            None,
        )
        .await;
    throttled.assert_error(429, "rate_limited");
    assert!(throttled.headers.contains_key("retry-after"));
    // Even a valid token from this IP waits: guessing is not rewarded.
    let valid = app.list_conversations("honest", "").await;
    valid.assert_error(429, "rate_limited");
    // Public routes are not affected.
    assert_eq!(
        app.request(Method::GET, "/health", None, None).await.status,
        200
    );
}
