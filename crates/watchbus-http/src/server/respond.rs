//! Writing a response to a simple request: the head, then the body, sized
//! or chunked (or, to an HTTP/1.0 client, ended by the close).
//!
//! A streamed body (SSE) is written chunk by chunk, each in one vectored
//! write of the chunk-size line, the router's bytes (shared event frames,
//! batched per wake) and the closing CRLF; nothing is copied and no buffer
//! outlives a write. While it waits for the next chunk, the connection is
//! watched for the client going away, so an abandoned stream ends at once
//! rather than at its next write. A client that takes nothing written to
//! it for the write timeout is cut off (`server::stall`).

use std::cell::RefCell;
use std::io::{self, IoSlice, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::net::TcpStream;

use super::request::MAX_HEAD;
use super::stall;

/// A connection to write a response to, and how long it may take nothing.
pub(super) struct Out<'a> {
    stream: &'a mut TcpStream,
    write_timeout: Duration,
}

impl<'a> Out<'a> {
    pub(super) fn new(stream: &'a mut TcpStream, write_timeout: Duration) -> Self {
        Self {
            stream,
            write_timeout,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all_vectored(&mut [IoSlice::new(bytes)]).await
    }

    /// Writes every byte of `bufs`, in as few writes as the socket allows;
    /// fails when the socket takes nothing for the write timeout.
    async fn write_all_vectored(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        while !bufs.is_empty() {
            let written = match self.stream.try_write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => written,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    stall::writable_within(self.stream, self.write_timeout).await?;
                    continue;
                }
                Err(err) => return Err(err),
            };
            IoSlice::advance_slices(&mut bufs, written);
        }
        Ok(())
    }
}

/// Writes `response` to a request of `version`, saying `connection: close`
/// when `close` (the client asked for it, or the server will close after a
/// refusal). Bytes the client sends meanwhile (a pipelined request) are
/// added to `pending`. Returns whether the connection may carry another
/// request: not after `close`, nor after a stream to an HTTP/1.0 client,
/// which has no chunked encoding and learns the end of the body from the
/// close.
///
/// # Errors
/// The connection failed or the client went away.
pub(super) async fn write(
    mut out: Out<'_>,
    response: Response,
    version: Version,
    close: bool,
    pending: &mut Vec<u8>,
) -> io::Result<bool> {
    let (parts, body) = response.into_parts();
    let framing = Framing::of(parts.status, &body, version);
    // A handler that ends the connection says so as it would to hyper.
    let closes = parts
        .headers
        .get(header::CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
    let close = close || closes || matches!(framing, Framing::UntilClose);
    let mut head = start_head(parts.status);
    write_headers(&mut head, &parts.headers);
    finish_head(&mut head, framing, version, close);
    drop(parts);

    match framing {
        Framing::Empty => out.write_all(&head).await?,
        Framing::Sized(len) => {
            let data = collect(body, len).await?;
            out.write_all_vectored(&mut [IoSlice::new(&head), IoSlice::new(&data)])
                .await?;
        }
        Framing::Chunked | Framing::UntilClose => {
            // The headers go out at once, before the first event.
            out.write_all(&head).await?;
            drop(head);
            let chunked = matches!(framing, Framing::Chunked);
            stream_body(out, body, chunked, pending).await?;
        }
    }
    Ok(!close)
}

/// What to write in answer to a simple request.
pub(super) enum Answer {
    /// A response of the router's, or in its form.
    Routed(Response),
    /// A `200` with this JSON body, written as [`write`] would write the
    /// router's `(StatusCode::OK, [(CONTENT_TYPE, "application/json")], body)`
    /// without building a response.
    Json(String),
}

/// Writes `answer` as [`write`] writes a response.
///
/// # Errors
/// The connection failed or the client went away.
pub(super) async fn write_answer(
    mut out: Out<'_>,
    answer: Answer,
    version: Version,
    close: bool,
    pending: &mut Vec<u8>,
) -> io::Result<bool> {
    let body = match answer {
        Answer::Routed(response) => return write(out, response, version, close, pending).await,
        Answer::Json(body) => body,
    };
    let mut head = start_head(StatusCode::OK);
    push_header(&mut head, b"content-type", b"application/json");
    finish_head(&mut head, Framing::Sized(body.len() as u64), version, close);
    out.write_all_vectored(&mut [IoSlice::new(&head), IoSlice::new(body.as_bytes())])
        .await?;
    Ok(!close)
}

/// The status line.
fn start_head(status: StatusCode) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    head.extend_from_slice(b"\r\n");
    head
}

/// The headers that are ours to set, and the blank line.
fn finish_head(head: &mut Vec<u8>, framing: Framing, version: Version, close: bool) {
    head.extend_from_slice(b"date: ");
    push_date(head);
    head.extend_from_slice(b"\r\n");
    match framing {
        Framing::Empty | Framing::UntilClose => {}
        Framing::Sized(len) => {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        // HTTP/1.0 closes unless both sides say otherwise.
        head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    /// A status that has no body.
    Empty,
    Sized(u64),
    Chunked,
    /// A stream to an HTTP/1.0 client: the body ends with the connection.
    UntilClose,
}

impl Framing {
    fn of(status: StatusCode, body: &Body, version: Version) -> Self {
        use axum::body::HttpBody as _;
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Self::Empty;
        }
        match body.size_hint().exact() {
            Some(len) => Self::Sized(len),
            None if version == Version::HTTP_10 => Self::UntilClose,
            None => Self::Chunked,
        }
    }
}

/// The router's headers, minus the framing ones, which are ours to set.
fn write_headers(head: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || name == header::DATE
        {
            continue;
        }
        push_header(head, name.as_str().as_bytes(), value.as_bytes());
    }
}

fn push_header(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Appends the `date` header's value: the current second, formatted once
/// per second and thread rather than for every response.
fn push_date(head: &mut Vec<u8>) {
    thread_local! {
        static FORMATTED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    FORMATTED.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        head.extend_from_slice(text.as_bytes());
    });
}

/// A sized body, whole: our sized bodies are small JSON and text, and come
/// in one chunk, which is then taken as it is.
async fn collect(body: Body, len: u64) -> io::Result<Bytes> {
    let mut chunks = body.into_data_stream();
    let mut data = Bytes::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(io::Error::other)?;
        data = if data.is_empty() {
            chunk
        } else {
            [data, chunk].concat().into()
        };
    }
    if data.len() as u64 != len {
        return Err(io::Error::other(
            "the body's length differs from its size hint",
        ));
    }
    Ok(data)
}

/// Writes a streamed body until it ends: as chunks, then the last chunk,
/// when `chunked`; as it is otherwise.
async fn stream_body(
    mut out: Out<'_>,
    body: Body,
    chunked: bool,
    pending: &mut Vec<u8>,
) -> io::Result<()> {
    let mut chunks = body.into_data_stream();
    loop {
        let chunk = tokio::select! {
            chunk = chunks.next() => chunk,
            readable = out.stream.readable() => {
                readable?;
                take_input(out.stream, pending)?;
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(io::Error::other)?;
        if chunk.is_empty() {
            // An empty chunk would end the body.
            continue;
        }
        if !chunked {
            out.write_all(&chunk).await?;
            continue;
        }
        let mut size = [0u8; 20];
        let size = chunk_size_line(&mut size, chunk.len());
        out.write_all_vectored(&mut [
            IoSlice::new(size),
            IoSlice::new(&chunk),
            IoSlice::new(b"\r\n"),
        ])
        .await?;
    }
    if chunked {
        out.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// `len` in hex and CRLF, the line that starts a chunk.
fn chunk_size_line(buf: &mut [u8; 20], len: usize) -> &[u8] {
    let mut cursor = io::Cursor::new(buf.as_mut_slice());
    // 16 hex digits and CRLF always fit in 20 bytes.
    let _ = write!(cursor, "{len:x}\r\n");
    let end = usize::try_from(cursor.position()).unwrap_or(0);
    buf.get(..end).unwrap_or_default()
}

/// Reads what the client sent while its response streams. A closed
/// connection ends the response; anything else is kept as the next
/// request, up to the size of a head.
fn take_input(stream: &TcpStream, pending: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 512];
    match stream.try_read(&mut buf) {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => {
            if pending.len() + n > MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "too much pipelined input while a response streams",
                ));
            }
            pending.extend_from_slice(buf.get(..n).unwrap_or_default());
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_hex() {
        let mut buf = [0u8; 20];
        assert_eq!(chunk_size_line(&mut buf, 0), b"0\r\n");
        assert_eq!(chunk_size_line(&mut buf, 255), b"ff\r\n");
        assert_eq!(
            chunk_size_line(&mut buf, usize::MAX),
            b"ffffffffffffffff\r\n"
        );
    }
}
