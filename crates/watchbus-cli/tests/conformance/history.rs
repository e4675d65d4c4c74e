//! `GET /v1/events/history`: pages of envelopes, `next`, filters, resume
//! points and the same `400`/`410` rules as the stream.

use serde_json::{Value, json};

use crate::support::{TestServer, assert_json_eq, enc, envelope, page_ids};

#[tokio::test]
async fn empty_log_is_an_empty_page() {
    let srv = TestServer::start(&[]);
    assert_json_eq(
        &srv.history("").await,
        &json!({"events": [], "next": null}),
        "empty history",
    );
}

#[tokio::test]
async fn default_limit_is_100_and_next_pages_on() {
    let srv = TestServer::start(&[]);
    let events: Vec<Value> = (0..150).map(|i| json!({"key": "k", "data": i})).collect();
    let ids: Vec<String> = srv
        .publish_batch(&events)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    let page = srv.history("").await;
    assert_ids!(page_ids(&page), &ids[..100]);
    assert_eq!(
        page["next"],
        json!(ids[99]),
        "next is the from of the following page"
    );
    assert_eq!(
        page.as_object().unwrap().len(),
        2,
        "page is {{events, next}}: {page}"
    );
    let page = srv.history(&format!("from={}", enc(&ids[99]))).await;
    assert_ids!(page_ids(&page), &ids[100..]);
    assert_eq!(page["next"], Value::Null);
    // An empty limit is no limit given; given twice, the last non-empty.
    assert_ids!(page_ids(&srv.history("limit=").await), &ids[..100]);
    assert_ids!(page_ids(&srv.history("limit=5&limit=").await), &ids[..5]);
    assert_ids!(
        page_ids(&srv.history("limit=5&limit=&limit=3").await),
        &ids[..3]
    );
}

#[tokio::test]
async fn next_is_null_once_the_page_reaches_the_newest_event() {
    let srv = TestServer::start(&[]);
    let ids = srv.publish_n("k", 14).await;
    let page = srv.history("limit=7").await;
    assert_ids!(page_ids(&page), &ids[..7]);
    assert_eq!(page["next"], json!(ids[6]));
    let page = srv.history(&format!("limit=7&from={}", enc(&ids[6]))).await;
    assert_ids!(page_ids(&page), &ids[7..]);
    assert_eq!(
        page["next"],
        Value::Null,
        "the page reached the newest event"
    );
    let page = srv.history("limit=14").await;
    assert_eq!(page["next"], Value::Null);
    let page = srv.history(&format!("from={}", enc(&ids[13]))).await;
    assert_json_eq(
        &page,
        &json!({"events": [], "next": null}),
        "after the newest event",
    );
}

#[tokio::test]
async fn paging_until_next_is_null_lists_everything_once() {
    let srv = TestServer::start(&[]);
    let ids = srv.publish_n("k", 20).await;
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let q = match &from {
            Some(f) => format!("limit=7&from={}", enc(f)),
            None => "limit=7".to_owned(),
        };
        let page = srv.history(&q).await;
        let page_ids = page_ids(&page);
        sizes.push(page_ids.len());
        got.extend(page_ids);
        match page["next"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, [7, 7, 6]);
    assert_ids!(got, ids);
}

#[tokio::test]
async fn a_page_of_large_events_ends_at_about_8_mib_with_next_set() {
    let srv = TestServer::start(&["--max-body", "2MiB"]);
    let big = "b".repeat(1_900_000);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(srv.publish("big", json!(format!("{i}{big}"))).await.id);
    }
    // Four envelopes of about 1.9 MB fit in 8 MiB; a fifth would not.
    let page = srv.history("key=big&limit=10").await;
    assert_ids!(page_ids(&page), &ids[..4]);
    assert_eq!(page["next"], json!(ids[3]));
    let page = srv
        .history(&format!("key=big&limit=10&from={}", enc(&ids[3])))
        .await;
    assert_ids!(page_ids(&page), &ids[4..]);
    assert_eq!(page["next"], Value::Null);
    // The limit still comes first.
    let page = srv.history("key=big&limit=2").await;
    assert_ids!(page_ids(&page), &ids[..2]);
    assert_eq!(page["next"], json!(ids[1]));
}

#[tokio::test]
async fn limit_over_1000_is_400() {
    let srv = TestServer::start(&[]);
    let events: Vec<Value> = (0..1000).map(|i| json!({"key": "k", "data": i})).collect();
    srv.publish_batch(&events).await;
    srv.publish("k", json!(1000)).await;
    for bad in ["limit=1001", "limit=100000", "limit=abc", "limit=-1"] {
        let resp = srv
            .get(&format!("/v1/events/history?{bad}"))
            .send()
            .await
            .unwrap();
        let answer = crate::support::Answer::of(resp).await;
        if let Err(why) = crate::support::check_error(&answer, 400) {
            panic!("{bad}: {why}");
        }
    }
    let page = srv.history("limit=1000").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1000);
    assert!(
        page["next"].is_string(),
        "one more event exists: next {}",
        page["next"]
    );
}

#[tokio::test]
async fn filters_select_events() {
    let srv = TestServer::start(&[]);
    let a = srv.publish_typed("a", "t.one", json!(1)).await;
    let ab = srv.publish_typed("a/b", "t.two", json!(2)).await;
    let b = srv.publish("b", json!(3)).await;
    let bc = srv
        .publish_event(json!({"prefix": "a/", "type": "t.one", "data": 4}))
        .await;
    let c = srv.publish_typed("c", "t.three", json!(5)).await;
    let cases: [(&str, Vec<&str>); 7] = [
        ("key=a", vec![&a.id]),
        ("key=a&key=b", vec![&a.id, &b.id]),
        ("prefix=a%2F", vec![&ab.id, &bc.id]),
        ("prefix=a", vec![&a.id, &ab.id, &bc.id]),
        ("event_type=t.one", vec![&a.id, &bc.id]),
        ("event_type=t.one,t.three", vec![&a.id, &bc.id, &c.id]),
        ("key=b&event_type=t.one", vec![]),
    ];
    for (query, want) in cases {
        let page = srv.history(query).await;
        assert_ids!(page_ids(&page), want);
    }
    // The broadcast to "a/" matches the key "a/b" (it starts with "a/").
    let page = srv.history("key=a%2Fb").await;
    assert_json_eq(
        &page["events"],
        &json!([
            envelope(&ab, ("key", "a/b"), Some("t.two"), &json!(2)),
            envelope(&bc, ("prefix", "a/"), Some("t.one"), &json!(4)),
        ]),
        "envelopes in history",
    );
}

#[tokio::test]
async fn from_and_from_timestamp_select_the_start() {
    let srv = TestServer::start(&[]);
    let mut e = Vec::new();
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
        e.push(srv.publish("k", json!(i)).await);
    }
    let ids: Vec<String> = e.iter().map(|p| p.id.clone()).collect();
    assert_ids!(
        page_ids(&srv.history(&format!("from={}", enc(&ids[1]))).await),
        &ids[2..]
    );
    assert_ids!(
        page_ids(
            &srv.history(&format!("from_timestamp={}", enc(&e[1].time)))
                .await
        ),
        &ids[1..]
    );
    // from beats from_timestamp.
    let q = format!("from={}&from_timestamp={}", enc(&ids[2]), enc(&e[0].time));
    assert_ids!(page_ids(&srv.history(&q).await), &ids[3..]);
    let resp = srv
        .get("/v1/events/history?from_timestamp=soon")
        .send()
        .await
        .unwrap();
    assert_error!(resp, 400);
}

#[tokio::test]
async fn gone_rules_match_the_stream() {
    let srv = TestServer::start(&["--retention-events", "3"]);
    let ids = srv.publish_n("k", 6).await;
    // Without a resume point: from the oldest retained event.
    assert_ids!(page_ids(&srv.history("").await), &ids[3..]);
    // The newest evicted id is not gone.
    assert_ids!(
        page_ids(&srv.history(&format!("from={}", enc(&ids[2]))).await),
        &ids[3..]
    );
    let resp = srv
        .get(&format!("/v1/events/history?from={}", enc(&ids[1])))
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410);
    let resp = srv
        .get(&format!("/v1/events/history?key=k&from={}", enc(&ids[0])))
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410);
}
