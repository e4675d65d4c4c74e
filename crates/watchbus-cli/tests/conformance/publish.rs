//! `POST /v1/events`: the JSON form, the query form, the answer, and every
//! rejection (which must change nothing).

use serde_json::{Value, json};

use crate::support::{
    Answer, TestServer, assert_increasing, assert_json_eq, envelope, origin_refusal, page_ids,
};

async fn post_body(
    srv: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = srv.post(path).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.expect("publish request")
}

async fn post_json(srv: &TestServer, body: &str) -> reqwest::Response {
    post_body(srv, "/v1/events", Some("application/json"), body.to_owned()).await
}

/// The number of events published and retained, from stats.
async fn counts(srv: &TestServer) -> (u64, u64) {
    let stats = srv.stats().await;
    (
        stats["events"]["published"]
            .as_u64()
            .unwrap_or_else(|| panic!("stats: {stats}")),
        stats["events"]["retained"]
            .as_u64()
            .unwrap_or_else(|| panic!("stats: {stats}")),
    )
}

async fn assert_nothing_stored(srv: &TestServer) {
    assert_eq!(
        counts(srv).await,
        (0, 0),
        "a rejected publish must store nothing"
    );
    let page = srv.history("").await;
    assert_json_eq(
        &page,
        &json!({"events": [], "next": null}),
        "history after rejected publishes",
    );
}

#[tokio::test]
async fn single_event_answers_id_and_time_and_is_stored_as_envelope() {
    let srv = TestServer::start(&[]);
    let before = time::OffsetDateTime::now_utc();
    let p = srv
        .publish_typed("orders/1", "order.created", json!({"n": 1, "s": "x"}))
        .await;
    let after = time::OffsetDateTime::now_utc();
    // The time is the server's clock at acceptance (same machine, same clock).
    let t = crate::support::parse_time(&p.time);
    let ms = time::Duration::milliseconds(1);
    assert!(
        t >= before - ms && t <= after + ms,
        "time {} is not between {before} and {after}",
        p.time
    );
    let page = srv.history("").await;
    let want = envelope(
        &p,
        ("key", "orders/1"),
        Some("order.created"),
        &json!({"n": 1, "s": "x"}),
    );
    assert_json_eq(&page, &json!({"events": [want], "next": null}), "history");
}

#[tokio::test]
async fn ids_strictly_increase_in_the_order_events_were_accepted() {
    let srv = TestServer::start(&[]);
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            srv.publish(if i % 2 == 0 { "a" } else { "b" }, json!(i))
                .await
                .id,
        );
    }
    assert_increasing(&ids);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids repeat: {ids:?}");
    assert_ids!(srv.history_ids("").await, ids);
}

#[tokio::test]
async fn array_answers_one_result_per_event_in_array_order() {
    let srv = TestServer::start(&[]);
    let events = [
        json!({"key": "k1", "data": "one"}),
        json!({"prefix": "p/", "type": "t.b", "data": [1, 2]}),
        json!({"key": "k2", "type": "t.c"}),
    ];
    // A one-element array is answered with a one-element array.
    let one = srv.publish_batch(&[json!({"key": "k0", "data": 0})]).await;
    assert_eq!(one.len(), 1);
    let answers = srv.publish_batch(&events).await;
    let ids: Vec<String> = answers.iter().map(|p| p.id.clone()).collect();
    assert_increasing(&ids);
    let page = srv
        .history(&format!("from={}", crate::support::enc(&one[0].id)))
        .await;
    let want = json!({"events": [
        envelope(&answers[0], ("key", "k1"), None, &json!("one")),
        envelope(&answers[1], ("prefix", "p/"), Some("t.b"), &json!([1, 2])),
        envelope(&answers[2], ("key", "k2"), Some("t.c"), &Value::Null),
    ], "next": null});
    assert_json_eq(&page, &want, "history after an array publish");
}

#[tokio::test]
async fn missing_data_is_null_and_null_type_means_untyped() {
    let srv = TestServer::start(&[]);
    let a = srv.publish_event(json!({"key": "a"})).await;
    let b = srv
        .publish_event(json!({"key": "b", "type": null, "data": 7}))
        .await;
    let page = srv.history("").await;
    let want = json!({"events": [
        envelope(&a, ("key", "a"), None, &Value::Null),
        envelope(&b, ("key", "b"), None, &json!(7)),
    ], "next": null});
    assert_json_eq(&page, &want, "an untyped envelope has no type field");
}

#[tokio::test]
async fn unknown_field_is_400() {
    let srv = TestServer::start(&[]);
    assert_error!(
        post_json(&srv, r#"{"key":"a","data":1,"extra":true}"#).await,
        400
    );
    assert_error!(
        post_json(&srv, r#"[{"key":"a","data":1},{"key":"b","id":"1-1"}]"#).await,
        400
    );
    assert_error!(
        post_json(&srv, r#"{"key":"a","time":"2026-01-01T00:00:00.000Z"}"#).await,
        400
    );
    assert_nothing_stored(&srv).await;
}

#[tokio::test]
async fn empty_array_is_400() {
    let srv = TestServer::start(&[]);
    assert_error!(post_json(&srv, "[]").await, 400);
    assert_nothing_stored(&srv).await;
}

#[tokio::test]
async fn array_of_1000_is_accepted_and_1001_is_413() {
    let srv = TestServer::start(&[]);
    let over: Vec<Value> = (0..1001).map(|i| json!({"key": "k", "data": i})).collect();
    assert_error!(post_json(&srv, &Value::Array(over).to_string()).await, 413);
    assert_nothing_stored(&srv).await;
    let full: Vec<Value> = (0..1000).map(|i| json!({"key": "k", "data": i})).collect();
    let answers = srv.publish_batch(&full).await;
    assert_eq!(answers.len(), 1000);
    assert_eq!(counts(&srv).await, (1000, 1000));
}

#[tokio::test]
async fn array_is_all_or_nothing() {
    let srv = TestServer::start(&[]);
    let bad_items = [
        json!({"key": "bad\u{1}key"}),
        json!({"key": ""}),
        json!({"key": "a", "type": "bad type"}),
        json!({"key": "a", "prefix": "b"}),
        json!({"data": 1}),
        json!({"key": "a", "unknown": 1}),
        json!("not an object"),
    ];
    for bad in bad_items {
        let body = json!([{"key": "good1", "data": 1}, bad, {"key": "good2", "data": 2}]);
        assert_error!(post_json(&srv, &body.to_string()).await, 400);
        // The bad item last: the good ones before it must not be stored either.
        let body = json!([{"key": "good1", "data": 1}, {"key": "good2", "data": 2}, bad]);
        assert_error!(post_json(&srv, &body.to_string()).await, 400);
    }
    assert_nothing_stored(&srv).await;
    // The server still accepts, and the first accepted event is the first one stored.
    let p = srv.publish("good", json!(1)).await;
    assert_ids!(srv.history_ids("").await, [p.id]);
}

#[tokio::test]
async fn an_array_refusal_names_the_first_event_at_fault_by_its_index() {
    let srv = TestServer::start(&[]);
    let cases = [
        (
            r#"[{"key":"ok"},{"key":""},{"key":"x","foo":1}]"#,
            "invalid_key",
            "event 1 of the array: invalid key \"\": must not be empty",
        ),
        (
            r#"[{"key":"ok"},{"key":"x","foo":1},{"key":""}]"#,
            "invalid_json",
            "event 1 of the array: not an event: unknown field `foo`, expected one of `key`, `prefix`, `type`, `data`",
        ),
        (
            r#"[{"key":"ok"},{"key":"ok"},"text"]"#,
            "invalid_json",
            "event 2 of the array: not an event: invalid type: string \"text\", expected an event object",
        ),
        (
            r#"[{"key":"ok"},{"key":7}]"#,
            "invalid_json",
            "event 1 of the array: not an event: invalid type: integer `7`, expected a string",
        ),
        (
            r#"[{"key":"a","key":"b"}]"#,
            "invalid_json",
            "event 0 of the array: not an event: duplicate field `key`",
        ),
    ];
    for (body, code, message) in cases {
        let answer = Answer::of(post_json(&srv, body).await).await;
        assert_eq!(answer.status, 400, "{body}");
        assert_json_eq(
            &answer.json(),
            &json!({"error": {"code": code, "message": message}}),
            body,
        );
    }
    // JSON that is no array at all is the body's fault, not an event's.
    let answer = Answer::of(post_json(&srv, r#"[{"key":"a"},"#).await).await;
    assert_eq!(answer.json()["error"]["code"], "invalid_json");
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the body is not valid JSON: "),
        "{:?}",
        answer.json()
    );
    assert_nothing_stored(&srv).await;
}

#[tokio::test]
async fn body_over_max_body_is_413() {
    let srv = TestServer::start(&["--max-body", "1KiB"]);
    let big = "x".repeat(2000);
    let body = json!({"key": "k", "data": big}).to_string();
    assert_error!(post_json(&srv, &body).await, 413);
    assert_error!(
        post_body(&srv, "/v1/events?key=k", Some("text/plain"), big.clone()).await,
        413
    );
    assert_error!(
        post_body(
            &srv,
            "/v1/events?key=k",
            Some("application/json"),
            format!("\"{big}\"")
        )
        .await,
        413
    );
    assert_nothing_stored(&srv).await;
    // Under the limit is fine.
    let small = json!({"key": "k", "data": "y".repeat(900)}).to_string();
    assert!(small.len() < 1024);
    let resp = post_json(&srv, &small).await;
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
}

#[tokio::test]
async fn default_max_body_is_1_mib() {
    let srv = TestServer::start(&[]);
    let over = "x".repeat(1024 * 1024 + 10);
    assert_error!(
        post_body(&srv, "/v1/events?key=k", Some("text/plain"), over).await,
        413
    );
    let under = "x".repeat(1000 * 1000);
    let resp = post_body(&srv, "/v1/events?key=k", Some("text/plain"), under).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(counts(&srv).await, (1, 1));
}

#[tokio::test]
async fn json_form_with_other_content_type_is_415() {
    let srv = TestServer::start(&[]);
    let body = r#"{"key":"a","data":1}"#;
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
    ] {
        assert_error!(post_body(&srv, "/v1/events", Some(ct), body).await, 415);
    }
    assert_nothing_stored(&srv).await;
}

#[tokio::test]
async fn charset_parameter_and_any_case_are_accepted() {
    let srv = TestServer::start(&[]);
    let resp = post_body(
        &srv,
        "/v1/events",
        Some("Application/JSON; charset=utf-8"),
        r#"{"key":"a","data":{"x":1}}"#,
    )
    .await;
    let ans = assert_status!(resp, 200);
    let a = ans.json()["id"].as_str().unwrap().to_owned();
    let resp = post_body(
        &srv,
        "/v1/events?key=b",
        Some("application/json;charset=UTF-8"),
        r#"{"y":2}"#,
    )
    .await;
    let ans = assert_status!(resp, 200);
    let b = ans.json()["id"].as_str().unwrap().to_owned();
    let page = srv.history("").await;
    assert_ids!(page_ids(&page), [a, b]);
    assert_json_eq(
        &page["events"][0]["data"],
        &json!({"x": 1}),
        "JSON form data",
    );
    assert_json_eq(
        &page["events"][1]["data"],
        &json!({"y": 2}),
        "query form JSON data",
    );
}

#[tokio::test]
async fn query_form_takes_the_body_as_text_unless_json() {
    let srv = TestServer::start(&[]);
    let text = "hello\nworld {not json}";
    let resp = post_body(
        &srv,
        "/v1/events?key=k%2F1&type=note.added",
        Some("text/plain; charset=utf-8"),
        text,
    )
    .await;
    let t = assert_status!(resp, 200).json();
    let resp = post_body(
        &srv,
        "/v1/events?key=k%2F1",
        Some("application/json"),
        r#"{"a": [1, 2]}"#,
    )
    .await;
    let j = assert_status!(resp, 200).json();
    // No content type: text, even when it looks like JSON.
    let resp = post_body(&srv, "/v1/events?key=k%2F1", None, "[1,2]").await;
    let n = assert_status!(resp, 200).json();
    let resp = post_body(&srv, "/v1/events?prefix=k%2F", Some("text/plain"), "to all").await;
    let p = assert_status!(resp, 200).json();
    // An empty `type=` is no type, as every empty single parameter is
    // absent (docs/http-api.md).
    let resp = post_body(&srv, "/v1/events?key=k%2F1&type=", None, "untyped").await;
    let u = assert_status!(resp, 200).json();
    let page = srv.history("").await;
    let published = |v: &Value| crate::support::Published {
        id: v["id"].as_str().unwrap().to_owned(),
        time: v["time"].as_str().unwrap().to_owned(),
    };
    let want = json!({"events": [
        envelope(&published(&t), ("key", "k/1"), Some("note.added"), &json!(text)),
        envelope(&published(&j), ("key", "k/1"), None, &json!({"a": [1, 2]})),
        envelope(&published(&n), ("key", "k/1"), None, &json!("[1,2]")),
        envelope(&published(&p), ("prefix", "k/"), None, &json!("to all")),
        envelope(&published(&u), ("key", "k/1"), None, &json!("untyped")),
    ], "next": null});
    assert_json_eq(&page, &want, "history after query-form publishes");
    for v in [&t, &j, &n, &p, &u] {
        crate::support::assert_time_format(v["time"].as_str().unwrap());
        assert_eq!(
            v.as_object().unwrap().len(),
            2,
            "answer is exactly {{id,time}}: {v}"
        );
    }
}

#[tokio::test]
async fn query_form_with_malformed_json_is_400() {
    let srv = TestServer::start(&[]);
    assert_error!(
        post_body(
            &srv,
            "/v1/events?key=k",
            Some("application/json"),
            "{not json"
        )
        .await,
        400
    );
    assert_nothing_stored(&srv).await;
}

#[tokio::test]
async fn bad_keys_are_400() {
    let srv = TestServer::start(&[]);
    let bad = [
        String::new(),
        "a\u{1}b".to_owned(),
        "tab\there".to_owned(),
        "line\nbreak".to_owned(),
        "del\u{7f}".to_owned(),
        "k".repeat(1025),
        "é".repeat(513), // 1026 bytes, 513 chars: the limit is in bytes
    ];
    for key in &bad {
        assert_error!(
            post_json(&srv, &json!({"key": key, "data": 1}).to_string()).await,
            400
        );
        assert_error!(
            post_json(&srv, &json!({"prefix": key, "data": 1}).to_string()).await,
            400
        );
        let path = format!("/v1/events?key={}", crate::support::enc(key));
        assert_error!(post_body(&srv, &path, Some("text/plain"), "x").await, 400);
    }
    assert_error!(post_json(&srv, r#"{"key": 5, "data": 1}"#).await, 400);
    assert_nothing_stored(&srv).await;
    // The edges that are fine: 1024 bytes, and multi-byte characters.
    let long = "k".repeat(1024);
    let wide = "é".repeat(512);
    srv.publish(&long, json!(1)).await;
    srv.publish(&wide, json!(2)).await;
    srv.publish("ünïcødé/ key with spaces/🙂", json!(3)).await;
    assert_eq!(counts(&srv).await, (3, 3));
}

#[tokio::test]
async fn bad_types_are_400() {
    let srv = TestServer::start(&[]);
    let bad = [
        String::new(),
        "a b".to_owned(),
        "a,b".to_owned(),
        "ü".to_owned(),
        "t".repeat(129),
        "a\u{1}".to_owned(),
    ];
    for t in &bad {
        assert_error!(
            post_json(&srv, &json!({"key": "k", "type": t}).to_string()).await,
            400,
            ctx = "JSON form, type {t:?}"
        );
        if t.is_empty() {
            // `?type=` is read as "no type" by some servers; not asserted.
            continue;
        }
        let path = format!("/v1/events?key=k&type={}", crate::support::enc(t));
        assert_error!(
            post_body(&srv, &path, Some("text/plain"), "x").await,
            400,
            ctx = "query form, type {t:?}"
        );
    }
    assert_error!(post_json(&srv, r#"{"key": "k", "type": 5}"#).await, 400);
    assert_nothing_stored(&srv).await;
    srv.publish_typed("k", &"t".repeat(128), json!(1)).await;
    srv.publish_typed("k", "AZaz09._:/-", json!(2)).await;
    assert_eq!(counts(&srv).await, (2, 2));
}

#[tokio::test]
async fn key_and_prefix_together_is_400() {
    let srv = TestServer::start(&[]);
    assert_error!(
        post_json(&srv, r#"{"key":"a","prefix":"b","data":1}"#).await,
        400
    );
    assert_error!(
        post_body(&srv, "/v1/events?key=a&prefix=b", Some("text/plain"), "x").await,
        400
    );
    assert_nothing_stored(&srv).await;
}

#[tokio::test]
async fn missing_key_and_prefix_is_400() {
    let srv = TestServer::start(&[]);
    assert_error!(post_json(&srv, r#"{"data":1}"#).await, 400);
    assert_error!(post_json(&srv, r#"{"type":"t","data":1}"#).await, 400);
    assert_error!(post_json(&srv, r#"{}"#).await, 400);
    assert_nothing_stored(&srv).await;
}

#[tokio::test]
async fn non_utf8_is_400() {
    let srv = TestServer::start(&[]);
    let text: Vec<u8> = vec![b'o', b'k', 0xff, 0xfe];
    assert_error!(
        post_body(&srv, "/v1/events?key=k", Some("text/plain"), text).await,
        400
    );
    let mut json_body = br#"{"key":"k","data":""#.to_vec();
    json_body.extend_from_slice(&[0xc3, 0x28]);
    json_body.extend_from_slice(br#""}"#);
    assert_error!(
        post_body(&srv, "/v1/events", Some("application/json"), json_body).await,
        400
    );
    assert_nothing_stored(&srv).await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    let srv = TestServer::start(&[]);
    for body in [
        "{",
        "[1,",
        "",
        "null",
        "\"text\"",
        "42",
        "[1]",
        "{\"key\":\"k\"} trailing",
    ] {
        let resp = post_json(&srv, body).await;
        let answer = crate::support::Answer::of(resp).await;
        if let Err(why) = crate::support::check_error(&answer, 400) {
            panic!("body {body:?}: {why}");
        }
    }
    assert_nothing_stored(&srv).await;
}

/// A publish of `text` to key `k` from a page of `origin` (none: not a
/// page), its body sized (answered without the router) or chunked (through
/// it).
async fn publish_from(
    srv: &TestServer,
    origin: Option<&str>,
    chunked: bool,
    text: &str,
) -> crate::support::Answer {
    // A text body: what a page may send cross-origin without asking first.
    let mut request = srv
        .post("/v1/events?key=k")
        .header("content-type", "text/plain");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request = if chunked {
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(text.to_owned())]);
        request.body(reqwest::Body::wrap_stream(chunks))
    } else {
        request.body(text.to_owned())
    };
    crate::support::Answer::of(request.send().await.expect("publish request")).await
}

/// A page may send a cross-origin `POST` with a text body without a
/// preflight, and CORS only hides the answer: so the server refuses a
/// publish from a page that is neither its own nor allowed, before storing
/// anything, on both of its paths, and disturbs no subscriber.
#[tokio::test]
async fn a_page_of_another_origin_cannot_publish() {
    let srv = TestServer::start(&["--cors-origin", "https://app.example"]);
    let mut sse = srv.sse("key=k").await;
    srv.wait_active(1).await;
    for origin in ["https://evil.example", "http://127.0.0.1:1", "null"] {
        for chunked in [false, true] {
            let answer = publish_from(&srv, Some(origin), chunked, "forged").await;
            assert_eq!(
                (answer.status, answer.json()),
                (403, origin_refusal("publish", origin, "publish")),
                "Origin {origin}, chunked: {chunked}"
            );
        }
    }
    assert_nothing_stored(&srv).await;
    let own = format!("http://{}", srv.addr);
    let mut ids = Vec::new();
    for origin in [Some("https://app.example"), Some(own.as_str()), None] {
        for chunked in [false, true] {
            let answer = publish_from(&srv, origin, chunked, "fine").await;
            assert_eq!(answer.status, 200, "Origin {origin:?}: {}", answer.text);
            ids.push(answer.json()["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    // The subscriber got exactly the allowed publishes.
    assert_eq!(sse.next_ids(ids.len()).await, ids);
    assert_eq!(counts(&srv).await, (6, 6));
}

/// Without `--cors-origin`, only the server's own pages may publish; behind
/// a proxy, its own is the host the proxy names.
#[tokio::test]
async fn without_cors_origins_only_the_servers_own_pages_may_publish() {
    let srv = TestServer::start(&[]);
    let own = format!("http://{}", srv.addr);
    assert_eq!(publish_from(&srv, Some(&own), false, "x").await.status, 200);
    let proxied = srv
        .post("/v1/events?key=k")
        .header("origin", "https://hub.example")
        .header("x-forwarded-host", "hub.example")
        .body("x")
        .send()
        .await
        .expect("publish request");
    assert_eq!(proxied.status().as_u16(), 200);
    for chunked in [false, true] {
        let answer = publish_from(&srv, Some("https://hub.example"), chunked, "x").await;
        assert_eq!(answer.status, 403, "chunked: {chunked}: {}", answer.text);
    }
    assert_eq!(counts(&srv).await, (2, 2));
}
