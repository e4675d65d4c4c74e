//! `GET /v1/events` as Server-Sent Events: headers, frame format, formats,
//! filters and matching, keep-alives and bookmarks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{FRAME_TIMEOUT, TestServer, assert_json_eq, enc, envelope};

#[tokio::test]
async fn headers_are_flushed_before_any_event() {
    let srv = TestServer::start(&[]);
    // No event exists and none will: the head must still arrive.
    let sse = srv.sse("key=nothing-here").await;
    let ct = sse
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(ct.starts_with("text/event-stream"), "content-type {ct:?}");
    let cc = sse
        .header("cache-control")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        cc.split(',').any(|d| d.trim() == "no-cache"),
        "cache-control {cc:?}"
    );
    assert_eq!(
        sse.header("x-accel-buffering"),
        Some("no"),
        "headers {:?}",
        sse.headers
    );
}

#[tokio::test]
async fn event_frame_is_id_then_event_then_data() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=k").await;
    let typed = srv
        .publish_typed("k", "user.created", json!({"name": "ann"}))
        .await;
    let untyped = srv.publish("k", json!([1, "two"])).await;

    let frame = sse.next_event().await;
    assert_eq!(
        frame.field_names(),
        ["id", "event", "data"],
        "frame {:?}",
        frame.raw
    );
    assert_eq!(frame.id.as_deref(), Some(typed.id.as_str()));
    assert_eq!(frame.event.as_deref(), Some("user.created"));
    assert_json_eq(
        &frame.json(),
        &envelope(
            &typed,
            ("key", "k"),
            Some("user.created"),
            &json!({"name": "ann"}),
        ),
        "typed envelope",
    );

    let frame = sse.next_event().await;
    assert_eq!(
        frame.field_names(),
        ["id", "data"],
        "an untyped event has no event line: {:?}",
        frame.raw
    );
    assert_eq!(frame.id.as_deref(), Some(untyped.id.as_str()));
    assert_json_eq(
        &frame.json(),
        &envelope(&untyped, ("key", "k"), None, &json!([1, "two"])),
        "untyped envelope",
    );
}

#[tokio::test]
async fn envelope_is_the_default_format_and_one_line() {
    let srv = TestServer::start(&[]);
    let mut default = srv.sse("key=k").await;
    let mut explicit = srv.sse("key=k&format=envelope").await;
    let text = "line one\nline two\r\nline three\r";
    let p = srv.publish("k", json!(text)).await;
    let want = envelope(&p, ("key", "k"), None, &json!(text));
    for sse in [&mut default, &mut explicit] {
        let frame = sse.next_event().await;
        assert_eq!(
            frame.data.len(),
            1,
            "the envelope is one data line: {:?}",
            frame.raw
        );
        assert_json_eq(&frame.json(), &want, "envelope");
    }
}

async fn raw_data_lines(
    srv: &TestServer,
    sse: &mut crate::support::SseClient,
    data: Value,
) -> Vec<String> {
    let p = srv.publish("k", data).await;
    let frame = sse.next_event().await;
    assert_eq!(frame.id.as_deref(), Some(p.id.as_str()));
    frame.data
}

#[tokio::test]
async fn raw_text_is_split_into_data_lines_at_cr_lf_and_crlf() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=k&format=raw").await;
    let cases: [(&str, &[&str]); 9] = [
        ("one line", &["one line"]),
        ("a\nb", &["a", "b"]),
        ("a\r\nb", &["a", "b"]),
        ("a\rb", &["a", "b"]),
        ("a\r\nb\rc\nd", &["a", "b", "c", "d"]),
        ("ends\n", &["ends", ""]),
        ("ends\r\n", &["ends", ""]),
        ("a\n\nb", &["a", "", "b"]),
        ("\n", &["", ""]),
    ];
    for (text, want) in cases {
        let got = raw_data_lines(&srv, &mut sse, json!(text)).await;
        assert_eq!(got, want, "data lines of {text:?}");
    }
}

#[tokio::test]
async fn raw_empty_text_is_one_empty_data_line() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=k&format=raw").await;
    let p = srv.publish("k", json!("")).await;
    let frame = sse.next_event().await;
    assert_eq!(frame.id.as_deref(), Some(p.id.as_str()));
    assert_eq!(frame.field_names(), ["id", "data"], "frame {:?}", frame.raw);
    assert_eq!(frame.data, [""], "frame {:?}", frame.raw);
}

#[tokio::test]
async fn raw_sends_strings_as_text_and_other_json_compactly() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=k&format=raw").await;
    assert_eq!(
        raw_data_lines(&srv, &mut sse, json!("hello world")).await,
        ["hello world"]
    );
    assert_eq!(
        raw_data_lines(&srv, &mut sse, json!("\"quoted\"")).await,
        ["\"quoted\""]
    );
    assert_eq!(raw_data_lines(&srv, &mut sse, json!(42)).await, ["42"]);
    assert_eq!(raw_data_lines(&srv, &mut sse, json!(null)).await, ["null"]);
    assert_eq!(raw_data_lines(&srv, &mut sse, json!(true)).await, ["true"]);
    assert_eq!(
        raw_data_lines(&srv, &mut sse, json!([1, 2])).await,
        ["[1,2]"]
    );
    assert_eq!(
        raw_data_lines(&srv, &mut sse, json!({"a": "x\ny"})).await,
        [r#"{"a":"x\ny"}"#]
    );

    // Whitespace the publisher sent is not kept: the query form carries the body verbatim.
    let spaced = "{ \"b\" : 1 ,\n  \"a\" : [ 1 , 2 , { \"c\" : null } ] }";
    let resp = srv
        .post("/v1/events?key=k")
        .header("content-type", "application/json")
        .body(spaced)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let frame = sse.next_event().await;
    assert_eq!(
        frame.data.len(),
        1,
        "compact JSON is one line: {:?}",
        frame.raw
    );
    let line = &frame.data[0];
    assert!(!line.contains(' '), "not compact: {line:?}");
    let parsed: Value = serde_json::from_str(line).unwrap();
    assert_json_eq(
        &parsed,
        &json!({"b": 1, "a": [1, 2, {"c": null}]}),
        "raw JSON payload",
    );
}

#[tokio::test]
async fn key_filter_is_exact_and_repeatable() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=a&key=b%2Fc").await;
    let a1 = srv.publish("a", json!(1)).await.id;
    srv.publish("ab", json!(0)).await;
    srv.publish("A", json!(0)).await;
    srv.publish("b", json!(0)).await;
    let b1 = srv.publish("b/c", json!(2)).await.id;
    srv.publish("b/c/d", json!(0)).await;
    let a2 = srv.publish("a", json!(3)).await.id;
    assert_ids!(sse.next_ids(3).await, [a1, b1, a2]);
}

#[tokio::test]
async fn prefix_filter_is_a_plain_string_prefix() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("prefix=foo").await;
    let mut want = Vec::new();
    for (key, matches) in [
        ("foo", true),
        ("fo", false),
        ("foo1", true),
        ("Foo", false),
        ("xfoo", false),
        ("foo/bar", true),
        ("f", false),
    ] {
        let id = srv.publish(key, json!(key)).await.id;
        if matches {
            want.push(id);
        }
    }
    let end = srv.publish("foo/end", json!("end")).await.id;
    want.push(end);
    assert_ids!(sse.next_ids(want.len()).await, want);
}

#[tokio::test]
async fn several_prefixes_and_keys_combine() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("prefix=x%2F&prefix=y%2F&key=z").await;
    let mut want = Vec::new();
    for (key, matches) in [
        ("x/1", true),
        ("y/1", true),
        ("z", true),
        ("z/1", false),
        ("w/1", false),
        ("x", false),
    ] {
        let id = srv.publish(key, json!(0)).await.id;
        if matches {
            want.push(id);
        }
    }
    want.push(srv.publish("x/end", json!(0)).await.id);
    assert_ids!(sse.next_ids(want.len()).await, want);
}

#[tokio::test]
async fn event_type_filter_is_repeatable_and_comma_separated_and_excludes_untyped() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("event_type=a.x&event_type=b.y,c.z").await;
    let mut want = Vec::new();
    srv.publish("k", json!("untyped")).await;
    want.push(srv.publish_typed("k", "a.x", json!(1)).await.id);
    srv.publish_typed("k", "d", json!(0)).await;
    want.push(srv.publish_typed("other", "b.y", json!(2)).await.id);
    srv.publish_typed("k", "a.xx", json!(0)).await;
    srv.publish_typed("k", "a", json!(0)).await;
    srv.publish_event(json!({"key": "k", "type": null, "data": 0}))
        .await;
    want.push(srv.publish_typed("k", "c.z", json!(3)).await.id);
    let frames = [
        sse.next_event().await,
        sse.next_event().await,
        sse.next_event().await,
    ];
    assert_ids!(crate::support::frame_ids(&frames), want);
    let types: Vec<_> = frames
        .iter()
        .map(|f| f.event.clone().unwrap_or_default())
        .collect();
    assert_eq!(types, ["a.x", "b.y", "c.z"]);
}

#[tokio::test]
async fn key_and_type_filters_must_both_match() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=k&event_type=t").await;
    srv.publish_typed("j", "t", json!(0)).await;
    srv.publish_typed("k", "u", json!(0)).await;
    srv.publish("k", json!(0)).await;
    let hit = srv.publish_typed("k", "t", json!(1)).await.id;
    srv.publish_typed("k2", "t", json!(0)).await;
    let hit2 = srv.publish_typed("k", "t", json!(2)).await.id;
    assert_ids!(sse.next_ids(2).await, [hit, hit2]);
}

#[tokio::test]
async fn prefix_broadcast_reaches_every_subscription_that_could_match() {
    let srv = TestServer::start(&[]);
    // (subscription, whether a broadcast to prefix "foo" matches it)
    let subs: [(&str, bool); 11] = [
        ("key=foo%2Fbar", true), // exact key under P
        ("key=foo", true),       // the key P itself
        ("key=fo", false),       // a key P starts with is not under P
        ("key=bar%2Ffoo", false),
        ("prefix=foo%2Fb", true), // Q starts with P
        ("prefix=foo", true),     // Q == P
        ("prefix=f", true),       // P starts with Q
        ("prefix=fop", false),
        ("prefix=foob", true), // Q starts with P
        ("prefix=g", false),
        ("", true), // all keys
    ];
    let mut streams = Vec::new();
    for (query, _) in &subs {
        // Every subscription also watches the sentinel key.
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("{query}&key=sentinel")
        };
        streams.push(srv.sse(&q).await);
    }
    let broadcast = srv
        .publish_event(json!({"prefix": "foo", "type": "cache.flush", "data": {"all": true}}))
        .await;
    let sentinel = srv.publish("sentinel", json!("end")).await;
    let want_broadcast = envelope(
        &broadcast,
        ("prefix", "foo"),
        Some("cache.flush"),
        &json!({"all": true}),
    );
    for ((query, matches), sse) in subs.iter().zip(streams.iter_mut()) {
        let first = sse.next_event().await;
        if *matches {
            assert_eq!(
                first.id.as_deref(),
                Some(broadcast.id.as_str()),
                "subscription {query:?} should get the broadcast"
            );
            assert_eq!(first.event.as_deref(), Some("cache.flush"));
            assert_json_eq(&first.json(), &want_broadcast, "broadcast envelope");
            let second = sse.next_event().await;
            assert_eq!(
                second.id.as_deref(),
                Some(sentinel.id.as_str()),
                "subscription {query:?}"
            );
        } else {
            assert_eq!(
                first.id.as_deref(),
                Some(sentinel.id.as_str()),
                "subscription {query:?} must not get the broadcast to \"foo\""
            );
        }
    }
}

#[tokio::test]
async fn prefix_broadcast_obeys_type_filters() {
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("prefix=p&event_type=wanted&key=end").await;
    srv.publish_event(json!({"prefix": "p", "data": 0})).await;
    srv.publish_event(json!({"prefix": "p", "type": "other", "data": 0}))
        .await;
    let hit = srv
        .publish_event(json!({"prefix": "p/x", "type": "wanted", "data": 1}))
        .await
        .id;
    let end = srv.publish_typed("end", "wanted", json!(2)).await.id;
    assert_ids!(sse.next_ids(2).await, [hit, end]);
}

async fn get_status(srv: &TestServer, query: &str) -> crate::support::Answer {
    let resp = srv
        .get(&format!("/v1/events?{query}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        // A stream: do not read it to the end.
        return crate::support::Answer {
            status,
            content_type: None,
            headers: resp.headers().clone(),
            text: String::new(),
        };
    }
    crate::support::Answer::of(resp).await
}

fn repeat(name: &str, n: usize, start: usize) -> String {
    (start..start + n)
        .map(|i| format!("{name}=v{i}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn more_than_64_filters_is_400() {
    let srv = TestServer::start(&[]);
    let over = [
        repeat("key", 65, 0),
        format!("{}&{}", repeat("key", 33, 0), repeat("prefix", 32, 100)),
        repeat("event_type", 65, 0),
        format!(
            "event_type={}",
            (0..65)
                .map(|i| format!("t{i}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!(
            "event_type={}&{}",
            (0..40)
                .map(|i| format!("t{i}"))
                .collect::<Vec<_>>()
                .join(","),
            repeat("event_type", 25, 100)
        ),
    ];
    for query in &over {
        let answer = get_status(&srv, query).await;
        if let Err(why) = crate::support::check_error(&answer, 400) {
            panic!("{} filters: {why}", query.matches('=').count());
        }
        let resp = srv
            .get(&format!("/v1/events/history?{query}"))
            .send()
            .await
            .unwrap();
        assert_error!(resp, 400);
    }
    let fine = [
        repeat("key", 64, 0),
        format!("{}&{}", repeat("key", 32, 0), repeat("prefix", 32, 100)),
        repeat("event_type", 64, 0),
        format!("{}&{}", repeat("key", 64, 0), repeat("event_type", 64, 0)),
    ];
    for query in &fine {
        let answer = get_status(&srv, query).await;
        assert_eq!(
            answer.status, 200,
            "64 filters are allowed: {:?}",
            answer.text
        );
    }
}

#[tokio::test]
async fn bad_parameters_are_400_before_the_stream_starts() {
    let srv = TestServer::start(&[]);
    for query in [
        "format=xml",
        "on_gone=ignore",
        "bookmarks=comment",
        "key=a%01b",
        "key=",
        &format!("key={}", "k".repeat(1025)),
        "prefix=a%0Ab",
        "event_type=bad%20type",
        "event_type=%C3%BC",
        "from_timestamp=yesterday",
        "from_timestamp=2026-13-45T99:00:00Z",
        "from=not-an-id",
    ] {
        let answer = get_status(&srv, query).await;
        if let Err(why) = crate::support::check_error(&answer, 400) {
            panic!("GET /v1/events?{query}: {why}");
        }
    }
}

#[tokio::test]
async fn keep_alive_comment_when_idle() {
    let srv = TestServer::start(&["--keep-alive", "1s"]);
    let mut sse = srv.sse("key=quiet").await;
    sse.opening().await;
    for _ in 0..2 {
        let frame = sse
            .next_frame()
            .await
            .unwrap_or_else(|e| panic!("no keep-alive within {FRAME_TIMEOUT:?}: {e}"));
        assert_eq!(frame.comments, ["keep-alive"], "frame {:?}", frame.raw);
        assert_eq!(
            frame.field_names(),
            [":"],
            "nothing moved, so no bookmark id: {:?}",
            frame.raw
        );
    }
}

#[tokio::test]
async fn keep_alive_is_configurable_by_duration() {
    let srv = TestServer::start(&["--keep-alive", "500ms"]);
    let mut sse = srv.sse("key=quiet").await;
    sse.opening().await;
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        let frame = sse.next_frame().await.unwrap();
        assert_eq!(frame.comments, ["keep-alive"], "frame {:?}", frame.raw);
    }
    // Three keep-alives at 500ms cannot arrive faster than ~1s.
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "keep-alives came too fast: {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn bookmark_carries_the_latest_position_and_resumes_there() {
    let srv = TestServer::start(&["--keep-alive", "1s"]);
    let mut sse = srv.sse("key=rare").await;
    let a1 = srv.publish("rare", json!(1)).await.id;
    assert_ids!(sse.next_ids(1).await, [a1]);
    let others = srv
        .publish_batch(&[
            json!({"key": "busy", "data": 1}),
            json!({"key": "busy", "data": 2}),
            json!({"key": "busy", "data": 3}),
        ])
        .await;
    let latest = others[2].id.clone();
    // The next frame that carries an id is the bookmark.
    let bookmark = loop {
        let frame = sse
            .next_frame()
            .await
            .unwrap_or_else(|e| panic!("waiting for a bookmark: {e}"));
        if frame.id.is_some() && frame.id.as_deref() != Some(a1.as_str()) {
            break frame;
        }
        assert_eq!(
            frame.comments,
            ["keep-alive"],
            "unexpected frame {:?}",
            frame.raw
        );
    };
    assert!(
        !bookmark.is_event(),
        "a bookmark has no data or event line: {:?}",
        bookmark.raw
    );
    assert_eq!(
        bookmark.id.as_deref(),
        Some(latest.as_str()),
        "bookmark id is the latest position: {:?}",
        bookmark.raw
    );
    assert_eq!(
        bookmark.comments,
        ["keep-alive"],
        "the keep-alive frame carries the id: {:?}",
        bookmark.raw
    );
    drop(sse);

    // Resume from the bookmark: only what comes after it.
    let mut resumed = srv
        .sse_with("key=rare", &[("Last-Event-ID", &latest)])
        .await;
    srv.publish("busy", json!(4)).await;
    let a2 = srv.publish("rare", json!(2)).await.id;
    assert_ids!(resumed.next_ids(1).await, [a2]);
    let mut replayed = srv.sse(&format!("key=rare&from={}", enc(&latest))).await;
    let a3 = srv.publish("rare", json!(3)).await.id;
    assert_ids!(replayed.next_ids(2).await, [a2, a3]);
}

#[tokio::test]
async fn bookmarks_event_sends_each_bookmark_as_a_bookmark_event() {
    let srv = TestServer::start(&["--keep-alive", "1s"]);
    let start = srv.publish("busy", json!(0)).await.id;
    let mut sse = srv.sse("key=rare&bookmarks=event").await;
    let bookmark = |comment: &str, id: &str| {
        format!(": {comment}\nid: {id}\nevent: bookmark\ndata: {{\"bookmark\":\"{id}\"}}\n\n")
    };
    let opening = sse.next_frame().await.unwrap();
    assert_eq!(opening.raw, bookmark("live", &start));
    let busy = srv.publish("busy", json!(1)).await.id;
    let kept = loop {
        let frame = sse
            .next_frame()
            .await
            .unwrap_or_else(|e| panic!("waiting for a bookmark: {e}"));
        if frame.id.is_some() {
            break frame;
        }
        assert_eq!(frame.raw, ": keep-alive\n\n");
    };
    assert_eq!(kept.raw, bookmark("keep-alive", &busy));
    // Events are framed as always.
    let rare = srv.publish("rare", json!(1)).await;
    let frame = sse.next_frame().await.unwrap();
    assert_eq!(frame.field_names(), ["id", "data"], "{:?}", frame.raw);
    assert_eq!(frame.id.as_deref(), Some(rare.id.as_str()));
    assert_json_eq(
        &frame.json(),
        &envelope(&rare, ("key", "rare"), None, &json!(1)),
        "the event",
    );
}

#[tokio::test]
async fn no_bookmark_without_movement() {
    let srv = TestServer::start(&["--keep-alive", "1s"]);
    let mut sse = srv.sse("key=rare").await;
    let a1 = srv.publish("rare", json!(1)).await.id;
    assert_ids!(sse.next_ids(1).await, [a1]);
    // Nothing else moved: the keep-alives carry no id (or at most the
    // position already delivered).
    for _ in 0..2 {
        let frame = sse.next_frame().await.unwrap();
        assert!(!frame.is_event(), "unexpected event {:?}", frame.raw);
        if let Some(id) = &frame.id {
            assert_eq!(
                id, &a1,
                "a bookmark may only point at the position reached: {:?}",
                frame.raw
            );
        }
    }
}
