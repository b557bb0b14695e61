//! Integration tests: the real server on a random port, over SQLite and (when
//! `PALAVER_TEST_DATABASE_URL` is set) PostgreSQL, with mock-llm as the upstream.

// Tests may panic: that is how they fail.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods,
    reason = "tests fail by panicking, spawn their servers freely and make random names"
)]

mod auth;
mod cache;
mod chat;
mod conversations;
mod job_store_conformance;
mod jobs;
mod key_store;
mod limits;
mod maintenance;
mod openai_sdk;
mod platform;
mod run_store;
mod runs;
mod runs_keys;
mod runs_shared;
mod search;
mod socketio;
mod store_conformance;
mod support;
mod template_store;
mod templates;
mod titles;
mod transfer;
mod tree;
mod tree_live;
mod v1;
