//! Minimal HTTP/1.1 pieces for the load generator: a target parsed from a
//! URL, a response-head parser and an incremental chunked-transfer decoder.
//!
//! They are written for speed on the receive path: the decoders work on the
//! caller's buffers and hand out sub-slices, they never allocate per chunk.

use anyhow::{Context, bail};
use std::net::SocketAddr;

/// One `http://` endpoint: where to connect and what to put in the request.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// `host[:port]` for the `Host` header.
    pub(crate) host_header: String,
    /// Path plus query, e.g. `/v1/events?key=bench-0`.
    pub(crate) path_and_query: String,
}

impl Target {
    /// Parses `url` (scheme `http` or `ws`) and resolves its host.
    pub(crate) async fn resolve(url: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url).with_context(|| format!("invalid URL {url:?}"))?;
        match parsed.scheme() {
            "http" | "ws" => {}
            other => bail!("unsupported URL scheme {other:?} in {url:?} (only http:// and ws://)"),
        }
        let host = parsed
            .host_str()
            .with_context(|| format!("URL {url:?} has no host"))?
            .to_owned();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addr =
            tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
                .await
                .with_context(|| format!("cannot resolve {host}"))?
                .next()
                .with_context(|| format!("{host} resolves to no address"))?;
        let host_header = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let mut path_and_query = parsed.path().to_owned();
        if let Some(q) = parsed.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(Self {
            addr,
            host_header,
            path_and_query,
        })
    }

    /// Same server, another path and query.
    pub(crate) fn with_path(&self, path_and_query: String) -> Self {
        Self {
            addr: self.addr,
            host_header: self.host_header.clone(),
            path_and_query,
        }
    }
}

/// How the body of a response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Chunked,
    Length(u64),
    /// Until the connection closes.
    UntilClose,
}

/// The parts of a response head the bench needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) body: BodyKind,
    /// The server said `Connection: close` (or spoke HTTP/1.0 without keep-alive).
    pub(crate) close: bool,
    /// Length of the head in bytes, including the blank line.
    pub(crate) head_len: usize,
}

/// Looks for a complete response head at the start of `buf`.
/// `Ok(None)` means more bytes are needed.
pub(crate) fn parse_response_head(buf: &[u8]) -> anyhow::Result<Option<ResponseHead>> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            bail!("response head larger than 64 KiB");
        }
        return Ok(None);
    };
    let head_len = end + 4;
    let head = buf.get(..end).unwrap_or_default();
    let head = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x response: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    let body = if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        BodyKind::Length(0)
    } else {
        BodyKind::UntilClose
    };
    Ok(Some(ResponseHead {
        status,
        body,
        close,
        head_len,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size; `saw_digit` tells whether one digit was read.
    Size {
        size: u64,
        saw_digit: bool,
    },
    /// Skipping a chunk extension up to the LF.
    Ext {
        size: u64,
    },
    /// Expecting the LF of the size line.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines; `line_empty` is true at the start of a line.
    Trailer {
        line_empty: bool,
    },
    Done,
}

/// Incremental decoder of `Transfer-Encoding: chunked`. Feed it bytes as they
/// arrive, split anywhere; it calls back with the data parts as sub-slices.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub(crate) fn new() -> Self {
        Self {
            state: ChunkState::Size {
                size: 0,
                saw_digit: false,
            },
        }
    }

    /// True once the terminating zero-size chunk and trailers were read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes `input`, calling `out` with each run of body bytes. Returns the
    /// number of input bytes consumed: all of it, unless the body ended, in
    /// which case the rest belongs to whatever follows on the connection.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        mut out: impl FnMut(&[u8]),
    ) -> anyhow::Result<usize> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                ChunkState::Data { left } => {
                    let avail = input.len() - i;
                    let take = usize::try_from(left).map_or(avail, |l| l.min(avail));
                    if let Some(part) = input.get(i..i + take) {
                        out(part);
                    }
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data { left }
                    };
                    continue;
                }
                ChunkState::Done => return Ok(i),
                _ => {}
            }
            let b = input.get(i).copied().unwrap_or_default();
            i += 1;
            self.state = match self.state {
                ChunkState::Size { size, saw_digit } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = u64::from(hex_val(b));
                        if size > (u64::MAX >> 4) {
                            bail!("chunk size overflows");
                        }
                        ChunkState::Size {
                            size: size << 4 | d,
                            saw_digit: true,
                        }
                    }
                    b';' | b' ' | b'\t' if saw_digit => ChunkState::Ext { size },
                    b'\r' if saw_digit => ChunkState::SizeLf { size },
                    b'\n' if saw_digit => Self::after_size(size),
                    _ => bail!("bad byte {b:#04x} in chunk size"),
                },
                ChunkState::Ext { size } => match b {
                    b'\n' => Self::after_size(size),
                    _ => ChunkState::Ext { size },
                },
                ChunkState::SizeLf { size } => match b {
                    b'\n' => Self::after_size(size),
                    _ => bail!("expected LF after chunk size"),
                },
                ChunkState::DataCr => match b {
                    b'\r' => ChunkState::DataLf,
                    b'\n' => ChunkState::Size {
                        size: 0,
                        saw_digit: false,
                    },
                    _ => bail!("expected CRLF after chunk data"),
                },
                ChunkState::DataLf => match b {
                    b'\n' => ChunkState::Size {
                        size: 0,
                        saw_digit: false,
                    },
                    _ => bail!("expected LF after chunk data"),
                },
                ChunkState::Trailer { line_empty } => match b {
                    b'\n' if line_empty => ChunkState::Done,
                    b'\n' => ChunkState::Trailer { line_empty: true },
                    b'\r' => ChunkState::Trailer { line_empty },
                    _ => ChunkState::Trailer { line_empty: false },
                },
                ChunkState::Data { .. } | ChunkState::Done => self.state,
            };
        }
        Ok(i)
    }

    fn after_size(size: u64) -> ChunkState {
        if size == 0 {
            ChunkState::Trailer { line_empty: true }
        } else {
            ChunkState::Data { left: size }
        }
    }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// Writes a request head (and body) into `out`, reusing its allocation.
pub(crate) fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    target: &Target,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) {
    use std::io::Write as _;
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{method} {path_and_query} HTTP/1.1\r\nHost: {}\r\n",
        target.host_header
    );
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if let Some(body) = body {
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(input: &[u8], splits: &[usize]) -> (Vec<u8>, bool, usize) {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut start = 0;
        let mut bounds: Vec<usize> = splits.to_vec();
        bounds.push(input.len());
        for end in bounds {
            let part = &input[start..end];
            let n = dec.feed(part, |d| out.extend_from_slice(d)).unwrap();
            consumed += n;
            start = end;
        }
        (out, dec.is_done(), consumed)
    }

    #[test]
    fn chunked_whole() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\nNEXT";
        let (out, done, consumed) = decode_split(body, &[]);
        assert_eq!(out, b"hello, world");
        assert!(done);
        assert_eq!(consumed, body.len() - 4);
    }

    #[test]
    fn chunked_split_at_every_pair_of_points() {
        let body =
            b"A\r\n0123456789\r\n1f\r\nabcdefghijklmnopqrstuvwxyz01234\r\n0\r\nX-T: y\r\n\r\n";
        for a in 0..=body.len() {
            for b in a..=body.len() {
                let (out, done, consumed) = decode_split(body, &[a, b]);
                assert_eq!(
                    out, b"0123456789abcdefghijklmnopqrstuvwxyz01234",
                    "split {a},{b}"
                );
                assert!(done);
                assert_eq!(consumed, body.len());
            }
        }
    }

    #[test]
    fn chunked_byte_by_byte_lf_only() {
        let body = b"3\nabc\n2\nde\n0\n\n";
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        for b in body.iter() {
            dec.feed(std::slice::from_ref(b), |d| out.extend_from_slice(d))
                .unwrap();
        }
        assert_eq!(out, b"abcde");
        assert!(dec.is_done());
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut dec = ChunkedDecoder::new();
        assert!(dec.feed(b"zz\r\n", |_| {}).is_err());
        let mut dec = ChunkedDecoder::new();
        assert!(dec.feed(b"2\r\nabX", |_| {}).is_err());
    }

    #[test]
    fn response_head() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nrest";
        let h = parse_response_head(raw).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(!h.close);
        assert_eq!(&raw[h.head_len..], b"rest");

        assert!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nX: y\r\n")
                .unwrap()
                .is_none()
        );

        let h = parse_response_head(
            b"HTTP/1.1 201 Created\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(h.body, BodyKind::Length(12));
        assert!(h.close);

        let h = parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::UntilClose);
        assert!(h.close);

        assert!(parse_response_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    /// Any body, chunked any way and cut anywhere, decodes to its bytes and
    /// ends where it ends; no bytes make the decoder or the head parser
    /// panic.
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn a_chunked_body_cut_anywhere_decodes_to_its_bytes(
                chunks in vec(vec(any::<u8>(), 1..40), 0..6),
                upper in any::<bool>(),
                extension in any::<bool>(),
                trailer in any::<bool>(),
                cuts in vec(any::<usize>(), 0..6),
                after in vec(any::<u8>(), 0..8),
            ) {
                let mut input = Vec::new();
                for chunk in &chunks {
                    let size = if upper {
                        format!("{:X}", chunk.len())
                    } else {
                        format!("{:x}", chunk.len())
                    };
                    input.extend_from_slice(size.as_bytes());
                    if extension {
                        input.extend_from_slice(b";name=value");
                    }
                    input.extend_from_slice(b"\r\n");
                    input.extend_from_slice(chunk);
                    input.extend_from_slice(b"\r\n");
                }
                input.extend_from_slice(b"0\r\n");
                if trailer {
                    input.extend_from_slice(b"X-Trailer: 1\r\n");
                }
                input.extend_from_slice(b"\r\n");
                let body_len = input.len();
                input.extend_from_slice(&after);
                let mut splits: Vec<usize> =
                    cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
                splits.sort_unstable();
                let (out, done, consumed) = decode_split(&input, &splits);
                prop_assert_eq!(out, chunks.concat());
                prop_assert!(done);
                prop_assert_eq!(consumed, body_len);
            }

            #[test]
            fn no_bytes_panic_the_decoder_or_the_head_parser(bytes in vec(any::<u8>(), 0..256)) {
                let _ = ChunkedDecoder::new().feed(&bytes, |_| {});
                let _ = parse_response_head(&bytes);
            }
        }
    }
}
