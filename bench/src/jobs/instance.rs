//! 3. A `palaver serve` on one backend, and what its `jobs` table says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::noop::delete_keys;
use crate::procs::{self, Child, free_port, spawn_palaver_with};

pub(super) enum Backend {
    PostgresRedis {
        admin: String,
    },
    /// PostgreSQL alone: its `jobs` table is the queue.
    Postgres {
        admin: String,
    },
    Sqlite,
}

enum Db {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

pub(super) struct Instance {
    pub(super) name: String,
    pub(super) url: String,
    db: Db,
    redis_queue: Option<(String, String)>,
    data_dir: PathBuf,
    _palaver: Child,
}

impl Instance {
    pub(super) async fn start(
        bin: &Path,
        openai: &str,
        backend: &Backend,
        redis: &str,
        worker_concurrency: usize,
        k: usize,
    ) -> anyhow::Result<Instance> {
        let port = free_port()?;
        let pid = std::process::id();
        let data_dir = std::env::temp_dir().join(format!("palaver-bench-jobs-{pid}-{k}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)?;
        let mut env = vec![("WORKER_CONCURRENCY", worker_concurrency.to_string())];
        let (name, database_url, redis_queue) = match backend {
            Backend::PostgresRedis { admin } => {
                let queue = format!("palaver-bench-e2e-{pid}-{k}");
                delete_keys(redis, &queue).await?;
                env.push(("REDIS_URL", redis.to_owned()));
                env.push(("JOB_QUEUE", queue.clone()));
                let url = procs::fresh_pg_database(admin, "palaver_bench_jobs").await?;
                (
                    format!("PostgreSQL + Redis, WORKER_CONCURRENCY={worker_concurrency}"),
                    url,
                    Some((redis.to_owned(), queue)),
                )
            }
            Backend::Postgres { admin } => (
                format!("PostgreSQL (table queue), WORKER_CONCURRENCY={worker_concurrency}"),
                procs::fresh_pg_database(admin, "palaver_bench_jobs").await?,
                None,
            ),
            Backend::Sqlite => (
                format!("SQLite (table queue), WORKER_CONCURRENCY={worker_concurrency}"),
                format!("sqlite://{}/bench.db", data_dir.display()),
                None,
            ),
        };
        let palaver = spawn_palaver_with(
            bin,
            port,
            &database_url,
            openai,
            &data_dir,
            crate::SECRET,
            &env,
        )
        .await?;
        let db = match backend {
            Backend::PostgresRedis { .. } | Backend::Postgres { .. } => Db::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&database_url)
                    .await?,
            ),
            Backend::Sqlite => Db::Sqlite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(
                        sqlx::sqlite::SqliteConnectOptions::new()
                            .filename(data_dir.join("bench.db"))
                            .read_only(true),
                    )
                    .await?,
            ),
        };
        Ok(Instance {
            name,
            url: format!("http://127.0.0.1:{port}/api/v1/ai/jobs"),
            db,
            redis_queue,
            data_dir,
            _palaver: palaver,
        })
    }

    pub(super) async fn stop(self) {
        match &self.db {
            Db::Pg(p) => p.close().await,
            Db::Sqlite(p) => p.close().await,
        }
        drop(self._palaver);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some((redis, queue)) = &self.redis_queue {
            let _ = delete_keys(redis, queue).await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// (completed, failed) among the jobs of users whose id starts with `users`.
    pub(super) async fn finished(&self, users: &str) -> anyhow::Result<(i64, i64)> {
        let pattern = format!("{users}%");
        let sql_pg =
            "SELECT COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0)::BIGINT,
                 COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0)::BIGINT
                 FROM jobs WHERE user_id LIKE $1";
        let sql_lite = "SELECT COALESCE(SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0)
                 FROM jobs WHERE user_id LIKE ?1";
        Ok(match &self.db {
            Db::Pg(p) => sqlx::query_as(sql_pg).bind(pattern).fetch_one(p).await?,
            Db::Sqlite(p) => sqlx::query_as(sql_lite).bind(pattern).fetch_one(p).await?,
        })
    }

    /// (created_at, updated_at) of each finished job of users starting with `users`.
    pub(super) async fn times(
        &self,
        users: &str,
    ) -> anyhow::Result<Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)>> {
        let pattern = format!("{users}%");
        Ok(match &self.db {
            Db::Pg(p) => sqlx::query_as(
                "SELECT id, created_at, updated_at FROM jobs WHERE user_id LIKE $1 AND status = 'completed'",
            )
            .bind(pattern)
            .fetch_all(p)
            .await?,
            Db::Sqlite(p) => {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT id, created_at, updated_at FROM jobs WHERE user_id LIKE ?1 AND status = 'completed'",
                )
                .bind(pattern)
                .fetch_all(p)
                .await?;
                rows.into_iter()
                    .map(|(id, c, u)| {
                        Ok((
                            Uuid::parse_str(&id)?,
                            DateTime::parse_from_rfc3339(&c)?.with_timezone(&Utc),
                            DateTime::parse_from_rfc3339(&u)?.with_timezone(&Utc),
                        ))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            }
        })
    }
}
