//! `palaver-bench search`: `GET /api/v1/ai/conversations?q=` for one user with 100,000
//! messages (issue #16), on SQLite and PostgreSQL. Messages are written straight into the
//! database Palaver migrated (its triggers keep the search index, as they do for a chat):
//! sentences of words drawn from a fixed vocabulary of 2,000 (word `i` about as common as
//! 1/i, so there are common and rare words), spread over `--conversations`. Other users'
//! messages lie beside them (`--others`). Each query is run at concurrency 1.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;
use uuid::Uuid;

use crate::load::{Report, Target, run_load};
use crate::procs::{self, spawn_palaver_offline, target_dir};

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Messages of the searching user.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Conversations they are spread over (per user).
    #[arg(long, default_value_t = 1_000)]
    pub conversations: u64,
    /// Messages of another user beside them.
    #[arg(long, default_value_t = 100_000)]
    pub others: u64,
    /// Seconds per query.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Admin URL of a PostgreSQL server; a `palaver_bench_search` database is recreated there.
    #[arg(long)]
    pub postgres: Option<String>,
}

const USER: &str = "bench-search";
const VOCABULARY: usize = 2_000;
/// A common word, a middling one, a rare one, two words, and a prefix.
const QUERIES: [&str; 5] = ["w3", "w150", "w1900", "w10 w20", "w12"];

pub async fn run(
    args: SearchArgs,
    secret: &str,
    mint: fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let bin = target_dir()?;
    let data_dir =
        std::env::temp_dir().join(format!("palaver-bench-search-{}", std::process::id()));
    let mut backends = vec![(
        "sqlite",
        format!("sqlite://{}/search.db", data_dir.display()),
    )];
    if let Some(admin) = &args.postgres {
        backends.push((
            "postgres",
            procs::fresh_pg_database(admin, "palaver_bench_search").await?,
        ));
    }
    let mut rows = Vec::new();
    for (name, url) in backends {
        drop(spawn_palaver_offline(&bin, &url, &data_dir, secret).await?);
        let started = Instant::now();
        seed(name, &url, &args).await?;
        eprintln!(
            "{name}: seeded {} + {} messages in {:.1} s",
            args.messages,
            args.others,
            started.elapsed().as_secs_f64()
        );
        let (port, _palaver) = spawn_palaver_offline(&bin, &url, &data_dir, secret).await?;
        for q in QUERIES {
            let target = Target {
                name: format!("search {name} q={q:?}"),
                url: format!(
                    "http://127.0.0.1:{port}/api/v1/ai/conversations?q={}",
                    q.replace(' ', "%20")
                ),
                body: Value::Null,
                tokens: vec![format!("Bearer {}", mint(USER)?)],
            };
            let total = hits(&target).await?;
            eprintln!("{name} q={q:?}: {total} conversations match");
            rows.push((
                run_load(&target, 1, Duration::from_secs(args.seconds)).await?,
                total,
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    print(&rows);
    Ok(())
}

/// A deterministic sentence of 8 to 23 words, word `i` drawn with weight about 1/i.
fn sentence(seed: u64) -> String {
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = 8 + next() % 16;
    (0..words)
        .map(|_| {
            // exp(u * ln V) is log-uniform over 1..V: a Zipf-like spread.
            let u = (next() % 1_000_000) as f64 / 1_000_000.0;
            let i = ((u * (VOCABULARY as f64).ln()).exp() as usize).clamp(1, VOCABULARY);
            format!("w{i}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

struct Rows {
    conversations: Vec<(Uuid, String)>,
    messages: Vec<(Uuid, Uuid, String)>,
}

fn rows(args: &SearchArgs) -> Rows {
    let mut conversations = Vec::new();
    let mut messages = Vec::new();
    let mut n = 0u64;
    for (user, count, convs) in [
        (USER.to_owned(), args.messages, args.conversations),
        ("bench-other".to_owned(), args.others, args.conversations),
    ] {
        let ids: Vec<Uuid> = (0..convs.max(1)).map(|_| Uuid::now_v7()).collect();
        conversations.extend(ids.iter().map(|id| (*id, user.clone())));
        for i in 0..count {
            n += 1;
            messages.push((
                Uuid::now_v7(),
                ids[(i % ids.len() as u64) as usize],
                sentence(n),
            ));
        }
    }
    Rows {
        conversations,
        messages,
    }
}

async fn seed(backend: &str, url: &str, args: &SearchArgs) -> anyhow::Result<()> {
    let data = rows(args);
    let now = "2026-01-01T00:00:00.000000Z";
    if backend == "sqlite" {
        let mut db = sqlx::SqliteConnection::connect(url).await?;
        let mut tx = db.begin().await?;
        for user in [USER, "bench-other"] {
            sqlx::query("INSERT INTO users (id, total_tokens_used, created_at) VALUES (?1, 0, ?2)")
                .bind(user)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        for (id, user) in &data.conversations {
            sqlx::query("INSERT INTO conversations (id, user_id, title, metadata, created_at, updated_at) VALUES (?1, ?2, 'c', '{}', ?3, ?3)")
                .bind(id.to_string()).bind(user).bind(now).execute(&mut *tx).await?;
        }
        for (id, conversation, content) in &data.messages {
            sqlx::query("INSERT INTO messages (id, conversation_id, role, content, tokens, metadata, created_at) VALUES (?1, ?2, 'USER', ?3, 10, '{}', ?4)")
                .bind(id.to_string()).bind(conversation.to_string()).bind(content).bind(now)
                .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        sqlx::query("ANALYZE").execute(&mut db).await?;
    } else {
        let mut db = sqlx::PgConnection::connect(url).await?;
        let mut tx = db.begin().await?;
        sqlx::query("INSERT INTO users (id, total_tokens_used, created_at) VALUES ($1, 0, now()), ($2, 0, now())")
            .bind(USER).bind("bench-other").execute(&mut *tx).await?;
        let (ids, users): (Vec<Uuid>, Vec<String>) = data.conversations.into_iter().unzip();
        sqlx::query("INSERT INTO conversations (id, user_id, title, metadata, created_at, updated_at) SELECT id, u, 'c', '{}', now(), now() FROM UNNEST($1::uuid[], $2::text[]) AS t(id, u)")
            .bind(ids).bind(users).execute(&mut *tx).await?;
        for chunk in data.messages.chunks(10_000) {
            let ids: Vec<Uuid> = chunk.iter().map(|m| m.0).collect();
            let convs: Vec<Uuid> = chunk.iter().map(|m| m.1).collect();
            let texts: Vec<String> = chunk.iter().map(|m| m.2.clone()).collect();
            sqlx::query("INSERT INTO messages (id, conversation_id, role, content, tokens, metadata, created_at) SELECT id, c, 'USER', t, 10, '{}', now() FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS m(id, c, t)")
                .bind(ids).bind(convs).bind(texts).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        sqlx::query("VACUUM ANALYZE").execute(&mut db).await?;
    }
    Ok(())
}

/// How many conversations the query matches (and that the endpoint answers).
async fn hits(target: &Target) -> anyhow::Result<u64> {
    let body = target.get_json().await?;
    body["meta"]["total"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no total: {body}"))
}

fn print(rows: &[(Report, u64)]) {
    println!();
    println!("| query | matching conversations | requests | errors | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (r, total) in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} |",
            r.name, total, r.ok, r.errors, r.rate, r.p50_ms, r.p99_ms
        );
    }
}
