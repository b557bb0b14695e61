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
