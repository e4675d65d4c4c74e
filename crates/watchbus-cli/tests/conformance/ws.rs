//! `GET /v1/ws`: the same subscription over WebSocket.

use std::time::Duration;

use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::ws::{self, WsNext};
use crate::support::{
    Answer, FRAME_TIMEOUT, TestServer, assert_json_eq, enc, envelope, origin_refusal,
};

#[tokio::test]
async fn each_event_is_one_text_frame_with_the_envelope() {
    let srv = TestServer::start(&[]);
    let mut sock = ws::connect(&srv, "key=k").await;
    ws::opening(&mut sock).await;
    srv.wait_active(1).await;
    let typed = srv
        .publish_typed("k", "user.created", json!({"a": [1, 2]}))
        .await;
    let untyped = srv.publish("k", json!("two\nlines")).await;
    srv.publish("other", json!(0)).await;
    let bcast = srv
        .publish_event(json!({"prefix": "k", "data": null}))
        .await;
    assert_json_eq(
        &ws::next_json(&mut sock).await,
        &envelope(
            &typed,
            ("key", "k"),
            Some("user.created"),
            &json!({"a": [1, 2]}),
        ),
        "typed",
    );
    assert_json_eq(
        &ws::next_json(&mut sock).await,
        &envelope(&untyped, ("key", "k"), None, &json!("two\nlines")),
        "untyped",
    );
    assert_json_eq(
        &ws::next_json(&mut sock).await,
        &envelope(&bcast, ("prefix", "k"), None, &Value::Null),
        "broadcast",
    );
}

#[tokio::test]
async fn raw_format_sends_the_payload() {
    let srv = TestServer::start(&[]);
    let mut sock = ws::connect(&srv, "key=k&format=raw").await;
    ws::opening(&mut sock).await;
    srv.wait_active(1).await;
    srv.publish("k", json!("text\r\nwith breaks")).await;
    srv.publish("k", json!({"a": 1})).await;
    srv.publish("k", json!(null)).await;
    assert_eq!(ws::next_text(&mut sock).await, "text\r\nwith breaks");
    assert_eq!(ws::next_text(&mut sock).await, r#"{"a":1}"#);
    assert_eq!(ws::next_text(&mut sock).await, "null");
}

#[tokio::test]
async fn filters_and_resume_work_as_for_sse() {
    let srv = TestServer::start(&[]);
    let e: Vec<String> = vec![
        srv.publish_typed("k", "t", json!(0)).await.id,
        srv.publish_typed("k", "t", json!(1)).await.id,
        srv.publish_typed("k", "u", json!(2)).await.id,
        srv.publish_typed("j", "t", json!(3)).await.id,
        srv.publish_typed("k", "t", json!(4)).await.id,
    ];
    let mut sock = ws::connect(&srv, &format!("key=k&event_type=t&from={}", enc(&e[0]))).await;
    assert_eq!(ws::next_event(&mut sock).await["id"], json!(e[1]));
    assert_eq!(ws::next_event(&mut sock).await["id"], json!(e[4]));
    let live = srv.publish_typed("k", "t", json!(5)).await.id;
    assert_eq!(ws::next_event(&mut sock).await["id"], json!(live));
    // from_timestamp works too: every matching event at or after the time.
    let all = srv.history("").await;
    let t = all["events"][3]["time"].as_str().unwrap().to_owned();
    let t0 = crate::support::parse_time(&t);
    let want: Vec<String> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| {
            ev["key"] == json!("k")
                && crate::support::parse_time(ev["time"].as_str().unwrap()) >= t0
        })
        .map(|ev| ev["id"].as_str().unwrap().to_owned())
        .collect();
    let mut sock = ws::connect(&srv, &format!("prefix=k&from_timestamp={}", enc(&t))).await;
    let mut got = Vec::new();
    for _ in 0..want.len() {
        got.push(
            ws::next_event(&mut sock).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_ids!(got, want);
    let live2 = srv.publish("k", json!(6)).await.id;
    assert_eq!(ws::next_event(&mut sock).await["id"], json!(live2));
}

#[tokio::test]
async fn bookmark_frame_carries_the_latest_position() {
    let srv = TestServer::start(&["--keep-alive", "1s"]);
    let mut sock = ws::connect(&srv, "key=rare").await;
    ws::opening(&mut sock).await;
    srv.wait_active(1).await;
    let a1 = srv.publish("rare", json!(1)).await.id;
    assert_eq!(ws::next_json(&mut sock).await["id"], json!(a1));
    let busy = srv
        .publish_batch(&[
            json!({"key": "busy", "data": 1}),
            json!({"key": "busy", "data": 2}),
        ])
        .await;
    let bookmark = loop {
        let v = ws::next_json(&mut sock).await;
        if v.get("bookmark") != Some(&json!(a1)) {
            break v;
        }
    };
    assert_json_eq(
        &bookmark,
        &json!({"bookmark": busy[1].id}),
        "bookmark frame",
    );
    // Resume from it.
    let mut again = ws::connect(&srv, &format!("key=rare&from={}", enc(&busy[1].id))).await;
    let a2 = srv.publish("rare", json!(2)).await.id;
    assert_eq!(ws::next_event(&mut again).await["id"], json!(a2));
}

#[tokio::test]
async fn errors_are_http_statuses_before_the_upgrade() {
    let srv = TestServer::start(&["--retention-events", "2"]);
    let e = srv.publish_n("k", 5).await;
    ws::expect_refused(&srv, "from=not-an-id", 400).await;
    ws::expect_refused(&srv, "format=xml", 400).await;
    ws::expect_refused(&srv, "on_gone=nope", 400).await;
    ws::expect_refused(&srv, "bookmarks=nope", 400).await;
    ws::expect_refused(&srv, "key=a%01", 400).await;
    ws::expect_refused(&srv, "from_timestamp=noon", 400).await;
    let many = (0..65)
        .map(|i| format!("key=k{i}"))
        .collect::<Vec<_>>()
        .join("&");
    ws::expect_refused(&srv, &many, 400).await;
    ws::expect_refused(&srv, &format!("key=k&from={}", enc(&e[0])), 410).await;
    // The edge: the newest evicted id is fine.
    let mut sock = ws::connect(&srv, &format!("key=k&from={}", enc(&e[2]))).await;
    assert_eq!(ws::next_event(&mut sock).await["id"], json!(e[3]));
    assert_eq!(ws::next_event(&mut sock).await["id"], json!(e[4]));
}

#[tokio::test]
async fn a_request_that_is_no_upgrade_gets_426_and_subscribes_nothing() {
    let srv = TestServer::start(&["--retention-events", "2"]);
    let e = srv.publish_n("k", 5).await;
    for query in ["key=k", "", &format!("key=k&from={}", enc(&e[0]))] {
        let answer = Answer::of(srv.get(&format!("/v1/ws?{query}")).send().await.unwrap()).await;
        assert_eq!(answer.status, 426, "{query}");
        assert_eq!(answer.headers["upgrade"], "websocket", "{query}");
        assert_eq!(answer.headers["sec-websocket-version"], "13", "{query}");
        assert_json_eq(
            &answer.json(),
            &json!({"error": {
                "code": "upgrade_required",
                "message": "this endpoint takes a WebSocket upgrade request",
            }}),
            query,
        );
    }
    // A bad parameter is told first, as for a real upgrade.
    let answer = Answer::of(srv.get("/v1/ws?format=xml").send().await.unwrap()).await;
    assert_eq!(answer.status, 400);
    let stats = srv.stats().await;
    assert_eq!(stats["subscribers"], json!({"active": 0, "total": 0}));
}

#[tokio::test]
async fn a_close_from_the_client_is_answered_with_a_close() {
    let srv = TestServer::start(&[]);
    let mut sock = ws::connect(&srv, "key=k").await;
    ws::opening(&mut sock).await;
    srv.wait_active(1).await;
    sock.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    match ws::next_within(&mut sock, FRAME_TIMEOUT).await {
        WsNext::Close(Some((code, _))) => assert_eq!(code, 1000),
        other => panic!("the close was answered with {other:?}, not a close"),
    }
    srv.wait_active(0).await;
}

#[tokio::test]
async fn server_pings_at_the_keep_alive_interval() {
    let srv = TestServer::start(&["--keep-alive", "1s"]);
    let mut sock = ws::connect(&srv, "key=quiet").await;
    ws::opening(&mut sock).await;
    for _ in 0..2 {
        match ws::next_within(&mut sock, FRAME_TIMEOUT).await {
            WsNext::Ping => {}
            other => panic!("expected a ping within {FRAME_TIMEOUT:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_lagging_subscriber_is_closed_with_4410_and_the_last_id_sent() {
    const EVENTS: usize = 20_000;
    const BATCH: usize = 500;
    let srv = TestServer::start(&["--retention-events", "1000"]);
    let mut sock = match ws::try_connect(&srv, "prefix=big", Some(4096)).await {
        Ok(sock) => sock,
        Err(e) => panic!("upgrade refused: {e:?}"),
    };
    let start = ws::opening(&mut sock).await;
    srv.wait_active(1).await;
    let payload = "y".repeat(1024);
    let mut published = Vec::with_capacity(EVENTS);
    for b in 0..EVENTS / BATCH {
        let batch: Vec<Value> = (0..BATCH)
            .map(|i| json!({"key": "big", "data": format!("{b}:{i}:{payload}")}))
            .collect();
        published.extend(srv.publish_batch(&batch).await.into_iter().map(|p| p.id));
    }
    let (texts, end) = ws::read_to_end(&mut sock, Duration::from_secs(60)).await;
    let got: Vec<String> = texts
        .iter()
        .map(|t| {
            let v: Value =
                serde_json::from_str(t).unwrap_or_else(|e| panic!("frame not JSON ({e}): {t:.80}"));
            v["id"]
                .as_str()
                .unwrap_or_else(|| panic!("frame without id: {t:.80}"))
                .to_owned()
        })
        .collect();
    eprintln!(
        "lagging WebSocket: got {} of {EVENTS} events, then {end:?}",
        got.len()
    );
    assert!(
        got.len() < EVENTS,
        "never read while {EVENTS} events passed a retention of 1000, yet got them all"
    );
    assert_ids!(got, &published[..got.len()]);
    match end {
        WsNext::Close(Some((code, reason))) => {
            assert_eq!(code, 4410, "close code (reason {reason:?})");
            match got.last() {
                Some(last) => assert_eq!(
                    &reason, last,
                    "close reason is the id of the last event sent"
                ),
                None => assert_eq!(reason, start, "close reason is the starting point"),
            }
        }
        other => panic!("expected a close frame with code 4410, got {other:?}"),
    }
}

#[tokio::test]
async fn on_gone_event_sends_the_gone_notice_first_then_goes_live() {
    let srv = TestServer::start(&["--retention-events", "2"]);
    let e = srv.publish_n("k", 5).await;
    let mut sock = ws::connect(&srv, &format!("key=k&on_gone=event&from={}", enc(&e[0]))).await;
    // The notice is the first frame and carries the position the stream
    // goes on from: no opening bookmark besides it.
    let notice = ws::next_json(&mut sock).await;
    let gone = notice["gone"]
        .as_object()
        .unwrap_or_else(|| panic!("first frame {notice}"));
    assert_eq!(notice.as_object().map(|o| o.len()), Some(1), "{notice}");
    assert_eq!(gone.len(), 3, "{notice}");
    assert_eq!(gone["code"], json!("gone"));
    assert!(
        gone["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "{notice}"
    );
    assert_eq!(gone["position"], json!(e[4]), "{notice}");
    srv.wait_active(1).await;
    let live = srv.publish("k", json!("live")).await.id;
    assert_eq!(ws::next_json(&mut sock).await["id"], json!(live));
}

#[tokio::test]
async fn a_page_of_another_origin_is_refused_before_the_upgrade() {
    let srv = TestServer::start(&["--cors-origin", "https://app.example"]);
    let mut open = ws::connect(&srv, "key=k").await;
    ws::opening(&mut open).await;
    let own = format!("http://{}", srv.addr);
    for origin in ["https://app.example", own.as_str()] {
        let mut sock = ws::try_connect_with(&srv, "key=k", None, &[("origin", origin)])
            .await
            .unwrap_or_else(|refused| panic!("Origin {origin}: {refused:?}"));
        ws::opening(&mut sock).await;
    }
    for origin in ["https://evil.example", "http://127.0.0.1:1", "null"] {
        let (status, body) = ws::try_connect_with(&srv, "key=k", None, &[("origin", origin)])
            .await
            .err()
            .unwrap_or_else(|| panic!("Origin {origin}: upgraded"));
        assert_eq!(status, 403, "Origin {origin}");
        let body: Value = serde_json::from_str(body.as_deref().unwrap_or_default())
            .unwrap_or_else(|err| panic!("Origin {origin}: body not JSON: {err}"));
        assert_eq!(body, origin_refusal("WebSocket", origin, "subscribe"));
    }
    // The refusals disturbed no one.
    srv.wait_active(1).await;
    let event = srv.publish("k", json!(1)).await;
    assert_eq!(ws::next_event(&mut open).await["id"], json!(event.id));
}

#[tokio::test]
async fn without_cors_origins_only_the_servers_own_pages_may_open_one() {
    let srv = TestServer::start(&[]);
    let own = format!("http://{}", srv.addr);
    ws::try_connect_with(&srv, "key=k", None, &[("origin", own.as_str())])
        .await
        .unwrap_or_else(|refused| panic!("own origin: {refused:?}"));
    // Behind a proxy that says which host the browser asked for.
    ws::try_connect_with(
        &srv,
        "key=k",
        None,
        &[
            ("origin", "https://hub.example"),
            ("x-forwarded-host", "hub.example"),
        ],
    )
    .await
    .unwrap_or_else(|refused| panic!("forwarded host: {refused:?}"));
    let (status, _) =
        ws::try_connect_with(&srv, "key=k", None, &[("origin", "https://hub.example")])
            .await
            .err()
            .unwrap_or_else(|| panic!("another origin upgraded"));
    assert_eq!(status, 403);
}

/// A WebSocket upgrade of `/v1/ws?key=k` sent on a raw connection, which
/// then reads nothing until the test does.
async fn raw_upgrade(srv: &TestServer) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(&srv.addr).await.unwrap();
    let upgrade = format!(
        "GET /v1/ws?key=k HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        srv.addr
    );
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    stream
}

/// Reads `stream` to its end and returns the code and reason of the close
/// frame that ends what the server sent after the `101`.
async fn close_at_the_end(mut stream: tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt as _;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(FRAME_TIMEOUT, stream.read_to_end(&mut received)).await;
    assert!(received.starts_with(b"HTTP/1.1 101"), "{received:?}");
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // Unmasked server frames of under 126 bytes: FIN+opcode, length, payload.
    let mut frames = &received[head_end..];
    while let [first, len, rest @ ..] = frames {
        let len = usize::from(*len);
        assert!(len < 126 && rest.len() >= len, "{frames:?}");
        if *first == 0x88 {
            assert_eq!(rest.len(), len, "bytes after the close: {frames:?}");
            let reason = String::from_utf8(rest[2..len].to_vec()).unwrap();
            return (u16::from_be_bytes([rest[0], rest[1]]), reason);
        }
        frames = &rest[len..];
    }
    panic!("no close frame in {received:?}");
}

/// A client that answers no ping for the write timeout (a frozen process
/// whose kernel still takes the bytes) is closed with 4408; one that reads,
/// and so answers, is kept, however long nothing is published.
#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed_with_4408() {
    let srv = TestServer::start(&["--keep-alive", "300ms", "--write-timeout", "2s"]);
    let frozen = raw_upgrade(&srv).await;
    let mut reading = ws::connect(&srv, "key=k").await;
    ws::opening(&mut reading).await;
    srv.wait_active(2).await;
    // Reading answers each ping (tungstenite writes the pong as it reads).
    let mut pings = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        match ws::next_within(&mut reading, FRAME_TIMEOUT).await {
            WsNext::Ping => pings += 1,
            other => panic!("a reading client got {other:?}"),
        }
    }
    assert!(pings >= 5, "{pings} pings");
    // The frozen client wakes up to a close.
    assert_eq!(
        close_at_the_end(frozen).await,
        (4408, "no pong within 2s".to_owned())
    );
    let published = srv.publish("k", json!("still here")).await;
    let event = ws::next_event(&mut reading).await;
    assert_eq!(event["id"], json!(published.id));
    srv.wait_active(1).await;
}

/// A client that breaks RFC 6455 is answered with the close code for its
/// fault (§7.4.1) before the connection ends.
#[tokio::test]
async fn a_client_that_breaks_the_protocol_is_closed_with_its_code() {
    use tokio::io::AsyncWriteExt as _;
    let srv = TestServer::start(&[]);
    // Masked frames (the mask 0 leaves the payload as it is) but for the
    // first.
    let cases: [(&str, Vec<u8>, u16); 4] = [
        ("an unmasked frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("an unknown opcode", vec![0x83, 0x80, 0, 0, 0, 0], 1002),
        (
            "text that is not UTF-8",
            vec![0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28],
            1007,
        ),
        // The head alone: the server refuses it before the payload, which
        // left unread would make the close a reset.
        (
            "a message over 64 KiB",
            [
                &[0x82_u8, 0xFF][..],
                &(65_537_u64).to_be_bytes(),
                &[0, 0, 0, 0],
            ]
            .concat(),
            1009,
        ),
    ];
    for (what, frame, code) in cases {
        let mut stream = raw_upgrade(&srv).await;
        let _ = stream.write_all(&frame).await;
        let (closed_with, reason) = close_at_the_end(stream).await;
        assert_eq!(closed_with, code, "{what}: {reason}");
    }
    srv.wait_active(0).await;
}

/// RFC 6455 §4.2.1 and §4.4: an upgrade whose key is not the base64 of 16
/// bytes is `400`; one of another version than 13 is `426`, naming 13.
/// Neither subscribes.
#[tokio::test]
async fn an_upgrade_with_a_bad_key_or_version_is_refused() {
    let srv = TestServer::start(&[]);
    let upgrade = |key: Option<&str>, version: Option<&str>| {
        let mut request = srv
            .get("/v1/ws?key=k")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade");
        if let Some(key) = key {
            request = request.header("Sec-WebSocket-Key", key);
        }
        if let Some(version) = version {
            request = request.header("Sec-WebSocket-Version", version);
        }
        request
    };
    let bad_key = json!({"error": {
        "code": "malformed_request",
        "message": "the request is not valid HTTP/1.1: a WebSocket upgrade's \
                    Sec-WebSocket-Key must be the base64 of 16 bytes (RFC 6455 §4.1)",
    }});
    // 15 and 17 bytes, not base64, and none.
    for key in [
        Some("AAAAAAAAAAAAAAAAAAAA"),
        Some("AAAAAAAAAAAAAAAAAAAAAAA="),
        Some("abc"),
        Some("dGhlIHNhbXBsZSBub25jZQ"),
        None,
    ] {
        let answer = Answer::of(upgrade(key, Some("13")).send().await.unwrap()).await;
        assert_eq!(answer.status, 400, "{key:?}");
        assert_json_eq(&answer.json(), &bad_key, &format!("{key:?}"));
    }
    for version in [Some("12"), None] {
        let answer = Answer::of(
            upgrade(Some("dGhlIHNhbXBsZSBub25jZQ=="), version)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 426, "{version:?}");
        assert_eq!(answer.headers["sec-websocket-version"], "13", "{version:?}");
    }
    let stats = srv.stats().await;
    assert_eq!(stats["subscribers"], json!({"active": 0, "total": 0}));
    // The RFC's own sample key is taken.
    let mut sock = ws::connect(&srv, "key=k").await;
    ws::opening(&mut sock).await;
}
