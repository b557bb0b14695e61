//! Test databases: a fresh SQLite file, or a fresh schema in the PostgreSQL named by
//! `PALAVER_TEST_DATABASE_URL` (set by `scripts/test` when a server answers).

use std::fmt;

use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// The PostgreSQL server for tests, if one is configured. With `PALAVER_REQUIRE_POSTGRES=1`
/// (CI) a missing one is a failure, not a skip.
pub fn postgres_url() -> Option<String> {
    match std::env::var("PALAVER_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("PALAVER_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "PALAVER_REQUIRE_POSTGRES=1 but PALAVER_TEST_DATABASE_URL is not set"
            );
            super::skip("no PostgreSQL (PALAVER_TEST_DATABASE_URL unset)");
            None
        }
    }
}

/// The Redis server for tests, if one is configured (`PALAVER_REQUIRE_REDIS=1` makes it required).
pub fn redis_url() -> Option<String> {
    match std::env::var("PALAVER_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("PALAVER_REQUIRE_REDIS").as_deref() != Ok("1"),
                "PALAVER_REQUIRE_REDIS=1 but PALAVER_TEST_REDIS_URL is not set"
            );
            super::skip("no Redis (PALAVER_TEST_REDIS_URL unset)");
            None
        }
    }
}

/// Every backend these tests can reach: SQLite always, PostgreSQL when configured.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    if postgres_url().is_some() {
        all.push(Backend::Postgres);
    }
    all
}

pub struct TestDb {
    pub backend: Backend,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("palaver.db").display());
                TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin =
                    postgres_url().expect("PostgreSQL tests need PALAVER_TEST_DATABASE_URL");
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL reachable");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let sep = if admin.contains('?') { '&' } else { '?' };
                let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
                TestDb {
                    backend,
                    url,
                    _dir: None,
                }
            }
        }
    }

    /// The same database, for a second instance (a shared SQLite file or PostgreSQL schema).
    /// The first `TestDb` keeps the files alive.
    pub fn share(&self) -> TestDb {
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            _dir: None,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }
}
