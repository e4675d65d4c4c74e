//! `watchbus_http::serve` over a real socket, spoken to byte by byte: the
//! lean path for plain requests (SSE streams and small publishes above
//! all), the hand-over to hyper for everything else, pipelining, client
//! departures and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use watchbus::{Data, EventId, Hub, Key};
use watchbus_http::{AllowedHosts, HttpConfig, ScopedTokens, Tokens, router, serve, serve_api};

const PATIENCE: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// How a test server serves the API.
#[derive(Debug, Clone, Copy)]
enum Serving {
    /// `serve(listener, router(hub, config), ..)`: every request through
    /// the router.
    Router,
    /// `serve_api(listener, hub, config, ..)`, as `watchbus serve` does:
    /// publishes answered without the router.
    Api,
}

const BOTH: [Serving; 2] = [Serving::Router, Serving::Api];

/// A server as `watchbus serve` runs it, with the default settings.
async fn start() -> Server {
    start_as(Serving::Api, HttpConfig::default()).await
}

async fn start_as(serving: Serving, config: HttpConfig) -> Server {
    let hub = Hub::memory();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let task = match serving {
        Serving::Router => tokio::spawn(serve(listener, router(hub.clone(), config), stopped)),
        Serving::Api => tokio::spawn(serve_api(listener, hub.clone(), config, stopped)),
    };
    Server {
        addr,
        hub,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// A new connection, to read responses off.
    async fn reader(&self) -> Reader {
        Reader::new(self.connect().await)
    }

    async fn active_subscribers(&self) -> u64 {
        self.hub.stats().await.unwrap().subscribers_active
    }

    async fn wait_for_subscribers(&self, n: u64) {
        tokio::time::timeout(PATIENCE, async {
            while self.active_subscribers().await != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never saw {n} active subscribers"));
    }
}

/// One response as read off the wire.
#[derive(Debug)]
struct Response {
    /// `HTTP/1.1 200 OK`
    status_line: String,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Reads responses off one connection, keeping what arrives early.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    patience: Duration,
}

impl Reader {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            patience: PATIENCE,
        }
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(self.patience, self.stream.read(&mut chunk))
            .await
            .expect("timed out reading")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn until(&mut self, needle: &[u8]) -> usize {
        loop {
            if let Some(at) = self.buf.windows(needle.len()).position(|w| w == needle) {
                return at;
            }
            assert!(self.fill().await > 0, "connection closed before {needle:?}");
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await > 0, "connection closed early");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        let at = self.until(b"\r\n").await;
        let line = self.take(at).await;
        self.take(2).await;
        String::from_utf8(line).unwrap()
    }

    /// The head of the next response.
    async fn head(&mut self) -> Response {
        let status_line = self.line().await;
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        Response {
            status_line,
            headers,
            body: Vec::new(),
        }
    }

    /// The next whole response with a `content-length` body.
    async fn response(&mut self) -> Response {
        let mut response = self.head().await;
        let len: usize = response
            .header("content-length")
            .expect("no content-length")
            .parse()
            .unwrap();
        response.body = self.take(len).await;
        response
    }

    /// The opening bookmark of a stream that starts live, sent unchunked
    /// (HTTP/1.0) or as one chunk: its id.
    async fn opening(&mut self, chunked: bool) -> EventId {
        let frame = if chunked {
            self.chunk().await
        } else {
            let end = self.until(b"\n\n").await;
            self.take(end + 2).await
        };
        let text = String::from_utf8(frame).unwrap();
        let id = text
            .strip_prefix(": live\nid: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not an opening bookmark: {text:?}"));
        id.parse().unwrap()
    }

    /// The next chunk of a chunked body; empty for the last one.
    async fn chunk(&mut self) -> Vec<u8> {
        let size = usize::from_str_radix(&self.line().await, 16).unwrap();
        let data = self.take(size).await;
        assert_eq!(self.take(2).await, b"\r\n");
        data
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends a request and reads its whole response.
    async fn exchange(&mut self, request: &[u8]) -> Response {
        self.write(request).await;
        self.response().await
    }

    /// True when the server closed the connection with nothing more sent.
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill().await == 0
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

/// Asserts that the server closes `reader`'s connection `after` from now,
/// give or take 100 ms (of paused time, in the tests that pause it).
async fn assert_closed_after(reader: &mut Reader, after: Duration, what: &str) {
    let started = tokio::time::Instant::now();
    assert!(reader.closed().await, "{what}");
    let waited = started.elapsed();
    let slack = Duration::from_millis(100);
    assert!(
        waited + slack >= after && waited <= after + slack,
        "{what}: closed after {waited:?}, not {after:?}"
    );
}

#[tokio::test]
async fn a_plain_get_is_answered_with_a_sized_body_and_the_connection_kept() {
    let server = start().await;
    let mut reader = server.reader().await;
    for _ in 0..3 {
        let response = reader.exchange(HEALTHZ).await;
        assert_eq!(response.status_line, "HTTP/1.1 200 OK");
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert!(response.header("date").is_some());
        assert_eq!(response.header("transfer-encoding"), None);
        assert_eq!(response.json(), serde_json::json!({"status": "ok"}));
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let first = reader.response().await;
    assert_eq!(first.json(), serde_json::json!({"status": "ok"}));
    let second = reader.response().await;
    assert_eq!(second.status(), 404);
    assert_eq!(second.json()["error"]["code"], "not_found");
    let third = reader.response().await;
    assert_eq!(third.status(), 200);
    assert_eq!(third.json()["subscribers"]["active"], 0);
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_answered() {
    let server = start().await;
    let mut reader = server.reader().await;
    for byte in HEALTHZ {
        reader.write(&[*byte]).await;
        tokio::task::yield_now().await;
    }
    assert_eq!(reader.response().await.status(), 200);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let response = reader.response().await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(reader.closed().await);
}

#[tokio::test]
async fn errors_keep_their_envelope_and_the_connection() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(b"GET /v1/events?key=a&format=xml HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let response = reader.response().await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json()["error"]["code"], "invalid_parameter");
    assert_eq!(reader.exchange(HEALTHZ).await.status(), 200);
    assert_eq!(server.active_subscribers().await, 0);
}

/// A publish of `body` to `key`, as one request's bytes.
fn publish_request(key: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1/events?key={key} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The events of `key`, as `GET /v1/events/history` gives them.
async fn history(reader: &mut Reader, key: &str) -> serde_json::Value {
    reader
        .write(format!("GET /v1/events/history?key={key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    let response = reader.response().await;
    assert_eq!(response.status(), 200);
    response.json()["events"].clone()
}

#[tokio::test]
async fn a_publish_pipelined_between_gets_is_answered_in_order() {
    for serving in BOTH {
        let server = start_as(serving, HttpConfig::default()).await;
        let mut reader = server.reader().await;
        let mut bytes = HEALTHZ.to_vec();
        bytes.extend_from_slice(&publish_request("orders/1", r#"{"n":1}"#));
        bytes.extend_from_slice(&publish_request("orders/1", r#"{"n":2}"#));
        bytes.extend_from_slice(HEALTHZ);
        reader.write(&bytes).await;
        assert_eq!(reader.response().await.status(), 200);
        let mut ids = Vec::new();
        for _ in 0..2 {
            let published = reader.response().await;
            assert_eq!(published.status(), 200, "{serving:?}: {published:?}");
            assert_eq!(published.header("content-type"), Some("application/json"));
            ids.push(published.json()["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(reader.response().await.status(), 200);
        let events = history(&mut reader, "orders/1").await;
        assert_eq!(events.as_array().unwrap().len(), 2);
        for (at, n) in [(0, 1), (1, 2)] {
            assert_eq!(events[at]["id"], ids[at].as_str());
            assert_eq!(events[at]["data"], serde_json::json!({"n": n}));
        }
    }
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_read_whole() {
    for serving in BOTH {
        let server = start_as(serving, HttpConfig::default()).await;
        let mut reader = server.reader().await;
        let body = r#"{"text":"h\u00e9llo, w\"orld"}"#;
        for byte in publish_request("slow", body) {
            reader.write(&[byte]).await;
        }
        assert_eq!(reader.response().await.status(), 200, "{serving:?}");
        let events = history(&mut reader, "slow").await;
        assert_eq!(
            events[0]["data"],
            serde_json::json!({"text": "h\u{e9}llo, w\"orld"})
        );
    }
}

#[tokio::test]
async fn a_stream_after_a_publish_on_the_same_connection_carries_frames() {
    let server = start().await;
    let mut reader = server.reader().await;
    let published = reader.exchange(&publish_request("orders/2", "1")).await;
    assert_eq!(published.status(), 200);
    reader
        .write(b"GET /v1/events?key=orders/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let head = reader.head().await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let before = server.hub.stats().await.unwrap().log.latest;
    assert_eq!(Some(reader.opening(true).await), before);
    server.wait_for_subscribers(1).await;
    let key = Key::new("orders/2").unwrap();
    let event = server.hub.publish(key, Data::text("two")).await.unwrap();
    assert_eq!(reader.chunk().await, event.sse_envelope_frame().as_ref());
}

#[tokio::test]
async fn bodies_over_the_inline_limit_and_chunked_bodies_go_to_hyper_intact() {
    let server = start().await;
    let mut reader = server.reader().await;
    // Over 64 KiB: streamed by hyper, after the bytes read here.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000));
    let published = reader.exchange(&publish_request("big", &big)).await;
    assert_eq!(
        published.status(),
        200,
        "{:?}",
        String::from_utf8_lossy(&published.body)
    );
    // hyper answers that one request, and the connection closes after it.
    assert_eq!(published.header("connection"), Some("close"));
    assert!(reader.closed().await);
    let events = history(&mut server.reader().await, "big").await;
    assert_eq!(events[0]["data"]["pad"].as_str().unwrap().len(), 70_000);

    let mut reader = server.reader().await;
    reader
        .write(
            b"POST /v1/events?key=chunked HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
        )
        .await;
    let published = reader.response().await;
    assert_eq!(published.status(), 200);
    assert_eq!(published.header("connection"), Some("close"));
    assert!(reader.closed().await);
    let events = history(&mut server.reader().await, "chunked").await;
    assert_eq!(events[0]["data"], serde_json::json!([1, 2]));
}

#[tokio::test]
async fn a_broken_chunked_body_is_a_malformed_request_not_a_large_one() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(
            b"POST /v1/events?key=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n2\r\n[1\r\nzz\r\n",
        )
        .await;
    let response = reader.response().await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json()["error"]["code"], "malformed_request");
    assert_eq!(server.hub.metrics().published_events, 0);
}

#[tokio::test]
async fn an_ambiguous_length_is_refused_with_the_envelope_and_a_close() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(
            b"POST /v1/events?key=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1\r\nContent-Length: 7\r\n\r\n1GET /",
        )
        .await;
    let response = reader.response().await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json()["error"]["code"], "malformed_request");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(reader.closed().await);
    // Nothing was published.
    let mut other = server.reader().await;
    assert_eq!(history(&mut other, "a").await, serde_json::json!([]));
}

#[tokio::test]
async fn http_1_0_requests_are_answered_and_closed_unless_kept_alive() {
    let server = start().await;
    let mut reader = server.reader().await;
    let response = reader.exchange(b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(response.header("connection"), Some("close"));
    assert!(reader.closed().await);

    let mut reader = server.reader().await;
    let kept = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let response = reader.exchange(kept).await;
    assert_eq!(response.header("connection"), Some("keep-alive"));
    assert_eq!(reader.exchange(kept).await.status(), 200);
}

#[tokio::test]
async fn an_sse_stream_to_http_1_0_is_unchunked_and_ends_with_the_connection() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(b"GET /v1/events?key=old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let head = reader.head().await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.header("transfer-encoding"), None);
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("connection"), Some("close"));
    reader.opening(false).await;
    server.wait_for_subscribers(1).await;
    let key = Key::new("old").unwrap();
    let event = server.hub.publish(key, Data::text("one")).await.unwrap();
    let frame = event.sse_envelope_frame();
    assert_eq!(reader.take(frame.len()).await, frame.as_ref());
    server.hub.shutdown();
    assert!(reader.closed().await);
}

#[tokio::test]
async fn large_heads_are_taken_up_to_the_limit_then_refused_with_the_envelope() {
    let server = start().await;
    let mut reader = server.reader().await;
    let padding = "x".repeat(60 * 1024);
    reader
        .write(
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {padding}\r\n\r\n").as_bytes(),
        )
        .await;
    assert_eq!(reader.response().await.status(), 200);

    for method in ["GET", "POST"] {
        let mut reader = server.reader().await;
        let padding = "x".repeat(64 * 1024);
        reader
            .write(
                format!("{method} /v1/events HTTP/1.1\r\nHost: x\r\nX-Padding: {padding}\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let response = reader.response().await;
        assert_eq!(response.status(), 431);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.header("connection"), Some("close"));
        assert_eq!(response.json()["error"]["code"], "head_too_large");
        assert!(reader.closed().await);
    }
}

#[tokio::test]
async fn bytes_that_are_not_http_are_refused_with_the_envelope() {
    let server = start().await;
    for garbage in [
        &b"HELLO THERE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nNo Spaces In Names: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let mut reader = server.reader().await;
        let response = reader.exchange(garbage).await;
        assert_eq!(response.status(), 400, "{garbage:?}");
        assert_eq!(response.json()["error"]["code"], "malformed_request");
        assert!(reader.closed().await);
    }
    // Nobody else noticed.
    let mut reader = server.reader().await;
    assert_eq!(reader.exchange(HEALTHZ).await.status(), 200);
}

/// Sends `partial`, a request that never finishes, and checks the answer:
/// `408 request_timeout` after exactly 30 s (on the paused clock of the
/// calling test, which jumps ahead whenever every task waits), then the
/// close, with nothing published.
async fn assert_refused_after_30_seconds(partial: &[u8]) -> Response {
    assert_refused_after_30_seconds_as(Serving::Api, partial).await
}

async fn assert_refused_after_30_seconds_as(serving: Serving, partial: &[u8]) -> Response {
    let server = start_as(serving, HttpConfig::default()).await;
    let mut reader = server.reader().await;
    reader.patience = Duration::from_secs(300);
    reader.write(partial).await;
    let started = tokio::time::Instant::now();
    let response = reader.response().await;
    assert_eq!(response.status(), 408);
    assert_eq!(response.json()["error"]["code"], "request_timeout");
    assert_eq!(started.elapsed().as_secs(), 30);
    assert!(reader.closed().await);
    assert_eq!(server.hub.metrics().published_events, 0);
    response
}

#[tokio::test(start_paused = true)]
async fn a_head_left_unfinished_is_refused_after_30_seconds() {
    let response = assert_refused_after_30_seconds(b"GET /healthz HTTP/1.1\r\nHost: sl").await;
    assert_eq!(response.header("connection"), Some("close"));
}

#[tokio::test(start_paused = true)]
async fn a_body_left_unfinished_is_refused_after_30_seconds() {
    let request = publish_request("a", r#"{"n":1}"#);
    for serving in BOTH {
        let partial = &request[..request.len() - 2];
        let response = assert_refused_after_30_seconds_as(serving, partial).await;
        assert_eq!(response.header("connection"), Some("close"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_chunked_body_left_unfinished_is_refused_after_30_seconds() {
    assert_refused_after_30_seconds(
        b"POST /v1/events?key=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n2\r\n[1\r\n",
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_closes_after_the_request_hyper_answered() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader.patience = Duration::from_secs(300);
    reader
        .write(
            b"POST /v1/events?key=a HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n1\r\n1\r\n0\r\n\r\n",
        )
        .await;
    let published = reader.response().await;
    assert_eq!(published.status(), 200);
    assert_eq!(published.header("connection"), Some("close"));
    // A head begun after it is not waited for.
    reader
        .write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nHo")
        .await;
    let started = tokio::time::Instant::now();
    assert!(reader.closed().await);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A connection may wait for its next request for the idle timeout, which
/// each request starts again, and is closed after it.
#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let idle = HttpConfig::DEFAULT_IDLE_TIMEOUT;
    for serving in BOTH {
        let server = start_as(serving, HttpConfig::default()).await;
        let mut reader = server.reader().await;
        reader.patience = 2 * idle;
        for _ in 0..3 {
            assert_eq!(reader.exchange(HEALTHZ).await.status(), 200);
            tokio::time::sleep(idle - Duration::from_secs(1)).await;
        }
        assert_closed_after(&mut reader, Duration::from_secs(1), &format!("{serving:?}")).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let config = HttpConfig {
        idle_timeout: Duration::from_secs(7),
        ..HttpConfig::default()
    };
    let server = start_as(Serving::Api, config).await;
    let mut reader = server.reader().await;
    reader.patience = Duration::from_secs(60);
    assert_closed_after(&mut reader, Duration::from_secs(7), "silent").await;
}

/// A request begun before the idle timeout has the request timeout to
/// arrive whole, and is answered. (In real time: with time paused, a
/// timer may fire before the bytes that would beat it are read.)
#[tokio::test]
async fn a_request_begun_before_the_idle_timeout_is_answered() {
    let config = HttpConfig {
        idle_timeout: Duration::from_secs(2),
        ..HttpConfig::default()
    };
    let server = start_as(Serving::Api, config).await;
    let mut reader = server.reader().await;
    assert_eq!(reader.exchange(HEALTHZ).await.status(), 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    reader.write(b"GET /healthz HTTP/1.1\r\n").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reader.exchange(b"Host: test\r\n\r\n").await.status(), 200);
}

/// A connection whose stream ended waits for its next request for the
/// idle timeout again (the timer it freed while streaming is made anew).
#[tokio::test(start_paused = true)]
async fn after_a_stream_ends_the_idle_timeout_runs_again() {
    let idle = HttpConfig::DEFAULT_IDLE_TIMEOUT;
    let server = start().await;
    let mut reader = server.reader().await;
    reader.patience = 3 * idle;
    reader
        .write(b"GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    reader.head().await;
    reader.opening(true).await;
    server.wait_for_subscribers(1).await;
    server.hub.reset().await.unwrap();
    assert_eq!(reader.chunk().await, b"");
    assert_closed_after(&mut reader, idle, "after the stream").await;
}

/// A stream is not an idle connection, however long nothing is sent on it.
#[tokio::test(start_paused = true)]
async fn a_silent_stream_outlives_the_idle_timeout() {
    let config = HttpConfig {
        keep_alive: Duration::from_secs(3600),
        ..HttpConfig::default()
    };
    let server = start_as(Serving::Api, config).await;
    let mut reader = server.reader().await;
    reader.patience = Duration::from_secs(3600);
    reader
        .write(b"GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await;
    assert_eq!(reader.head().await.status_line, "HTTP/1.1 200 OK");
    reader.opening(true).await;
    tokio::time::sleep(3 * HttpConfig::DEFAULT_IDLE_TIMEOUT).await;
    let event = server
        .hub
        .publish(Key::new("a").unwrap(), Data::text("late"))
        .await
        .unwrap();
    assert_eq!(reader.chunk().await, event.sse_envelope_frame().as_ref());
}

#[tokio::test]
async fn an_sse_stream_is_chunked_and_carries_each_frame() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(
            b"GET /v1/events?key=orders/1 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await;
    let head = reader.head().await;
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("content-length"), None);
    assert_eq!(reader.opening(true).await.seq, 0, "an empty log");

    let key = Key::new("orders/1").unwrap();
    let first = server
        .hub
        .publish(key.clone(), Data::text("one"))
        .await
        .unwrap();
    assert_eq!(reader.chunk().await, first.sse_envelope_frame().as_ref());
    let second = server.hub.publish(key, Data::text("two")).await.unwrap();
    assert_eq!(reader.chunk().await, second.sse_envelope_frame().as_ref());
}

#[tokio::test]
async fn a_subscriber_that_goes_away_is_unsubscribed_at_once() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(b"GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    reader.head().await;
    server.wait_for_subscribers(1).await;
    drop(reader);
    // Noticed without any event or keep-alive being written.
    server.wait_for_subscribers(0).await;
}

#[tokio::test]
async fn a_request_pipelined_behind_a_stream_is_answered_when_it_ends() {
    let server = start().await;
    let mut reader = server.reader().await;
    reader
        .write(b"GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    reader.head().await;
    reader.opening(true).await;
    server.wait_for_subscribers(1).await;
    reader.write(HEALTHZ).await;
    // The hub shuts down (the server does not): the stream ends cleanly,
    // then the waiting request is answered.
    server.hub.shutdown();
    assert_eq!(reader.chunk().await, b"");
    let response = reader.response().await;
    assert_eq!(response.json(), serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn a_shutdown_sends_what_was_published_before_it_then_refuses_publishes() {
    for serving in BOTH {
        let server = start_as(serving, HttpConfig::default()).await;
        let mut stream = server.reader().await;
        stream
            .write(b"GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        stream.head().await;
        stream.opening(true).await;
        server.wait_for_subscribers(1).await;
        // Published and shut down with no await that yields between them:
        // the stream's task has not run, the events wait in its mailbox.
        let key = Key::new("a").unwrap();
        let mut expected = Vec::new();
        for text in ["one", "two", "three"] {
            let event = server.hub.publish(key.clone(), Data::text(text));
            let event = event.await.unwrap();
            expected.extend_from_slice(event.sse_envelope_frame());
        }
        server.hub.shutdown();
        let mut sent = Vec::new();
        loop {
            let chunk = stream.chunk().await;
            if chunk.is_empty() {
                break;
            }
            sent.extend_from_slice(&chunk);
        }
        assert_eq!(
            String::from_utf8_lossy(&sent),
            String::from_utf8_lossy(&expected),
            "{serving:?}: every event, then the end"
        );
        // The memory log ends with the process: a publish now is refused,
        // not acknowledged for no one.
        let mut publisher = server.reader().await;
        let refused = publisher.exchange(&publish_request("a", "\"late\"")).await;
        assert_eq!(refused.status(), 503, "{serving:?}");
        assert_eq!(
            refused.json()["error"]["code"],
            "shutting_down",
            "{serving:?}"
        );
        let stats = server.hub.stats().await.unwrap();
        assert_eq!(stats.log.published, 3, "{serving:?}");
    }
}

#[tokio::test]
async fn shutdown_ends_streams_and_closes_idle_connections() {
    let mut server = start().await;
    let mut stream = server.reader().await;
    stream
        .write(b"GET /v1/events?key=a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    stream.head().await;
    stream.opening(true).await;
    let mut idle = server.reader().await;
    assert_eq!(idle.exchange(HEALTHZ).await.status(), 200);
    // A chunked body hands the connection to hyper for good.
    let mut idle_with_hyper = server.reader().await;
    let published = idle_with_hyper
        .exchange(
            b"POST /v1/events?key=b HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
              Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        )
        .await;
    assert_eq!(published.status(), 200);
    server.wait_for_subscribers(1).await;

    server.hub.shutdown();
    server.stop.take().unwrap().send(()).unwrap();
    assert_eq!(
        stream.chunk().await,
        b"",
        "the stream ends with the last chunk"
    );
    assert!(stream.closed().await);
    assert!(idle.closed().await);
    assert!(idle_with_hyper.closed().await);
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("serve did not return")
        .unwrap();
}

/// The next text message, within [`PATIENCE`].
async fn next_text<S>(socket: &mut S) -> String
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    let message = tokio::time::timeout(PATIENCE, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    message.into_text().unwrap().as_str().to_owned()
}

#[tokio::test]
async fn a_websocket_upgrade_works_through_serve() {
    let server = start().await;
    let url = format!("ws://{}/v1/ws?key=orders/1&format=raw", server.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    let opening = next_text(&mut socket).await;
    assert!(opening.starts_with(r#"{"bookmark":""#), "{opening}");
    server.wait_for_subscribers(1).await;
    server
        .hub
        .publish(Key::new("orders/1").unwrap(), Data::text("shipped"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await, "shipped");
}

#[tokio::test]
async fn a_websocket_client_sending_a_huge_message_is_cut_off_alone() {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;

    let server = start().await;
    let url = |key: &str| format!("ws://{}/v1/ws?key={key}&format=raw", server.addr);
    let (mut rude, _) = tokio_tungstenite::connect_async(url("a")).await.unwrap();
    let (mut polite, _) = tokio_tungstenite::connect_async(url("b")).await.unwrap();
    next_text(&mut polite).await;
    server.wait_for_subscribers(2).await;

    // A subscriber has nothing to send but control frames: 100 KiB is
    // refused, not buffered.
    let _ = rude.send(Message::text("x".repeat(100 * 1024))).await;
    server.wait_for_subscribers(1).await;
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match rude.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was not closed");

    server
        .hub
        .publish(Key::new("b").unwrap(), Data::text("still here"))
        .await
        .unwrap();
    assert_eq!(next_text(&mut polite).await, "still here");
}

/// `request`'s answer, as it would be compared across servers: without the
/// `date` header, and with the digits of a `200` body (ids and times)
/// masked.
async fn comparable(server: &Server, request: &[u8]) -> Response {
    let mut reader = server.reader().await;
    let mut response = reader.exchange(request).await;
    response.headers.retain(|(name, _)| name != "date");
    if response.status() == 200 {
        for byte in &mut response.body {
            if byte.is_ascii_digit() {
                *byte = b'0';
            }
        }
    }
    response
}

/// A publish request of `head` lines (each ending in CRLF) and `body`,
/// with its `Content-Length`, and a `Host` unless `head` names one.
fn raw_publish(target: &str, head: &str, body: &[u8]) -> Vec<u8> {
    let names_host = head
        .lines()
        .any(|line| line.to_ascii_lowercase().starts_with("host:"));
    let host = if names_host { "" } else { "Host: x\r\n" };
    let mut bytes = format!(
        "POST {target} HTTP/1.1\r\n{host}{head}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[tokio::test]
async fn publishes_get_the_same_answers_with_and_without_the_router() {
    // Room for an array one event too long, under the lean path's 64 KiB.
    const MAX_BODY: usize = 16 * 1024;
    let too_many = format!("[{}]", vec![r#"{"key":"k"}"#; 1001].join(","));
    let json = "Content-Type: application/json\r\n";
    let text = "Content-Type: text/plain\r\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("query form, JSON", raw_publish("/v1/events?key=a&type=t.x", json, br#"{"n": 1}"#)),
        ("query form, text", raw_publish("/v1/events?key=a%2Fb", text, "h\u{e9}".as_bytes())),
        ("broadcast", raw_publish("/v1/events?prefix=a/", json, b"1")),
        ("object", raw_publish("/v1/events", json, br#"{"key":"a","data":[1]}"#)),
        ("array", raw_publish("/v1/events", json, br#"[{"key":"a"},{"key":"b"}]"#)),
        (
            "media type with a parameter, in capitals",
            raw_publish("/v1/events", "Content-Type: Application/JSON; charset=utf-8\r\n", br#"{"key":"a"}"#),
        ),
        (
            "the first Content-Type counts",
            raw_publish("/v1/events", "Content-Type: text/plain\r\nContent-Type: application/json\r\n", br#"{"key":"a"}"#),
        ),
        ("HTTP/1.0", b"POST /v1/events?key=a HTTP/1.0\r\nContent-Length: 1\r\n\r\nx".to_vec()),
        (
            "HTTP/1.0 kept alive",
            b"POST /v1/events?key=a HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx".to_vec(),
        ),
        ("closing", raw_publish("/v1/events?key=a", "Connection: close\r\n", b"x")),
        ("empty body", raw_publish("/v1/events?key=a", "", b"")),
        ("empty key", raw_publish("/v1/events?key=", text, b"x")),
        ("bad prefix", raw_publish("/v1/events?prefix=a%01", text, b"x")),
        ("key and prefix", raw_publish("/v1/events?key=a&prefix=b", text, b"x")),
        ("no target", raw_publish("/v1/events", json, b"{}")),
        ("bad type", raw_publish("/v1/events?key=a&type=a+b", text, b"x")),
        ("bad escape", raw_publish("/v1/events?key=%zz", text, b"x")),
        ("bad JSON", raw_publish("/v1/events?key=a", json, b"{")),
        ("unknown field", raw_publish("/v1/events", json, br#"{"key":"a","x":1}"#)),
        ("not UTF-8", raw_publish("/v1/events?key=a", text, b"\xff")),
        ("no Content-Type", raw_publish("/v1/events", "", b"{}")),
        ("not JSON", raw_publish("/v1/events", "Content-Type: Text/Plain\r\n", b"{}")),
        ("non-ASCII Content-Type", raw_publish("/v1/events", "Content-Type: t\u{e9}xt\r\n", b"{}")),
        ("empty array", raw_publish("/v1/events", json, b"[]")),
        (
            "a bad item in an array",
            raw_publish("/v1/events", json, br#"[{"key":"a"},{"key":"b","type":"a b"}]"#),
        ),
        ("array too long", raw_publish("/v1/events", json, too_many.as_bytes())),
        ("too large", raw_publish("/v1/events?key=a", text, &[b'x'; MAX_BODY + 1])),
        ("just small enough", raw_publish("/v1/events?key=a", text, &[b'x'; MAX_BODY])),
        ("trailing slash", raw_publish("/v1/events/?key=a", text, b"x")),
        ("keyed", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: k1\r\n{text}"), b"x")),
        ("keyed, retried", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: k1\r\n{text}"), b"x")),
        ("keyed, quoted", raw_publish("/v1/events?key=a", &format!("idempotency-key: \"k1\"\r\n{text}"), b"x")),
        ("keyed, reused", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: k1\r\n{text}"), b"y")),
        ("keyed array", raw_publish("/v1/events", &format!("Idempotency-Key: k2\r\n{json}"), br#"[{"key":"a"},{"key":"b"}]"#)),
        (
            "the first Idempotency-Key counts",
            raw_publish(
                "/v1/events",
                &format!("Idempotency-Key: k2\r\nIdempotency-Key: k3\r\n{json}"),
                br#"[{"key":"a"},{"key":"b"}]"#,
            ),
        ),
        ("keyed, refused", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: k4\r\n{json}"), b"{")),
        ("keyed, after a refusal", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: k4\r\n{json}"), b"{}")),
        ("key with a space", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: a b\r\n{text}"), b"x")),
        ("empty key", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: \r\n{text}"), b"x")),
        ("non-ASCII key", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: k\u{e9}\r\n{text}"), b"x")),
        ("key too long", raw_publish("/v1/events?key=a", &format!("Idempotency-Key: {}\r\n{text}", "k".repeat(256)), b"x")),
        ("a page of another origin", raw_publish("/v1/events?key=a", "Host: hub:8080\r\nOrigin: http://evil.example\r\n", b"x")),
        ("a page of the server's own origin", raw_publish("/v1/events?key=a", "Host: hub:8080\r\nOrigin: http://hub:8080\r\n", b"x")),
        ("two Hosts are refused", raw_publish("/v1/events?key=a", "Host: hub:8080\r\nHost: evil.example\r\nOrigin: http://evil.example\r\n", b"x")),
        (
            "behind a proxy, the page of the host it names",
            raw_publish("/v1/events?key=a", "Host: 127.0.0.1:8080\r\nX-Forwarded-Host: hub, proxy\r\nOrigin: https://hub\r\n", b"x"),
        ),
        (
            "behind a proxy, the page of the proxy's own host",
            raw_publish("/v1/events?key=a", "Host: evil.example\r\nX-Forwarded-Host: hub\r\nOrigin: https://evil.example\r\n", b"x"),
        ),
        ("an opaque origin", raw_publish("/v1/events?key=a", "Host: hub\r\nOrigin: null\r\n", b"x")),
        ("a page's origin is checked first", raw_publish("/v1/events?key=", "Origin: http://evil.example\r\n", b"x")),
    ];
    let tokens = Tokens {
        publish: Some("p".into()),
        subscribe: Some("s".into()),
        admin: Some("a".into()),
        ..Tokens::default()
    };
    let authorized: Vec<(&str, Vec<u8>)> = vec![
        ("no token", raw_publish("/v1/events?key=a", text, b"x")),
        (
            "publish token",
            raw_publish("/v1/events?key=a", "Authorization: Bearer p\r\n", b"x"),
        ),
        (
            "admin token",
            raw_publish("/v1/events?key=a", "authorization: bearer a\r\n", b"x"),
        ),
        (
            "subscribe token",
            raw_publish("/v1/events?key=a", "Authorization: Bearer s\r\n", b"x"),
        ),
        (
            "unknown token",
            raw_publish("/v1/events?key=a", "Authorization: Bearer x\r\n", b"x"),
        ),
        (
            "query token",
            raw_publish("/v1/events?key=a&access_token=p", "", b"x"),
        ),
        (
            "the first Authorization counts",
            raw_publish(
                "/v1/events?key=a",
                "Authorization: Bearer s\r\nAuthorization: Bearer p\r\n",
                b"x",
            ),
        ),
        (
            "non-ASCII token",
            raw_publish(
                "/v1/events?key=a",
                "Authorization: Bearer p\u{e9}\r\n",
                b"x",
            ),
        ),
        (
            "token checked before the media type",
            raw_publish("/v1/events", "", b"x"),
        ),
        (
            "token checked before the idempotency key",
            raw_publish("/v1/events?key=a", "Idempotency-Key: a b\r\n", b"x"),
        ),
        (
            "keyed, with the token",
            raw_publish(
                "/v1/events?key=a",
                "Idempotency-Key: k\r\nAuthorization: Bearer p\r\n",
                b"x",
            ),
        ),
        (
            "keyed, with the token, retried",
            raw_publish(
                "/v1/events?key=a",
                "Idempotency-Key: k\r\nAuthorization: Bearer p\r\n",
                b"x",
            ),
        ),
    ];
    let secret = "a-test-secret-of-more-than-32-bytes!";
    let sign = |exp: u64| {
        let claims = serde_json::json!({
            "exp": exp,
            "watchbus": {"publish": {"keys": ["a"], "prefixes": ["p/"]}},
        });
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    // 2100-01-01, and 2001-09-09.
    let (jwt, expired) = (sign(4_102_444_800), sign(1_000_000_000));
    let bearer = format!("Authorization: Bearer {jwt}\r\n");
    let scoped_cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "scoped, granted key",
            raw_publish("/v1/events?key=a", &bearer, b"x"),
        ),
        (
            "scoped, other key",
            raw_publish("/v1/events?key=b", &bearer, b"x"),
        ),
        (
            "scoped, granted broadcast",
            raw_publish("/v1/events?prefix=p/x", &bearer, b"x"),
        ),
        (
            "scoped, wider broadcast",
            raw_publish("/v1/events?prefix=p", &bearer, b"x"),
        ),
        (
            "scoped, an array with one other key",
            raw_publish(
                "/v1/events",
                &format!("{bearer}{json}"),
                br#"[{"key":"p/1"},{"key":"b"}]"#,
            ),
        ),
        (
            "scoped, keyed, other key",
            raw_publish(
                "/v1/events?key=b",
                &format!("Idempotency-Key: k\r\n{bearer}"),
                b"x",
            ),
        ),
        (
            "scoped, in the query",
            raw_publish(&format!("/v1/events?key=a&access_token={jwt}"), "", b"x"),
        ),
        (
            "scoped, expired",
            raw_publish(
                "/v1/events?key=a",
                &format!("Authorization: Bearer {expired}\r\n"),
                b"x",
            ),
        ),
        (
            "scoped, no token",
            raw_publish("/v1/events?key=a", "", b"x"),
        ),
    ];
    let open = HttpConfig {
        max_body: MAX_BODY,
        ..HttpConfig::default()
    };
    let guarded = HttpConfig {
        tokens,
        ..open.clone()
    };
    let browser = "Origin: http://a.example\r\nContent-Type: text/plain\r\n";
    let other = "Origin: http://b.example\r\nContent-Type: text/plain\r\n";
    let from_browsers = || -> Vec<(&str, Vec<u8>)> {
        vec![
            (
                "allowed origin",
                raw_publish("/v1/events?key=a", browser, b"x"),
            ),
            ("other origin", raw_publish("/v1/events?key=a", other, b"x")),
            ("no origin", raw_publish("/v1/events?key=a", text, b"x")),
            (
                "allowed origin, error",
                raw_publish("/v1/events?key=", browser, b"x"),
            ),
            (
                "other origin, error",
                raw_publish("/v1/events?key=", other, b"x"),
            ),
            (
                "the first Origin counts",
                raw_publish("/v1/events?key=a", &format!("{browser}{other}"), b"x"),
            ),
            (
                "the first Origin counts, the other way",
                raw_publish("/v1/events?key=a", &format!("{other}{browser}"), b"x"),
            ),
            (
                "origins compare exactly",
                raw_publish("/v1/events?key=a", "Origin: HTTP://A.EXAMPLE\r\n", b"x"),
            ),
            (
                "a token is still checked",
                raw_publish("/v1/events", browser, b"{}"),
            ),
            (
                "allowed origin, keyed",
                raw_publish(
                    "/v1/events?key=a",
                    &format!("Idempotency-Key: k\r\n{browser}"),
                    b"x",
                ),
            ),
            (
                "allowed origin, keyed, retried",
                raw_publish(
                    "/v1/events?key=a",
                    &format!("Idempotency-Key: k\r\n{browser}"),
                    b"x",
                ),
            ),
            (
                "allowed origin, keyed, reused",
                raw_publish(
                    "/v1/events?key=a",
                    &format!("Idempotency-Key: k\r\n{browser}"),
                    b"y",
                ),
            ),
        ]
    };
    let scoped = HttpConfig {
        tokens: Tokens {
            scoped: Some(ScopedTokens::hs256(secret.as_bytes()).unwrap()),
            ..Tokens::default()
        },
        ..open.clone()
    };
    let cors = HttpConfig {
        cors_origins: vec!["http://a.example".into(), "not a header\n".into()],
        ..open.clone()
    };
    let cors_any = HttpConfig {
        cors_origins: vec!["http://a.example".into(), "*".into()],
        ..open.clone()
    };
    let hosts = HttpConfig {
        allowed_hosts: Some(AllowedHosts::with_names(["hub.example"])),
        ..open.clone()
    };
    let for_hosts: Vec<(&str, Vec<u8>)> = vec![
        (
            "an allowed host",
            raw_publish("/v1/events?key=a", "Host: hub.example\r\n", b"x"),
        ),
        (
            "an address",
            raw_publish("/v1/events?key=a", "Host: 127.0.0.1:1\r\n", b"x"),
        ),
        ("no host", raw_publish("/v1/events?key=a", "", b"x")),
        (
            "another host",
            raw_publish("/v1/events?key=a", "Host: evil.example\r\n", b"x"),
        ),
        (
            "the first Host counts",
            raw_publish(
                "/v1/events?key=a",
                "Host: evil.example\r\nHost: hub.example\r\n",
                b"x",
            ),
        ),
        (
            "the host is checked first",
            raw_publish("/v1/events?key=", "Host: evil.example\r\n", b"x"),
        ),
        (
            "a host that is not text",
            raw_publish("/v1/events?key=a", "Host: h\u{e9}b\r\n", b"x"),
        ),
    ];
    let mut codes = std::collections::BTreeSet::new();
    let mut replayed = Vec::new();
    for (config, cases) in [
        (open, cases),
        (guarded, authorized),
        (scoped, scoped_cases),
        (cors, from_browsers()),
        (cors_any, from_browsers()),
        (hosts, for_hosts),
    ] {
        let routed = start_as(Serving::Router, config.clone()).await;
        let direct = start_as(Serving::Api, config).await;
        for (name, request) in cases {
            let expected = comparable(&routed, &request).await;
            let answered = comparable(&direct, &request).await;
            assert_eq!(
                (&answered.status_line, &answered.headers),
                (&expected.status_line, &expected.headers),
                "{name}"
            );
            assert_eq!(
                String::from_utf8_lossy(&answered.body),
                String::from_utf8_lossy(&expected.body),
                "{name}"
            );
            if answered.header("idempotent-replayed") == Some("true") {
                replayed.push(name);
            }
            if expected.status() != 200 {
                let code = expected.json()["error"]["code"].as_str().map(str::to_owned);
                codes.insert(code.unwrap_or_else(|| panic!("{name}: no error code")));
            }
        }
        // Each server stored the same events and replayed the same retries.
        let counts = |server: &Server| {
            let metrics = server.hub.metrics();
            (metrics.published_events, metrics.replayed_publishes)
        };
        assert_eq!(counts(&direct), counts(&routed));
    }
    // Every error a client can make a publish answer was compared.
    let every = [
        "batch_too_large",
        "body_too_large",
        "empty_batch",
        "forbidden",
        "idempotency_key_reused",
        "invalid_idempotency_key",
        "invalid_json",
        "invalid_key",
        "invalid_prefix",
        "invalid_query",
        "invalid_type",
        "invalid_utf8",
        "key_and_prefix",
        "malformed_request",
        "missing_key",
        "not_found",
        "unauthorized",
        "unsupported_media_type",
    ];
    assert_eq!(codes.iter().map(String::as_str).collect::<Vec<_>>(), every);
    assert_eq!(
        replayed,
        [
            "keyed, retried",
            "keyed, quoted",
            "the first Idempotency-Key counts",
            "keyed, with the token, retried",
            "allowed origin, keyed, retried",
            "allowed origin, keyed, retried",
        ]
    );
}

/// With CORS configured, a browser's publish gets its CORS headers: the
/// publish goes through the router's CORS layer.
#[tokio::test]
async fn a_publish_from_an_allowed_origin_gets_cors_headers() {
    let config = HttpConfig {
        cors_origins: vec!["http://a.example".into()],
        ..HttpConfig::default()
    };
    let server = start_as(Serving::Api, config).await;
    let mut reader = server.reader().await;
    let request = raw_publish(
        "/v1/events?key=a",
        "Origin: http://a.example\r\nContent-Type: text/plain\r\n",
        b"x",
    );
    let response = reader.exchange(&request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("http://a.example")
    );
    assert!(response.header("vary").is_some(), "{response:?}");
}

/// A layer around the router may poll a body again after its end (tower-http's
/// compression does): an SSE body that ended stays ended.
#[tokio::test]
async fn an_sse_body_polled_after_its_end_stays_ended() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let hub = Hub::memory();
    let request = axum::http::Request::get("/v1/events?key=a")
        .header("accept", "text/event-stream")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router(hub.clone(), HttpConfig::default())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let opening = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(opening.starts_with(b": live\nid: "), "{opening:?}");
    hub.shutdown();
    while let Some(frame) = tokio::time::timeout(PATIENCE, body.frame()).await.unwrap() {
        frame.unwrap();
    }
    for _ in 0..3 {
        assert!(body.frame().await.is_none());
    }
}

/// An application's route that reads the peer's address, as under
/// `axum::serve`, gets it on both paths: a plain request and one hyper
/// answers.
#[tokio::test]
async fn routes_see_the_peers_address() {
    use axum::extract::ConnectInfo;
    let app = axum::Router::new()
        .route(
            "/peer",
            axum::routing::any(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.to_string()
            }),
        )
        .merge(router(Hub::memory(), HttpConfig::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async move {
        let _ = stopped.await;
    }));
    for request in [
        &b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"POST /peer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let mut reader = Reader::new(TcpStream::connect(addr).await.unwrap());
        let me = reader.stream.local_addr().unwrap();
        let response = reader.exchange(request).await;
        assert_eq!(response.status(), 200, "{response:?}");
        assert_eq!(String::from_utf8(response.body).unwrap(), me.to_string());
    }
}

/// Mounted under a prefix, the API's `404` names the path as the client
/// sent it.
#[tokio::test]
async fn a_nested_404_names_the_whole_path() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let app = axum::Router::new().nest("/hub", router(Hub::memory(), HttpConfig::default()));
    let request = axum::http::Request::get("/hub/v1/nope")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 404);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"error": {
            "code": "not_found",
            "message": "there is no endpoint at /hub/v1/nope",
        }})
    );
}

/// Durations past what the clock counts close nothing, and panic no
/// connection's task (an idle timeout panicked each at its first wait, a
/// keep-alive each WebSocket subscriber).
#[tokio::test]
async fn durations_past_the_clocks_end_panic_nothing() {
    use futures_util::StreamExt as _;
    let config = HttpConfig {
        idle_timeout: Duration::MAX,
        keep_alive: Duration::MAX,
        write_timeout: Duration::MAX,
        ..HttpConfig::default()
    };
    let server = start_as(Serving::Api, config).await;
    let mut reader = server.reader().await;
    for _ in 0..2 {
        assert_eq!(reader.exchange(HEALTHZ).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws?key=a", server.addr))
        .await
        .unwrap();
    let opening = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        opening.to_text().unwrap().starts_with(r#"{"bookmark":"#),
        "{opening:?}"
    );
    server.wait_for_subscribers(1).await;
    let event = server
        .hub
        .publish(Key::new("a").unwrap(), Data::text("still here"))
        .await
        .unwrap();
    let frame = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data(), event.envelope().as_ref());
}
