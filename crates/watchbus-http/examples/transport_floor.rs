//! The floor under scenario (f) of `bench/compare-nchan.sh`: an HTTP/1.1
//! server that answers every request with a fixed `200` the size of a
//! watchbus publish receipt and does nothing else. No routing, no headers
//! kept, no event, no store.
//!
//! Its requests/s under the same `wrk` run is the most any server can reach
//! on this machine with that load generator beside it: what is left is the
//! kernel's loopback path, tokio's reactor and wrk itself.
//!
//! ```text
//! cargo build --release -p watchbus-http --example transport_floor
//! target/release/examples/transport_floor 127.0.0.1:8099 &
//! WRK_PAYLOAD=128 wrk -t2 -c8 -d10s -s bench/publish.lua 'http://127.0.0.1:8099/v1/events?key=wrk-0'
//! ```
//!
//! It uses the same runtime as `watchbus serve` (tokio, one worker per
//! core). It reads what a request's `Content-Length` says and answers
//! pipelined requests in order; anything else closes the connection.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A publish receipt as `watchbus serve` sends it, byte for byte the same
/// length.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
content-type: application/json\r\n\
date: Mon, 23 Nov 2026 02:32:36 GMT\r\n\
content-length: 58\r\n\r\n\
{\"id\":\"1795401151447-1\",\"time\":\"2026-11-23T02:32:36.449Z\"}";

#[tokio::main]
async fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("transport_floor listening on {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A connection that breaks off or sends garbage just ends.
            let _ = serve(stream).await;
        });
    }
}

/// Answers requests until the client closes or sends something unparsable.
async fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut input = Vec::with_capacity(4096);
    let mut output = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        input.extend_from_slice(chunk.get(..read).unwrap_or_default());
        let mut consumed = 0;
        while let Some(length) = complete_request(input.get(consumed..).unwrap_or_default())? {
            consumed += length;
            output.extend_from_slice(RESPONSE);
        }
        input.drain(..consumed);
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
    }
}

/// The length of the complete request at the start of `bytes`, head and
/// body, or `None` while it is still arriving.
fn complete_request(bytes: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(bytes) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(io::Error::new(io::ErrorKind::InvalidData, err)),
    };
    let body = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))
        })
        .transpose()?
        .unwrap_or(0);
    let total = head + body;
    Ok((bytes.len() >= total).then_some(total))
}
