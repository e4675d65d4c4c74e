//! Tests carried over from the Go prototype's suite, translated to the
//! contract: watching, prefix broadcasts, and watcher clean-up on every kind
//! of disconnect.

use serde_json::json;

use crate::support::sse::Pending;
use crate::support::ws;
use crate::support::{TestServer, assert_json_eq, envelope};

#[tokio::test]
async fn watch_a_key_and_receive_what_is_published() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=foo").await;
    let p = srv.publish("foo", json!("bar")).await;
    assert_json_eq(
        &sse.next_envelope().await,
        &envelope(&p, ("key", "foo"), None, &json!("bar")),
        "received",
    );
}

#[tokio::test]
async fn prefix_watch_receives_a_matching_key_and_a_prefix_broadcast() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("prefix=foo%2F").await;
    let k = srv.publish("foo/bar", json!("to key")).await;
    let b = srv
        .publish_event(json!({"prefix": "foo/", "data": "to prefix"}))
        .await;
    let b2 = srv
        .publish_event(json!({"prefix": "fo", "data": "to a shorter prefix"}))
        .await;
    assert_json_eq(
        &sse.next_envelope().await,
        &envelope(&k, ("key", "foo/bar"), None, &json!("to key")),
        "key event",
    );
    assert_json_eq(
        &sse.next_envelope().await,
        &envelope(&b, ("prefix", "foo/"), None, &json!("to prefix")),
        "broadcast",
    );
    assert_json_eq(
        &sse.next_envelope().await,
        &envelope(&b2, ("prefix", "fo"), None, &json!("to a shorter prefix")),
        "broadcast",
    );
}

#[tokio::test]
async fn client_disconnect_removes_the_watcher() {
    let srv = TestServer::start(&[]);
    let sse = srv.sse("key=foo").await;
    srv.wait_active(1).await;
    sse.close();
    srv.wait_active(0).await;
    // An idle disconnected watcher is gone even without a publish; and the
    // server still delivers to new watchers.
    let mut sse = srv.sse("key=foo").await;
    let p = srv.publish("foo", json!(1)).await;
    assert_ids!(sse.next_ids(1).await, [p.id]);
}

#[tokio::test]
async fn missing_key_parameter_watches_every_key() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("").await;
    let a = srv.publish("a", json!(1)).await.id;
    let b = srv.publish_typed("b/c", "t", json!(2)).await.id;
    let c = srv
        .publish_event(json!({"prefix": "zzz", "data": 3}))
        .await
        .id;
    assert_ids!(sse.next_ids(3).await, [a, b, c]);
}

#[tokio::test]
async fn write_error_removes_the_watcher() {
    let srv = TestServer::start(&[]);
    let mut steady = srv.sse("key=foo").await;
    let pending = Pending::send(&srv.addr, "/v1/events?key=foo", &[], None).await;
    let doomed = pending.finish().await.expect_ok("doomed watcher");
    srv.wait_active(2).await;
    doomed.reset();
    // Publishing makes the server write to the dead socket.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(srv.publish("foo", json!(i)).await.id);
    }
    srv.wait_active(1).await;
    assert_ids!(steady.next_ids(ids.len()).await, ids);
}

#[tokio::test]
async fn websocket_stream_receives() {
    let srv = TestServer::start(&[]);
    let mut sock = ws::connect(&srv, "key=foo").await;
    srv.wait_active(1).await;
    let p = srv.publish("foo", json!({"bar": 1})).await;
    assert_json_eq(
        &ws::next_event(&mut sock).await,
        &envelope(&p, ("key", "foo"), None, &json!({"bar": 1})),
        "WebSocket event",
    );
}

#[tokio::test]
async fn websocket_disconnect_removes_the_watcher() {
    let srv = TestServer::start(&[]);
    // Dropped without a close handshake.
    let sock = ws::connect(&srv, "key=foo").await;
    srv.wait_active(1).await;
    drop(sock);
    srv.wait_active(0).await;
    // Closed politely.
    let mut sock = ws::connect(&srv, "key=foo").await;
    srv.wait_active(1).await;
    sock.close(None).await.unwrap();
    srv.wait_active(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_disconnects_while_publishing_do_not_disturb_others() {
    let srv = TestServer::start(&[]);
    let mut all = srv.sse("").await;
    let mut pre = srv.sse("prefix=c%2F").await;
    let mut one = srv.sse("key=c%2F1").await;
    let mut ws_steady = ws::connect(&srv, "prefix=c%2F").await;
    srv.wait_active(4).await;

    let churn = {
        let addr = srv.addr.clone();
        let ws_base = format!("ws://{}/v1/ws?prefix=c%2F", srv.addr);
        tokio::spawn(async move {
            for i in 0..30 {
                if i % 2 == 0 {
                    let mut sse =
                        crate::support::SseClient::connect(&addr, "/v1/events?prefix=c%2F", &[])
                            .await;
                    assert_eq!(sse.status, 200);
                    // Read a little (or nothing), then vanish.
                    let _ = sse
                        .next_frame_within(std::time::Duration::from_millis(20 * (i % 3)))
                        .await;
                    if i % 4 == 0 {
                        sse.reset();
                    } else {
                        sse.close();
                    }
                } else {
                    let (sock, _) = tokio_tungstenite::connect_async(ws_base.as_str())
                        .await
                        .unwrap();
                    drop(sock);
                }
            }
        })
    };
    let mut ids = Vec::new();
    let mut ids_one = Vec::new();
    for i in 0..300 {
        let key = format!("c/{}", i % 3);
        let id = srv.publish(&key, json!(i)).await.id;
        if key == "c/1" {
            ids_one.push(id.clone());
        }
        ids.push(id);
    }
    churn.await.unwrap();
    assert_ids!(all.next_ids(ids.len()).await, ids);
    assert_ids!(pre.next_ids(ids.len()).await, ids);
    assert_ids!(one.next_ids(ids_one.len()).await, ids_one);
    let mut ws_ids = Vec::new();
    for _ in 0..ids.len() {
        ws_ids.push(
            ws::next_event(&mut ws_steady).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_ids!(ws_ids, ids);
    srv.wait_active(4).await;
}
