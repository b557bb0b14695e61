//! Server-sent events: an incremental parser, and the driver that turns a provider's event
//! stream into a [`ChatStream`].
//!
//! The parser works on bytes and decodes a line only once it is complete, so a chunk may end
//! anywhere: inside a multibyte UTF-8 character, or between the `\r` and `\n` of a line end.

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{ChatStream, ProviderError, StreamEvent};

/// A provider's body as chunks; errors are already mapped (idle timeout, cut body).
pub type BodyChunks = Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

/// Bytes the parser may hold without a complete event before the stream is refused.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the event had a non-empty one.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    /// The current incomplete line.
    line: Vec<u8>,
    /// The last byte seen ended a line with `\r`: a `\n` that follows belongs to it.
    after_cr: bool,
    /// A line was already processed (a byte-order mark is only stripped from the first).
    started: bool,
    event: Option<String>,
    /// Data lines, each followed by `\n` (as the specification's data buffer).
    data: String,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            let cr = rest[pos] == b'\r';
            rest = &rest[pos + 1..];
            self.end_line(&mut out);
            if cr {
                match rest.first() {
                    None => self.after_cr = true,
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                }
            }
        }
        self.line.extend_from_slice(rest);
        out
    }

    /// The body ended: a last line without its line end still counts, and a pending event
    /// is dispatched even without the blank line that should end it (lenient, for servers
    /// that close right after their last `data:` line).
    pub fn finish(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.dispatch(&mut out);
        self.after_cr = false;
        out
    }

    /// Bytes held for events not yet complete.
    pub fn buffered(&self) -> usize {
        self.line.len() + self.data.len()
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let bytes = std::mem::take(&mut self.line);
        let decoded = String::from_utf8_lossy(&bytes);
        let mut line: &str = &decoded;
        if !self.started {
            self.started = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = (!value.is_empty()).then(|| value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // `id` and `retry` matter only to browsers that reconnect.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        out.push(SseEvent { event, data });
    }
}

/// What a provider's stream means: each adapter implements it for its own wire format.
pub trait SseDecoder: Send + 'static {
    /// Handles one event, pushing what it yields onto `out`; `Ok(true)` once the stream is
    /// complete (the last event pushed is then the `Finish`).
    fn event(&mut self, event: SseEvent, out: &mut Vec<StreamEvent>)
    -> Result<bool, ProviderError>;

    /// The body ended before [`SseDecoder::event`] reported completion: the final `Finish`
    /// when the provider's protocol allows it, or the error.
    fn end(&mut self) -> Result<StreamEvent, ProviderError>;
}

struct Driver<D> {
    /// `None` once done: dropping the body closes the upstream connection.
    body: Option<BodyChunks>,
    parser: SseParser,
    decoder: D,
    queue: VecDeque<Result<StreamEvent, ProviderError>>,
    done: bool,
}

impl<D: SseDecoder> Driver<D> {
    fn feed(&mut self, events: Vec<SseEvent>) {
        let mut out = Vec::new();
        for event in events {
            if self.done {
                break;
            }
            let result = self.decoder.event(event, &mut out);
            self.queue.extend(out.drain(..).map(Ok));
            match result {
                Ok(finished) => self.done = finished,
                Err(e) => {
                    self.queue.push_back(Err(e));
                    self.done = true;
                }
            }
        }
    }

    fn fail(&mut self, error: ProviderError) {
        self.queue.push_back(Err(error));
        self.done = true;
    }

    async fn next(&mut self) -> Option<Result<StreamEvent, ProviderError>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            if self.done {
                self.body = None;
                return None;
            }
            let body = self.body.as_mut()?;
            match body.next().await {
                Some(Ok(bytes)) => {
                    let events = self.parser.push(&bytes);
                    self.feed(events);
                    if !self.done && self.parser.buffered() > MAX_BUFFERED {
                        self.fail(ProviderError::Protocol {
                            detail: format!(
                                "more than {MAX_BUFFERED} bytes without a complete event"
                            ),
                        });
                    }
                }
                Some(Err(e)) => self.fail(e),
                None => {
                    self.body = None;
                    let events = self.parser.finish();
                    self.feed(events);
                    if !self.done {
                        let last = self.decoder.end();
                        self.queue.push_back(last);
                        self.done = true;
                    }
                }
            }
            if self.done {
                self.body = None;
            }
        }
    }
}

/// Turns a body into chat events. Nothing is spawned: dropping the returned stream drops
/// the body, which closes the upstream connection.
pub fn decode<D: SseDecoder>(body: BodyChunks, decoder: D) -> ChatStream {
    let driver = Driver {
        body: Some(body),
        parser: SseParser::new(),
        decoder,
        queue: VecDeque::new(),
        done: false,
    };
    Box::pin(futures::stream::unfold(driver, |mut driver| async move {
        let item = driver.next().await?;
        Some((item, driver))
    }))
}

/// Test helper for the adapters: decodes `bytes` delivered in pieces of `piece` bytes.
#[cfg(test)]
pub async fn decode_in_pieces<D: SseDecoder>(
    bytes: &[u8],
    piece: usize,
    decoder: D,
) -> Vec<Result<StreamEvent, ProviderError>> {
    let chunks: Vec<Result<Bytes, ProviderError>> = bytes
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    decode(Box::pin(futures::stream::iter(chunks)), decoder)
        .collect()
        .await
}

#[cfg(test)]
mod tests;
