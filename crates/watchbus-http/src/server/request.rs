//! Reading a request, and deciding who answers it.
//!
//! Every request head is read and parsed here, into a buffer that holds
//! just what arrived and is freed as soon as the request is taken, so a
//! connection waiting on a long stream, or between requests, holds none.
//! A head that is not HTTP, or is too large, is refused here with the API's
//! JSON error. Of the rest, the common requests are answered here: HTTP/1.1
//! or 1.0 in origin form, with no upgrade, no `Expect` and either no body
//! or one of at most [`MAX_BODY`] bytes framed by `Content-Length` (a
//! publish, in practice), which is read whole before the request goes to
//! the router, or, for a plain publish on a server that has them, to
//! [`super::publish`] without the router.
//! Everything else goes to hyper, which implements the rest of HTTP/1.1,
//! with the bytes read so far.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use bytes::Bytes;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::publish::Publish;
use crate::ApiError;

/// The largest request head taken, in bytes.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// The largest body read here. A larger one is streamed by hyper, so the
/// router's own limit (and its `413`) applies to it as it arrives.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// The most headers in a request head (hyper's default).
const MAX_HEADERS: usize = 100;

/// The room made for each read: most request heads fit, and a larger
/// request makes the buffer double.
const READ_SIZE: usize = 1024;

/// How long a request, head and body, may take once its first byte has
/// arrived.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A request this module answers.
#[derive(Debug)]
pub(super) struct Simple {
    /// The request, with its whole body.
    pub(super) request: Request<Body>,
    /// The client asked to close the connection after the response.
    pub(super) close: bool,
}

/// What arrived on a connection.
#[derive(Debug)]
pub(super) enum Incoming {
    /// A simple request, whole; its bytes are consumed from the buffer.
    Simple(Simple),
    /// A publish to answer without the router, whole; its bytes are still
    /// at the front of the buffer, for [`consume`] once it is answered.
    Publish(Publish),
    /// Anything else; the buffer holds every byte read.
    ForHyper,
    /// Not a request this server takes: answer the error and close.
    Refused(ApiError),
    /// The client closed the connection before a whole request arrived.
    Closed,
    /// No request began within the idle timeout: close the connection.
    Idle,
}

/// Reads until `pending` holds a whole request (or shows that the request
/// is not ours). `pending` keeps any bytes after the request, such as a
/// pipelined one, and is empty with no allocation when there are none.
///
/// A connection may wait for its next request for `idle`'s limit, holding
/// no buffer, and is [`Incoming::Idle`] after it; once a request has begun, it
/// must be whole within [`REQUEST_TIMEOUT`], so a client trickling bytes
/// cannot hold a connection (and its buffer) for ever.
///
/// With `direct`, a plain `POST /v1/events` comes back as
/// [`Incoming::Publish`] (see [`super::publish`]).
pub(super) async fn read(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    direct: bool,
    idle: &mut Idle,
) -> std::io::Result<Incoming> {
    // When the request under way must be whole.
    let mut deadline = None;
    // A head whose body is still arriving, parsed once.
    let mut head = None;
    // How much of `pending` was there at the last parse.
    let mut parsed_upto = 0;
    loop {
        if !pending.is_empty() {
            let parsed = match head.take() {
                Some(parsed) => parsed,
                // A head ends with a line: re-parse only when one ended, so
                // a head trickled in a byte at a time is not parsed once
                // per byte. The first bytes are parsed at once, so that
                // what is not HTTP is refused at once.
                None if parsed_upto == 0 || ends_a_line(pending, parsed_upto) => {
                    parse(pending, direct)
                }
                None => Parsed::Partial,
            };
            parsed_upto = pending.len();
            match parsed {
                Parsed::Simple(simple, len) if pending.len() >= len.total() => {
                    return Ok(Incoming::Simple(take(simple, len, pending)));
                }
                Parsed::Publish(publish) if pending.len() >= publish.len.total() => {
                    return Ok(Incoming::Publish(publish));
                }
                // The head is here, the body is still arriving.
                parsed @ (Parsed::Simple(..) | Parsed::Publish(_)) => head = Some(parsed),
                Parsed::ForHyper => return Ok(Incoming::ForHyper),
                Parsed::Refused(error) => return Ok(Incoming::Refused(error)),
                Parsed::Partial if pending.len() >= MAX_HEAD => {
                    return Ok(Incoming::Refused(too_large()));
                }
                Parsed::Partial => {}
            }
            deadline.get_or_insert_with(|| Instant::now() + REQUEST_TIMEOUT);
        }
        // Read before waiting: a request already in the socket (or a
        // readiness the last read left set) costs no clock read or timer,
        // and a socket known to have nothing costs no system call.
        match read_some(stream, pending) {
            // Between requests, or in the middle of one: either way there
            // is nobody left to answer.
            Ok(0) => return Ok(Incoming::Closed),
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                // A waiting connection holds no buffer.
                if pending.is_empty() {
                    *pending = Vec::new();
                }
            }
            Err(err) => return Err(err),
        }
        match deadline {
            Some(until) => match tokio::time::timeout_at(until, stream.readable()).await {
                Ok(ready) => ready?,
                Err(_) => {
                    return Ok(Incoming::Refused(ApiError::RequestTimeout {
                        after: REQUEST_TIMEOUT,
                    }));
                }
            },
            None if idle.readable(stream).await? => {}
            None => return Ok(Incoming::Idle),
        }
    }
}

/// The idle timeout of one connection. Its one timer is kept for the
/// connection's life and moved on at each wait: moving a timer later is
/// an atomic update, where arming a new one and dropping it take the
/// runtime's timer lock twice (about 1,300 instructions per publish on a
/// keep-alive connection, docs/BENCHMARKS.md).
#[derive(Debug)]
pub(super) struct Idle {
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Idle {
    /// No connection waits for more than `limit` with nothing to read.
    pub(super) fn new(limit: Duration) -> Self {
        Self { limit, timer: None }
    }

    /// Frees the timer while the connection streams a response, which may
    /// last days: an idle subscriber holds none. The next wait makes one.
    pub(super) fn release(&mut self) {
        self.timer = None;
    }

    /// Waits until `stream` is readable (`true`) or the limit has passed
    /// (`false`).
    async fn readable(&mut self, stream: &TcpStream) -> std::io::Result<bool> {
        let until = crate::deadline::after(self.limit);
        let timer = match &mut self.timer {
            Some(timer) => {
                timer.as_mut().reset(until);
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(until))),
        };
        tokio::select! {
            biased;
            ready = stream.readable() => ready.map(|()| true),
            () = timer.as_mut() => Ok(false),
        }
    }
}

/// Whether the bytes of `pending` from `from` on end a line.
fn ends_a_line(pending: &[u8], from: usize) -> bool {
    pending.get(from..).is_some_and(|new| new.contains(&b'\n'))
}

/// Appends what the socket has to `pending`, with room for at least
/// [`READ_SIZE`] more bytes. A small first allocation is one the allocator
/// keeps at hand, and it is not zeroed first.
fn read_some(stream: &TcpStream, pending: &mut Vec<u8>) -> std::io::Result<usize> {
    pending.reserve(READ_SIZE);
    stream.try_read_buf(pending)
}

/// Moves a whole request out of `pending`: its body into the request, and
/// any bytes after it to the front.
fn take(mut simple: Simple, len: Len, pending: &mut Vec<u8>) -> Simple {
    if len.body > 0 {
        let body = pending.get(len.head..len.total()).unwrap_or_default();
        *simple.request.body_mut() = Body::from(Bytes::copy_from_slice(body));
    }
    consume(len, pending);
    simple
}

/// Drops an answered request of `len` from the front of `pending`, keeping
/// what follows it; an emptied buffer is freed.
pub(super) fn consume(len: Len, pending: &mut Vec<u8>) {
    pending.drain(..len.total().min(pending.len()));
    if pending.is_empty() {
        *pending = Vec::new();
    }
}

fn too_large() -> ApiError {
    ApiError::HeadTooLarge {
        max_bytes: MAX_HEAD,
        max_headers: MAX_HEADERS,
    }
}

/// The length of a simple request's head and body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Len {
    pub(super) head: usize,
    pub(super) body: usize,
}

impl Len {
    /// Both parts are bounded (by [`MAX_HEAD`] and [`MAX_BODY`]), so the
    /// sum cannot overflow.
    pub(super) fn total(self) -> usize {
        self.head + self.body
    }
}

enum Parsed {
    /// Ours; the request's body is not yet in it.
    Simple(Simple, Len),
    /// A publish to answer without the router; the body may still be on
    /// its way.
    Publish(Publish),
    ForHyper,
    Refused(ApiError),
    Partial,
}

fn parse(bytes: &[u8], direct: bool) -> Parsed {
    // Uninitialized: filling 100 headers first would cost more than parsing.
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut []);
    match head.parse_with_uninit_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete(len)) => {
            let publish = direct.then(|| Publish::of(&head, len, bytes)).flatten();
            match publish {
                Some(publish) => Parsed::Publish(publish),
                None => classify(&head, len),
            }
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Refused(too_large()),
        Err(err) => Parsed::Refused(ApiError::MalformedRequest(err.to_string())),
    }
}

/// Whether a parsed head of `head_len` bytes is a request this module
/// answers, and if so, the request without its body.
fn classify(head: &httparse::Request<'_, '_>, head_len: usize) -> Parsed {
    let version = match head.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Parsed::ForHyper,
    };
    let Some(method) = head.method else {
        return Parsed::ForHyper;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::ForHyper;
    };
    // HEAD answers without a body, CONNECT is not for an origin server, and
    // a target in another form than a path is hyper's to read. Their
    // headers are checked here all the same: hyper would take framing and
    // `Host` headers that the API refuses.
    let uri = head
        .path
        .filter(|path| path.starts_with('/'))
        .and_then(|path| path.parse::<Uri>().ok());
    let mut for_hyper = method == Method::HEAD || method == Method::CONNECT || uri.is_none();
    let mut framing = RequestFraming::default();
    // Sized once: grown one header at a time, the map reallocates.
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for field in head.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Parsed::ForHyper;
        };
        match framing.note(name.as_str().as_bytes(), value.as_bytes()) {
            Field::Framing | Field::Other => {}
            // Read on: a later header may still make the request one to
            // refuse here, in the API's envelope, rather than by hyper.
            Field::ForHyper => for_hyper = true,
            // Ambiguous framing could smuggle a second request past a
            // proxy: refuse it outright.
            Field::Ambiguous => {
                return Parsed::Refused(ApiError::MalformedRequest(
                    "its Content-Length is invalid, given twice with different values, \
                     or given with Transfer-Encoding"
                        .into(),
                ));
            }
            Field::UnreadableBody => return Parsed::Refused(unreadable_body()),
        }
        headers.append(name, value);
    }
    if !framing.names_its_host(version) {
        return Parsed::Refused(host_fault());
    }
    if !framing.names_one_credential() {
        return Parsed::Refused(ApiError::MalformedRequest(
            crate::auth::TWO_AUTHORIZATIONS.into(),
        ));
    }
    // HTTP/1.0 has no transfer codings: the framing is faulty (RFC 9112
    // §6.1).
    if framing.chunked && version == Version::HTTP_10 {
        return Parsed::Refused(unreadable_body());
    }
    let (false, Some(uri)) = (for_hyper, uri) else {
        return Parsed::ForHyper;
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.version_mut() = version;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let close = framing.closes(version);
    match framing.body() {
        Some(len) => Parsed::Simple(
            Simple { request, close },
            Len {
                head: head_len,
                body: len,
            },
        ),
        None => Parsed::ForHyper,
    }
}

fn host_fault() -> ApiError {
    ApiError::MalformedRequest(
        "it must name its host in exactly one Host header (at most one in HTTP/1.0)".into(),
    )
}

fn unreadable_body() -> ApiError {
    ApiError::MalformedRequest(
        "a body is read with Content-Length, or Transfer-Encoding: chunked \
         once and in HTTP/1.1; no other transfer coding is taken"
            .into(),
    )
}

/// What a request's headers say about its body and its connection, read
/// the same way by every path that answers here.
#[derive(Debug, Default)]
pub(super) struct RequestFraming {
    body: Option<usize>,
    /// `Transfer-Encoding: chunked` was given.
    chunked: bool,
    close: bool,
    keep_alive: bool,
    /// How many `Host` headers were given (saturating).
    hosts: u8,
    /// How many `Authorization` headers were given (saturating).
    authorizations: u8,
}

/// What one header meant to [`RequestFraming::note`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Field {
    /// A `Content-Length` or `Connection`, taken into account.
    Framing,
    /// A header only hyper handles: chunking, an upgrade, `Expect`.
    ForHyper,
    /// An invalid `Content-Length`, one that contradicts an earlier one, or
    /// `Content-Length` and `Transfer-Encoding` together.
    Ambiguous,
    /// A transfer coding other than one `chunked`: a body this server
    /// cannot read.
    UnreadableBody,
    /// Any other header.
    Other,
}

impl RequestFraming {
    /// Takes the header `name` (any case) with `value` into account.
    // Inlined into both callers: on the publish path, a call per header
    // measured about 270 instructions per request.
    #[inline(always)]
    pub(super) fn note(&mut self, name: &[u8], value: &[u8]) -> Field {
        if name.eq_ignore_ascii_case(b"content-length") {
            match content_length(value) {
                Some(len) if !self.chunked && self.body.is_none_or(|seen| seen == len) => {
                    self.body = Some(len);
                    Field::Framing
                }
                _ => Field::Ambiguous,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // hyper reads a chunked body; no other coding is supported.
            if self.chunked || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Field::UnreadableBody;
            }
            // RFC 9112 §6.3 lets a server read the chunks and close after;
            // refused instead, as nginx does: the pair is how a request is
            // smuggled past a proxy that reads the length.
            if self.body.is_some() {
                return Field::Ambiguous;
            }
            self.chunked = true;
            Field::ForHyper
        } else if name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"expect") {
            Field::ForHyper
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
            Field::Framing
        } else {
            if name.eq_ignore_ascii_case(b"host") {
                self.hosts = self.hosts.saturating_add(1);
            } else if name.eq_ignore_ascii_case(b"authorization") {
                self.authorizations = self.authorizations.saturating_add(1);
            }
            Field::Other
        }
    }

    /// Whether the request names its host as RFC 9112 §3.2 asks: at most
    /// one `Host` header, and in HTTP/1.1 exactly one. A server must refuse
    /// a request that does not `400`: two names for one request are how a
    /// request is smuggled past a proxy that reads the other one.
    pub(super) fn names_its_host(&self, version: Version) -> bool {
        match version {
            Version::HTTP_10 => self.hosts <= 1,
            _ => self.hosts == 1,
        }
    }

    /// Whether the request carries at most one `Authorization` header: it
    /// is not a list (RFC 9110 §11.6.2), and with two, this server and a
    /// proxy in front of it could each check another credential.
    pub(super) fn names_one_credential(&self) -> bool {
        self.authorizations <= 1
    }

    /// Whether the connection closes after the response: HTTP/1.1 keeps it
    /// unless told `close`; HTTP/1.0 closes it unless told `keep-alive`.
    pub(super) fn closes(&self, version: Version) -> bool {
        self.close || (version == Version::HTTP_10 && !self.keep_alive)
    }

    /// The body's length (0 when none is given), or `None` when it is
    /// over [`MAX_BODY`] and the request is hyper's to stream.
    pub(super) fn body(&self) -> Option<usize> {
        let len = self.body.unwrap_or(0);
        (len <= MAX_BODY).then_some(len)
    }
}

/// A `Content-Length` value: decimal digits only (no sign, no spaces), as
/// RFC 9110 §8.6 allows, of at most `i64::MAX`, as hyper takes.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: i64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    usize::try_from(len).ok()
}

/// Parses `bytes` the ordinary way and with the direct publish path, and
/// checks that they agree: both take the request, hand it to hyper, refuse
/// it or wait for more; and a publish the direct path takes is the request
/// the ordinary path reads, with the same framing, query and headers. For
/// the property tests and the fuzzer.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_both_paths(bytes: &[u8]) -> Result<(), String> {
    fn kind(parsed: &Parsed) -> &'static str {
        match parsed {
            Parsed::Simple(..) | Parsed::Publish(_) => "taken",
            Parsed::ForHyper => "hyper",
            Parsed::Refused(_) => "refused",
            Parsed::Partial => "partial",
        }
    }
    let ordinary = parse(bytes, false);
    let direct = parse(bytes, true);
    if kind(&direct) != kind(&ordinary) {
        return Err(format!(
            "direct: {}, ordinary: {}",
            kind(&direct),
            kind(&ordinary)
        ));
    }
    let Parsed::Publish(publish) = &direct else {
        return Ok(());
    };
    let Parsed::Simple(simple, len) = &ordinary else {
        return Err("the ordinary path did not read it as a simple request".into());
    };
    let request = &simple.request;
    let header = |name| request.headers().get(name).map(HeaderValue::as_bytes);
    let [
        query,
        content_type,
        authorization,
        origin,
        host,
        forwarded_host,
        idempotency_key,
    ] = publish.parts(bytes);
    let checks = [
        (
            "length",
            (publish.len.head, publish.len.body) == (len.head, len.body),
        ),
        ("close", publish.close == simple.close),
        ("version", publish.version == request.version()),
        ("method", request.method() == Method::POST),
        ("path", request.uri().path() == "/v1/events"),
        ("query", query == request.uri().query().map(str::as_bytes)),
        ("content-type", content_type == header("content-type")),
        ("authorization", authorization == header("authorization")),
        ("origin", origin == header("origin")),
        ("host", host == header("host")),
        (
            "forwarded host",
            forwarded_host == header("x-forwarded-host"),
        ),
        (
            "idempotency key",
            idempotency_key == header("idempotency-key"),
        ),
    ];
    match checks.iter().find(|(_, same)| !same) {
        Some((what, _)) => Err(format!("the two paths read its {what} differently")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &str) -> Parsed {
        parse(bytes.as_bytes(), false)
    }

    /// Asserts that every one of `heads` parses to what `is` accepts.
    fn assert_each(heads: &[&str], should: &str, is: fn(&Parsed) -> bool) {
        for head in heads {
            assert!(is(&parsed(head)), "{head:?} should {should}");
        }
    }

    fn refused_as_malformed(parsed: &Parsed) -> bool {
        matches!(parsed, Parsed::Refused(ApiError::MalformedRequest(_)))
    }

    #[test]
    fn a_plain_get_is_ours_with_its_headers() {
        let Parsed::Simple(simple, len) = parsed(
            "GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-2\r\n\r\nGET /next",
        ) else {
            panic!("not parsed as simple");
        };
        assert_eq!(
            len.head,
            "GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1-2\r\n\r\n".len()
        );
        assert_eq!(len.body, 0);
        assert!(!simple.close);
        assert_eq!(simple.request.uri(), "/v1/events?key=a");
        assert_eq!(simple.request.headers()["last-event-id"], "1-2");
    }

    #[test]
    fn http_1_0_is_ours_and_closes_unless_kept_alive() {
        let Parsed::Simple(simple, _) = parsed("GET /v1/events?key=a HTTP/1.0\r\n\r\n") else {
            panic!("not parsed as simple");
        };
        assert_eq!(simple.request.version(), Version::HTTP_10);
        assert!(simple.close);
        let Parsed::Simple(simple, _) = parsed("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        else {
            panic!("not parsed as simple");
        };
        assert!(!simple.close);
    }

    #[test]
    fn connection_close_is_noticed_among_tokens() {
        let Parsed::Simple(simple, _) =
            parsed("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n")
        else {
            panic!("not parsed as simple");
        };
        assert!(simple.close);
    }

    #[test]
    fn a_request_with_a_sized_body_is_ours() {
        let head = "POST /v1/events?key=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n";
        let Parsed::Simple(simple, len) = parsed(&format!("{head}{{}}GET / HTTP/1.1")) else {
            panic!("not parsed as simple");
        };
        assert_eq!(simple.request.method(), Method::POST);
        assert_eq!((len.head, len.body), (head.len(), 2));
        // Repeated equal lengths are one length.
        let Parsed::Simple(_, len) =
            parsed("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n")
        else {
            panic!("not parsed as simple");
        };
        assert_eq!(len.body, 3);
        // A CORS preflight has no body.
        assert!(matches!(
            parsed("OPTIONS /v1/events HTTP/1.1\r\nHost: x\r\nOrigin: https://a\r\n\r\n"),
            Parsed::Simple(_, len) if len.body == 0
        ));
        // The largest body read here.
        let at_limit = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY}\r\n\r\n");
        assert!(matches!(parsed(&at_limit), Parsed::Simple(_, len) if len.body == MAX_BODY));
    }

    #[test]
    fn taking_a_request_moves_its_body_and_keeps_what_follows() {
        let mut pending =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /".to_vec();
        let Parsed::Simple(simple, len) = parse(&pending, false) else {
            panic!("not parsed as simple");
        };
        let simple = take(simple, len, &mut pending);
        assert_eq!(pending, b"GET /");
        let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
            simple.request.into_body(),
            100,
        ));
        assert_eq!(body.and_then(Result::ok).as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn ambiguous_lengths_are_refused() {
        assert_each(
            &[
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            ],
            "be refused",
            refused_as_malformed,
        );
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        let over_limit = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_each(
            &[
                over_limit.as_str(),
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
                "HEAD /v1/events HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
                "GET http://host/ HTTP/1.1\r\nHost: x\r\n\r\n",
                "CONNECT host:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            ],
            "go to hyper",
            |parsed| matches!(parsed, Parsed::ForHyper),
        );
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
        assert_each(
            &[
                "GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
                "NOT HTTP AT ALL\r\n\r\n",
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nBad\x01Header: 1\r\n\r\n{}",
            ],
            "be refused",
            refused_as_malformed,
        );
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any request
    /// with two, is refused in the envelope, also one hyper would serve.
    #[test]
    fn a_request_must_name_its_host_once() {
        assert_each(
            &[
                "GET /v1/stats HTTP/1.1\r\n\r\n",
                "POST /v1/events?key=a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
                "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                "GET /v1/stats HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n",
                "GET /v1/stats HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            ],
            "be refused",
            refused_as_malformed,
        );
        assert_each(
            &[
                "GET /v1/stats HTTP/1.0\r\n\r\n",
                "GET /v1/stats HTTP/1.0\r\nhost: a\r\n\r\n",
            ],
            "be ours",
            |parsed| matches!(parsed, Parsed::Simple(..)),
        );
    }

    /// A publish is taken for the direct path exactly when the ordinary
    /// path would take it as a simple request: for every byte, in a header
    /// value, a header name and the query.
    #[test]
    fn the_direct_path_takes_exactly_what_the_ordinary_path_would() {
        let head = b"POST /v1/events?key=a HTTP/1.1\r\nHost: x\r\n".as_slice();
        for byte in 0..=u8::MAX {
            let b: &[u8] = &[byte];
            for bytes in [
                [head, b"X-A: a", b, b"b\r\n\r\n"].concat(),
                [head, b"Idempotency-Key: a", b, b"b\r\n\r\n"].concat(),
                [head, b"X", b, b"A: a\r\n\r\n"].concat(),
                [b"POST /v1/events?key=a", b, b" HTTP/1.1\r\nHost: x\r\n\r\n"].concat(),
            ] {
                assert_eq!(check_both_paths(&bytes), Ok(()), "{bytes:?}");
            }
        }
    }

    #[test]
    fn too_many_headers_are_refused() {
        let mut head = String::from("POST / HTTP/1.1\r\nHost: x\r\n");
        // `Host` is the first of them.
        for i in 1..MAX_HEADERS {
            head.push_str(&format!("x-{i}: y\r\n"));
        }
        let just_enough = format!("{head}\r\n");
        assert!(matches!(parsed(&just_enough), Parsed::Simple(..)));
        head.push_str("x-one-more: y\r\n\r\n");
        assert!(matches!(
            parsed(&head),
            Parsed::Refused(ApiError::HeadTooLarge { .. })
        ));
    }

    /// Requests built from random parts, most of them near a publish, and
    /// any bytes at all: the parser never panics, and the direct path reads
    /// a publish exactly as the ordinary path reads the same request.
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::select;

        use super::*;

        /// Some of the bytes a query may hold as they are.
        const PLAIN: &[u8] = b"azAZ09-._~!$&'()*+,;=:@/?%";

        /// Mostly the bytes that matter to framing and to the direct path's
        /// query, now and then any byte.
        fn byte() -> impl Strategy<Value = u8> {
            prop_oneof![
                8 => select(PLAIN.to_vec()),
                2 => select(b" \t\r\n\"#<>[]\\^`{|}\x00\x7f".to_vec()),
                1 => any::<u8>(),
            ]
        }

        fn text(max: usize) -> impl Strategy<Value = Vec<u8>> {
            vec(byte(), 0..max)
        }

        fn plain(max: usize) -> impl Strategy<Value = Vec<u8>> {
            vec(select(PLAIN.to_vec()), 0..max)
        }

        fn one_of(options: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
            select(options).prop_map(|option| option.as_bytes().to_vec())
        }

        fn header() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
            let name = prop_oneof![
                12 => one_of(&[
                    "Content-Length", "content-length", "Content-Type", "content-type",
                    "Authorization", "AUTHORIZATION", "Origin", "Connection",
                    "Transfer-Encoding", "Expect", "Upgrade", "Host", "X-Other",
                    "Idempotency-Key", "idempotency-key",
                ]),
                1 => prop_oneof![plain(8), text(8)],
            ];
            let value = prop_oneof![
                6 => one_of(&[
                    "0", "2", "5", " 2", "2 ", "+2", "-1", "2, 2", "65536", "65537",
                    "99999999999999999999", "", "close", "keep-alive", "Keep-Alive, close",
                    "upgrade", "chunked", "100-continue", "websocket", "application/json",
                    "text/plain; charset=utf-8", "Bearer t", "bearer t",
                    "http://a.example", "*", "\"k\"", "k 1",
                ]),
                1 => prop_oneof![plain(12), text(12)],
            ];
            (name, value)
        }

        fn request() -> impl Strategy<Value = Vec<u8>> {
            let method = prop_oneof![
                8 => one_of(&["POST"]),
                1 => one_of(&["GET", "post", "PUT", "HEAD"]),
                1 => text(5),
            ];
            let target = prop_oneof![
                2 => one_of(&["/v1/events"]),
                4 => prop_oneof![3 => plain(24), 1 => text(24)]
                    .prop_map(|query| [b"/v1/events?".as_slice(), &query].concat()),
                1 => one_of(&["/v1/events/", "/v1/eventsx", "/v1/event", "*", "http://h/v1/events"]),
                1 => text(16),
            ];
            let version = prop_oneof![
                8 => one_of(&["HTTP/1.1"]),
                2 => one_of(&["HTTP/1.0"]),
                1 => one_of(&["HTTP/2.0", "HTTP/1.2", "http/1.1"]),
            ];
            let newline = || prop_oneof![8 => one_of(&["\r\n"]), 1 => one_of(&["\n"])];
            let headers = vec((header(), newline()), 0..6);
            (method, target, version, headers, newline(), text(8)).prop_map(
                |(method, target, version, headers, end, body)| {
                    let mut bytes =
                        [method, b" ".to_vec(), target, b" ".to_vec(), version].concat();
                    bytes.extend_from_slice(b"\r\n");
                    for ((name, value), newline) in headers {
                        bytes.extend(name);
                        bytes.extend_from_slice(b": ");
                        bytes.extend(value);
                        bytes.extend(newline);
                    }
                    bytes.extend(end);
                    bytes.extend(body);
                    bytes
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            #[test]
            fn the_direct_path_reads_a_publish_as_the_ordinary_path_does(bytes in request()) {
                prop_assert_eq!(check_both_paths(&bytes), Ok(()));
            }

            #[test]
            fn any_bytes_are_read_alike_by_both_paths_without_a_panic(
                bytes in vec(any::<u8>(), 0..512),
            ) {
                prop_assert_eq!(check_both_paths(&bytes), Ok(()));
            }
        }
    }
}
