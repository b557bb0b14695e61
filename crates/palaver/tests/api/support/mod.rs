pub mod app;
pub mod db;
pub mod node;

use std::io::Write;

/// Says that the running test (or a half of it) was skipped because `why`, so that a skip
/// never passes for an "ok": one line `SKIP <test>: <why>` on stdout, and the same line
/// appended to the file named by `PALAVER_TEST_SKIPS` (`scripts/test` sets it, and lists the
/// skips at the end of the run).
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let line = format!("SKIP {}: {why}", thread.name().unwrap_or("<unnamed test>"));
    println!("{line}");
    let Some(path) = std::env::var_os("PALAVER_TEST_SKIPS") else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(e) = written {
        eprintln!("cannot record the skip in {}: {e}", path.to_string_lossy());
    }
}
