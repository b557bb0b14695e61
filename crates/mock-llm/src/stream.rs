//! Streaming bodies: events written lazily (so stamps are taken at write time), paced, split at
//! odd byte boundaries, cut on demand, and counted as open or cancelled.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;

use crate::MockState;
use crate::render::Plan;

/// Frame sizes cycled through when splitting events.
const SPLITS: [usize; 6] = [1, 3, 7, 2, 11, 5];

struct Cursor {
    plan: Plan,
    /// The next event: `pre`, then the words, then `post`.
    next: usize,
    words_sent: usize,
    /// The rest of the event being written.
    current: Bytes,
    split: usize,
    started: bool,
    ended: bool,
    odd_splits: bool,
    interval: Option<Duration>,
    /// When the next word is due: deadlines, not sleeps after each write, so a stream keeps
    /// its rate however late the timer fires.
    due: Option<tokio::time::Instant>,
    cut: Option<usize>,
}

impl Cursor {
    fn total(&self) -> usize {
        self.plan.pre.len() + self.plan.word_events + self.plan.post.len()
    }

    /// The next body frame, or `None` at the end.
    async fn step(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.ended {
            return None;
        }
        if self.current.is_empty() {
            let pre = self.plan.pre.len();
            let words = self.plan.word_events;
            if let Some(cut) = self.cut
                && self.next >= pre
                && self.words_sent >= cut
            {
                // Let the connection flush what was sent, then drop it mid-body.
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                self.ended = true;
                return Some((
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "mock-llm: stream cut",
                    )),
                    self,
                ));
            }
            if self.next >= self.total() {
                return None;
            }
            let i = self.next;
            let event = if i < pre {
                self.plan.pre[i].clone()
            } else if i < pre + words {
                if let Some(interval) = self.interval {
                    let now = tokio::time::Instant::now();
                    // A reader that fell behind resumes at the rate, not with a burst.
                    let due = match self.due {
                        Some(due) if due + interval >= now => due + interval,
                        Some(_) => now,
                        // The first word waits one interval after the events before it, if any.
                        None if self.started => now + interval,
                        None => now,
                    };
                    if self.started {
                        crate::pacer::sleep_until(due.into_std()).await;
                    }
                    self.due = Some(due);
                }
                self.words_sent += 1;
                self.plan.word(i - pre)
            } else {
                self.plan.post[i - pre - words].clone()
            };
            self.next += 1;
            if !self.odd_splits {
                self.started = true;
                return Some((Ok(event), self));
            }
            self.current = event;
        }
        if self.started {
            // One write per frame: let the connection flush the previous one first.
            tokio::task::yield_now().await;
        }
        self.started = true;
        let size = SPLITS[self.split % SPLITS.len()].min(self.current.len());
        self.split += 1;
        let frame = self.current.split_to(size);
        Some((Ok(frame), self))
    }
}

/// Counts the stream as open until it ends, and as cancelled if dropped before its end.
struct Tracked {
    inner: BoxStream<'static, io::Result<Bytes>>,
    state: Arc<MockState>,
    done: bool,
}

impl Stream for Tracked {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_next(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) && !this.done {
            this.done = true;
            this.state.stream_closed(false);
        }
        polled
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.state.stream_closed(true);
        }
    }
}

/// The body of a streaming reply; `cut`: drop the connection after that many words.
pub(crate) fn body(plan: Plan, state: Arc<MockState>, cut: Option<usize>) -> Body {
    let config = state.config();
    let interval = config
        .tokens_per_sec
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let cursor = Cursor {
        plan,
        next: 0,
        words_sent: 0,
        current: Bytes::new(),
        split: 0,
        started: false,
        ended: false,
        odd_splits: config.odd_splits,
        interval,
        due: None,
        cut,
    };
    state.stream_opened();
    let inner = Box::pin(futures::stream::unfold(cursor, Cursor::step));
    Body::from_stream(Tracked {
        inner,
        state,
        done: false,
    })
}

/// A body that fails before its first byte: hyper drops the connection without a response.
pub(crate) fn abort() -> Body {
    Body::from_stream(futures::stream::once(async {
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "mock-llm: connection cut",
        ))
    }))
}

/// Held while a request hangs: counts it as cancelled when the client gives up.
pub(crate) struct HangGuard {
    pub state: Arc<MockState>,
    pub stream: bool,
}

impl HangGuard {
    pub fn new(state: Arc<MockState>, stream: bool) -> Self {
        if stream {
            state.stream_opened();
        }
        Self { state, stream }
    }
}

impl Drop for HangGuard {
    fn drop(&mut self) {
        if self.stream {
            self.state.stream_closed(true);
        } else {
            self.state.request_cancelled();
        }
    }
}
