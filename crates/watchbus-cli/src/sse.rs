//! A Server-Sent Events parser, following the WHATWG HTML standard's
//! "interpreting an event stream", fed with chunks as they arrive.
//!
//! * Lines end with CR, LF or CRLF, also when a CRLF is split across chunks.
//! * A line starting with `:` is a comment (keep-alives) and is ignored.
//! * `data:` lines accumulate, joined with `\n`; a blank line dispatches the
//!   event, unless no `data` line came (then nothing is dispatched).
//! * `id:` sets the last event id, committed when the frame's blank line
//!   arrives, whether or not the frame has data: an id-only frame (a watchbus
//!   bookmark) moves the resume point without producing an event. An id
//!   containing NUL is ignored, as browsers do.
//! * A frame cut off by the end of the connection is discarded, and its id is
//!   not committed, so resuming never skips an event that was not shown.
//! * One leading byte-order mark is skipped; invalid UTF-8 becomes U+FFFD.

use std::time::Duration;

/// A dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The last event id when the event was dispatched.
    pub(crate) id: Option<String>,
    /// The `event:` field, if the frame had one.
    pub(crate) event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

/// Parses one connection's byte stream.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// The bytes of the line being read, without its terminator.
    line: Vec<u8>,
    /// The previous chunk ended with CR: a leading LF is that CR's partner.
    after_cr: bool,
    /// No line has been completed yet (where a byte-order mark may be).
    first_line: bool,
    data: String,
    event: Option<String>,
    /// The id of the frame being read (the standard's "last event ID buffer").
    pending_id: Option<String>,
    /// The id committed by the last complete frame.
    last_id: Option<String>,
    retry: Option<Duration>,
}

impl SseParser {
    /// A parser for a new connection, resuming from `last_id`.
    pub(crate) fn new(last_id: Option<String>) -> Self {
        Self {
            first_line: true,
            pending_id: last_id.clone(),
            last_id,
            ..Self::default()
        }
    }

    /// The id to resume from: the last one committed by a complete frame.
    pub(crate) fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection delay the server asked for with `retry:`, if any.
    pub(crate) fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Feeds the next chunk, pushing every event it completes onto `out`.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\r' || b == b'\n') {
            let (line, rest) = chunk.split_at(end);
            self.line.extend_from_slice(line);
            // `rest` starts with the terminator; a CRLF counts as one.
            let terminator_len = match rest {
                [b'\r', b'\n', ..] => 2,
                [b'\r'] => {
                    self.after_cr = true;
                    1
                }
                _ => 1,
            };
            chunk = rest.get(terminator_len..).unwrap_or_default();
            self.end_line(out);
        }
        self.line.extend_from_slice(chunk);
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let bytes = std::mem::take(&mut self.line);
        let mut line = String::from_utf8_lossy(&bytes);
        if std::mem::take(&mut self.first_line) {
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_owned().into();
            }
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
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.pending_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(millis) = value.parse() {
                    self.retry = Some(Duration::from_millis(millis));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        self.last_id.clone_from(&self.pending_id);
        let event = self.event.take();
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(SseEvent {
            id: self.last_id.clone(),
            event: event.filter(|event| !event.is_empty()),
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<String>) {
        let mut parser = SseParser::new(None);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out);
        }
        (out, parser.last_event_id().map(str::to_owned))
    }

    fn parse(input: &str) -> (Vec<SseEvent>, Option<String>) {
        parse_chunks(&[input.as_bytes()])
    }

    fn event(id: Option<&str>, event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(str::to_owned),
            event: event.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    /// Every way of cutting `input` in two, and byte by byte, parses the
    /// same as the whole.
    fn assert_split_invariant(input: &str) {
        let bytes = input.as_bytes();
        let whole = parse_chunks(&[bytes]);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(parse_chunks(&[a, b]), whole, "cut at {cut} of {input:?}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_chunks(&singles), whole, "byte by byte: {input:?}");
    }

    #[test]
    fn a_frame_with_id_type_and_data_is_one_event() {
        let (events, last) = parse("id: 7\nevent: user.created\ndata: {\"a\":1}\n\n");
        assert_eq!(
            events,
            [event(Some("7"), Some("user.created"), "{\"a\":1}")]
        );
        assert_eq!(last.as_deref(), Some("7"));
    }

    #[test]
    fn lf_cr_and_crlf_line_ends_are_alike() {
        let expected = parse("id: 1\ndata: a\n\nid: 2\ndata: b\n\n");
        assert_eq!(parse("id: 1\rdata: a\r\rid: 2\rdata: b\r\r"), expected);
        assert_eq!(
            parse("id: 1\r\ndata: a\r\n\r\nid: 2\r\ndata: b\r\n\r\n"),
            expected
        );
        assert_eq!(parse("id: 1\r\ndata: a\r\rid: 2\ndata: b\r\n\n"), expected);
        assert_eq!(expected.0.len(), 2);
    }

    #[test]
    fn multi_line_data_is_joined_with_lf() {
        let (events, _) = parse("data: one\ndata:two\ndata:  three\n\n");
        assert_eq!(events, [event(None, None, "one\ntwo\n three")]);
    }

    #[test]
    fn an_empty_data_line_is_an_empty_line_of_data() {
        assert_eq!(parse("data\n\n").0, [event(None, None, "")]);
        assert_eq!(parse("data:\n\n").0, [event(None, None, "")]);
        assert_eq!(parse("data: a\ndata:\n\n").0, [event(None, None, "a\n")]);
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        let (events, last) = parse(": keep-alive\n\n:x\nfoo: bar\ndata: d\n\n");
        assert_eq!(events, [event(None, None, "d")]);
        assert_eq!(last, None);
    }

    #[test]
    fn an_id_only_frame_moves_the_resume_point_without_an_event() {
        let (events, last) = parse("id: 1\ndata: a\n\n: keep-alive\nid: 9\n\n");
        assert_eq!(events, [event(Some("1"), None, "a")]);
        assert_eq!(last.as_deref(), Some("9"));
    }

    #[test]
    fn a_frame_cut_off_is_neither_dispatched_nor_committed() {
        let (events, last) = parse("id: 1\ndata: a\n\nid: 2\ndata: b\n");
        assert_eq!(events, [event(Some("1"), None, "a")]);
        assert_eq!(last.as_deref(), Some("1"));
    }

    #[test]
    fn the_id_persists_and_the_type_does_not() {
        let (events, _) = parse("id: 1\nevent: t\ndata: a\n\ndata: b\n\n");
        assert_eq!(
            events,
            [
                event(Some("1"), Some("t"), "a"),
                event(Some("1"), None, "b")
            ]
        );
    }

    #[test]
    fn an_empty_id_resets_and_an_id_with_nul_is_ignored() {
        assert_eq!(parse("id: 1\n\nid\n\n").1.as_deref(), Some(""));
        assert_eq!(parse("id: 1\n\nid: 2\0\n\n").1.as_deref(), Some("1"));
    }

    #[test]
    fn a_parser_resumes_from_the_given_id() {
        let mut parser = SseParser::new(Some("5".into()));
        let mut out = Vec::new();
        parser.feed(b"data: x\n\n", &mut out);
        assert_eq!(out, [event(Some("5"), None, "x")]);
        assert_eq!(parser.last_event_id(), Some("5"));
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let (events, _) = parse("\u{feff}data: a\n\n");
        assert_eq!(events, [event(None, None, "a")]);
    }

    #[test]
    fn retry_takes_only_digits() {
        let mut parser = SseParser::new(None);
        parser.feed(b"retry: 250\n\nretry: 1s\n\n", &mut Vec::new());
        assert_eq!(parser.retry(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn split_anywhere_parses_the_same() {
        for input in [
            "id: 1\nevent: t\ndata: {\"a\":1}\n\n",
            "id: 1\r\ndata: a\r\n\r\n: keep-alive\r\n\r\nid: 2\r\n\r\n",
            "data: a\rdata: b\r\rid: 3\r\r",
            "\u{feff}data: h\u{e9}llo \u{1f600}\r\n\r\n",
            ":c\r\n\r\ndata:x\r\ndata\r\n\r\nid: 4\ndata: y\n\n",
        ] {
            assert_split_invariant(input);
        }
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_end() {
        let (events, _) = parse_chunks(&[b"data: a\r", b"", b"\n\r", b"\n"]);
        assert_eq!(events, [event(None, None, "a")]);
        let (events, _) = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\r"]);
        assert_eq!(events, [event(None, None, "a\nb")]);
    }

    // Random streams cut anywhere, against this parser and the bench's:
    // crate::bench::sse's property tests.
}
