//! A one-pass Server-Sent Events parser over bytes.
//!
//! Bytes may arrive split anywhere. Complete lines are taken straight from the
//! input; only a line cut by the end of a read is copied into a reusable
//! buffer. The data of an event is gathered into another reusable buffer, so
//! once the buffers have grown to the size of the largest event the parser
//! does not allocate any more.

/// Incremental SSE parser (the `text/event-stream` format of the HTML spec).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// A line cut by the end of the previous input.
    partial: Vec<u8>,
    /// The data lines of the event being read, joined by `\n`.
    data: Vec<u8>,
    /// Whether a `data` field was seen in the event being read.
    has_data: bool,
    /// The `event` field of the event being read.
    event: Vec<u8>,
    /// The previous input ended with CR: a LF at the start of the next input
    /// belongs to that line ending.
    skip_lf: bool,
}

impl SseParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Parses `input`, calling `on_event(event_type, data)` for every event
    /// completed by it. `event_type` is empty when the event has none.
    pub(crate) fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(&[u8], &[u8])) {
        loop {
            if self.skip_lf {
                match input.first() {
                    None => return,
                    Some(b'\n') => input = input.get(1..).unwrap_or_default(),
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            let Some(pos) = memchr::memchr2(b'\n', b'\r', input) else {
                self.partial.extend_from_slice(input);
                return;
            };
            let (line, rest) = input.split_at(pos);
            let Some((&terminator, rest)) = rest.split_first() else {
                return;
            };
            if self.partial.is_empty() {
                process_line(
                    line,
                    &mut self.data,
                    &mut self.has_data,
                    &mut self.event,
                    on_event,
                );
            } else {
                self.partial.extend_from_slice(line);
                let partial = std::mem::take(&mut self.partial);
                process_line(
                    &partial,
                    &mut self.data,
                    &mut self.has_data,
                    &mut self.event,
                    on_event,
                );
                self.partial = partial;
                self.partial.clear();
            }
            self.skip_lf = terminator == b'\r';
            input = rest;
        }
    }
}

fn process_line(
    line: &[u8],
    data: &mut Vec<u8>,
    has_data: &mut bool,
    event: &mut Vec<u8>,
    on_event: &mut impl FnMut(&[u8], &[u8]),
) {
    if line.is_empty() {
        if *has_data {
            on_event(event, data);
        }
        data.clear();
        *has_data = false;
        event.clear();
        return;
    }
    if line.first() == Some(&b':') {
        return; // comment
    }
    let (field, value) = match memchr::memchr(b':', line) {
        Some(i) => {
            let (f, v) = line.split_at(i);
            let v = v.get(1..).unwrap_or_default();
            (f, v.strip_prefix(b" ").unwrap_or(v))
        }
        None => (line, &b""[..]),
    };
    match field {
        b"data" => {
            if *has_data {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
            *has_data = true;
        }
        b"event" => {
            event.clear();
            event.extend_from_slice(value);
        }
        _ => {} // id, retry and unknown fields do not matter here
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(parts: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for part in parts {
            p.feed(part, &mut |ev: &[u8], data: &[u8]| {
                out.push((
                    String::from_utf8(ev.to_vec()).unwrap(),
                    String::from_utf8(data.to_vec()).unwrap(),
                ));
            });
        }
        out
    }

    const STREAM: &[u8] = b": hello\n\nid: 1\ndata: {\"a\":1}\n\nid: 2\r\nevent: user.created\r\ndata: line one\r\ndata:line two\r\ndata\r\n\r\n: keep-alive\n\nid: 3\n\ndata: cr only\rdata: x\r\rretry: 10\ndata:  two spaces\n\n";

    fn expected() -> Vec<(String, String)> {
        vec![
            (String::new(), "{\"a\":1}".to_owned()),
            ("user.created".to_owned(), "line one\nline two\n".to_owned()),
            (String::new(), "cr only\nx".to_owned()),
            (String::new(), " two spaces".to_owned()),
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(parse_all(&[STREAM]), expected());
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            assert_eq!(parse_all(&[a, b]), expected(), "split at {i}");
        }
    }

    #[test]
    fn split_at_every_pair_of_boundaries() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let parts = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(parse_all(&parts), expected(), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let parts: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_all(&parts), expected());
    }

    #[test]
    fn crlf_split_between_cr_and_lf_is_one_line_ending() {
        // "data: a\r" | "\n\r\n": the LF after the CR must not end an (empty) line early.
        assert_eq!(
            parse_all(&[b"data: a\r", b"\n\r\n"]),
            vec![(String::new(), "a".to_owned())]
        );
        // But a CR followed by another line is two lines.
        assert_eq!(
            parse_all(&[b"data: a\r", b"\r"]),
            vec![(String::new(), "a".to_owned())]
        );
    }

    #[test]
    fn no_event_without_blank_line_or_data() {
        assert!(parse_all(&[b"data: pending\n"]).is_empty());
        assert!(parse_all(&[b"id: 5\nevent: x\n\n"]).is_empty());
        // The event field does not leak into the next event.
        assert_eq!(
            parse_all(&[b"event: x\n\ndata: y\n\n"]),
            vec![(String::new(), "y".to_owned())]
        );
    }

    #[test]
    fn buffers_are_reused() {
        let mut p = SseParser::new();
        let mut n = 0;
        let frame = b"id: 1\ndata: 0123456789012345678901234567890123456789\n\n";
        p.feed(frame, &mut |_: &[u8], _: &[u8]| n += 1);
        let cap = p.data.capacity();
        for _ in 0..1000 {
            let (a, b) = frame.split_at(20);
            p.feed(a, &mut |_: &[u8], _: &[u8]| n += 1);
            p.feed(b, &mut |_: &[u8], _: &[u8]| n += 1);
        }
        assert_eq!(n, 1001);
        assert_eq!(p.data.capacity(), cap);
    }

    /// Random streams cut anywhere read as they read whole, in this parser
    /// and in `watchbus watch`'s ([`crate::sse`], ids and retry included),
    /// and both read the same events: the bench counts exactly the events
    /// a client shows.
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        use super::*;
        use crate::sse::SseParser as WatchParser;

        /// Streams made of the pieces that matter to SSE: field names,
        /// colons, spaces, every line ending, and bytes that are not UTF-8.
        fn stream() -> impl Strategy<Value = Vec<u8>> {
            let token = select(vec![
                &b"data"[..],
                b"event",
                b"id",
                b"retry",
                b":",
                b": ",
                b" ",
                b"\r",
                b"\n",
                b"\r\n",
                b"x",
                b"7",
                "\u{e9}".as_bytes(),
                b"\xff",
                b"\xc3",
                b"\0",
            ]);
            vec(token, 0..64).prop_map(|tokens| tokens.concat())
        }

        /// `bytes` cut at `cuts`, each taken modulo its length + 1.
        fn pieces<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
            let mut at: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
            at.push(0);
            at.push(bytes.len());
            at.sort_unstable();
            at.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
        }

        fn bench_events(parts: &[&[u8]]) -> Vec<(String, String)> {
            let mut parser = SseParser::new();
            let mut out = Vec::new();
            for part in parts {
                parser.feed(part, &mut |event: &[u8], data: &[u8]| {
                    let text = |bytes| String::from_utf8_lossy(bytes).into_owned();
                    out.push((text(event), text(data)));
                });
            }
            out
        }

        /// The events `watchbus watch` reads, as the bench's parser gives
        /// them: type (empty when none) and data.
        fn watch_events(parts: &[&[u8]]) -> Vec<(String, String)> {
            watch_state(parts)
                .0
                .into_iter()
                .map(|event| (event.event.unwrap_or_default(), event.data))
                .collect()
        }

        /// What `watchbus watch`'s parser makes of `parts`: the events, the
        /// id it would resume from, and the retry the server asked for.
        fn watch_state(
            parts: &[&[u8]],
        ) -> (
            Vec<crate::sse::SseEvent>,
            Option<String>,
            Option<std::time::Duration>,
        ) {
            let mut parser = WatchParser::new(Some("0-0".into()));
            let mut out = Vec::new();
            for part in parts {
                parser.feed(part, &mut out);
            }
            let last = parser.last_event_id().map(str::to_owned);
            (out, last, parser.retry())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn watch_reads_a_stream_cut_anywhere_as_whole(
                bytes in stream(),
                cuts in vec(any::<usize>(), 0..6),
            ) {
                prop_assert_eq!(watch_state(&pieces(&bytes, &cuts)), watch_state(&[&bytes]));
            }

            #[test]
            fn a_stream_cut_anywhere_reads_as_whole_and_as_watch_reads_it(
                bytes in stream(),
                cuts in vec(any::<usize>(), 0..6),
            ) {
                let whole = bench_events(&[&bytes]);
                prop_assert_eq!(&bench_events(&pieces(&bytes, &cuts)), &whole);
                prop_assert_eq!(&watch_events(&pieces(&bytes, &cuts)), &whole);
            }

            #[test]
            fn any_bytes_cut_anywhere_read_as_whole(
                bytes in vec(any::<u8>(), 0..256),
                cuts in vec(any::<usize>(), 0..6),
            ) {
                prop_assert_eq!(bench_events(&pieces(&bytes, &cuts)), bench_events(&[&bytes]));
            }
        }
    }
}
