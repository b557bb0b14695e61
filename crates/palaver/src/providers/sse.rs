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
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    /// Mixed line endings, multibyte text, comments, fields with and without the space.
    const STREAM: &str = "\u{feff}: a comment\r\n\
        event: greeting\r\n\
        data: héllo wörld 😀\r\n\
        \r\n\
        data:no space\n\
        data:  two spaces kept\n\
        \n\
        id: 7\r\
        retry: 100\r\
        data: cr only ✓\r\
        \r\
        event: empty-data\n\
        data\n\
        \n\
        event: no data, never dispatched\n\
        \n\
        data: {\"json\": \"日本語\"}\r\n\
        data: second line\r\n\
        \r\n\
        unknown: field\n\
        data: last\r\n\r\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            ev(Some("greeting"), "héllo wörld 😀"),
            ev(None, "no space\n two spaces kept"),
            ev(None, "cr only ✓"),
            ev(Some("empty-data"), ""),
            ev(None, "{\"json\": \"日本語\"}\nsecond line"),
            ev(None, "last"),
        ]
    }

    fn parse_pieces(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(parser.push(piece));
        }
        events.extend(parser.finish());
        events
    }

    #[test]
    fn whole_stream() {
        assert_eq!(parse_pieces(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn split_at_every_position() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(parse_pieces(&[a, b]), expected(), "split at {i}");
        }
    }

    #[test]
    fn split_at_every_pair_of_positions() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let pieces = [&bytes[..i], &bytes[i..j], &bytes[j..]];
                assert_eq!(parse_pieces(&pieces), expected(), "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn one_byte_pieces_and_empty_pushes() {
        let bytes = STREAM.as_bytes();
        let mut pieces: Vec<&[u8]> = Vec::new();
        for i in 0..bytes.len() {
            pieces.push(&bytes[i..=i]);
            pieces.push(&[]);
        }
        assert_eq!(parse_pieces(&pieces), expected());
    }

    #[test]
    fn random_piece_sizes() {
        let bytes = STREAM.as_bytes();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            let mut pieces: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let len = (state % 9) as usize;
                let end = (at + len).min(bytes.len());
                pieces.push(&bytes[at..end]);
                at = end;
            }
            assert_eq!(parse_pieces(&pieces), expected());
        }
    }

    #[test]
    fn cr_then_lf_in_the_next_chunk_is_one_line_end() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: a\r").is_empty());
        // The `\n` completes the previous line end; the next `\r\n` is the blank line.
        assert!(parser.push(b"\n").is_empty());
        assert_eq!(parser.push(b"\r"), vec![ev(None, "a")]);
        assert!(parser.push(b"\n").is_empty());
        assert!(parser.finish().is_empty());
    }

    #[test]
    fn eof_without_blank_line_is_lenient() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: [DONE]").is_empty());
        assert_eq!(parser.finish(), vec![ev(None, "[DONE]")]);
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: x\n").is_empty());
        assert_eq!(parser.finish(), vec![ev(None, "x")]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let mut parser = SseParser::new();
        let events = parser.push(b"data: a\xffb\n\n");
        assert_eq!(events, vec![ev(None, "a\u{fffd}b")]);
    }

    #[test]
    fn buffered_counts_incomplete_data() {
        let mut parser = SseParser::new();
        parser.push(b"data: abc\ndata: de");
        assert_eq!(parser.buffered(), "abc\n".len() + "data: de".len());
    }

    /// A decoder that yields each event's data and completes on `end`.
    struct Echo;

    impl SseDecoder for Echo {
        fn event(
            &mut self,
            event: SseEvent,
            out: &mut Vec<StreamEvent>,
        ) -> Result<bool, ProviderError> {
            if event.data == "end" {
                out.push(StreamEvent::Finish {
                    finish_reason: "stop".into(),
                    usage: None,
                });
                return Ok(true);
            }
            out.push(StreamEvent::Delta(event.data));
            Ok(false)
        }

        fn end(&mut self) -> Result<StreamEvent, ProviderError> {
            Err(ProviderError::StreamCut {
                detail: "eof".into(),
            })
        }
    }

    #[tokio::test]
    async fn driver_stops_at_completion_and_reports_cuts() {
        let body = b"data: a\n\ndata: b\n\ndata: end\n\ndata: ignored\n\n";
        for piece in 1..body.len() {
            let events = decode_in_pieces(body, piece, Echo).await;
            let events: Vec<StreamEvent> = events.into_iter().map(|e| e.unwrap()).collect();
            assert_eq!(
                events,
                vec![
                    StreamEvent::Delta("a".into()),
                    StreamEvent::Delta("b".into()),
                    StreamEvent::Finish {
                        finish_reason: "stop".into(),
                        usage: None
                    },
                ]
            );
        }
        let events = decode_in_pieces(b"data: a\n\ndata: b", 3, Echo).await;
        assert_eq!(events.len(), 3);
        assert!(matches!(events[2], Err(ProviderError::StreamCut { .. })));
    }

    #[tokio::test]
    async fn driver_passes_body_errors_and_stops() {
        let chunks: Vec<Result<Bytes, ProviderError>> = vec![
            Ok(Bytes::from_static(b"data: a\n\n")),
            Err(ProviderError::Timeout {
                detail: "idle".into(),
            }),
            Ok(Bytes::from_static(b"data: b\n\n")),
        ];
        let events: Vec<_> = decode(Box::pin(futures::stream::iter(chunks)), Echo)
            .collect()
            .await;
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[0], Ok(StreamEvent::Delta(d)) if d == "a"));
        assert!(matches!(events[1], Err(ProviderError::Timeout { .. })));
    }
}
