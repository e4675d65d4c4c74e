//! A small SSE client over a raw TCP socket, so tests see the exact bytes:
//! status line, headers, chunked framing and every SSE field.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::FRAME_TIMEOUT;

/// One SSE frame: the lines up to a blank line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Frame {
    /// `(field, value)` in wire order; comments have the field `""`.
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: Vec<String>,
    pub(crate) comments: Vec<String>,
    /// The frame as it came off the wire (after de-chunking).
    pub(crate) raw: String,
}

impl Frame {
    /// An event a browser would dispatch (or at least try to): has data.
    pub(crate) fn is_event(&self) -> bool {
        !self.data.is_empty() || self.event.is_some()
    }

    /// The data parsed as JSON (the envelope in the default format).
    pub(crate) fn json(&self) -> Value {
        assert_eq!(
            self.data.len(),
            1,
            "expected one data line in frame {:?}",
            self.raw
        );
        serde_json::from_str(&self.data[0])
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {:?}", self.raw))
    }

    /// The names of the fields in order, comments as `:`.
    pub(crate) fn field_names(&self) -> Vec<&str> {
        self.fields
            .iter()
            .map(|(f, _)| if f.is_empty() { ":" } else { f.as_str() })
            .collect()
    }
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The chunked terminator (`0\r\n\r\n`) arrived, or EOF on a
    /// non-chunked body at a frame boundary.
    Clean,
    /// EOF in the middle of a chunk or of a frame.
    Truncated(String),
    /// A socket error (e.g. connection reset).
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NextError {
    Timeout,
    Ended(End),
}

impl fmt::Display for NextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => write!(f, "timed out"),
            Self::Ended(end) => write!(f, "stream ended: {end:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    DataEnd,
    Trailers,
    Done,
}

/// A request sent, response not read yet (a subscriber that never reads).
#[derive(Debug)]
pub(crate) struct Pending {
    stream: TcpStream,
}

impl Pending {
    /// Connects and sends `GET path`; `recv_buffer` shrinks the socket's
    /// receive buffer (for subscribers that fall behind).
    pub(crate) async fn send(
        addr: &str,
        path: &str,
        headers: &[(String, String)],
        recv_buffer: Option<u32>,
    ) -> Self {
        let sock_addr: std::net::SocketAddr = addr.parse().expect("socket address");
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let mut stream = tokio::time::timeout(FRAME_TIMEOUT, socket.connect(sock_addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .expect("write request");
        Self { stream }
    }

    /// The connection, for a test that reads it itself (or never does).
    pub(crate) fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Reads the status line and headers.
    pub(crate) async fn finish(self) -> SseClient {
        SseClient::read_head(self.stream).await
    }
}

/// The client side of one SSE response.
#[derive(Debug)]
pub(crate) struct SseClient {
    stream: TcpStream,
    pub(crate) status: u16,
    /// Header names lower-cased, in order.
    pub(crate) headers: Vec<(String, String)>,
    chunked: bool,
    chunk: Chunk,
    raw: Vec<u8>,
    body: Vec<u8>,
    ended: Option<End>,
    eof: bool,
}

impl SseClient {
    pub(crate) async fn connect(addr: &str, path: &str, headers: &[(String, String)]) -> Self {
        Pending::send(addr, path, headers, None)
            .await
            .finish()
            .await
    }

    async fn read_head(mut stream: TcpStream) -> Self {
        let deadline = Instant::now() + FRAME_TIMEOUT;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos;
            }
            let mut chunk = [0_u8; 4096];
            let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Err(_) => panic!(
                    "response headers not received within {FRAME_TIMEOUT:?} (headers must be flushed at once); got {:?}",
                    String::from_utf8_lossy(&buf)
                ),
                Ok(Err(e)) => panic!(
                    "reading response head: {e}; got {:?}",
                    String::from_utf8_lossy(&buf)
                ),
                Ok(Ok(n)) => n,
            };
            assert!(
                n > 0,
                "EOF before the end of the response head; got {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let rest = buf[head_end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        assert!(
            version.starts_with("HTTP/1."),
            "bad status line {status_line:?}"
        );
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
        let mut client = Self {
            stream,
            status,
            headers,
            chunked,
            chunk: Chunk::Size,
            raw: Vec::new(),
            body: Vec::new(),
            ended: None,
            eof: false,
        };
        client.push_raw(&rest);
        client
    }

    /// Panics with the response body unless the status is 200.
    pub(crate) fn expect_ok(self, what: &str) -> Self {
        if self.status != 200 {
            let body = String::from_utf8_lossy(&self.body).into_owned();
            panic!(
                "GET {what}: expected 200, got {} (headers {:?}, body so far {body:?})",
                self.status, self.headers
            );
        }
        self
    }

    /// The first header of that (lower-case) name.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn push_raw(&mut self, bytes: &[u8]) {
        if !self.chunked {
            self.body.extend_from_slice(bytes);
            return;
        }
        self.raw.extend_from_slice(bytes);
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(pos) = find(&self.raw, b"\r\n") else {
                        return;
                    };
                    let line = String::from_utf8_lossy(&self.raw[..pos]).into_owned();
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                    self.raw.drain(..pos + 2);
                    self.chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if self.raw.is_empty() {
                        return;
                    }
                    let take = left.min(self.raw.len());
                    self.body.extend(self.raw.drain(..take));
                    self.chunk = if take == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - take)
                    };
                }
                Chunk::DataEnd => {
                    if self.raw.len() < 2 {
                        return;
                    }
                    assert_eq!(&self.raw[..2], b"\r\n", "chunk data not followed by CRLF");
                    self.raw.drain(..2);
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    let Some(pos) = find(&self.raw, b"\r\n") else {
                        return;
                    };
                    self.raw.drain(..pos + 2);
                    if pos == 0 {
                        self.chunk = Chunk::Done;
                        self.ended = Some(End::Clean);
                    }
                }
                Chunk::Done => return,
            }
        }
    }

    /// Reads more bytes into the body buffer.
    async fn fill(&mut self, deadline: Instant) -> Result<(), NextError> {
        let mut buf = vec![0_u8; 64 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
            Err(_) => Err(NextError::Timeout),
            Ok(Err(e)) => {
                self.eof = true;
                if self.ended.is_none() {
                    self.ended = Some(End::Error(e.to_string()));
                }
                Ok(())
            }
            Ok(Ok(0)) => {
                self.eof = true;
                Ok(())
            }
            Ok(Ok(n)) => {
                self.push_raw(&buf[..n]);
                Ok(())
            }
        }
    }

    /// The next frame (events, comments, bookmarks), within `timeout`.
    pub(crate) async fn next_frame_within(
        &mut self,
        timeout: Duration,
    ) -> Result<Frame, NextError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.parse_frame() {
                return Ok(frame);
            }
            if let Some(end) = self.end_state() {
                return Err(NextError::Ended(end));
            }
            self.fill(deadline).await?;
        }
    }

    /// How the stream ended, once it has (and no whole frame is left).
    fn end_state(&self) -> Option<End> {
        let partial = self.body.iter().any(|&b| b != b'\n' && b != b'\r');
        let partial_text = || {
            format!(
                "stream ended inside a frame: {:?}",
                String::from_utf8_lossy(&self.body)
            )
        };
        match &self.ended {
            Some(End::Clean) if partial => Some(End::Truncated(partial_text())),
            Some(end) => Some(end.clone()),
            None if !self.eof => None,
            None if self.chunked => Some(End::Truncated(format!(
                "EOF without the chunked terminator (state {:?})",
                self.chunk
            ))),
            None if partial => Some(End::Truncated(partial_text())),
            None => Some(End::Clean),
        }
    }

    /// The next frame within the default timeout.
    pub(crate) async fn next_frame(&mut self) -> Result<Frame, NextError> {
        self.next_frame_within(FRAME_TIMEOUT).await
    }

    /// Reads the opening bookmark of a stream that started live, asserting
    /// its exact bytes (`: live`, `id: <start>`), and returns the id.
    pub(crate) async fn opening(&mut self) -> String {
        let frame = self
            .next_frame()
            .await
            .unwrap_or_else(|e| panic!("no opening bookmark: {e}"));
        let id = frame
            .id
            .clone()
            .unwrap_or_else(|| panic!("the opening frame has no id: {:?}", frame.raw));
        assert_eq!(frame.raw, format!(": live\nid: {id}\n\n"), "opening frame");
        id
    }

    /// The next event frame (skipping comments and id-only bookmarks);
    /// panics on timeout or end of stream.
    pub(crate) async fn next_event(&mut self) -> Frame {
        loop {
            match self.next_frame().await {
                Ok(frame) if frame.is_event() => return frame,
                Ok(_) => {}
                Err(e) => panic!("waiting for an SSE event: {e}"),
            }
        }
    }

    /// The next `n` events' ids.
    pub(crate) async fn next_ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let frame = self.next_event().await;
            ids.push(
                frame
                    .id
                    .clone()
                    .unwrap_or_else(|| panic!("event frame without id: {:?}", frame.raw)),
            );
        }
        ids
    }

    /// The next event's envelope (default format).
    pub(crate) async fn next_envelope(&mut self) -> Value {
        self.next_event().await.json()
    }

    /// Reads until the stream ends (bounded); returns the event frames seen
    /// and how it ended.
    pub(crate) async fn read_to_end(&mut self, timeout: Duration) -> (Vec<Frame>, End) {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_frame_within(left).await {
                Ok(frame) => {
                    if frame.is_event() {
                        frames.push(frame);
                    }
                }
                Err(NextError::Ended(end)) => return (frames, end),
                Err(NextError::Timeout) => panic!(
                    "the stream did not end within {timeout:?} (got {} events, last {:?})",
                    frames.len(),
                    frames.last().map(|f| f.raw.clone())
                ),
            }
        }
    }

    /// Asserts the stream ends cleanly (bounded) and returns any events
    /// delivered before the end.
    pub(crate) async fn expect_clean_end(&mut self) -> Vec<Frame> {
        let (frames, end) = self.read_to_end(FRAME_TIMEOUT).await;
        assert_eq!(end, End::Clean, "the stream did not end cleanly");
        frames
    }

    /// Parses one complete frame from the decoded body, if there is one.
    fn parse_frame(&mut self) -> Option<Frame> {
        let mut frame = Frame::default();
        let mut pos = 0;
        let body = &self.body;
        loop {
            let rest = &body[pos..];
            let brk = rest.iter().position(|&b| b == b'\n' || b == b'\r')?;
            let mut next = pos + brk + 1;
            if rest[brk] == b'\r' {
                match rest.get(brk + 1) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    // A CR at the end of what we have: maybe CRLF; wait.
                    None if self.ended.is_none() && !self.eof => return None,
                    None => {}
                }
            }
            let line = String::from_utf8_lossy(&rest[..brk]).into_owned();
            pos = next;
            if line.is_empty() {
                if frame.fields.is_empty() {
                    // A stray blank line; SSE ignores it.
                    continue;
                }
                frame.raw = String::from_utf8_lossy(&body[..pos]).into_owned();
                self.body.drain(..pos);
                return Some(frame);
            }
            let (field, value) = match line.strip_prefix(':') {
                Some(comment) => (
                    String::new(),
                    comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
                ),
                None => match line.split_once(':') {
                    Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                    None => (line.clone(), String::new()),
                },
            };
            match field.as_str() {
                "" => frame.comments.push(value.clone()),
                "id" => frame.id = Some(value.clone()),
                "event" => frame.event = Some(value.clone()),
                "data" => frame.data.push(value.clone()),
                _ => {}
            }
            frame.fields.push((field, value));
        }
    }

    /// Closes the connection (FIN).
    pub(crate) fn close(self) {
        drop(self);
    }

    /// Closes the connection with a reset (RST), as a crashed client would.
    pub(crate) fn reset(self) {
        let _ = self.stream.set_zero_linger();
        drop(self);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
