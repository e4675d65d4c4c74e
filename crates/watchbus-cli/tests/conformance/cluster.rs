//! Several watchbus servers on one Redis behave as one hub: publish on A,
//! receive on B; resume and `410` on B with ids A handed out; a reset on A
//! ends B's streams; stats on both; Redis stopped and restarted with and
//! without its data under a retrying publisher; and the Go seed's Redis
//! test, translated to HTTP.
//!
//! These tests need a shared store: against `memory` (the `conformance`
//! target) each returns at once with a one-line note, since there is no
//! cluster to test; the `conformance_redis` target runs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::support::redis::Persistence;
use crate::support::server::TestStore;
use crate::support::ws::{self, WsNext};
use crate::support::{
    End, FRAME_TIMEOUT, StoreKind, TestServer, assert_increasing, assert_json_eq, enc, envelope,
    page_ids,
};

/// A store several servers can share, or `None` (with a note) when this
/// target runs against one that cannot.
fn shared_store(test: &str, persistence: Persistence) -> Option<Arc<TestStore>> {
    if StoreKind::selected() != StoreKind::Redis {
        eprintln!(
            "note: cluster::{test} needs a store shared by servers (the redis target runs it)"
        );
        return None;
    }
    let store = TestStore::redis(persistence);
    assert!(store.is_shared_by_servers());
    Some(store)
}

/// Two servers, A and B, on one store, with the same arguments.
fn two_nodes(store: &Arc<TestStore>, args: &[&str]) -> (TestServer, TestServer) {
    (
        TestServer::start_on(store.clone(), args),
        TestServer::start_on(store.clone(), args),
    )
}

async fn status_of(srv: &TestServer, path: &str) -> u16 {
    srv.get(path)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Polls `path` until it answers `status` (bounded).
async fn wait_status(srv: &TestServer, path: &str, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = status_of(srv, path).await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} {path} did not answer {status} within {within:?} (last {got})",
            srv.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `events` part of `/v1/stats`.
async fn log_stats(srv: &TestServer) -> Value {
    srv.stats().await["events"].clone()
}

#[tokio::test]
async fn publish_on_a_is_received_on_b_with_the_same_ids_and_payloads() {
    let Some(store) = shared_store("publish_on_a", Persistence::None) else {
        return;
    };
    let (a, b) = two_nodes(&store, &[]);
    let mut on_b = b.sse("prefix=c%2F").await;
    let mut on_a = a.sse("prefix=c%2F").await;
    let mut ws_b = ws::connect(&b, "key=c%2F1").await;
    b.wait_active(2).await;

    let mut want = Vec::new();
    let p = a.publish("c/1", json!({"n": 1})).await;
    want.push(envelope(&p, ("key", "c/1"), None, &json!({"n": 1})));
    let p = a.publish_typed("c/2", "thing.made", json!("text")).await;
    want.push(envelope(
        &p,
        ("key", "c/2"),
        Some("thing.made"),
        &json!("text"),
    ));
    let p = a
        .publish_event(json!({"prefix": "c/", "data": [1, 2, 3]}))
        .await;
    want.push(envelope(&p, ("prefix", "c/"), None, &json!([1, 2, 3])));
    let batch = a
        .publish_batch(&[
            json!({"key": "c/3", "data": null}),
            json!({"key": "c/1", "type": "t", "data": {"deep": {"x": 1.5}}}),
        ])
        .await;
    want.push(envelope(&batch[0], ("key", "c/3"), None, &Value::Null));
    want.push(envelope(
        &batch[1],
        ("key", "c/1"),
        Some("t"),
        &json!({"deep": {"x": 1.5}}),
    ));
    // And the other way round: B's events reach A, in the same one order.
    let p = b.publish("c/2", json!("from b")).await;
    want.push(envelope(&p, ("key", "c/2"), None, &json!("from b")));

    for (i, want) in want.iter().enumerate() {
        assert_json_eq(
            &on_b.next_envelope().await,
            want,
            &format!("event {i} on B"),
        );
        assert_json_eq(
            &on_a.next_envelope().await,
            want,
            &format!("event {i} on A"),
        );
    }
    let ids: Vec<String> = want
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_increasing(&ids);
    // The WebSocket on B, key c/1: the key event, the broadcast, the batch's c/1.
    for i in [0, 2, 4] {
        assert_json_eq(
            &ws::next_event(&mut ws_b).await,
            &want[i],
            &format!("WebSocket on B, event {i}"),
        );
    }
    // Both nodes hold the same log.
    assert_eq!(a.history_ids("").await, ids, "history on A");
    assert_eq!(b.history_ids("").await, ids, "history on B");
}

#[tokio::test]
async fn resume_on_b_with_an_id_handed_out_by_a() {
    let Some(store) = shared_store("resume_on_b", Persistence::None) else {
        return;
    };
    let (a, b) = two_nodes(&store, &[]);
    let ids = a.publish_n("k", 5).await;
    // `from`, then live events from A after the replay, with no seam.
    let mut sse = b.sse(&format!("key=k&from={}", enc(&ids[1]))).await;
    assert_ids!(sse.next_ids(3).await, ids[2..]);
    let live = a.publish("k", json!("live")).await.id;
    assert_ids!(sse.next_ids(1).await, [&live]);
    // `Last-Event-ID`, as a browser reconnecting to another node sends it.
    let mut sse = b
        .sse_with("key=k", &[("Last-Event-ID", ids[3].as_str())])
        .await;
    assert_ids!(sse.next_ids(2).await, [&ids[4], &live]);
    // A WebSocket on B, and history on B.
    let mut sock = ws::connect(&b, &format!("key=k&from={}", enc(&ids[0]))).await;
    for id in ids[1..].iter().chain([&live]) {
        assert_eq!(ws::next_event(&mut sock).await["id"], json!(id));
    }
    assert_ids!(
        page_ids(&b.history(&format!("from={}", enc(&ids[2]))).await),
        [&ids[3], &ids[4], &live]
    );
}

#[tokio::test]
async fn gone_on_b_for_an_id_evicted_through_a_and_the_exact_edge() {
    let Some(store) = shared_store("gone_on_b", Persistence::None) else {
        return;
    };
    let (a, b) = two_nodes(&store, &["--retention-events", "5"]);
    let ids = a.publish_n("k", 8).await;
    // ids[0..3] are evicted; ids[2] is the newest evicted: the edge.
    for gone in &ids[..2] {
        b.assert_resume_gone("k", gone).await;
        ws::expect_refused(&b, &format!("key=k&from={}", enc(gone)), 410).await;
    }
    // At the edge it is not gone: every event after it is retained.
    let mut sse = b.sse(&format!("key=k&from={}", enc(&ids[2]))).await;
    assert_ids!(sse.next_ids(5).await, ids[3..]);
    assert_ids!(
        page_ids(&b.history(&format!("from={}", enc(&ids[2]))).await),
        ids[3..]
    );
    assert_json_eq(
        &log_stats(&b).await,
        &json!({"published": 8, "retained": 5, "evicted": 3, "oldest_id": ids[3], "latest_id": ids[7]}),
        "the log as B sees it",
    );
    // One more through A moves the edge for B too.
    let next = a.publish("k", json!("next")).await.id;
    assert_ids!(sse.next_ids(1).await, [&next]);
    let resp = b
        .get(&format!("/v1/events?key=k&from={}", enc(&ids[2])))
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410, ctx = "SSE on B from the old edge");
    let mut sse = b.sse(&format!("key=k&from={}", enc(&ids[3]))).await;
    assert_ids!(
        sse.next_ids(5).await,
        ids[4..].iter().chain([&next]).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn reset_on_a_ends_the_streams_on_b_and_zeroes_the_stats_on_b() {
    let Some(store) = shared_store("reset_on_a", Persistence::None) else {
        return;
    };
    let (a, b) = two_nodes(&store, &[]);
    let mut sse_b = b.sse("key=k").await;
    let mut ws_b = ws::connect(&b, "key=k").await;
    let mut sse_a = a.sse("key=k").await;
    b.wait_active(2).await;
    a.wait_active(1).await;
    let before = a.publish_n("k", 3).await;
    assert_ids!(sse_b.next_ids(3).await, before);
    assert_ids!(sse_a.next_ids(3).await, before);
    for id in &before {
        assert_eq!(ws::next_event(&mut ws_b).await["id"], json!(id));
    }

    a.reset().await;

    let extra = sse_b.expect_clean_end().await;
    assert!(
        extra.is_empty(),
        "no events on B after the reset: {extra:?}"
    );
    match ws::read_to_end(&mut ws_b, FRAME_TIMEOUT).await {
        (texts, WsNext::Close(_)) => assert!(texts.is_empty(), "events after reset: {texts:?}"),
        (_, other) => panic!("B's WebSocket should get a close frame on reset, got {other:?}"),
    }
    let extra = sse_a.expect_clean_end().await;
    assert!(
        extra.is_empty(),
        "no events on A after the reset: {extra:?}"
    );
    b.wait_active(0).await;
    a.wait_active(0).await;
    let zero = json!({
        "subscribers": {"active": 0, "total": 0},
        "events": {"published": 0, "retained": 0, "evicted": 0, "oldest_id": null, "latest_id": null}
    });
    assert_json_eq(&b.stats().await, &zero, "stats on B after a reset on A");
    assert_json_eq(&a.stats().await, &zero, "stats on A after its reset");
    assert_json_eq(
        &b.history("").await,
        &json!({"events": [], "next": null}),
        "history on B after the reset",
    );
    // The old ids are gone on B, except the newest (the edge); ids go on
    // increasing, and B's new streams get A's new events.
    let resp = b
        .get(&format!("/v1/events?key=k&from={}", enc(&before[1])))
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410, ctx = "resume on B before the reset");
    let mut again = b.sse(&format!("key=k&from={}", enc(&before[2]))).await;
    let after = a.publish("k", json!("after")).await.id;
    assert_ids!(again.next_ids(1).await, [&after]);
    assert_increasing(&[before[2].clone(), after]);
}

#[tokio::test]
async fn stats_on_a_and_b_show_the_shared_log_and_their_own_subscribers() {
    let Some(store) = shared_store("stats", Persistence::None) else {
        return;
    };
    let (a, b) = two_nodes(&store, &["--retention-events", "4"]);
    let _a1 = a.sse("key=x").await;
    let mut b1 = b.sse("").await;
    let _b2 = ws::connect(&b, "prefix=y").await;
    a.wait_active(1).await;
    b.wait_active(2).await;
    let mut ids = a.publish_n("x", 3).await;
    ids.extend(b.publish_n("y", 3).await);
    assert_ids!(b1.next_ids(6).await, ids);
    let log = json!({"published": 6, "retained": 4, "evicted": 2, "oldest_id": ids[2], "latest_id": ids[5]});
    let sa = a.stats().await;
    let sb = b.stats().await;
    assert_json_eq(&sa["events"], &log, "the log on A");
    assert_json_eq(&sb["events"], &log, "the log on B");
    assert_json_eq(
        &sa["subscribers"],
        &json!({"active": 1, "total": 1}),
        "A's own subscribers",
    );
    assert_json_eq(
        &sb["subscribers"],
        &json!({"active": 2, "total": 2}),
        "B's own subscribers",
    );
}

/// What a publisher that retries until `200` saw.
#[derive(Debug, Default)]
struct Retried {
    /// `(id, data)` of each acknowledged event, in order.
    acked: Vec<(String, u64)>,
    /// Publishes answered `503`, by data value.
    unavailable: Vec<u64>,
}

/// Publishes `{"key": "r", "data": i}` for i = 0, 1, ... through `srv`,
/// each under the idempotency key `r-<i>` and retried every 50 ms until
/// `200`; any other status fails the test. Stops after `stop` is set,
/// between events.
fn retrying_publisher(
    srv: &TestServer,
    log: Arc<Mutex<Retried>>,
    stop: Arc<AtomicBool>,
    unavailable_now: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let http = srv.http.clone();
    let url = srv.url("/v1/events");
    tokio::spawn(async move {
        let mut i = 0_u64;
        while !stop.load(Ordering::SeqCst) {
            loop {
                let body = json!({"key": "r", "data": i}).to_string();
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("r-{i}"))
                    .body(body)
                    .send()
                    .await
                    .expect("publish request");
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                match status {
                    200 => {
                        let value: Value = serde_json::from_str(&text).unwrap();
                        let id = value["id"].as_str().unwrap().to_owned();
                        log.lock().await.acked.push((id, i));
                        unavailable_now.store(0, Ordering::SeqCst);
                        break;
                    }
                    503 => {
                        let error: Value = serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("503 body is not JSON ({e}): {text}"));
                        crate::support::check_error_value(&error).unwrap();
                        log.lock().await.unavailable.push(i);
                        unavailable_now.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("publish {i} answered {other}: {text}"),
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

async fn acked_count(log: &Mutex<Retried>) -> usize {
    log.lock().await.acked.len()
}

async fn wait_until(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_down_then_back_with_its_data_loses_nothing_acknowledged() {
    let Some(store) = shared_store("redis_down_then_back", Persistence::Aof) else {
        return;
    };
    let redis = store.redis_server().unwrap();
    let (a, b) = two_nodes(&store, &["--keep-alive", "1s"]);
    let mut sub = b.sse("key=r").await;
    b.wait_active(1).await;

    let log = Arc::new(Mutex::new(Retried::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let failing = Arc::new(AtomicUsize::new(0));
    let publisher = retrying_publisher(&a, log.clone(), stop.clone(), failing.clone());
    wait_until("5 events acknowledged", FRAME_TIMEOUT, async || {
        acked_count(&log).await >= 5
    })
    .await;

    redis.kill();
    let acked_before_down = acked_count(&log).await;
    wait_until(
        "3 publishes in a row answered 503",
        FRAME_TIMEOUT,
        async || failing.load(Ordering::SeqCst) >= 3,
    )
    .await;
    // Nothing is acknowledged while Redis is down (one that was in flight
    // as it died may still have been).
    assert!(
        acked_count(&log).await <= acked_before_down + 1,
        "publishes were acknowledged with Redis down"
    );
    let down_acked = acked_count(&log).await;
    for srv in [&a, &b] {
        assert_eq!(
            status_of(srv, "/readyz").await,
            503,
            "/readyz on {}",
            srv.addr
        );
        assert_eq!(
            status_of(srv, "/healthz").await,
            200,
            "/healthz on {}",
            srv.addr
        );
        // A scrape still answers, and says the store is down.
        assert_eq!(
            status_of(srv, "/metrics").await,
            200,
            "/metrics on {}",
            srv.addr
        );
        let store = super::admin::samples(srv, "watchbus_store_up").await;
        assert_eq!(
            store.get("watchbus_store_up").map(String::as_str),
            Some("0"),
            "/metrics on {}",
            srv.addr
        );
        let retained = super::admin::samples(srv, "watchbus_events_retained").await;
        assert!(
            retained.is_empty(),
            "retained events with Redis down: {retained:?}"
        );
    }
    // The stream on B stays open, and keep-alives keep coming.
    let mut keep_alives = 0;
    let mut early = Vec::new();
    while keep_alives < 2 {
        match sub.next_frame_within(Duration::from_secs(3)).await {
            Ok(frame) if frame.is_event() => early.push(frame),
            Ok(frame) => {
                keep_alives += usize::from(frame.comments.iter().any(|c| c == "keep-alive"))
            }
            Err(e) => panic!("B's stream with Redis down: {e} (keep-alives so far {keep_alives})"),
        }
    }
    assert_eq!(
        acked_count(&log).await,
        down_acked,
        "an acknowledgement with Redis down"
    );

    redis.restart();
    for srv in [&a, &b] {
        wait_status(srv, "/readyz", 200, FRAME_TIMEOUT).await;
        super::admin::wait_samples(srv, "watchbus_store_up", &[("watchbus_store_up", "1")]).await;
    }
    wait_until("5 more events acknowledged", FRAME_TIMEOUT, async || {
        acked_count(&log).await >= down_acked + 5
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    publisher.await.unwrap();

    let log = log.lock().await;
    assert!(!log.unavailable.is_empty(), "no publish answered 503");
    // B delivers the log exactly: every acknowledged event, in order, no
    // gap, no duplicate.
    let stored = a.history_ids("key=r").await;
    assert_eq!(
        b.history_ids("key=r").await,
        stored,
        "the log on A and on B"
    );
    let mut got: Vec<(String, Value)> = early
        .iter()
        .map(|f| (f.id.clone().unwrap(), f.json()["data"].clone()))
        .collect();
    while got.len() < stored.len() {
        let frame = sub.next_event().await;
        got.push((frame.id.clone().unwrap(), frame.json()["data"].clone()));
    }
    let got_ids: Vec<String> = got.iter().map(|(id, _)| id.clone()).collect();
    assert_ids!(got_ids, stored);
    assert_increasing(&got_ids);
    // Every acknowledged event is there with its payload, and nothing
    // else: an append Redis ran before it died, answered 503, was answered
    // on its retry with its first id (the idempotency key), not stored
    // again.
    let want: Vec<(String, Value)> = log
        .acked
        .iter()
        .map(|(id, i)| (id.clone(), json!(i)))
        .collect();
    assert_eq!(got, want, "the stream against the acknowledgements");
    let acked_data: Vec<u64> = log.acked.iter().map(|(_, i)| *i).collect();
    assert_eq!(
        acked_data,
        (0..acked_data.len() as u64).collect::<Vec<_>>(),
        "each event acknowledged once, in order"
    );
}

#[tokio::test]
async fn redis_restarted_empty_ends_the_streams_and_old_ids_are_gone() {
    let Some(store) = shared_store("redis_restarted_empty", Persistence::None) else {
        return;
    };
    let redis = store.redis_server().unwrap();
    let (a, b) = two_nodes(&store, &["--keep-alive", "1s"]);
    let mut sub_b = b.sse("key=k").await;
    let mut sub_a = a.sse("key=k").await;
    b.wait_active(1).await;
    a.wait_active(1).await;
    let old = a.publish_n("k", 3).await;
    assert_ids!(sub_b.next_ids(3).await, old);
    assert_ids!(sub_a.next_ids(3).await, old);

    redis.kill();
    redis.restart_empty();

    // The streams end (never silently going on after a lost log) ...
    for (name, sub) in [("B", &mut sub_b), ("A", &mut sub_a)] {
        let (events, end) = sub.read_to_end(Duration::from_secs(20)).await;
        assert!(
            events.is_empty(),
            "events on {name} after the log was lost: {events:?}"
        );
        assert_eq!(end, End::Clean, "the stream on {name} did not end cleanly");
    }
    // ... and their resume gets 410 on either node.
    for srv in [&b, &a] {
        for id in [&old[0], &old[2]] {
            let resp = srv
                .get("/v1/events?key=k")
                .header("Last-Event-ID", id.as_str())
                .send()
                .await
                .unwrap();
            assert_error!(resp, 410, ctx = "resume on {} from {id}", srv.addr);
            let resp = srv
                .get(&format!("/v1/events/history?from={}", enc(id)))
                .send()
                .await
                .unwrap();
            assert_error!(resp, 410, ctx = "history on {} from {id}", srv.addr);
        }
    }
    // The cluster goes on, with larger ids never used before.
    let mut live = b.sse("key=k").await;
    let new = a.publish("k", json!("new")).await.id;
    assert_ids!(live.next_ids(1).await, [&new]);
    assert!(!old.contains(&new), "id {new} reused");
    assert_increasing(&[old[2].clone(), new]);
}

/// The Go seed's Redis test, over HTTP across two nodes: watch, prefix
/// subscribe, publish, prefix publish (broadcast), unwatch.
#[tokio::test]
async fn seed_redis_test_watch_prefix_publish_broadcast_unwatch() {
    let Some(store) = shared_store("seed_redis_test", Persistence::None) else {
        return;
    };
    let (a, b) = two_nodes(&store, &[]);
    // Watch a key and a prefix on B.
    let mut watch = b.sse("key=foo").await;
    let mut prefix = b.sse("prefix=foo%2F").await;
    b.wait_active(2).await;
    // Publish on A to the key, and to a key under the prefix.
    let p1 = a.publish("foo", json!("bar")).await;
    let p2 = a.publish("foo/baz", json!({"v": 2})).await;
    // Prefix publish (broadcast) on A: to `foo/` reaches the prefix
    // watcher only; to `fo` reaches both.
    let b1 = a
        .publish_event(json!({"prefix": "foo/", "data": "to foo/"}))
        .await;
    let b2 = a
        .publish_event(json!({"prefix": "fo", "data": "to fo"}))
        .await;
    for want in [
        envelope(&p1, ("key", "foo"), None, &json!("bar")),
        envelope(&b2, ("prefix", "fo"), None, &json!("to fo")),
    ] {
        assert_json_eq(&watch.next_envelope().await, &want, "key watcher on B");
    }
    for want in [
        envelope(&p2, ("key", "foo/baz"), None, &json!({"v": 2})),
        envelope(&b1, ("prefix", "foo/"), None, &json!("to foo/")),
        envelope(&b2, ("prefix", "fo"), None, &json!("to fo")),
    ] {
        assert_json_eq(&prefix.next_envelope().await, &want, "prefix watcher on B");
    }
    // Unwatch: disconnecting removes the watcher, on its node only.
    let _on_a = a.sse("key=foo").await;
    a.wait_active(1).await;
    watch.close();
    b.wait_active(1).await;
    prefix.close();
    b.wait_active(0).await;
    a.wait_active(1).await;
    // A new watcher still gets events.
    let mut again = b.sse("key=foo").await;
    let p3 = a.publish("foo", json!(3)).await;
    assert_ids!(again.next_ids(1).await, [&p3.id]);
}

/// A Redis that is down refuses every publish, but the server's log says
/// so once per 10 s, not once per request.
#[tokio::test]
async fn a_store_that_is_down_is_logged_once_not_per_request() {
    let Some(store) = shared_store("store_down_logged_once", Persistence::None) else {
        return;
    };
    let redis = store.redis_server().unwrap();
    let srv = TestServer::start_on(store.clone(), &[]);
    srv.publish("k", json!(1)).await;
    redis.kill();
    // Each takes a reconnect attempt: about half a second here.
    let started = Instant::now();
    for i in 0..8 {
        let resp = srv.publish_raw(&json!({"key": "k", "data": i})).await;
        assert_error!(resp, 503, ctx = "publish {i} with Redis down");
    }
    let periods = started.elapsed().as_secs() / 10;
    let output = srv.output();
    let lines = output.matches("store unavailable").count() as u64;
    assert!((1..=1 + periods).contains(&lines), "{output}");
}
