//! What the streams measured: each chunk's latency, in the window and over the whole run.

use std::io::Write;
use std::sync::Arc;

use super::{Window, now_us};

/// One stream's chunks: (time mock-llm wrote it, µs since the epoch; latency, µs).
pub(super) type Samples = Vec<(u64, u64)>;

/// Every stream's chunks, and the moment the streams were released.
pub(super) struct Run {
    pub(super) released_us: u64,
    pub(super) streams: Vec<Samples>,
}

/// Runs `streams` tasks (each on the runtime, so the load generator uses every core) and
/// gathers their chunks.
#[expect(
    clippy::disallowed_methods,
    reason = "load generator: every stream's task is awaited or aborted before gather returns"
)]
pub(super) async fn gather<F, Fut>(streams: usize, stream: F) -> anyhow::Result<Run>
where
    F: Fn(usize, Arc<tokio::sync::Barrier>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u64, Samples)>> + Send + 'static,
{
    let ready = Arc::new(tokio::sync::Barrier::new(streams));
    let mut tasks: Vec<_> = (0..streams)
        .map(|i| tokio::spawn(stream(i, ready.clone())))
        .collect();
    let mut run = Run {
        released_us: u64::MAX,
        streams: Vec::with_capacity(streams),
    };
    for (i, task) in tasks.iter_mut().enumerate() {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(e.into()),
        };
        let (released, samples) = match outcome {
            Ok(done) => done,
            Err(e) => {
                for rest in &tasks[i + 1..] {
                    rest.abort();
                }
                return Err(e);
            }
        };
        run.released_us = run.released_us.min(released);
        run.streams.push(samples);
    }
    Ok(run)
}

pub(super) struct Percentiles {
    chunks: usize,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
}

impl Percentiles {
    fn of(mut latencies: Vec<u64>) -> Percentiles {
        latencies.sort_unstable();
        let pct = |p: f64| {
            if latencies.is_empty() {
                return f64::NAN;
            }
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
                as f64
        };
        Percentiles {
            chunks: latencies.len(),
            p50_us: pct(0.5),
            p99_us: pct(0.99),
        }
    }
}

pub(super) struct Relay {
    /// Chunks written in the window, when every stream is open.
    pub(super) steady: Percentiles,
    /// Their rate: chunks per second in the window.
    rate: f64,
    /// Every chunk of the run, ramps included.
    pub(super) whole: Percentiles,
}

pub(super) fn report(name: &str, r: &Relay) {
    println!(
        "{name}: {} chunks at {:.0} chunks/s with all streams open, latency p50 {:.3} ms, \
         p99 {:.3} ms (whole run: {} chunks, p50 {:.3} ms, p99 {:.3} ms)",
        r.steady.chunks,
        r.rate,
        r.steady.p50_us / 1000.0,
        r.steady.p99_us / 1000.0,
        r.whole.chunks,
        r.whole.p50_us / 1000.0,
        r.whole.p99_us / 1000.0,
    );
}

pub(super) fn summarize(
    path: &str,
    run: Run,
    window: Window,
    mut dump: Option<&mut impl Write>,
) -> anyhow::Result<Relay> {
    let from = run.released_us + window.from.as_micros() as u64;
    let to = from + window.length.as_micros() as u64;
    let mut steady = Vec::new();
    let mut whole = Vec::new();
    for (stream, samples) in run.streams.iter().enumerate() {
        for (index, &(sent, latency)) in samples.iter().enumerate() {
            if let Some(out) = dump.as_mut() {
                writeln!(out, "{path},{stream},{index},{sent},{latency}")?;
            }
            whole.push(latency);
            if (from..to).contains(&sent) {
                steady.push(latency);
            }
        }
    }
    let rate = steady.len() as f64 / window.length.as_secs_f64();
    Ok(Relay {
        steady: Percentiles::of(steady),
        rate,
        whole: Percentiles::of(whole),
    })
}

/// A stamped word's (write time, latency now).
pub(super) fn stamp_latency(word: &str) -> Option<(u64, u64)> {
    word.trim()
        .parse::<u64>()
        .ok()
        .map(|sent| (sent, now_us().saturating_sub(sent)))
}
