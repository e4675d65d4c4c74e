//! Malformed input never crashes the server nor disturbs anyone else's
//! stream.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestServer;

/// Sends raw bytes, half-closes if asked, and reads whatever comes back
/// until EOF or a short deadline. Returns the response head, if any.
pub(crate) async fn raw(addr: &str, bytes: &[u8], half_close: bool) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may close early (e.g. on a huge header): a failed write is fine.
    let _ = stream.write_all(bytes).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut out = Vec::new();
    let mut buf = [0_u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > 64 * 1024 {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> Option<u16> {
    let line = response.lines().next()?;
    line.strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()
}

/// For a response the server wrote, a 4xx/5xx must carry the JSON envelope.
fn check_enveloped(what: &str, response: &str) {
    let Some(status) = status_of(response) else {
        return;
    };
    if status < 400 {
        return;
    }
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/json"),
        "{what}: error {status} without a JSON content type:\n{response:.400}"
    );
}

/// Sends `bytes` `piece` bytes at a time, each in its own segment, and
/// reads until the server closes (every request here asks it to).
async fn trickle(addr: &str, bytes: &[u8], piece: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    for part in bytes.chunks(piece) {
        stream.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the server answered within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of the last response in `response`.
fn body_of(response: &str) -> &str {
    response.rsplit("\r\n\r\n").next().unwrap_or_default()
}

#[tokio::test]
async fn requests_trickled_in_small_pieces_are_answered_whole() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("prefix=t%2F").await;
    let host = format!("Host: {}\r\n", srv.addr);
    let padding: String = (0..40)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "v".repeat(60)))
        .collect();
    let text = format!(
        "POST /v1/events?key=t%2F1 HTTP/1.1\r\n{host}{padding}Content-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world"
    );
    let json_body = r#"{"key":"t/2","type":"x.y","data":{"n":[1,2,3]}}"#;
    let json = format!(
        "POST /v1/events HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json_body}",
        json_body.len()
    );
    // Two requests in one trickle: the second is read after the first.
    let pipelined = format!(
        "POST /v1/events?key=t%2F3 HTTP/1.1\r\n{host}Content-Length: 1\r\n\r\n3GET /healthz HTTP/1.1\r\n{host}Connection: close\r\n\r\n"
    );
    let mut ids = Vec::new();
    for piece in [1, 3, 7] {
        for request in [&text, &json] {
            let response = trickle(&srv.addr, request.as_bytes(), piece).await;
            assert_eq!(status_of(&response), Some(200), "{piece}: {response:.300}");
            let receipt: serde_json::Value = serde_json::from_str(body_of(&response)).unwrap();
            ids.push(receipt["id"].as_str().unwrap().to_owned());
        }
        let response = trickle(&srv.addr, pipelined.as_bytes(), piece).await;
        assert_eq!(
            response.matches("HTTP/1.1 200 OK").count(),
            2,
            "{piece}: {response:.600}"
        );
        let receipt: serde_json::Value = serde_json::from_str(
            response
                .split("\r\n\r\n")
                .nth(1)
                .unwrap()
                .split("HTTP/1.1")
                .next()
                .unwrap(),
        )
        .unwrap();
        ids.push(receipt["id"].as_str().unwrap().to_owned());
        // A head that is not HTTP is refused as it ends, trickled or not.
        let bad = format!("GET /healthz HTTP/1.1\r\n{host}Bad Header\r\n\r\n");
        let response = trickle(&srv.addr, bad.as_bytes(), piece).await;
        assert_eq!(status_of(&response), Some(400), "{piece}: {response:.300}");
        check_enveloped("a trickled bad head", &response);
    }
    let data: Vec<_> = srv.history("prefix=t%2F").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].clone(), e["data"].clone()))
        .collect();
    let round = [
        (json!("t/1"), json!("hello world")),
        (json!("t/2"), json!({"n": [1, 2, 3]})),
        (json!("t/3"), json!("3")),
    ];
    assert_eq!(data, [round.clone(), round.clone(), round].concat());
    assert_eq!(sse.next_ids(9).await, ids);
}

/// The status line, the headers (lower-cased) and the body of a response
/// that ends with the connection.
fn parts_of(response: &str) -> (&str, String, &str) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status, headers.to_ascii_lowercase(), body)
}

/// Sends `request` on a connection of its own and asserts that the answer
/// is a `400` in the JSON envelope; its body.
async fn refused_400(addr: &str, request: &str) -> String {
    let response = raw(addr, request.as_bytes(), false).await;
    let (status, headers, body) = parts_of(&response);
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{request:?}");
    assert!(
        headers.contains("content-type: application/json"),
        "{request:?}: {headers}"
    );
    body.to_owned()
}

#[tokio::test]
async fn a_body_the_server_cannot_read_is_refused_in_the_envelope() {
    let srv = TestServer::start(&[]);
    let host = format!("Host: {}\r\n", srv.addr);
    let unreadable = r#"{"error":{"code":"malformed_request","message":"the request is not valid HTTP/1.1: a body is read with Content-Length, or Transfer-Encoding: chunked once and in HTTP/1.1; no other transfer coding is taken"}}"#;
    let bad_length = r#"{"error":{"code":"malformed_request","message":"the request is not valid HTTP/1.1: its Content-Length is invalid, given twice with different values, or given with Transfer-Encoding"}}"#;
    let publish = |version: &str, framing: &str| {
        format!(
            "POST /v1/events?key=f HTTP/{version}\r\n{host}{framing}Connection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n"
        )
    };
    // The same, with the target in absolute form, which hyper answers.
    let absolute = |framing: &str| {
        publish("1.1", framing).replacen(
            "POST /v1/events",
            &format!("POST http://{}/v1/events", srv.addr),
            1,
        )
    };
    let cases = [
        (publish("1.1", "Transfer-Encoding: gzip\r\n"), unreadable),
        (
            publish("1.1", "Transfer-Encoding: identity\r\n"),
            unreadable,
        ),
        (
            publish("1.1", "Transfer-Encoding: chunked, gzip\r\n"),
            unreadable,
        ),
        (
            publish("1.1", "Transfer-Encoding: gzip, chunked\r\n"),
            unreadable,
        ),
        (
            publish(
                "1.1",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            ),
            unreadable,
        ),
        (
            publish(
                "1.1",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            ),
            unreadable,
        ),
        (publish("1.0", "Transfer-Encoding: chunked\r\n"), unreadable),
        (
            publish("1.1", "Content-Length: 18446744073709551615\r\n"),
            bad_length,
        ),
        (
            publish("1.1", "Content-Length: 9223372036854775808\r\n"),
            bad_length,
        ),
        // RFC 9112 §6.3 allows reading the chunks; refused, as the pair is
        // how a request is smuggled past a proxy that reads the length.
        (
            publish("1.1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            bad_length,
        ),
        (
            publish("1.1", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            bad_length,
        ),
        (absolute("Transfer-Encoding: gzip, chunked\r\n"), unreadable),
        (
            absolute("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            unreadable,
        ),
        (
            absolute("Content-Length: 1\r\nContent-Length: 2\r\n"),
            bad_length,
        ),
        (
            format!("HEAD /v1/stats HTTP/1.1\r\n{host}Transfer-Encoding: gzip\r\n\r\n"),
            unreadable,
        ),
    ];
    for (request, body) in cases {
        assert_eq!(refused_400(&srv.addr, &request).await, body, "{request:?}");
    }
    assert_eq!(srv.stats().await["events"]["published"], json!(0));
}

#[tokio::test]
async fn after_a_request_hyper_serves_the_connection_closes() {
    let srv = TestServer::start(&[]);
    let host = format!("Host: {}\r\n", srv.addr);
    // A chunked publish, then, on the same connection, a head hyper would
    // have answered with a bare status; the server closes after the first.
    let then: String = (0..120).map(|i| format!("X-{i}: v\r\n")).collect();
    let request = format!(
        "POST /v1/events?key=c HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
         GET /healthz HTTP/1.1\r\n{host}{then}\r\n"
    );
    let response = raw(&srv.addr, request.as_bytes(), false).await;
    let (status, headers, body) = parts_of(&response);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("connection: close"), "{headers}");
    assert_eq!(response.matches("HTTP/1.1").count(), 1, "{response}");
    let receipt: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        srv.history_ids("key=c").await,
        [receipt["id"].as_str().unwrap()]
    );
    // The same head on a connection of its own is refused in the envelope.
    let response = raw(
        &srv.addr,
        format!("GET /healthz HTTP/1.1\r\n{host}{then}\r\n").as_bytes(),
        false,
    )
    .await;
    let (status, headers, body) = parts_of(&response);
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    assert!(body.contains(r#""code":"head_too_large""#), "{body}");
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any request with
/// two, is refused `400` in the envelope and does nothing; HTTP/1.0 may
/// leave `Host` out.
#[tokio::test]
async fn a_request_names_its_host_exactly_once() {
    let srv = TestServer::start(&[]);
    let host = format!("Host: {}\r\n", srv.addr);
    let publish = |version: &str, hosts: &str| {
        format!(
            "POST /v1/events?key=h HTTP/{version}\r\n{hosts}Content-Type: text/plain\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\nx"
        )
    };
    let refused = [
        publish("1.1", ""),
        publish("1.1", &format!("{host}{host}")),
        publish("1.0", &format!("{host}host: other\r\n")),
        "GET /v1/events?key=h HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n".to_owned(),
        "GET /v1/ws?key=h HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_owned(),
        // hyper's requests are checked as well: HEAD, and a target in
        // absolute form.
        "HEAD /v1/stats HTTP/1.1\r\n\r\n".to_owned(),
        format!("HEAD /v1/events?key=h HTTP/1.1\r\n{host}Host: evil.example\r\n\r\n"),
        format!(
            "POST http://{}/v1/events?key=h HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            srv.addr
        ),
        format!(
            "POST http://{}/v1/events?key=h HTTP/1.1\r\n{host}Host: evil.example\r\n\
             Content-Length: 1\r\n\r\nx",
            srv.addr
        ),
    ];
    for request in &refused {
        let body = refused_400(&srv.addr, request).await;
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "code": "malformed_request",
                "message": "the request is not valid HTTP/1.1: it must name its host \
                            in exactly one Host header (at most one in HTTP/1.0)",
            }}),
            "{request:?}"
        );
    }
    let stats = srv.stats().await;
    assert_eq!(stats["events"]["published"], json!(0));
    assert_eq!(stats["subscribers"]["total"], json!(0));
    // One Host in HTTP/1.1, and none in HTTP/1.0, are served.
    for request in [publish("1.1", &host), publish("1.0", "")] {
        let response = raw(&srv.addr, request.as_bytes(), false).await;
        assert_eq!(status_of(&response), Some(200), "{request:?}: {response}");
    }
    assert_eq!(srv.history_ids("key=h").await.len(), 2);
}

#[tokio::test]
async fn malformed_requests_do_not_disturb_a_subscriber() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("prefix=r%2F").await;
    let addr = srv.addr.clone();
    let host = format!("Host: {addr}\r\n");
    let mut garbage = Vec::with_capacity(4096);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push(x.to_le_bytes()[0]);
    }
    let huge = format!(
        "GET /healthz HTTP/1.1\r\n{host}X-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let many_headers: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let abuses: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage bytes", garbage, true),
        ("garbage, not closed", b"\x00\x01\x02\xff\xfe GET / HTTP/9.9\r\n\r\n".to_vec(), false),
        ("truncated head", format!("GET /v1/events?key=a HTTP/1.1\r\n{host}Acc").into_bytes(), true),
        (
            "truncated body",
            format!("POST /v1/events HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"key\":\"r/x\",").into_bytes(),
            true,
        ),
        ("huge header", huge.into_bytes(), false),
        ("500 headers", format!("GET /healthz HTTP/1.1\r\n{host}{many_headers}\r\n").into_bytes(), false),
        ("bad percent-encoding", format!("GET /v1/events?key=%ZZ&prefix=% HTTP/1.1\r\n{host}Connection: close\r\n\r\n").into_bytes(), false),
        ("non-UTF-8 percent-encoding", format!("GET /v1/events/history?key=%FF%FE HTTP/1.1\r\n{host}Connection: close\r\n\r\n").into_bytes(), false),
        (
            "non-UTF-8 key in a publish",
            format!("POST /v1/events?key=r%2F%E2%82 HTTP/1.1\r\n{host}Content-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx").into_bytes(),
            false,
        ),
        ("raw bytes in the path", b"GET /v1/\xff\xfe HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), false),
        (
            "bad chunked body",
            format!("POST /v1/events HTTP/1.1\r\n{host}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
            false,
        ),
        ("HTTP/0.9", b"GET /\r\n\r\n".to_vec(), false),
        (
            "content-length lies",
            format!("POST /v1/events HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{{\"key\":\"r/y\",\"data\":1}}").into_bytes(),
            false,
        ),
        ("bad Last-Event-ID bytes", format!("GET /v1/events?key=r%2Fz HTTP/1.1\r\n{host}Last-Event-ID: \x01\x7f\r\nConnection: close\r\n\r\n").into_bytes(), false),
    ];
    let mut published = Vec::new();
    for (i, (what, bytes, half_close)) in abuses.into_iter().enumerate() {
        let response = raw(&addr, &bytes, half_close).await;
        if matches!(
            what,
            "bad percent-encoding"
                | "non-UTF-8 percent-encoding"
                | "non-UTF-8 key in a publish"
                | "bad chunked body"
        ) {
            check_enveloped(what, &response);
        }
        if what == "non-UTF-8 key in a publish" {
            assert_eq!(status_of(&response), Some(400), "{what}: {response:.300}");
        }
        // The server still serves, and the subscriber still gets everything.
        published.push(srv.publish(&format!("r/{i}"), json!(what)).await.id);
        let resp = srv
            .get("/healthz")
            .send()
            .await
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "after {what}");
    }
    // Half-open connections that never send anything.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    published.push(srv.publish("r/end", json!("end")).await.id);
    drop(idle);
    assert_ids!(sse.next_ids(published.len()).await, published);
    let stats = srv.stats().await;
    assert_eq!(
        stats["events"]["published"],
        json!(published.len()),
        "only the valid publishes were stored: {stats}"
    );
}

#[tokio::test]
async fn many_bad_requests_in_parallel_with_a_publisher() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=steady").await;
    let addr = srv.addr.clone();
    let abuser = tokio::spawn(async move {
        for i in 0..60 {
            let req = match i % 3 {
                0 => format!(
                    "GET /v1/events?key=%{i:X}Z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                ),
                1 => format!(
                    "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{{\"key\":{i}"
                ),
                _ => "\u{1}\u{2}\u{3}garbage\r\n\r\n".to_owned(),
            };
            let _ = raw(&addr, req.as_bytes(), false).await;
        }
    });
    let mut published = Vec::new();
    for i in 0..100 {
        published.push(srv.publish("steady", json!(i)).await.id);
    }
    abuser.await.unwrap();
    assert_ids!(sse.next_ids(published.len()).await, published);
}

/// `--max-subscribers`: one subscriber more is `503 too_many_subscribers`
/// (SSE and WebSocket alike, before the stream starts), the subscribers
/// already there go on, and a place that frees up is taken again.
#[tokio::test]
async fn past_max_subscribers_a_new_one_is_503_and_the_others_go_on() {
    let srv = TestServer::start(&["--max-subscribers", "2"]);
    let mut first = srv.sse("key=k").await;
    let socket = crate::support::ws::connect(&srv, "key=k").await;
    srv.wait_active(2).await;

    let refused = srv.get("/v1/events?key=k").send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "too_many_subscribers", "message":
            "this server holds its most subscribers (2); retry later, or on another server"}})
    );
    crate::support::ws::expect_refused(&srv, "key=k", 503).await;
    // The refused client's connection is closed, not kept alive: near the
    // file-descriptor limit, each one kept would hold a descriptor.
    let mut stream = TcpStream::connect(&srv.addr).await.unwrap();
    let request = format!(
        "GET /v1/events?key=k HTTP/1.1\r\nHost: {}\r\n\r\n",
        srv.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 503 ") && response.contains("\r\nconnection: close\r\n"),
        "{response}"
    );
    // History is not a subscription.
    assert_eq!(srv.history("key=k").await["events"], json!([]));

    let published = srv.publish("k", json!("on")).await;
    assert_ids!(first.next_ids(1).await, [&published.id]);
    drop(socket);
    srv.wait_active(1).await;
    let mut again = srv.sse("key=k").await;
    let next = srv.publish("k", json!("again")).await;
    assert_ids!(again.next_ids(1).await, [&next.id]);
    assert_ids!(first.next_ids(1).await, [&next.id]);
}

/// `--idle-timeout`: a connection that sends no request for it is closed,
/// before its first request and between two; one that keeps sending is
/// kept. The timing of the close is the HTTP crate's test; this one shows
/// the flag reaches the server.
#[tokio::test]
async fn a_connection_idle_for_the_idle_timeout_is_closed() {
    let srv = TestServer::start(&["--idle-timeout", "2s"]);
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", srv.addr);
    let mut buf = [0_u8; 4096];

    let mut silent = TcpStream::connect(&srv.addr).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");

    let mut kept = TcpStream::connect(&srv.addr).await.unwrap();
    for _ in 0..4 {
        kept.write_all(healthz.as_bytes()).await.unwrap();
        let n = kept.read(&mut buf).await.unwrap();
        let response = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(status_of(&response), Some(200), "{response}");
        // Four gaps of 0.6 s outlast one idle timeout: each request
        // starts it again.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), kept.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
}

/// A target in absolute form names the host the request is for, and
/// `Host` is ignored (RFC 9112 §3.2.2): the host check reads the target.
#[tokio::test]
async fn a_target_in_absolute_form_is_checked_for_its_host() {
    let srv = TestServer::start(&[]);
    let host = format!("Host: {}\r\n", srv.addr);
    let refused = raw(
        &srv.addr,
        format!("GET http://evil.example/v1/stats HTTP/1.1\r\n{host}Connection: close\r\n\r\n")
            .as_bytes(),
        false,
    )
    .await;
    let (status, _, body) = parts_of(&refused);
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "{refused}");
    assert!(
        body.contains(r#""code":"forbidden","message":"this server does not answer to the host \"evil.example\""#),
        "{body}"
    );
    let served = raw(
        &srv.addr,
        format!(
            "GET http://{}/v1/stats HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            srv.addr
        )
        .as_bytes(),
        false,
    )
    .await;
    assert_eq!(status_of(&served), Some(200), "{served}");
    // `CONNECT` has no path: the 404 names its target.
    let connect = raw(
        &srv.addr,
        format!("CONNECT evil.example:443 HTTP/1.1\r\n{host}\r\n").as_bytes(),
        false,
    )
    .await;
    let (status, _, body) = parts_of(&connect);
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{connect}");
    assert!(
        body.contains("there is no endpoint at evil.example:443"),
        "{body}"
    );
}

/// `Authorization` is not a list: a request with two is refused `400`
/// whatever they say, on every path, and does nothing.
#[tokio::test]
async fn a_request_carries_one_authorization_at_most() {
    let srv = TestServer::start(&["--publish-token", "p", "--subscribe-token", "s"]);
    let host = format!("Host: {}\r\n", srv.addr);
    let two = "Authorization: Bearer nope\r\nAuthorization: Bearer p\r\n";
    let refused = [
        format!(
            "POST /v1/events?key=a HTTP/1.1\r\n{host}{two}Content-Length: 1\r\n\
             Connection: close\r\n\r\nx"
        ),
        format!(
            "POST /v1/events?key=a HTTP/1.1\r\n{host}{two}Transfer-Encoding: chunked\r\n\r\n\
             1\r\nx\r\n0\r\n\r\n"
        ),
        format!("GET /v1/events?key=a HTTP/1.1\r\n{host}{two}Accept: text/event-stream\r\n\r\n"),
        format!("GET /v1/events/history?key=a HTTP/1.1\r\n{host}{two}Connection: close\r\n\r\n"),
    ];
    for request in &refused {
        let body: serde_json::Value =
            serde_json::from_str(&refused_400(&srv.addr, request).await).unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "code": "malformed_request",
                "message": "the request is not valid HTTP/1.1: it must carry at most one \
                            Authorization header (RFC 9110 §11.6.2)",
            }}),
            "{request:?}"
        );
    }
    let one = format!(
        "POST /v1/events?key=a HTTP/1.1\r\n{host}Authorization: Bearer p\r\nContent-Length: 1\r\n\
         Connection: close\r\n\r\nx"
    );
    let served = raw(&srv.addr, one.as_bytes(), false).await;
    assert_eq!(status_of(&served), Some(200), "{served}");
    let published = raw(
        &srv.addr,
        format!("GET /v1/events/history?key=a HTTP/1.1\r\n{host}Authorization: Bearer s\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        false,
    )
    .await;
    assert_eq!(
        published.matches(r#""key":"a""#).count(),
        1,
        "only the publish with one Authorization is stored: {published}"
    );
}

/// A publish whose declared length is over `--max-body` is refused at
/// once: a client that asked `Expect: 100-continue` gets the `413`, not a
/// `100`, and sends nothing of the body.
#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let srv = TestServer::start(&["--max-body", "1KiB"]);
    let mut stream = TcpStream::connect(&srv.addr).await.unwrap();
    let head = format!(
        "POST /v1/events?key=big HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\n\
         Content-Length: 2097152\r\nExpect: 100-continue\r\n\r\n",
        srv.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0_u8; 4096];
    while !String::from_utf8_lossy(&response).contains("}}") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answered without the body")
            .unwrap();
        assert_ne!(
            n,
            0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let (status, _, body) = parts_of(&response);
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large", "{response}");
    assert!(body.contains(r#""code":"body_too_large""#), "{body}");
    assert_eq!(srv.stats().await["events"]["published"], json!(0));
}
