//! Admin and operations: reset, stats, metrics, health.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::ws::{self, WsNext};
use crate::support::{
    FRAME_TIMEOUT, TestServer, assert_increasing, assert_json_eq, enc, origin_refusal, parse_time,
};

#[tokio::test]
async fn stats_have_exactly_the_contract_shape() {
    let srv = TestServer::start(&["--retention-events", "2"]);
    let fresh = json!({
        "subscribers": {"active": 0, "total": 0},
        "events": {"published": 0, "retained": 0, "evicted": 0, "oldest_id": null, "latest_id": null}
    });
    assert_json_eq(&srv.stats().await, &fresh, "stats of a fresh server");

    let mut sse = srv.sse("key=k").await;
    srv.wait_active(1).await;
    // Each event is received before the next one: with a retention of 2, a
    // subscriber still holding the first when the third evicts it lags out.
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = srv.publish("k", json!(i)).await.id;
        assert_eq!(sse.next_ids(1).await, std::slice::from_ref(&id));
        ids.push(id);
    }
    let want = json!({
        "subscribers": {"active": 1, "total": 1},
        "events": {"published": 3, "retained": 2, "evicted": 1, "oldest_id": ids[1], "latest_id": ids[2]}
    });
    assert_json_eq(
        &srv.stats().await,
        &want,
        "stats after 3 events, retention 2, one subscriber",
    );

    sse.close();
    srv.wait_active(0).await;
    let again = srv.sse("key=k").await;
    srv.wait_active(1).await;
    let stats = srv.stats().await;
    assert_json_eq(
        &stats["subscribers"],
        &json!({"active": 1, "total": 2}),
        "subscribers after a reconnect",
    );
    again.close();
}

#[tokio::test]
async fn reset_ends_streams_evicts_and_zeroes_totals() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=k").await;
    let mut sock = ws::connect(&srv, "key=k").await;
    srv.wait_active(2).await;
    let before = srv.publish_n("k", 3).await;
    assert_eq!(sse.next_ids(3).await, before);
    for id in &before {
        assert_eq!(ws::next_event(&mut sock).await["id"], json!(id));
    }

    srv.reset().await;

    let extra = sse.expect_clean_end().await;
    assert!(extra.is_empty(), "no events after the reset: {extra:?}");
    match ws::read_to_end(&mut sock, FRAME_TIMEOUT).await {
        (texts, WsNext::Close(_)) => {
            assert!(texts.is_empty(), "no events after the reset: {texts:?}")
        }
        (_, other) => {
            panic!("the WebSocket should end cleanly (a close frame) on reset, got {other:?}")
        }
    }
    srv.wait_active(0).await;
    let zero = json!({
        "subscribers": {"active": 0, "total": 0},
        "events": {"published": 0, "retained": 0, "evicted": 0, "oldest_id": null, "latest_id": null}
    });
    assert_json_eq(&srv.stats().await, &zero, "stats after reset");
    assert_json_eq(
        &srv.history("").await,
        &json!({"events": [], "next": null}),
        "history after reset",
    );

    // Ids keep increasing.
    let after = srv.publish("k", json!("after")).await.id;
    assert!(!before.contains(&after), "id reused after reset");
    assert_increasing(&[before[2].clone(), after.clone()]);
    let stats = srv.stats().await;
    assert_eq!(stats["events"]["published"], json!(1), "stats {stats}");
    assert_eq!(stats["events"]["oldest_id"], json!(after), "stats {stats}");
}

/// A page may send a cross-origin `POST` without a preflight, and CORS
/// only hides the answer: so a reset from a page that is neither the
/// server's own nor allowed is refused, and changes nothing.
#[tokio::test]
async fn a_page_of_another_origin_cannot_reset() {
    let srv = TestServer::start(&["--cors-origin", "https://app.example"]);
    let mut sse = srv.sse("key=k").await;
    srv.wait_active(1).await;
    let before = srv.publish_n("k", 2).await;
    assert_eq!(sse.next_ids(2).await, before);
    for origin in ["https://evil.example", "null"] {
        let resp = srv
            .post("/v1/admin/reset")
            .header("origin", origin)
            .send()
            .await
            .expect("reset request");
        let answer = crate::support::Answer::of(resp).await;
        assert_eq!(
            (answer.status, answer.json()),
            (403, origin_refusal("reset", origin, "reset")),
            "Origin {origin}"
        );
    }
    // Nothing was reset: the stream goes on, the events and totals remain.
    let after = srv.publish("k", json!("after")).await.id;
    assert_eq!(sse.next_ids(1).await, std::slice::from_ref(&after));
    assert_eq!(
        srv.history_ids("key=k").await,
        [&before[..], &[after]].concat()
    );
    let stats = srv.stats().await;
    assert_eq!(stats["events"]["published"], json!(3), "stats {stats}");
    // An allowed page may.
    let allowed = srv
        .post("/v1/admin/reset")
        .header("origin", "https://app.example")
        .send()
        .await
        .expect("reset request");
    assert_eq!(allowed.status().as_u16(), 204);
    assert!(sse.expect_clean_end().await.is_empty());
}

#[tokio::test]
async fn resume_from_before_a_reset_is_410() {
    let srv = TestServer::start(&[]);
    let before = srv.publish_n("k", 3).await;
    srv.reset().await;
    let after = srv.publish("k", json!("after")).await.id;
    for old in &before[..2] {
        srv.assert_resume_gone("k", old).await;
    }
    let _ = after;
}

#[tokio::test]
async fn the_newest_id_evicted_by_a_reset_is_not_gone() {
    // "Exactly at the edge it is not gone: when `from` is the newest evicted
    // id, every event after it is still retained" — a reset evicts too.
    let srv = TestServer::start(&[]);
    let before = srv.publish_n("k", 3).await;
    srv.reset().await;
    let after = srv.publish("k", json!("after")).await.id;
    let mut sse = srv.sse(&format!("key=k&from={}", enc(&before[2]))).await;
    assert_ids!(sse.next_ids(1).await, [&after]);
}

fn counters(text: &str) -> BTreeMap<String, f64> {
    let mut counter_families = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some("counter")) = (parts.next(), parts.next()) {
                counter_families.push(name.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // name{labels} value [timestamp]
        let (series, value) = match line.rfind('}') {
            Some(close) => {
                let (series, rest) = line.split_at(close + 1);
                (
                    series.to_owned(),
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
            None => {
                let mut parts = line.split_whitespace();
                (
                    parts.next().unwrap_or_default().to_owned(),
                    parts.next().unwrap_or_default().to_owned(),
                )
            }
        };
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad metrics sample line {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name in {line:?}"
        );
        if counter_families
            .iter()
            .any(|f| name == f || name.strip_suffix("_total") == Some(f.as_str()))
        {
            samples.insert(series, value);
        }
    }
    samples
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_counters_never_go_down() {
    let srv = TestServer::start(&[]);
    let fetch = || async {
        let resp = srv.get("/metrics").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            ct == "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "metrics content-type {ct:?}"
        );
        resp.text().await.unwrap()
    };
    let initial = counters(&fetch().await);
    let mut sse = srv.sse("key=k").await;
    srv.publish_n("k", 5).await;
    sse.next_ids(5).await;
    let busy = counters(&fetch().await);
    assert!(!busy.is_empty(), "no counters in /metrics");
    let grew = busy
        .iter()
        .any(|(k, v)| *v > initial.get(k).copied().unwrap_or(0.0));
    assert!(grew, "publishing 5 events moved no counter: {busy:?}");
    srv.reset().await;
    let _ = sse.expect_clean_end().await;
    let after = counters(&fetch().await);
    for (series, value) in &busy {
        let now = after
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("counter {series} vanished after reset"));
        assert!(
            now >= *value,
            "counter {series} went down across a reset: {value} -> {now}"
        );
    }
}

/// The samples of `/metrics` whose series starts with `prefix`, by series.
pub(crate) async fn samples(srv: &TestServer, prefix: &str) -> BTreeMap<String, String> {
    let text = srv.get_text("/metrics").await;
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(series, value)| (series.to_owned(), value.to_owned()))
        .collect()
}

/// Waits until the samples starting with `prefix` are `want` (bounded).
pub(crate) async fn wait_samples(srv: &TestServer, prefix: &str, want: &[(&str, &str)]) {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(series, value)| ((*series).to_owned(), (*value).to_owned()))
        .collect();
    let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
    loop {
        let got = samples(srv, prefix).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{prefix}: want {want:?}, got {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Waits until `/metrics` shows `sse` SSE and `ws` WebSocket streams open.
async fn wait_streams_open(srv: &TestServer, sse: u64, ws: u64) {
    let (sse, ws) = (sse.to_string(), ws.to_string());
    wait_samples(
        srv,
        "watchbus_streams_open{",
        &[
            (r#"watchbus_streams_open{transport="sse"}"#, &sse),
            (r#"watchbus_streams_open{transport="ws"}"#, &ws),
        ],
    )
    .await;
}

#[tokio::test]
async fn metrics_count_refusals_by_code_and_streams_by_transport() {
    let srv = TestServer::start(&[]);
    let status = |resp: reqwest::Response| resp.status().as_u16();

    // A refusal on each path that answers one: the server's own publish
    // path, the router (a chunked body goes there), a path no route has, a
    // request head that is not HTTP, and a resume that is gone.
    let bad_key = srv.post("/v1/events?key=").body("x").send().await.unwrap();
    assert_eq!(status(bad_key), 400);
    assert_eq!(status(srv.publish_chunked(&json!({"key": ""})).await), 400);
    assert_eq!(status(srv.get("/v1/nowhere").send().await.unwrap()), 404);
    let garbage = super::robustness::raw(&srv.addr, b"GARBAGE\r\n\r\n", true).await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    // (Resuming after the newest event a reset evicted is not gone.)
    let old = srv.publish_n("k", 2).await;
    srv.reset().await;
    srv.assert_resume_gone("k", &old[0]).await; // three refusals
    wait_samples(
        &srv,
        "watchbus_requests_refused_total",
        &[
            (
                r#"watchbus_requests_refused_total{code="gone",status="410"}"#,
                "3",
            ),
            (
                r#"watchbus_requests_refused_total{code="invalid_key",status="400"}"#,
                "2",
            ),
            (
                r#"watchbus_requests_refused_total{code="malformed_request",status="400"}"#,
                "1",
            ),
            (
                r#"watchbus_requests_refused_total{code="not_found",status="404"}"#,
                "1",
            ),
        ],
    )
    .await;

    // Streams by transport: the refused resume opened none.
    let first = srv.sse("key=k").await;
    let _second = srv.sse("prefix=k").await;
    let socket = ws::connect(&srv, "key=k").await;
    srv.wait_active(3).await;
    let opened = [
        (r#"watchbus_streams_opened_total{transport="sse"}"#, "2"),
        (r#"watchbus_streams_opened_total{transport="ws"}"#, "1"),
    ];
    wait_samples(&srv, "watchbus_streams_opened_total", &opened).await;
    wait_streams_open(&srv, 2, 1).await;

    // A stream is open until its client leaves.
    drop(first);
    drop(socket);
    wait_streams_open(&srv, 1, 0).await;
    wait_samples(&srv, "watchbus_streams_opened_total", &opened).await;
}

/// Waits until `/metrics` shows `n` events retained.
async fn wait_retained(srv: &TestServer, n: &str) {
    let want = [("watchbus_events_retained", n)];
    wait_samples(srv, "watchbus_events_retained", &want).await;
}

#[tokio::test]
async fn metrics_show_what_the_store_holds() {
    let srv = TestServer::start(&["--retention-events", "2"]);
    let keys = |remembered: &'static str| {
        let mut want = vec![];
        if srv.store.remembers_keys_in_process() {
            want.push(("watchbus_idempotency_keys", remembered));
            want.push(("watchbus_idempotency_keys_forgotten_early_total", "0"));
        }
        want
    };
    wait_samples(&srv, "watchbus_store_up", &[("watchbus_store_up", "1")]).await;
    wait_retained(&srv, "0").await;
    wait_samples(&srv, "watchbus_idempotency_keys", &keys("0")).await;
    // Nothing retained, so no oldest time.
    wait_samples(&srv, "watchbus_events_oldest_timestamp_seconds", &[]).await;

    // Three events into a retention of two, one of them under a key sent
    // twice: the retry stores nothing and remembers no second key.
    let first = srv.publish_n("k", 2).await;
    for _ in 0..2 {
        let resp = srv
            .post("/v1/events?key=k")
            .header("Idempotency-Key", "job-1")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    wait_retained(&srv, "2").await;
    wait_samples(&srv, "watchbus_idempotency_keys", &keys("1")).await;
    // The oldest retained is the second event: its time, in seconds.
    let second = srv.history("key=k").await["events"][0].clone();
    assert_eq!(second["id"], json!(first[1]));
    let millis = parse_time(second["time"].as_str().unwrap()).unix_timestamp_nanos() / 1_000_000;
    let oldest = samples(&srv, "watchbus_events_oldest_timestamp_seconds").await;
    let seconds: f64 = oldest["watchbus_events_oldest_timestamp_seconds"]
        .parse()
        .unwrap();
    assert_eq!((seconds * 1000.0).round() as i128, millis, "{oldest:?}");

    srv.reset().await;
    wait_retained(&srv, "0").await;
    wait_samples(&srv, "watchbus_events_oldest_timestamp_seconds", &[]).await;
    wait_samples(&srv, "watchbus_store_up", &[("watchbus_store_up", "1")]).await;
}

#[tokio::test]
async fn healthz_and_readyz_are_200() {
    let srv = TestServer::start(&[]);
    for path in ["/healthz", "/readyz"] {
        let resp = srv.get(path).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
}

#[tokio::test]
async fn reset_answers_204_with_no_body() {
    let srv = TestServer::start(&[]);
    let resp = srv.post("/v1/admin/reset").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(resp.text().await.unwrap(), "");
}
