//! JWT verification through the real HTTP stack: every forgery is a 401 in the API.md shape.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{SECRET, TestApp};
use crate::support::db::Backend;

const PATH: &str = "/api/v1/ai/conversations";
const RSA_PRIVATE: &str = include_str!("../fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../fixtures/ec_private.pem");
const EC_PUBLIC: &str = include_str!("../fixtures/ec_public.pem");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: Value, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn hs(claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
        None,
    )
}

fn valid_claims(sub: &str) -> Value {
    json!({"sub": sub, "iat": now(), "exp": now() + 600})
}

async fn status_with(app: &TestApp, token: &str) -> (u16, Value) {
    let r = app.request(Method::GET, PATH, Some(token), None).await;
    (r.status.as_u16(), r.body)
}

async fn assert_refused(app: &TestApp, token: &str, why: &str) {
    let r = app.request(Method::GET, PATH, Some(token), None).await;
    r.assert_error(401, "unauthorized");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains(why),
        "expected `{why}` in {}",
        r.body
    );
}

#[tokio::test]
async fn hs256_tokens_are_verified_and_forgeries_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;

    assert_eq!(status_with(&app, &hs(valid_claims("alice"))).await.0, 200);
    assert_eq!(status_with(&app, &app.token("alice")).await.0, 200);

    let missing = app.request(Method::GET, PATH, None, None).await;
    missing.assert_error(401, "unauthorized");
    assert_eq!(missing.body["path"], PATH);
    assert_eq!(missing.body["method"], "GET");

    assert_refused(
        &app,
        &hs(json!({"sub": "alice", "exp": now() - 3600})),
        "expired",
    )
    .await;
    assert_refused(
        &app,
        &hs(json!({"sub": "alice", "exp": now() + 3600, "nbf": now() + 600})),
        "not valid yet",
    )
    .await;
    assert_refused(&app, &hs(json!({"sub": "alice"})), "").await;

    let wrong_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret"),
        valid_claims("alice"),
        None,
    );
    assert_refused(&app, &wrong_secret, "signature").await;

    // alg: none, with and without a trailing signature segment.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(valid_claims("alice").to_string());
    assert_refused(&app, &format!("{header}.{payload}."), "").await;
    assert_refused(&app, &format!("{header}.{payload}"), "").await;

    // Tampered payload: a valid token whose `sub` was changed after signing.
    let token = hs(valid_claims("alice"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(valid_claims("mallory").to_string());
    assert_refused(
        &app,
        &format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
        "signature",
    )
    .await;

    // An RS256 token presented to an HS256 service.
    let rs = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        valid_claims("alice"),
        None,
    );
    assert_refused(&app, &rs, "algorithm").await;

    // HS512 with the right secret is still another algorithm.
    let hs512 = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        valid_claims("alice"),
        None,
    );
    assert_refused(&app, &hs512, "algorithm").await;

    assert_refused(&app, "not-a-jwt", "malformed").await;
    let bad_scheme = app
        .raw(
            app.client
                .get(format!("{}{}", app.base, PATH))
                .header("authorization", "Basic YTpi"),
        )
        .await;
    bad_scheme.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn rs256_public_key_and_algorithm_switching() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("JWT_SECRET", ""), ("JWT_PUBLIC_KEY", RSA_PUBLIC)],
    )
    .await;
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    assert_eq!(
        status_with(
            &app,
            &sign(Algorithm::RS256, &key, valid_claims("bob"), None)
        )
        .await
        .0,
        200
    );
    assert_refused(
        &app,
        &sign(
            Algorithm::RS256,
            &key,
            json!({"sub": "bob", "exp": now() - 3600}),
            None,
        ),
        "expired",
    )
    .await;

    // The classic switch: HS256 "signed" with the public key as the shared secret.
    let switched = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        valid_claims("bob"),
        None,
    );
    assert_refused(&app, &switched, "algorithm").await;
    // A token signed by another RSA key.
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    assert_refused(
        &app,
        &sign(Algorithm::ES256, &ec, valid_claims("bob"), None),
        "algorithm",
    )
    .await;
}

#[tokio::test]
async fn es256_public_key_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ec.pem");
    std::fs::write(&path, EC_PUBLIC).unwrap();
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("JWT_SECRET", ""),
            ("JWT_PUBLIC_KEY", path.to_str().unwrap()),
        ],
    )
    .await;
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    assert_eq!(
        status_with(
            &app,
            &sign(Algorithm::ES256, &key, valid_claims("carol"), None)
        )
        .await
        .0,
        200
    );
    let tampered = sign(Algorithm::ES256, &key, valid_claims("carol"), None).replace('.', ".x");
    assert_refused(&app, &tampered, "").await;
}

#[tokio::test]
async fn jwks_file_selects_the_key_by_kid() {
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks.json");
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("JWT_SECRET", ""), ("JWT_JWKS_URL", jwks)],
    )
    .await;
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    assert_eq!(
        status_with(
            &app,
            &sign(
                Algorithm::RS256,
                &key,
                valid_claims("dave"),
                Some("test-rsa-1")
            )
        )
        .await
        .0,
        200
    );
    // A set with one key also accepts a token without kid.
    assert_eq!(
        status_with(
            &app,
            &sign(Algorithm::RS256, &key, valid_claims("dave"), None)
        )
        .await
        .0,
        200
    );
    assert_refused(
        &app,
        &sign(
            Algorithm::RS256,
            &key,
            valid_claims("dave"),
            Some("unknown-kid"),
        ),
        "unknown",
    )
    .await;
    let switched = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"x"),
        valid_claims("dave"),
        Some("test-rsa-1"),
    );
    assert_refused(&app, &switched, "algorithm").await;
}

#[tokio::test]
async fn issuer_and_audience_when_configured() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("JWT_ISSUER", "https://auth.example"),
            ("JWT_AUDIENCE", "palaver"),
        ],
    )
    .await;
    let good = hs(
        json!({"sub": "erin", "exp": now() + 600, "iss": "https://auth.example", "aud": "palaver"}),
    );
    assert_eq!(status_with(&app, &good).await.0, 200);
    assert_refused(
        &app,
        &hs(json!({"sub": "erin", "exp": now() + 600, "iss": "https://evil", "aud": "palaver"})),
        "issuer",
    )
    .await;
    assert_refused(&app, &hs(json!({"sub": "erin", "exp": now() + 600, "iss": "https://auth.example", "aud": "other"})), "audience").await;
    assert_refused(&app, &hs(json!({"sub": "erin", "exp": now() + 600})), "").await;
    let minted = palaver::auth::mint_hs256(
        SECRET.as_bytes(),
        "erin",
        Duration::from_secs(60),
        Some("https://auth.example"),
        Some("palaver"),
    )
    .unwrap();
    assert_eq!(status_with(&app, &minted).await.0, 200);
}

#[tokio::test]
async fn identity_comes_from_the_token_alone() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let created = app
        .create_conversation("frank", json!({"title": "mine", "userId": "someone-else"}))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["userId"], "frank");
    let user = app
        .state
        .store
        .get_user("frank")
        .await
        .unwrap()
        .expect("user row created on first sight");
    assert_eq!(user.total_tokens_used, 0);
    assert!(
        app.state
            .store
            .get_user("someone-else")
            .await
            .unwrap()
            .is_none()
    );
}
