//! `palaver-bench usage`: `GET /api/v1/ai/usage` for one user with a million usage records
//! (issue #14 item 10), on SQLite and PostgreSQL. The records are seeded in SQL straight into
//! the database Palaver migrated (its triggers keep the rollup, as they do for a chat), spread
//! over `--days` days and three models, with the user's conversations beside them; then
//! Palaver is started again and the endpoint is loaded. For reference it also times, once per
//! backend, the scan the endpoint ran before the rollup.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;

use crate::load::{Report, Target, run_load};
use crate::procs::{self, spawn_palaver_offline, target_dir};

#[derive(clap::Args)]
pub struct UsageArgs {
    /// Usage records of the user.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// Days the records are spread over.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Conversations of the user (holding two messages per record between them).
    #[arg(long, default_value_t = 2_000)]
    pub conversations: u32,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Admin URL of a PostgreSQL server; a `palaver_bench_usage` database is recreated there.
    #[arg(long)]
    pub postgres: Option<String>,
}

const USER: &str = "bench-usage";

/// What the PostgreSQL triggers would have written for the seeded records (as the migration
/// that introduced the rollup builds it), and the user row the conversations need.
const PG_ROLLUP: [&str; 2] = [
    "INSERT INTO usage_daily (user_id, day, model, requests, prompt_tokens, completion_tokens, \
         cost_usd, last_at) \
     SELECT user_id, (created_at AT TIME ZONE 'UTC')::date, model, COUNT(*), SUM(prompt_tokens), \
         SUM(completion_tokens), SUM(cost_usd), MAX(created_at) \
     FROM usage_records WHERE user_id = $1 GROUP BY 1, 2, 3",
    "INSERT INTO users (id, total_tokens_used, created_at) \
     SELECT $1, SUM(prompt_tokens + completion_tokens), MIN(created_at) FROM usage_records \
     WHERE user_id = $1",
];

/// What `/ai/usage` scanned before the rollup (its two aggregates over `usage_records`).
const SCAN: [&str; 2] = [
    "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), COUNT(*), \
     MAX(created_at) FROM usage_records WHERE user_id = 'bench-usage'",
    "SELECT model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd) \
     FROM usage_records WHERE user_id = 'bench-usage' GROUP BY model",
];

pub async fn run(
    args: UsageArgs,
    secret: &str,
    mint: fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let bin = target_dir()?;
    let data_dir = std::env::temp_dir().join(format!("palaver-bench-usage-{}", std::process::id()));
    let mut backends = vec![(
        "sqlite",
        format!("sqlite://{}/usage.db", data_dir.display()),
    )];
    if let Some(admin) = &args.postgres {
        backends.push((
            "postgres",
            procs::fresh_pg_database(admin, "palaver_bench_usage").await?,
        ));
    }
    let mut rows = Vec::new();
    for (name, url) in backends {
        // A first start migrates the database; the seeding goes in while no Palaver runs.
        drop(spawn_palaver_offline(&bin, &url, &data_dir, secret).await?);
        let started = Instant::now();
        seed(name, &url, &args).await?;
        eprintln!(
            "{name}: seeded {} usage records in {:.1} s",
            args.records,
            started.elapsed().as_secs_f64()
        );
        let scan_ms = time_scan(name, &url).await?;
        let (port, _palaver) = spawn_palaver_offline(&bin, &url, &data_dir, secret).await?;
        let target = Target {
            name: format!("GET /ai/usage ({name}, {} records)", args.records),
            url: format!("http://127.0.0.1:{port}/api/v1/ai/usage"),
            body: Value::Null,
            tokens: vec![format!("Bearer {}", mint(USER)?)],
        };
        check(&target, args.records).await?;
        for concurrency in [1, 16] {
            rows.push((
                run_load(&target, concurrency, Duration::from_secs(args.seconds)).await?,
                scan_ms,
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    print(&rows);
    Ok(())
}

async fn seed(backend: &str, url: &str, args: &UsageArgs) -> anyhow::Result<()> {
    let per_conversation = 2 * args.records / u64::from(args.conversations.max(1));
    if backend == "sqlite" {
        let mut db = sqlx::SqliteConnection::connect(url).await?;
        let mut tx = db.begin().await?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1) \
             INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, \
                 completion_tokens, cost_usd, created_at) \
             SELECT printf('00000000-0000-7000-8000-%012d', i), ?2, NULL, 'chat', \
                 CASE i % 3 WHEN 0 THEN 'gpt-4o' WHEN 1 THEN 'gpt-4o-mini' ELSE 'claude-3-5-haiku' END, \
                 50 + i % 100, 20 + i % 50, 0.0001, \
                 strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now', '-' || (i % ?3) || ' days', \
                     '-' || (i % 86400) || ' seconds') \
             FROM n",
        )
        .bind(args.records as i64)
        .bind(USER)
        .bind(i64::from(args.days.max(1)))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1) \
             INSERT INTO conversations (id, user_id, title, metadata, message_count, created_at, updated_at) \
             SELECT printf('00000000-0000-7000-9000-%012d', i), ?2, 'c', '{}', ?3, \
                 strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now', '-' || i || ' minutes'), \
                 strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now', '-' || i || ' minutes') FROM n",
        )
        .bind(i64::from(args.conversations))
        .bind(USER)
        .bind(per_conversation as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sqlx::query("ANALYZE").execute(&mut db).await?;
    } else {
        let mut db = sqlx::PgConnection::connect(url).await?;
        let mut tx = db.begin().await?;
        // Row triggers updating one user's rows a million times in one transaction grow
        // version chains quadratically: insert without them, then build the same rollup and
        // total with the migration's set-based statements.
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO usage_records (id, user_id, conversation_id, kind, model, prompt_tokens, \
                 completion_tokens, cost_usd, created_at) \
             SELECT gen_random_uuid(), $2, NULL, 'chat', \
                 (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-3-5-haiku'])[1 + i % 3], \
                 50 + i % 100, 20 + i % 50, 0.0001, \
                 now() - make_interval(days => (i % $3)::int, secs => (i % 86400)::double precision) \
             FROM generate_series(0, $1 - 1) i",
        )
        .bind(args.records as i64)
        .bind(USER)
        .bind(i64::from(args.days.max(1)))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO conversations (id, user_id, title, metadata, message_count, created_at, updated_at) \
             SELECT gen_random_uuid(), $2, 'c', '{}', $3, now() - make_interval(mins => i::int), \
                 now() - make_interval(mins => i::int) FROM generate_series(0, $1 - 1) i",
        )
        .bind(i64::from(args.conversations))
        .bind(USER)
        .bind(per_conversation as i64)
        .execute(&mut *tx)
        .await?;
        for sql in PG_ROLLUP {
            sqlx::query(sql).bind(USER).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        sqlx::query("VACUUM ANALYZE").execute(&mut db).await?;
    }
    Ok(())
}

/// The median of five runs of the old scan, in milliseconds.
async fn time_scan(backend: &str, url: &str) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for sql in SCAN {
            if backend == "sqlite" {
                let mut db = sqlx::SqliteConnection::connect(url).await?;
                sqlx::query(sql).fetch_all(&mut db).await?;
            } else {
                let mut db = sqlx::PgConnection::connect(url).await?;
                sqlx::query(sql).fetch_all(&mut db).await?;
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The endpoint answers the seeded totals (so the load measures a real answer).
async fn check(target: &Target, records: u64) -> anyhow::Result<()> {
    let body = target.get_json().await?;
    anyhow::ensure!(
        body["requests"].as_u64() == Some(records),
        "/ai/usage counted {} requests, not {records}: {body}",
        body["requests"]
    );
    Ok(())
}

fn print(rows: &[(Report, f64)]) {
    println!();
    println!(
        "| target | concurrency | requests | errors | req/s | p50 ms | p99 ms | old scan ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (r, scan) in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.1} |",
            r.name, r.concurrency, r.ok, r.errors, r.rate, r.p50_ms, r.p99_ms, scan
        );
    }
}
