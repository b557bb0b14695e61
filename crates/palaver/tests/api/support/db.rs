//! Test databases: a fresh SQLite file, or a fresh schema in the PostgreSQL named by
//! `PALAVER_TEST_DATABASE_URL` (set by `scripts/test` when a server answers).

use std::fmt;
use std::sync::Arc;

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
    /// What this database is made of, shared with its [`TestDb::share`]s: removed when the
    /// last of them is dropped.
    _owned: Arc<Owned>,
}

/// A test's SQLite directory or PostgreSQL schema.
struct Owned {
    _dir: Option<tempfile::TempDir>,
    /// `t_<uuid>`, which is also the `application_name` of every connection made with the
    /// TestDb's URL.
    schema: Option<String>,
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
                    _owned: Arc::new(Owned {
                        _dir: Some(dir),
                        schema: None,
                    }),
                }
            }
            Backend::Postgres => {
                let admin =
                    postgres_url().expect("PostgreSQL tests need PALAVER_TEST_DATABASE_URL");
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL reachable");
                public_extensions(&mut conn).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let sep = if admin.contains('?') { '&' } else { '?' };
                let url = format!(
                    "{admin}{sep}options=-c%20search_path%3D{schema},public&application_name={schema}"
                );
                TestDb {
                    backend,
                    url,
                    _owned: Arc::new(Owned {
                        _dir: None,
                        schema: Some(schema),
                    }),
                }
            }
        }
    }

    /// The same database, for a second instance (a shared SQLite file or PostgreSQL schema).
    /// The database stays until every copy is dropped.
    pub fn share(&self) -> TestDb {
        TestDb {
            backend: self.backend,
            url: self.url.clone(),
            _owned: self._owned.clone(),
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The PostgreSQL schema of this database (none on SQLite).
    pub fn schema(&self) -> Option<&str> {
        self._owned.schema.as_deref()
    }
}

/// The extensions of the search migration (pg_trgm, btree_gin), created in `public` before
/// any test migrates: created by the first test's migration they would land in its schema and
/// leave with it, taking every other test's indexes along. Tests create them concurrently,
/// so one may lose the race; what matters is that they exist afterwards.
async fn public_extensions(conn: &mut sqlx::PgConnection) {
    for extension in ["pg_trgm", "btree_gin"] {
        let create = format!("CREATE EXTENSION IF NOT EXISTS {extension} WITH SCHEMA public");
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut *conn)
            .await
        {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)")
                    .bind(extension)
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            assert!(exists, "creating {extension}: {e}");
        }
    }
}

impl Drop for Owned {
    /// Drops the PostgreSQL schema. Drop cannot wait on the test's runtime, so this runs on a
    /// thread with a runtime of its own, and waits for it.
    fn drop(&mut self) {
        let (Some(schema), Some(admin)) = (self.schema.take(), postgres_url()) else {
            return;
        };
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(sqlx::Error::from)?;
            runtime.block_on(async {
                // Under a full test run the server may refuse a connection for a moment (too
                // many clients), or a pool reconnect between the terminations and the DROP.
                let mut tries = 0;
                loop {
                    tries += 1;
                    match drop_schema(&admin, &schema).await {
                        Err(e) if tries < 10 => {
                            eprintln!("test database: dropping {schema} (try {tries}): {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        }
                        done => return done,
                    }
                }
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            // Not a panic: this may run while a failing test unwinds.
            Ok(Err(e)) => eprintln!("test database: could not drop its schema: {e}"),
            Err(_) => eprintln!("test database: dropping its schema panicked"),
        }
    }
}

/// Closes the connections still open on `schema` (the pools of the servers and stores of the
/// test, which may be inside a transaction, holding locks the DROP would wait on), then drops
/// it with everything in it.
async fn drop_schema(admin: &str, schema: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(schema)
    .execute(&mut conn)
    .await?;
    sqlx::query("SET lock_timeout = '3s'")
        .execute(&mut conn)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await
}

/// Whether `schema` exists on the test server.
async fn schema_exists(schema: &str) -> bool {
    let admin = postgres_url().unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let found: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    found
}

#[tokio::test]
async fn a_test_schema_is_dropped_with_its_last_test_db_even_under_open_transactions() {
    if postgres_url().is_none() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let schema = db.schema().unwrap().to_owned();
    let shared = db.share();
    // A pool of the test, still open, inside a transaction that holds a lock in the schema.
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    sqlx::query("CREATE TABLE t (k INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    drop(db);
    assert!(schema_exists(&schema).await, "a share keeps it");
    let started = std::time::Instant::now();
    drop(shared);
    assert!(!schema_exists(&schema).await, "{schema} is gone");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the DROP did not wait for the open transaction: {:?}",
        started.elapsed()
    );
    // The pool's connection was closed under it.
    assert!(tx.commit().await.is_err());
}
