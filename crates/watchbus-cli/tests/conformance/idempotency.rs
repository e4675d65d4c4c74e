//! `Idempotency-Key` on publish: a retry of the same request within the
//! window answers the first publish's receipts (`Idempotent-Replayed:
//! true`) and stores nothing; the key of another request is `422`.
//! An extension of the contract (docs/http-api.md).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::server::StoreKind;
use crate::support::{Answer, FRAME_TIMEOUT, TestServer, check_error};

/// POSTs `body` to `path` with the key `key` (as the header's raw value)
/// and returns the status, whether it says replayed, and the body.
async fn post_with_key(
    srv: &TestServer,
    path: &str,
    key: &str,
    content_type: &str,
    body: &str,
) -> (u16, bool, String) {
    let response = srv
        .post(path)
        .header("idempotency-key", key)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = match response.headers().get("idempotent-replayed") {
        None => false,
        Some(value) => {
            assert_eq!(value, "true");
            true
        }
    };
    (status, replayed, response.text().await.unwrap())
}

/// The ids of a `200` body: one receipt or an array of them.
fn ids_of(body: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(body).unwrap();
    let receipts = match value {
        Value::Array(receipts) => receipts,
        receipt => vec![receipt],
    };
    receipts
        .iter()
        .map(|receipt| receipt["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn published(srv: &TestServer) -> u64 {
    srv.stats().await["events"]["published"].as_u64().unwrap()
}

#[tokio::test]
async fn a_retried_publish_with_an_idempotency_key_is_stored_once() {
    let srv = TestServer::start(&[]);
    let mut watcher = srv.sse("prefix=orders/").await;
    let json = "application/json";

    // Each form, each sent twice: the same body back, marked replayed.
    let one = r#"{"key": "orders/1", "data": {"n": 1}}"#;
    let array = r#"[{"key": "orders/2", "data": 2}, {"key": "orders/3", "data": 3}]"#;
    let mut ids = Vec::new();
    for (path, key, content_type, body) in [
        ("/v1/events", "req-1", json, one),
        ("/v1/events?key=orders/4", "\"req-2\"", "text/plain", "four"),
        ("/v1/events", "req-3", json, array),
    ] {
        let first = post_with_key(&srv, path, key, content_type, body).await;
        assert_eq!((first.0, first.1), (200, false), "{key}: {}", first.2);
        let again = post_with_key(&srv, path, key, content_type, body).await;
        assert_eq!(again, (200, true, first.2.clone()), "{key}");
        ids.extend(ids_of(&first.2));
    }
    assert_eq!(ids.len(), 4);
    assert_eq!(published(&srv).await, 4);
    let replays = super::admin::samples(&srv, "watchbus_publish_replays_total").await;
    assert_eq!(
        replays
            .get("watchbus_publish_replays_total")
            .map(String::as_str),
        Some("3")
    );

    // The same key for another request: refused, nothing stored.
    let other = r#"{"key": "orders/1", "data": {"n": 2}}"#;
    let (status, replayed, body) = post_with_key(&srv, "/v1/events", "req-1", json, other).await;
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, replayed), (422, false), "{body}");
    assert_eq!(
        answer,
        json!({"error": {"code": "idempotency_key_reused", "message":
            "idempotency key \"req-1\" was already used for a different request; \
             a new request needs a new key"}})
    );
    // A key that is not one, down to one that is not UTF-8.
    for bad in [&b"a b"[..], b"", b"\"\"", b"caf\xc3\xa9"] {
        let response = srv
            .post("/v1/events?key=orders/5")
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(bad).unwrap(),
            )
            .body("x")
            .send()
            .await
            .unwrap();
        let answer = Answer::of(response).await;
        assert_eq!(
            check_error(&answer, 400).as_deref(),
            Ok("invalid_idempotency_key"),
            "{bad:?}: {}",
            answer.text
        );
    }
    assert_eq!(published(&srv).await, 4);

    // The watcher saw each event once, in order, and nothing refused.
    let last = srv.publish("orders/6", json!("last")).await;
    ids.push(last.id);
    assert_ids!(watcher.next_ids(5).await, ids);
}

#[tokio::test]
async fn a_key_is_remembered_for_the_idempotency_window_only() {
    let srv = TestServer::start(&["--idempotency-window", "2s"]);
    let body = r#"{"key": "k", "data": 1}"#;
    let send = || post_with_key(&srv, "/v1/events", "short", "application/json", body);
    let (status, _, first) = send().await;
    assert_eq!(status, 200, "{first}");
    // At once, it is remembered; then, within a few seconds, forgotten.
    assert_eq!(send().await, (200, true, first.clone()));
    let deadline = Instant::now() + FRAME_TIMEOUT + Duration::from_secs(1);
    let later = loop {
        let (status, replayed, body) = send().await;
        assert_eq!(status, 200, "{body}");
        if !replayed {
            break body;
        }
        assert_eq!(body, first, "a replay answers the first receipts");
        assert!(Instant::now() < deadline, "the key was never forgotten");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(ids_of(&later), ids_of(&first));
    assert_eq!(published(&srv).await, 2);
}

#[tokio::test]
async fn the_memory_store_remembers_at_most_idempotency_max_keys() {
    if !StoreKind::selected().remembers_keys_in_process() {
        // Redis keeps every key for its window; `serve` refuses the flag
        // with it (tests/cli.rs).
        return;
    }
    let srv = TestServer::start(&["--idempotency-max-keys", "2"]);
    let body = r#"{"key": "k", "data": 1}"#;
    let send = |key| post_with_key(&srv, "/v1/events", key, "application/json", body);
    let mut first = Vec::new();
    for key in ["a", "b", "c"] {
        let (status, replayed, answer) = send(key).await;
        assert_eq!((status, replayed), (200, false), "{answer}");
        first.push(answer);
    }
    // "a" went first, before its window ended: stored again. "c" is kept.
    let (status, replayed, again) = send("a").await;
    assert_eq!((status, replayed), (200, false), "{again}");
    assert_ne!(ids_of(&again), ids_of(&first[0]));
    assert_eq!(send("c").await, (200, true, first[2].clone()));
    assert_eq!(published(&srv).await, 4);
    let table = super::admin::samples(&srv, "watchbus_idempotency_keys").await;
    let want = [
        ("watchbus_idempotency_keys", "2"),
        ("watchbus_idempotency_keys_forgotten_early_total", "2"),
    ];
    let want = want.map(|(series, value)| (series.to_owned(), value.to_owned()));
    assert_eq!(table, want.into_iter().collect());
}

#[tokio::test]
async fn publish_with_an_idempotency_key_prints_the_same_id_when_run_again() {
    let srv = TestServer::start(&[]);
    let args = |data: Option<&str>| {
        let mut args = vec!["publish", "--server", &srv.base, "k"];
        args.extend(data);
        args.extend(["--idempotency-key", "job-42"]);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let first = super::cli::run_cli(args(Some("hello")), None).await;
    let again = super::cli::run_cli(args(Some("hello")), None).await;
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(first.stdout, again.stdout);
    assert_eq!(published(&srv).await, 1);

    // Standard input goes one line per request, line N under `job-42.N`:
    // run again, the stored lines are replayed and only new ones stored.
    let lines = super::cli::run_cli(args(None), Some("a\nb\n\nc\n")).await;
    assert_eq!(lines.status.code(), Some(0), "{lines:?}");
    let ids = String::from_utf8(lines.stdout.clone()).unwrap();
    assert_eq!(ids.lines().count(), 3, "{ids}");
    assert_eq!(published(&srv).await, 4);
    let more = super::cli::run_cli(args(None), Some("a\nb\n\nc\nd\n")).await;
    assert_eq!(more.status.code(), Some(0), "{more:?}");
    let more_ids = String::from_utf8(more.stdout).unwrap();
    assert_eq!(
        more_ids.lines().take(3).collect::<Vec<_>>(),
        ids.lines().collect::<Vec<_>>()
    );
    assert_eq!(more_ids.lines().count(), 4, "{more_ids}");
    assert_eq!(published(&srv).await, 5);
    let history = srv.history("key=k").await;
    let data: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["hello", "a", "b", "c", "d"]);

    // Other input under the same key is refused at its line, and nothing
    // from there on is stored.
    let changed = super::cli::run_cli(args(None), Some("a\nB\nnew\n")).await;
    assert_eq!(changed.status.code(), Some(1), "{changed:?}");
    assert_eq!(
        String::from_utf8(changed.stdout).unwrap(),
        ids.lines().next().map(|id| format!("{id}\n")).unwrap()
    );
    assert_eq!(
        String::from_utf8_lossy(&changed.stderr).trim_end(),
        "error: line 2: idempotency key \"job-42.2\" was already used for a different request; \
         a new request needs a new key (idempotency_key_reused, HTTP 422); \
         nothing from line 2 on was stored"
    );
    assert_eq!(published(&srv).await, 5);
}
