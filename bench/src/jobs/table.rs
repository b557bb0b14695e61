//! The table printed at the end, and the targets.

use super::e2e::Latency;
use super::{Row, pct};

pub(super) fn print_table(rows: &[Row], latencies: &[Latency], notes: &[String]) {
    println!();
    println!("| run | jobs | seconds | jobs/s | notes |");
    println!("|---|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} | {:.0} | {} |",
            r.what,
            r.jobs,
            r.seconds,
            r.jobs as f64 / r.seconds,
            r.note
        );
    }
    println!();
    println!("Throughput is jobs / (first push or POST → last completion).");
    if !latencies.is_empty() {
        println!();
        println!(
            "Latency at low load, one generate-embeddings job at a time (ms; mock-llm answers at once):"
        );
        println!(
            "| backend | jobs | POST→202 p50 | p99 | created_at→completed (server) p50 | p99 | POST→GET sees completed (1 ms polling) p50 | p99 |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for l in latencies {
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
                l.name,
                l.jobs,
                pct(&l.post, 0.5),
                pct(&l.post, 0.99),
                pct(&l.server, 0.5),
                pct(&l.server, 0.99),
                pct(&l.client, 0.5),
                pct(&l.client, 0.99)
            );
        }
    }
    // Targets of the issue.
    let rate = |prefix: &str| {
        rows.iter()
            .filter(|r| r.what.starts_with(prefix))
            .map(|r| r.jobs as f64 / r.seconds)
            .fold(f64::NAN, f64::max)
    };
    let palaver = rate("no-op, Palaver");
    let bullmq = rate("no-op, BullMQ");
    let e2e = rate("generate-embeddings e2e");
    println!();
    println!("Targets:");
    if !bullmq.is_nan() {
        println!(
            "  Palaver queue no-op ≥ BullMQ no-op: best {palaver:.0} vs {bullmq:.0} jobs/s — {}",
            if palaver >= bullmq { "met" } else { "NOT met" }
        );
    }
    println!(
        "  ≥ 2,000 generate-embeddings jobs/s end to end: best {e2e:.0} jobs/s — {}",
        if e2e >= 2000.0 { "met" } else { "NOT met" }
    );
    for n in notes {
        println!("  note: {n}");
    }
}
