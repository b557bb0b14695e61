//! `palaver-bench tree`: one conversation of 10,000 messages in 50 branches (issue #16), on
//! SQLite and PostgreSQL. It is seeded through `POST /api/v1/ai/chat` against mock-llm: a
//! trunk of `messages / branches` messages, then `branches - 1` branches of as many messages
//! each, forking off the trunk's replies at points spread evenly along it (the first exchange of
//! a branch names its fork with `parentMessageId`); then the trunk's leaf is made active again,
//! so the active path is the trunk, with a fork at every other exchange. On PostgreSQL the
//! tables are analyzed along the way (see [`analyze`]).
//!
//! Measured at concurrency 1 and 16: `GET /api/v1/ai/conversations/{id}` (the active path with
//! siblings and child counts) and `GET .../messages?limit=50`. Then, at concurrency 1, chats into
//! the big conversation and into a fresh one of two messages, interleaved; each chat answers
//! the same parent (the trunk's leaf, the fresh conversation's first reply), so the path read
//! for the context stays as long all run long, and every chat adds a two-message branch there.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::load::{Report, Target, percentile, run_load};
use crate::procs::{self, free_port, spawn_mock, spawn_palaver, target_dir};

#[derive(clap::Args)]
pub struct TreeArgs {
    /// Messages of the big conversation (two per exchange).
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Branches of it: the trunk and `branches - 1` forks off the trunk, as long as it each.
    #[arg(long, default_value_t = 50)]
    pub branches: u64,
    /// Seconds per GET measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Chats into each of the two conversations in the interleaved chat measurement.
    #[arg(long, default_value_t = 2_000)]
    pub chats: usize,
    /// Admin URL of a PostgreSQL server; a `palaver_bench_tree` database is recreated there.
    #[arg(long)]
    pub postgres: Option<String>,
}

const USER: &str = "bench-tree";
const MODEL: &str = "gpt-4o-mini";

/// The big conversation as seeded: its id and the trunk's leaf (the active leaf).
struct Seeded {
    id: String,
    trunk_leaf: String,
}

/// The chat latencies of one run: big conversation and fresh one, in µs, sorted.
struct ChatRun {
    big: Vec<u32>,
    fresh: Vec<u32>,
}

pub async fn run(
    args: TreeArgs,
    secret: &str,
    mint: fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.branches >= 2 && args.messages >= 4 * args.branches,
        "--branches must be 2 or more, with at least 4 messages each"
    );
    let bin = target_dir()?;
    let mock_port = free_port()?;
    let _mock = spawn_mock(&bin, mock_port).await?;
    let data_dir = std::env::temp_dir().join(format!("palaver-bench-tree-{}", std::process::id()));
    let mut backends = vec![("sqlite", format!("sqlite://{}/tree.db", data_dir.display()))];
    if let Some(admin) = &args.postgres {
        backends.push((
            "postgres",
            procs::fresh_pg_database(admin, "palaver_bench_tree").await?,
        ));
    }
    let token = format!("Bearer {}", mint(USER)?);
    let mut rows = Vec::new();
    let mut chats = Vec::new();
    for (name, url) in backends {
        let port = free_port()?;
        let upstream = format!("http://127.0.0.1:{mock_port}/v1");
        let _palaver = spawn_palaver(&bin, port, &url, &upstream, &data_dir, secret).await?;
        let api = Api::new(port, &token);
        let started = Instant::now();
        let analyze = (name == "postgres").then_some(url.as_str());
        let seeded = seed(&api, &args, analyze).await?;
        eprintln!(
            "{name}: seeded {} messages in {} branches in {:.1} s",
            args.messages,
            args.branches,
            started.elapsed().as_secs_f64()
        );
        let path = check_path(&api, &seeded).await?;
        let gets = [
            (
                format!("GET conversation ({name}, path of {path})"),
                format!("/conversations/{}", seeded.id),
            ),
            (
                format!("GET messages?limit=50 ({name})"),
                format!("/conversations/{}/messages?limit=50", seeded.id),
            ),
        ];
        for (label, route) in gets {
            let target = Target {
                name: label,
                url: api.url(&route),
                body: Value::Null,
                tokens: vec![token.clone()],
            };
            for concurrency in [1, 16] {
                rows.push(run_load(&target, concurrency, Duration::from_secs(args.seconds)).await?);
            }
        }
        chats.push((
            name,
            path,
            interleaved_chats(&api, &seeded, args.chats).await?,
        ));
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    print(&rows, &chats);
    Ok(())
}

/// Palaver's API for the one user.
struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    fn new(port: u16, token: &str) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}/api/v1/ai"),
            token: token.to_owned(),
            client: reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .unwrap_or_default(),
        }
    }

    fn url(&self, route: &str) -> String {
        format!("{}{route}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.header("authorization", &self.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "status {status}: {body}");
        Ok(body)
    }

    /// One exchange: `(conversation id, reply id)`.
    async fn chat(
        &self,
        conversation: Option<&str>,
        parent: Option<&str>,
        n: u64,
    ) -> anyhow::Result<(String, String)> {
        let body = chat_body(conversation, parent, n);
        let answer = self
            .send(self.client.post(self.url("/chat")).json(&body))
            .await?;
        let field = |k: &str| {
            answer[k]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no {k} in {answer}"))
        };
        Ok((field("conversationId")?, field("messageId")?))
    }
}

/// A chat request with a user message of 12 to 27 words (the reply repeats it after
/// "Mock reply to:").
fn chat_body(conversation: Option<&str>, parent: Option<&str>, n: u64) -> Value {
    let words = 12 + n % 16;
    let message = (0..words)
        .map(|i| format!("w{}", (n * 31 + i * 7) % 997))
        .collect::<Vec<_>>()
        .join(" ");
    let mut body = json!({"message": message, "model": MODEL, "maxTokens": 64});
    if let Some(c) = conversation {
        body["conversationId"] = json!(c);
    }
    if let Some(p) = parent {
        body["parentMessageId"] = json!(p);
    }
    body
}

/// Runs `ANALYZE` on PostgreSQL, as autovacuum would while the table grows (the test server
/// runs with `autovacuum = off`). Without it, a statement prepared on a connection while
/// `messages` was nearly empty keeps its plan: a generic plan that scans the table at every
/// step of the recursive path query, 175 ms for a path of 200 at 10,000 messages.
async fn analyze(postgres: Option<&str>) -> anyhow::Result<()> {
    if let Some(url) = postgres {
        let mut db = sqlx::PgConnection::connect(url).await?;
        sqlx::query("ANALYZE messages, conversations")
            .execute(&mut db)
            .await?;
    }
    Ok(())
}

/// The trunk, then each branch after its fork (a trunk reply), one exchange at a time.
async fn seed(api: &Api, args: &TreeArgs, postgres: Option<&str>) -> anyhow::Result<Seeded> {
    let exchanges = args.messages / args.branches / 2;
    let mut n = 0;
    let (id, mut leaf) = api.chat(None, None, n).await?;
    let mut trunk = vec![leaf.clone()];
    for _ in 1..exchanges {
        n += 1;
        leaf = api.chat(Some(&id), Some(&leaf), n).await?.1;
        trunk.push(leaf.clone());
        if n == 25 {
            analyze(postgres).await?;
        }
    }
    analyze(postgres).await?;
    for branch in 1..args.branches {
        // Forks spread over the trunk's replies, the first after its first exchange.
        let fork = ((branch - 1) * exchanges / (args.branches - 1)) as usize;
        let mut leaf = trunk[fork].clone();
        for _ in 0..exchanges {
            n += 1;
            leaf = api.chat(Some(&id), Some(&leaf), n).await?.1;
        }
        analyze(postgres).await?;
    }
    let trunk_leaf = trunk.last().context("an empty trunk")?.clone();
    let body = json!({"messageId": trunk_leaf});
    api.send(
        api.client
            .put(api.url(&format!("/conversations/{id}/active-leaf")))
            .json(&body),
    )
    .await?;
    Ok(Seeded { id, trunk_leaf })
}

/// The conversation's GET answers the trunk as its active path, with its forks: the length of
/// the path.
async fn check_path(api: &Api, seeded: &Seeded) -> anyhow::Result<usize> {
    let body = api
        .send(
            api.client
                .get(api.url(&format!("/conversations/{}", seeded.id))),
        )
        .await?;
    let messages = body["messages"].as_array().context("no messages")?;
    let forks = messages
        .iter()
        .filter(|m| m["siblingIds"].as_array().is_some_and(|s| s.len() > 1))
        .count();
    anyhow::ensure!(
        messages.last().and_then(|m| m["id"].as_str()) == Some(seeded.trunk_leaf.as_str()),
        "the active path does not end at the trunk's leaf"
    );
    eprintln!(
        "active path: {} messages, {forks} with siblings; {} messages in all",
        messages.len(),
        body["messageCount"]
    );
    Ok(messages.len())
}

/// Chats into the big conversation and a fresh one by turns (which goes first alternates),
/// after a warm-up of 20 each.
async fn interleaved_chats(api: &Api, seeded: &Seeded, chats: usize) -> anyhow::Result<ChatRun> {
    let (fresh, fresh_leaf) = api.chat(None, None, 0).await?;
    let big = (seeded.id.as_str(), seeded.trunk_leaf.as_str());
    let fresh = (fresh.as_str(), fresh_leaf.as_str());
    let mut run = ChatRun {
        big: Vec::with_capacity(chats),
        fresh: Vec::with_capacity(chats),
    };
    for i in 0..chats + 20 {
        let order = if i % 2 == 0 {
            [(big, true), (fresh, false)]
        } else {
            [(fresh, false), (big, true)]
        };
        for ((conversation, parent), is_big) in order {
            let started = Instant::now();
            api.chat(Some(conversation), Some(parent), i as u64).await?;
            let micros = started.elapsed().as_micros() as u32;
            if i >= 20 {
                if is_big { &mut run.big } else { &mut run.fresh }.push(micros);
            }
        }
    }
    run.big.sort_unstable();
    run.fresh.sort_unstable();
    Ok(run)
}

fn print(rows: &[Report], chats: &[(&str, usize, ChatRun)]) {
    println!();
    println!("| target | concurrency | requests | errors | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} |",
            r.name, r.concurrency, r.ok, r.errors, r.rate, r.p50_ms, r.p99_ms
        );
    }
    println!();
    println!(
        "| chat at concurrency 1 | chats each | big p50 / p99 ms | fresh p50 / p99 ms | added p50 / p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, path, run) in chats {
        let (b50, b99) = (percentile(&run.big, 0.5), percentile(&run.big, 0.99));
        let (f50, f99) = (percentile(&run.fresh, 0.5), percentile(&run.fresh, 0.99));
        println!(
            "| {name} (path of {path} vs 2) | {} | {b50:.3} / {b99:.3} | {f50:.3} / {f99:.3} | {:+.3} / {:+.3} |",
            run.big.len(),
            b50 - f50,
            b99 - f99
        );
    }
}
