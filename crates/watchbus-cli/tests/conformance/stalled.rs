//! Clients that stop reading (`serve --write-timeout`): cut off once they
//! have taken nothing written to them for the write timeout, so that they
//! hold neither their connection nor the events still to be sent to them,
//! and disturb nobody else.

use std::time::Duration;

use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::sse::Pending;
use crate::support::ws::{self, WsNext};
use crate::support::{FRAME_TIMEOUT, TestServer};

/// Long enough that a reading client under a loaded machine is never
/// taken for a stalled one.
const WRITE_TIMEOUT: &str = "2s";

/// Publishes `n` events of 16 KiB to key `big`: together more than the
/// socket buffers of a client that stops reading hold.
async fn publish_big(srv: &TestServer, n: usize) -> Vec<String> {
    let payload = "z".repeat(16 * 1024);
    let mut ids = Vec::with_capacity(n);
    for batch in 0..n / 25 {
        let events: Vec<Value> = (0..25)
            .map(|i| json!({"key": "big", "data": format!("{batch}:{i}:{payload}")}))
            .collect();
        ids.extend(srv.publish_batch(&events).await.into_iter().map(|p| p.id));
    }
    ids
}

/// Reads what `stream` still holds until the server's close; the bytes
/// read. Panics if the connection is still open after `FRAME_TIMEOUT`.
async fn read_to_close(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return total,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!(
                "the stalled connection was still open after {FRAME_TIMEOUT:?}, {total} bytes read"
            ),
        }
    }
}

#[tokio::test]
async fn subscribers_that_stop_reading_are_cut_off_and_the_others_get_everything() {
    const EVENTS: usize = 600;
    let srv = TestServer::start(&[
        "--write-timeout",
        WRITE_TIMEOUT,
        "--retention-events",
        "100000",
    ]);
    let healthy_sse = srv.sse("key=big").await;
    let mut healthy_ws = ws::connect(&srv, "key=big").await;
    ws::opening(&mut healthy_ws).await;
    let stalled_sse = Pending::send(&srv.addr, "/v1/events?key=big", &[], Some(4096)).await;
    let mut stalled_sse = stalled_sse.into_stream();
    let mut stalled_ws = ws::try_connect(&srv, "key=big", Some(4096))
        .await
        .expect("upgrade");
    srv.wait_active(4).await;

    // The healthy ones read all along, and stay open.
    let sse_reader = tokio::spawn(async move {
        let mut healthy_sse = healthy_sse;
        let ids = healthy_sse.next_ids(EVENTS).await;
        (ids, healthy_sse)
    });
    let ws_reader = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(EVENTS);
        while ids.len() < EVENTS {
            let event = ws::next_event(&mut healthy_ws).await;
            ids.push(event["id"].as_str().unwrap().to_owned());
        }
        (ids, healthy_ws)
    });
    let published = publish_big(&srv, EVENTS).await;
    let (sse_ids, _healthy_sse) = sse_reader.await.unwrap();
    let (ws_ids, _healthy_ws) = ws_reader.await.unwrap();
    assert_eq!(sse_ids, published);
    assert_eq!(ws_ids, published);

    // The stalled two are cut off; the healthy two stay.
    srv.wait_active(2).await;
    let sse_bytes = read_to_close(&mut stalled_sse).await;
    assert!(
        sse_bytes < EVENTS * 16 * 1024,
        "the stalled SSE client got {sse_bytes} bytes: all of it, so it was not stalled"
    );
    let (texts, end) = ws::read_to_end(&mut stalled_ws, FRAME_TIMEOUT).await;
    assert!(
        texts.len() < EVENTS,
        "the stalled WebSocket got all {EVENTS} events, so it was not stalled"
    );
    assert!(
        matches!(end, WsNext::Gone(_)),
        "the stalled WebSocket ended with {end:?}, not a cut connection"
    );
    // It resumes from what it got, with nothing lost.
    let last = texts.iter().rev().find_map(|t| {
        serde_json::from_str::<Value>(t).ok()?["id"]
            .as_str()
            .map(str::to_owned)
    });
    let from = last.map(|id| format!("&from={id}")).unwrap_or_default();
    let rest = srv.history_ids(&format!("key=big&limit=1000{from}")).await;
    assert_eq!(rest, published[published.len() - rest.len()..]);
}

#[tokio::test]
async fn a_websocket_client_that_pings_without_reading_is_cut_off() {
    let srv = TestServer::start(&["--write-timeout", WRITE_TIMEOUT]);
    let mut other = srv.sse("key=k").await;
    let mut flooding = ws::try_connect(&srv, "key=quiet", Some(4096))
        .await
        .expect("upgrade");
    srv.wait_active(2).await;
    // The server answers each ping with a pong this client never reads:
    // it stops reading pings rather than buffer pongs, and then cuts the
    // client off. Before, it read on and buffered every pong.
    let payload = bytes::Bytes::from(vec![7u8; 125]);
    let sent = tokio::time::timeout(Duration::from_secs(30), async {
        let mut sent = 0_u64;
        while flooding.send(Message::Ping(payload.clone())).await.is_ok() {
            sent += 1;
        }
        sent
    })
    .await
    .expect("the server still took pings 30 s later");
    eprintln!("the server cut the flooding client off after {sent} pings");
    srv.wait_active(1).await;
    let id = srv.publish("k", json!("still here")).await.id;
    assert_eq!(other.next_ids(1).await, [id]);
}

/// Before its write timeout, a client that pings without reading is held
/// back by its own socket: the server stops reading its pings once their
/// pongs cannot be written, rather than read on and buffer a pong for each.
#[tokio::test]
async fn a_websocket_client_that_pings_without_reading_is_held_back_not_buffered() {
    /// Pings of 125 bytes: about 38 MB of pongs, were they buffered.
    const MOST: u64 = 300_000;
    let srv = TestServer::start(&["--write-timeout", "10m"]);
    let mut other = srv.sse("key=k").await;
    let mut flooding = ws::try_connect(&srv, "key=quiet", Some(4096))
        .await
        .expect("upgrade");
    srv.wait_active(2).await;
    let before = srv.rss_kib();
    let payload = bytes::Bytes::from(vec![7u8; 125]);
    let mut sent = 0_u64;
    let held = loop {
        if sent == MOST {
            break false;
        }
        let send = flooding.send(Message::Ping(payload.clone()));
        match tokio::time::timeout(Duration::from_secs(2), send).await {
            Err(_) => break true,
            Ok(Ok(())) => sent += 1,
            Ok(Err(err)) => panic!("the server cut the client off after {sent} pings: {err}"),
        }
    };
    let grown = srv.rss_kib().saturating_sub(before);
    eprintln!("held back: {held} after {sent} pings; the server grew by {grown} KiB");
    assert!(
        held,
        "the server read all {MOST} pings, and grew by {grown} KiB"
    );
    assert!(
        grown < 8 * 1024,
        "the server grew by {grown} KiB while held back"
    );
    // Held, not cut: it is still open, and nobody else is disturbed.
    assert_eq!(srv.stats().await["subscribers"]["active"], json!(2));
    let id = srv.publish("k", json!("still here")).await.id;
    assert_eq!(other.next_ids(1).await, [id]);
}
