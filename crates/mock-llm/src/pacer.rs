//! Sleeps to the microsecond for pacing streams. tokio's timer fires in whole milliseconds,
//! which lines up the words of every stream due within one millisecond into one burst (200
//! streams at 100 words/s: 20 words written back to back every millisecond), a pattern no real
//! upstream has: its streams are independent. One thread keeps the deadlines here and wakes
//! each stream when its own word is due.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

struct Entry {
    due: Instant,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: the heap's top is the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other.due.cmp(&self.due)
    }
}

struct Pacer {
    due: Mutex<BinaryHeap<Entry>>,
    earlier: Condvar,
}

impl Pacer {
    fn get() -> &'static Pacer {
        static PACER: OnceLock<&'static Pacer> = OnceLock::new();
        PACER.get_or_init(|| {
            let pacer: &'static Pacer = Box::leak(Box::new(Pacer {
                due: Mutex::new(BinaryHeap::new()),
                earlier: Condvar::new(),
            }));
            let spawned = std::thread::Builder::new()
                .name("mock-llm-pacer".into())
                .spawn(move || pacer.run());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "mock-llm: no pacer thread; paced streams will stall");
            }
            pacer
        })
    }

    fn register(&self, due: Instant, waker: Waker) {
        let Ok(mut heap) = self.due.lock() else {
            waker.wake();
            return;
        };
        let earliest = heap.peek().is_none_or(|top| due < top.due);
        heap.push(Entry { due, waker });
        drop(heap);
        if earliest {
            self.earlier.notify_one();
        }
    }

    fn run(&self) {
        let Ok(mut heap) = self.due.lock() else {
            return;
        };
        let mut ready = Vec::new();
        loop {
            let now = Instant::now();
            while heap.peek().is_some_and(|top| top.due <= now) {
                if let Some(entry) = heap.pop() {
                    ready.push(entry.waker);
                }
            }
            if !ready.is_empty() {
                drop(heap);
                ready.drain(..).for_each(Waker::wake);
                heap = match self.due.lock() {
                    Ok(heap) => heap,
                    Err(_) => return,
                };
                continue;
            }
            let wait = heap.peek().map(|top| top.due - now);
            heap = match wait {
                Some(wait) => match self.earlier.wait_timeout(heap, wait) {
                    Ok((heap, _)) => heap,
                    Err(_) => return,
                },
                None => match self.earlier.wait(heap) {
                    Ok(heap) => heap,
                    Err(_) => return,
                },
            };
        }
    }
}

/// Completes at `due`, give or take the thread's timer slack (tens of microseconds).
pub(crate) fn sleep_until(due: Instant) -> SleepUntil {
    SleepUntil { due }
}

pub(crate) struct SleepUntil {
    due: Instant,
}

impl Future for SleepUntil {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.due {
            return Poll::Ready(());
        }
        // Polled again early (a spurious wake-up): registered again; the first entry then wakes
        // a task that finds itself not due and waits on.
        Pacer::get().register(self.due, cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wakes_each_sleeper_at_its_deadline_not_before() {
        let start = Instant::now();
        let offsets = [900u64, 300, 600, 150, 1200, 2500];
        let sleepers = offsets.iter().map(|&us| async move {
            let due = start + Duration::from_micros(us);
            sleep_until(due).await;
            (us, Instant::now().checked_duration_since(due))
        });
        for (us, late) in futures::future::join_all(sleepers).await {
            let late = late.unwrap_or_else(|| panic!("{us} µs: woke before its deadline"));
            // Generous for a loaded CI machine; the point is finer than tokio's 1 ms tick.
            assert!(
                late < Duration::from_millis(50),
                "{us} µs woke {late:?} late"
            );
        }
    }
}
