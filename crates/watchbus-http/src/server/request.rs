//! Reading a request head, and deciding who answers it.
//!
//! Every head is read and parsed here, into a buffer that starts small and
//! is freed as soon as the head is parsed, so a connection waiting on a long
//! stream holds none. A head that is not HTTP, or is too large, is refused
//! here with the API's JSON error. Of the rest, only the simplest requests
//! are answered here: HTTP/1.1 `GET` in origin form, with no body, no
//! upgrade and no `Expect`. Everything else goes to hyper, which implements
//! the rest of HTTP/1.1, with the bytes read so far.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, Version, header};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::ApiError;

/// The largest request head taken, in bytes.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// The most headers in a request head (hyper's default).
const MAX_HEADERS: usize = 100;

/// How much room each read asks for.
const READ_SIZE: usize = 2048;

/// How long a request head may take once its first byte has arrived.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A request this module answers.
#[derive(Debug)]
pub(super) struct Simple {
    pub(super) request: Request<Body>,
    /// The client asked to close the connection after the response.
    pub(super) close: bool,
}

/// What arrived on a connection.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A simple `GET`, parsed; its bytes are consumed from the buffer.
    Simple(Simple),
    /// Anything else; the buffer holds every byte read.
    ForHyper,
    /// Not a request this server takes: answer the error and close.
    Refused(ApiError),
    /// The client closed the connection before a whole head arrived.
    Closed,
}

/// Reads until `pending` holds a whole request head (or shows that the
/// request is not ours). `pending` keeps any bytes after the head, such as a
/// pipelined request, and is empty with no allocation when there are none.
///
/// A connection may wait for its next request as long as it likes, holding
/// no buffer; once a head has begun, it must be whole within
/// [`HEAD_TIMEOUT`], so a client trickling bytes cannot hold a connection
/// (and its buffer) for ever.
pub(super) async fn read(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> std::io::Result<Incoming> {
    let mut deadline = None;
    loop {
        if !pending.is_empty() {
            match parse(pending) {
                Parsed::Simple(simple, len) => {
                    pending.drain(..len.min(pending.len()));
                    if pending.is_empty() {
                        *pending = Vec::new();
                    }
                    return Ok(Incoming::Simple(simple));
                }
                Parsed::ForHyper => return Ok(Incoming::ForHyper),
                Parsed::Refused(error) => return Ok(Incoming::Refused(error)),
                Parsed::Partial if pending.len() >= MAX_HEAD => {
                    return Ok(Incoming::Refused(too_large()));
                }
                Parsed::Partial => {}
            }
            deadline.get_or_insert_with(|| Instant::now() + HEAD_TIMEOUT);
        }
        match deadline {
            None => stream.readable().await?,
            Some(deadline) => match tokio::time::timeout_at(deadline, stream.readable()).await {
                Ok(ready) => ready?,
                Err(_) => {
                    return Ok(Incoming::Refused(ApiError::HeadTimeout {
                        after: HEAD_TIMEOUT,
                    }));
                }
            },
        }
        pending.reserve(READ_SIZE);
        match stream.try_read_buf(pending) {
            // Between requests, or in the middle of a head: either way
            // there is nobody left to answer.
            Ok(0) => return Ok(Incoming::Closed),
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if pending.is_empty() {
                    *pending = Vec::new();
                }
            }
            Err(err) => return Err(err),
        }
    }
}

fn too_large() -> ApiError {
    ApiError::HeadTooLarge {
        max_bytes: MAX_HEAD,
        max_headers: MAX_HEADERS,
    }
}

enum Parsed {
    Simple(Simple, usize),
    ForHyper,
    Refused(ApiError),
    Partial,
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => match simple(&head) {
            Some(simple) => Parsed::Simple(simple, len),
            None => Parsed::ForHyper,
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Refused(too_large()),
        Err(err) => Parsed::Refused(ApiError::MalformedRequest(err.to_string())),
    }
}

/// The request, when it is one this module answers.
fn simple(head: &httparse::Request<'_, '_>) -> Option<Simple> {
    if head.method != Some("GET") || head.version != Some(1) {
        return None;
    }
    let path = head.path?;
    if !path.starts_with('/') {
        return None;
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.version_mut() = Version::HTTP_11;
    *request.uri_mut() = path.parse::<Uri>().ok()?;
    let mut close = false;
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        if name == header::CONTENT_LENGTH {
            // A body, even on a GET, is hyper's to read.
            if value.as_bytes() != b"0" {
                return None;
            }
        } else if name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
        {
            return None;
        } else if name == header::CONNECTION {
            close |= value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        request.headers_mut().append(name, value);
    }
    Some(Simple { request, close })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &str) -> Parsed {
        parse(bytes.as_bytes())
    }

    #[test]
    fn a_plain_get_is_ours_with_its_headers() {
        let Parsed::Simple(simple, len) = parsed(
            "GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-2\r\n\r\nGET /next",
        ) else {
            panic!("not parsed as simple");
        };
        assert_eq!(
            len,
            "GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-2\r\n\r\n".len()
        );
        assert!(!simple.close);
        assert_eq!(simple.request.uri(), "/v1/events?key=a");
        assert_eq!(simple.request.headers()["last-event-id"], "1-2");
    }

    #[test]
    fn connection_close_is_noticed_among_tokens() {
        let Parsed::Simple(simple, _) =
            parsed("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n")
        else {
            panic!("not parsed as simple");
        };
        assert!(simple.close);
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for head in [
            "POST /v1/events HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            "GET /v1/events HTTP/1.0\r\n\r\n",
            "HEAD /v1/events HTTP/1.1\r\n\r\n",
            "OPTIONS /v1/events HTTP/1.1\r\n\r\n",
            "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET http://host/ HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parsed(head), Parsed::ForHyper),
                "{head:?} should go to hyper"
            );
        }
    }

    #[test]
    fn a_head_cut_short_waits_for_more() {
        assert!(matches!(parsed("GET /v1/ev"), Parsed::Partial));
        assert!(matches!(
            parsed("GET / HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
    }

    #[test]
    fn what_is_not_http_is_refused_here() {
        for head in [
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "NOT HTTP AT ALL\r\n\r\n",
            "POST /v1/events HTTP/1.1\r\nContent-Length: 2\r\nBad\x01Header: 1\r\n\r\n{}",
        ] {
            assert!(
                matches!(parsed(head), Parsed::Refused(ApiError::MalformedRequest(_))),
                "{head:?} should be refused"
            );
        }
    }

    #[test]
    fn too_many_headers_are_refused() {
        let mut head = String::from("POST / HTTP/1.1\r\n");
        for i in 0..MAX_HEADERS {
            head.push_str(&format!("x-{i}: y\r\n"));
        }
        let just_enough = format!("{head}\r\n");
        assert!(matches!(parsed(&just_enough), Parsed::ForHyper));
        head.push_str("x-one-more: y\r\n\r\n");
        assert!(matches!(
            parsed(&head),
            Parsed::Refused(ApiError::HeadTooLarge { .. })
        ));
    }
}
