#![expect(
    clippy::disallowed_methods,
    reason = "tests hold the writer busy from a task of their own"
)]

use std::ffi::c_int;
use std::time::Instant;

use super::*;

/// An in-memory database with a table `t (k INTEGER PRIMARY KEY)`.
async fn table_db() -> Db {
    let db = Db::open("sqlite::memory:").await.unwrap();
    db.write(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
        .await
        .unwrap();
    db
}

/// The keys in `t`, in order.
async fn keys(db: &Db) -> Vec<i64> {
    db.read(|c| {
        c.prepare("SELECT k FROM t ORDER BY k")?
            .query_map([], |r| r.get(0))?
            .collect()
    })
    .await
    .unwrap()
}

/// A write that holds the writer for 200 ms, so that the writes sent meanwhile form one
/// batch (one transaction). Returns once the writer is inside it: writes sent before
/// that could share its batch, or one of them be taken on its own.
async fn keep_writer_busy(db: &Db) -> tokio::task::JoinHandle<DbResult<()>> {
    let db = db.clone();
    let (inside, entered) = tokio::sync::oneshot::channel();
    let busy = tokio::spawn(async move {
        db.write(move |_| {
            let _ = inside.send(());
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        })
        .await
    });
    let _ = entered.await;
    busy
}

#[tokio::test]
async fn a_failing_write_leaves_the_others_of_its_batch() {
    let dir = std::env::temp_dir().join(format!("palaver-embedded-{}", uuid::Uuid::now_v7()));
    let db = Db::open(&format!("sqlite://{}/t.db", dir.display()))
        .await
        .unwrap();
    db.write(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
        .await
        .unwrap();
    // Many writes at once land in few batches; the duplicates fail alone.
    let writes = (0..200).map(|i| {
        let db = db.clone();
        async move {
            db.write(move |c| c.execute("INSERT INTO t (k) VALUES (?1)", [i % 100]))
                .await
        }
    });
    let results = futures::future::join_all(writes).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.is_unique_violation()))
        .count();
    assert_eq!((ok, conflicts), (100, 100));
    let n: i64 = db
        .read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(n, 100);
    // A write that fails after changing rows leaves none of them.
    let failed = db
        .write(|c| {
            c.execute("INSERT INTO t (k) VALUES (1000)", [])?;
            c.execute("INSERT INTO t (k) VALUES (1)", [])
        })
        .await;
    assert!(failed.unwrap_err().is_unique_violation());
    let n: i64 = db
        .read(|c| c.query_row("SELECT COUNT(*) FROM t WHERE k = 1000", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(n, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn urls() {
    assert_eq!(sqlite_path("sqlite::memory:"), None);
    assert_eq!(sqlite_path("sqlite://:memory:"), None);
    assert_eq!(sqlite_path("sqlite://x.db?mode=memory"), None);
    assert_eq!(
        sqlite_path("sqlite://data/x.db?mode=rwc"),
        Some("data/x.db".into())
    );
    assert_eq!(sqlite_path("sqlite:///tmp/x.db"), Some("/tmp/x.db".into()));
}

#[tokio::test]
async fn a_write_failing_halfway_is_undone_alone_within_its_batch() {
    let db = table_db().await;
    // Keep the writer busy so that the writes below share one batch (one transaction).
    let busy = keep_writer_busy(&db).await;
    let before = db.write(|c| c.execute("INSERT INTO t (k) VALUES (1)", []));
    let halfway = db.write(|c| {
        c.execute("INSERT INTO t (k) VALUES (1000)", [])?;
        c.execute("INSERT INTO t (k) VALUES (1)", [])
    });
    let after = db.write(|c| c.execute("INSERT INTO t (k) VALUES (2)", []));
    let (busy, before, halfway, after) = tokio::join!(busy, before, halfway, after);
    busy.unwrap().unwrap();
    assert_eq!(before.unwrap(), 1);
    assert!(halfway.unwrap_err().is_unique_violation(), "its own error");
    assert_eq!(after.unwrap(), 1);
    let keys = keys(&db).await;
    assert_eq!(
        keys,
        vec![1, 2],
        "1000 was undone with its write, nothing else"
    );
}

#[tokio::test]
async fn a_panicking_write_fails_alone() {
    let db = table_db().await;
    let panicked = db
        .write(|c| -> rusqlite::Result<()> {
            c.execute("INSERT INTO t (k) VALUES (7)", [])?;
            panic!("a bug in a write")
        })
        .await;
    assert!(panicked.is_err());
    // The writer lives on, and the panicking write left nothing.
    db.write(|c| c.execute("INSERT INTO t (k) VALUES (8)", []))
        .await
        .unwrap();
    let keys = keys(&db).await;
    assert_eq!(keys, vec![8]);
}

#[tokio::test]
async fn writes_before_a_transaction_wide_rollback_are_not_reported_stored() {
    let db = table_db().await;
    // Keep the writer busy so that the next three writes form one batch.
    let busy = keep_writer_busy(&db).await;
    let first = db.write(|c| c.execute("INSERT INTO t (k) VALUES (1)", []));
    // Ends the whole transaction, as SQLite does itself on a full disk or an I/O error.
    let breaker = db.write(|c| c.execute_batch("ROLLBACK"));
    let last = db.write(|c| c.execute("INSERT INTO t (k) VALUES (3)", []));
    let (busy, first, breaker, last) = tokio::join!(busy, first, breaker, last);
    busy.unwrap().unwrap();
    assert!(first.is_err(), "its transaction was rolled back: {first:?}");
    assert!(breaker.is_err());
    assert_eq!(last.unwrap(), 1);
    let keys = keys(&db).await;
    assert_eq!(keys, vec![3]);
}

fn temp_url(name: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("palaver-embedded-{}", uuid::Uuid::now_v7()));
    let url = format!("sqlite://{}/{name}", dir.display());
    (dir, url)
}

/// Writes ~400 KB into a fresh database opened with `policy`; returns by how many bytes
/// the database file grew within `within` (stopping early once it grew by `enough`). The
/// writer's own backstop is far away, so only the checkpoint thread can have copied them.
async fn checkpointed_within(policy: Checkpoints, enough: u64, within: Duration) -> u64 {
    let (dir, url) = temp_url("c.db");
    let db = Db::open_with(&url, policy).await.unwrap();
    db.write(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)"))
        .await
        .unwrap();
    let file = dir.join("c.db");
    let before = std::fs::metadata(&file).unwrap().len();
    for k in 0..200 {
        db.write(move |c| c.execute("INSERT INTO t VALUES (?1, zeroblob(2000))", [k]))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + within;
    let grown = loop {
        let grown = std::fs::metadata(&file)
            .unwrap()
            .len()
            .saturating_sub(before);
        if grown >= enough || Instant::now() > deadline {
            break grown;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
    grown
}

const WRITTEN: u64 = 200 * 2000;

#[tokio::test]
async fn the_checkpoint_thread_copies_the_wal_into_the_file_on_time() {
    let timed = Checkpoints {
        every: Duration::from_millis(50),
        soon_pages: c_int::MAX,
    };
    let grown = checkpointed_within(timed, WRITTEN, Duration::from_secs(10)).await;
    assert!(grown >= WRITTEN, "{grown} bytes");
}

#[tokio::test]
async fn a_long_wal_is_checkpointed_without_waiting_for_the_interval() {
    let never_on_time = Checkpoints {
        every: Duration::from_secs(3600),
        soon_pages: 16,
    };
    // What was written after the last request (fewer pages than asked at) may stay in
    // the WAL, and so may up to that much again if the WAL started over.
    let enough = WRITTEN - 2 * 16 * PAGE_SIZE as u64;
    let grown = checkpointed_within(never_on_time, enough, Duration::from_secs(10)).await;
    assert!(grown >= enough, "{grown} bytes");
    // And with neither the interval nor the length reached, nothing is copied.
    let never = Checkpoints {
        every: Duration::from_secs(3600),
        soon_pages: c_int::MAX,
    };
    let grown = checkpointed_within(never, 1, Duration::from_millis(300)).await;
    assert_eq!(grown, 0);
}

#[tokio::test]
async fn new_databases_get_small_pages_and_old_ones_keep_theirs() {
    let page_size = |db: Db| async move {
        db.write(|c| c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap()
    };
    let (dir, url) = temp_url("new.db");
    let db = Db::open(&url).await.unwrap();
    db.write(|c| c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
        .await
        .unwrap();
    assert_eq!(page_size(db).await, PAGE_SIZE);

    let old = dir.join("old.db");
    let made = Connection::open(&old).unwrap();
    made.execute_batch("PRAGMA page_size = 4096; CREATE TABLE t (k INTEGER PRIMARY KEY);")
        .unwrap();
    drop(made);
    let db = Db::open(&format!("sqlite://{}", old.display()))
        .await
        .unwrap();
    assert_eq!(page_size(db).await, 4096);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_build_is_refused() {
    static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
    let (dir, url) = temp_url("m.db");
    let db = Db::open(&url).await.unwrap();
    db.migrate(&MIGRATOR).await.unwrap();
    db.migrate(&MIGRATOR).await.unwrap();
    db.write(|c| {
        c.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', TRUE, x'00', 0)",
            [],
        )
    })
    .await
    .unwrap();
    let refused = db.migrate(&MIGRATOR).await.unwrap_err();
    assert!(
        matches!(
            refused,
            DbError::Migrate {
                version: 99990101000000,
                ..
            }
        ),
        "{refused}"
    );
    drop(db);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn in_memory_reads_see_writes() {
    let db = Db::open("sqlite::memory:").await.unwrap();
    db.write(|c| c.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')"))
        .await
        .unwrap();
    let v: String = db
        .read(|c| c.query_row("SELECT v FROM t", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(v, "x");
}
