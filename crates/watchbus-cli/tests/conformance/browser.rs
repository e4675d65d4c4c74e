//! Real browsers against the server: each test runs in a headless
//! Chromium, Firefox and WebKit (Safari's engine, as WebKitGTK's
//! MiniBrowser on a private Xvfb display), which show a page from another
//! origin that subscribes as the README's browser example does, through a
//! proxy that cuts its connections. These check what only a browser
//! decides: that EventSource keeps a bookmark as its last event id and
//! sends it back on reconnect, that CORS lets the page in (and keeps others
//! out), and what a `410` and `on_gone=event` do to an EventSource.
//!
//! Without Chromium, Firefox or WebKit, that engine's tests say SKIPPED,
//! unless `WATCHBUS_REQUIRE_BROWSER=1`.

use serde_json::{Value, json};
use watchbus_testkit::{Engine, TestBrowser};

use crate::support::browser::{Page, Proxy, header};
use crate::support::{Published, TestServer, enc, envelope};

/// Runs the test `$name(engine)` as `$name::chromium`, `$name::firefox`
/// and `$name::webkit`.
macro_rules! in_each_browser {
    ($name:ident) => {
        mod $name {
            use watchbus_testkit::Engine;

            #[tokio::test]
            async fn chromium() {
                super::$name(Engine::Chromium).await
            }

            #[tokio::test]
            async fn firefox() {
                super::$name(Engine::Firefox).await
            }

            #[tokio::test]
            async fn webkit() {
                super::$name(Engine::WebKit).await
            }
        }
    };
}

/// The page's report of an event: its type, its id and its data, the
/// envelope the contract promises.
fn event_report(p: &Published, key: &str, event_type: Option<&str>, data: &Value) -> Value {
    json!({
        "what": "event",
        "type": event_type.unwrap_or("message"),
        "id": p.id,
        "data": envelope(p, ("key", key), event_type, data).to_string(),
    })
}

/// Asserts that the page's next report is an event equal to `want`,
/// comparing its data as JSON.
async fn expect_event(page: &mut Page, mut want: Value) {
    let mut got = page.next().await;
    for report in [&mut got, &mut want] {
        if let Some(data) = report.get_mut("data") {
            let text = data.as_str().unwrap_or_default();
            *data = serde_json::from_str(text).unwrap_or_else(|_| json!({"not JSON": text}));
        }
    }
    crate::support::assert_json_eq(&got, &want, "the page's next event");
}

/// Publishes `"live"` to `key` and asserts that the page gets it next.
async fn expect_live(page: &mut Page, srv: &TestServer, key: &str) {
    let live = srv.publish(key, json!("live")).await;
    expect_event(page, event_report(&live, key, None, &json!("live"))).await;
}

in_each_browser!(eventsource_started_live_resumes_after_a_cut_with_nothing_lost);
async fn eventsource_started_live_resumes_after_a_cut_with_nothing_lost(engine: Engine) {
    started_live_then_cut(engine, "&bookmarks=event").await;
}

/// The contract's id-only bookmarks: Chromium keeps one as its last event
/// id, as the spec says. Firefox and WebKit keep the id only of an event
/// they dispatch, so on them the opening bookmark is lost, and with it the
/// gap: that is what `bookmarks=event` is for.
#[tokio::test]
async fn chromium_keeps_an_id_only_bookmark_as_its_last_event_id() {
    started_live_then_cut(Engine::Chromium, "").await;
}

/// A page subscribes live (`extra` added to its URL), its connection is cut
/// before any event, two events come while its reconnect is held: it gets
/// exactly those, then a live one.
async fn started_live_then_cut(engine: Engine, extra: &str) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", &page.origin()]);
    let start = srv.publish("other/0", json!(0)).await.id;
    let proxy = Proxy::start(&srv.addr).await;
    let sse = format!("http://{}/v1/events?prefix=orders/{extra}", proxy.addr);
    let Some(_browser) = TestBrowser::open(
        engine,
        &page.url(&[("sse", &sse), ("types", "order.created")]),
    ) else {
        return;
    };
    page.expect(json!({"what": "open"})).await;
    srv.wait_active(1).await;

    // Lost before its first event: only the opening bookmark was sent.
    proxy.cut_and_hold();
    page.expect(json!({"what": "error", "readyState": 0})).await;
    let typed = srv
        .publish_typed("orders/1", "order.created", json!({"total": 42}))
        .await;
    let untyped = srv.publish("orders/2", json!("untyped")).await;
    srv.publish("other/1", json!(1)).await;
    proxy.release();

    page.expect(json!({"what": "open"})).await;
    expect_event(
        &mut page,
        event_report(
            &typed,
            "orders/1",
            Some("order.created"),
            &json!({"total": 42}),
        ),
    )
    .await;
    expect_event(
        &mut page,
        event_report(&untyped, "orders/2", None, &json!("untyped")),
    )
    .await;
    expect_live(&mut page, &srv, "orders/3").await;

    // The browser sent the bookmark back, from the page's origin.
    let [first, reconnect] = proxy.first_and_reconnect();
    assert_eq!(header(&first, "last-event-id"), None, "{first}");
    assert_eq!(
        header(&reconnect, "last-event-id"),
        Some(start),
        "{reconnect}"
    );
    for head in [&first, &reconnect] {
        assert_eq!(header(head, "origin"), Some(page.origin()), "{head}");
    }
}

in_each_browser!(eventsource_resumes_from_the_last_event_it_got);
async fn eventsource_resumes_from_the_last_event_it_got(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", &page.origin()]);
    let proxy = Proxy::start(&srv.addr).await;
    let sse = format!("http://{}/v1/events?key=orders/1", proxy.addr);
    let Some(_browser) = TestBrowser::open(engine, &page.url(&[("sse", &sse)])) else {
        return;
    };
    page.expect(json!({"what": "open"})).await;
    srv.wait_active(1).await;
    let seen = srv.publish("orders/1", json!(1)).await;
    expect_event(&mut page, event_report(&seen, "orders/1", None, &json!(1))).await;

    resumes_after_a_cut(&mut page, &srv, &proxy, &seen.id, [2, 3]).await;
}

/// Cuts the page's connection, publishes `missed` to `orders/1` while its
/// reconnect is held, and lets it through: the reconnect must carry
/// `Last-Event-ID: resume_from`, and the page get exactly those events.
async fn resumes_after_a_cut(
    page: &mut Page,
    srv: &TestServer,
    proxy: &Proxy,
    resume_from: &str,
    missed: [i64; 2],
) {
    proxy.cut_and_hold();
    page.expect(json!({"what": "error", "readyState": 0})).await;
    let mut published = Vec::new();
    for n in missed {
        published.push(srv.publish("orders/1", json!(n)).await);
    }
    proxy.release();
    page.expect(json!({"what": "open"})).await;
    for (p, n) in published.iter().zip(missed) {
        expect_event(page, event_report(p, "orders/1", None, &json!(n))).await;
    }
    let [_, reconnect] = proxy.first_and_reconnect();
    assert_eq!(
        header(&reconnect, "last-event-id").as_deref(),
        Some(resume_from),
        "{reconnect}"
    );
}

in_each_browser!(a_quiet_page_resumes_from_its_latest_bookmark);
async fn a_quiet_page_resumes_from_its_latest_bookmark(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&[
        "--cors-origin",
        &page.origin(),
        "--retention-events",
        "3",
        "--keep-alive",
        "1s",
    ]);
    let start = srv.publish("other/0", json!(0)).await.id;
    let proxy = Proxy::start(&srv.addr).await;
    let sse = format!(
        "http://{}/v1/events?key=orders/1&bookmarks=event",
        proxy.addr
    );
    // This page listens for `bookmark`, to show what one is; the others
    // do not, and see none.
    let Some(_browser) =
        TestBrowser::open(engine, &page.url(&[("sse", &sse), ("types", "bookmark")]))
    else {
        return;
    };
    page.expect(json!({"what": "open"})).await;
    let bookmark = |id: &str| {
        json!({
            "what": "event",
            "type": "bookmark",
            "id": id,
            "data": json!({"bookmark": id}).to_string(),
        })
    };
    page.expect(bookmark(&start)).await;
    // Other keys move on past the retention of 3: the opening bookmark is
    // gone, and only the keep-alive's bookmark is a point to resume from.
    let mut newest = String::new();
    for n in 1..=4 {
        newest = srv.publish(&format!("other/{n}"), json!(n)).await.id;
    }
    srv.assert_resume_gone("orders/1", &start).await;
    // A keep-alive may fall between two publishes: the last bookmark is
    // the newest id.
    loop {
        let got = page.next().await;
        assert_eq!(got["type"], json!("bookmark"), "{got}");
        if got["id"] == json!(newest) {
            crate::support::assert_json_eq(&got, &bookmark(&newest), "the keep-alive's bookmark");
            break;
        }
    }

    resumes_after_a_cut(&mut page, &srv, &proxy, &newest, [1, 2]).await;
}

in_each_browser!(raw_text_reaches_the_page_exactly);
async fn raw_text_reaches_the_page_exactly(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", &page.origin()]);
    let sse = format!("http://{}/v1/events?key=notes&format=raw", srv.addr);
    let Some(_browser) = TestBrowser::open(engine, &page.url(&[("sse", &sse)])) else {
        return;
    };
    page.expect(json!({"what": "open"})).await;
    srv.wait_active(1).await;
    // Line breaks of every kind come out as `\n`, as the spec's parser
    // rebuilds them; the empty text is one empty `data:` line, which a
    // browser dispatches as an event with empty data.
    for (text, seen) in [
        ("two\nlines", "two\nlines"),
        ("ends with a break\r\n", "ends with a break\n"),
        ("", ""),
        ("a\rb\r\nc", "a\nb\nc"),
        ("\n", "\n"),
    ] {
        let published = srv.publish("notes", json!(text)).await;
        page.expect(json!({"what": "event", "type": "message", "id": published.id, "data": seen}))
            .await;
    }
}

/// Opens the page on `?prefix=orders/&bookmarks=event<extra>`, cuts it
/// before any event,
/// publishes past a retention of 3 so that its resume point is gone, and
/// lets its reconnect through. Returns the browser, the stream's start
/// (its opening bookmark) and the newest event; `None` when skipped.
async fn resume_after_the_gap_aged_out(
    engine: Engine,
    page: &mut Page,
    srv: &TestServer,
    proxy: &Proxy,
    extra: &str,
    types: &str,
) -> Option<(TestBrowser, String, Published)> {
    let start = srv.publish("other/0", json!(0)).await.id;
    let sse = format!(
        "http://{}/v1/events?prefix=orders/&bookmarks=event{extra}",
        proxy.addr
    );
    let browser = TestBrowser::open(engine, &page.url(&[("sse", &sse), ("types", types)]))?;
    page.expect(json!({"what": "open"})).await;
    srv.wait_active(1).await;
    proxy.cut_and_hold();
    page.expect(json!({"what": "error", "readyState": 0})).await;
    let mut newest = None;
    for n in 0..4 {
        newest = Some(srv.publish("orders/1", json!(n)).await);
    }
    proxy.release();
    Some((browser, start, newest.unwrap()))
}

in_each_browser!(a_gone_resume_closes_the_eventsource_instead_of_going_on_live);
async fn a_gone_resume_closes_the_eventsource_instead_of_going_on_live(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", &page.origin(), "--retention-events", "3"]);
    let proxy = Proxy::start(&srv.addr).await;
    let Some((_browser, start, _)) =
        resume_after_the_gap_aged_out(engine, &mut page, &srv, &proxy, "", "").await
    else {
        return;
    };
    // 410: the EventSource fails for good (readyState CLOSED) and does not
    // reconnect live past the gap.
    page.expect(json!({"what": "error", "readyState": 2})).await;
    let [_, reconnect] = proxy.first_and_reconnect();
    assert_eq!(
        header(&reconnect, "last-event-id"),
        Some(start.clone()),
        "{reconnect}"
    );
    srv.assert_resume_gone("orders/1", &start).await;
}

in_each_browser!(on_gone_event_tells_the_page_then_goes_on_live);
async fn on_gone_event_tells_the_page_then_goes_on_live(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", &page.origin(), "--retention-events", "3"]);
    let proxy = Proxy::start(&srv.addr).await;
    let Some((_browser, start, newest)) =
        resume_after_the_gap_aged_out(engine, &mut page, &srv, &proxy, "&on_gone=event", "gone")
            .await
    else {
        return;
    };
    page.expect(json!({"what": "open"})).await;
    // The facts are the ones a 410 would have carried; the advice is that
    // the stream goes on.
    let refused = srv
        .get(&format!("/v1/events?prefix=orders/&from={}", enc(&start)))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 410);
    let refusal: Value = refused.json().await.unwrap();
    let gone = page.next().await;
    assert_eq!(gone["type"], json!("gone"), "{gone}");
    assert_eq!(
        gone["id"],
        json!(newest.id),
        "resume point: the newest id {gone}"
    );
    let data: Value = serde_json::from_str(gone["data"].as_str().unwrap()).unwrap();
    let told = refusal["error"]["message"].as_str().unwrap().replace(
        "; resume without a resume point to go on live",
        "; this stream goes on live",
    );
    assert_eq!(
        data,
        json!({"code": "gone", "message": told}),
        "the gone event's data"
    );
    expect_live(&mut page, &srv, "orders/2").await;
}

in_each_browser!(a_page_from_an_origin_not_allowed_cannot_subscribe);
async fn a_page_from_an_origin_not_allowed_cannot_subscribe(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", "https://app.example"]);
    let sse = format!("http://{}/v1/events?key=orders/1", srv.addr);
    let Some(_browser) = TestBrowser::open(engine, &page.url(&[("sse", &sse)])) else {
        return;
    };
    // The response came (the server does not know who may read it), but
    // the browser withholds it from the page, and does not retry.
    page.expect(json!({"what": "error", "readyState": 2})).await;
}

in_each_browser!(a_page_from_an_origin_not_allowed_cannot_open_a_websocket);
async fn a_page_from_an_origin_not_allowed_cannot_open_a_websocket(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", "https://app.example"]);
    let ws = format!("ws://{}/v1/ws?key=orders/1", srv.addr);
    let Some(_browser) = TestBrowser::open(engine, &page.url(&[("ws", &ws)])) else {
        return;
    };
    // Browsers apply no CORS to a WebSocket: the server's `403` is what
    // keeps the page out. The page sees a failed connection, never open.
    page.expect(json!({"what": "close", "code": 1006, "reason": ""}))
        .await;
}

in_each_browser!(a_page_from_an_origin_not_allowed_can_neither_publish_nor_reset);
async fn a_page_from_an_origin_not_allowed_can_neither_publish_nor_reset(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", "https://app.example"]);
    let kept = srv.publish("orders/1", json!("kept")).await.id;
    let mut sse = srv.sse("key=orders/1").await;
    srv.wait_active(1).await;
    let publish = format!("http://{}/v1/events?key=orders/1", srv.addr);
    let reset = format!("http://{}/v1/admin/reset", srv.addr);
    let Some(_browser) =
        TestBrowser::open(engine, &page.url(&[("post", &publish), ("post", &reset)]))
    else {
        return;
    };
    // The browser sends both without asking first, and hides each answer
    // from the page: CORS alone would not have kept them out.
    for _ in 0..2 {
        page.expect(json!({"what": "posted", "answer": "opaque"}))
            .await;
    }
    // The server refused both, and did neither.
    let refused = super::admin::samples(&srv, "watchbus_requests_refused_total").await;
    assert_eq!(
        refused,
        [(
            r#"watchbus_requests_refused_total{code="forbidden",status="403"}"#.to_owned(),
            "2".to_owned()
        )]
        .into(),
    );
    assert_eq!(srv.history_ids("key=orders/1").await, [kept]);
    let live = srv.publish("orders/1", json!("live")).await.id;
    assert_eq!(sse.next_ids(1).await, [live]);
}

in_each_browser!(a_page_of_an_allowed_origin_publishes_once_under_an_idempotency_key);
async fn a_page_of_an_allowed_origin_publishes_once_under_an_idempotency_key(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", &page.origin()]);
    let publish = format!("http://{}/v1/events", srv.addr);
    let Some(_browser) = TestBrowser::open(engine, &page.url(&[("keyed", &publish)])) else {
        return;
    };
    // The preflight lets the key through, and the page reads whether the
    // answer is a replay.
    let first = page.next().await;
    let second = page.next().await;
    let ids = srv.history_ids("key=orders/1").await;
    assert_eq!(ids.len(), 1, "stored once: {first} {second}");
    let receipt: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(receipt["id"], json!(ids[0]), "{first}");
    for (report, replayed) in [(&first, Value::Null), (&second, json!("true"))] {
        assert_eq!(
            report,
            &json!({
                "what": "keyed",
                "status": 200,
                "replayed": replayed,
                "body": first["body"],
            })
        );
    }
}

in_each_browser!(websocket_opens_with_its_bookmark_then_gets_each_event);
async fn websocket_opens_with_its_bookmark_then_gets_each_event(engine: Engine) {
    let mut page = Page::start().await;
    let srv = TestServer::start(&["--cors-origin", &page.origin()]);
    let start = srv.publish("other/0", json!(0)).await.id;
    let ws = format!("ws://{}/v1/ws?key=orders/1", srv.addr);
    let Some(_browser) = TestBrowser::open(engine, &page.url(&[("ws", &ws)])) else {
        return;
    };
    page.expect(json!({"what": "open"})).await;
    page.expect(json!({"what": "frame", "data": json!({"bookmark": start}).to_string()}))
        .await;
    let live = srv.publish("orders/1", json!({"n": 1})).await;
    let frame = page.next().await;
    assert_eq!(frame["what"], json!("frame"), "{frame}");
    let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
    crate::support::assert_json_eq(
        &data,
        &envelope(&live, ("key", "orders/1"), None, &json!({"n": 1})),
        "the frame",
    );
}

in_each_browser!(a_page_resumes_with_a_new_token_from_the_token_expired_event);
async fn a_page_resumes_with_a_new_token_from_the_token_expired_event(engine: Engine) {
    use super::scoped_tokens::{SECRET, sign, unix_now};
    use jsonwebtoken::Algorithm;

    let mut page = Page::start().await;
    let mut srv = TestServer::start(&[
        "--cors-origin",
        &page.origin(),
        "--jwt-secret",
        SECRET,
        "--admin-token",
        "adm",
    ]);
    srv.token = Some("adm".to_owned());
    let grant = json!({"subscribe": {"keys": ["orders/1"]}});
    // Long enough for a browser on a loaded machine to start and open the
    // stream before the token expires (`exp` is to the second), short
    // enough for the expiry to come within the page's report timeout.
    let exp = unix_now() + 6;
    let short = sign(
        Algorithm::HS256,
        SECRET,
        &json!({"exp": exp, "watchbus": grant}),
    );
    let fresh = sign(
        Algorithm::HS256,
        SECRET,
        &json!({"exp": unix_now() + 3600, "watchbus": grant}),
    );
    let start = srv.publish("other/0", json!(0)).await.id;
    let proxy = Proxy::start(&srv.addr).await;
    let sse = format!(
        "http://{}/v1/events?key=orders/1&bookmarks=event&on_expiry=event&access_token={short}",
        proxy.addr
    );
    let Some(_browser) =
        TestBrowser::open(engine, &page.url(&[("sse", &sse), ("next_token", &fresh)]))
    else {
        return;
    };
    page.expect(json!({"what": "open"})).await;
    srv.wait_active(1).await;
    // The page's new stream waits until an event was published after the
    // old one ended.
    proxy.hold();

    // No event came before the expiry: its last event id is the opening
    // bookmark, the only point the page could resume from without a gap.
    let expired = page.next().await;
    assert_eq!(expired["type"], json!("token_expired"), "{expired}");
    assert_eq!(expired["id"], json!(start), "{expired}");
    let data: Value = serde_json::from_str(expired["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["code"], json!("token_expired"), "{data}");
    let missed = srv.publish("orders/1", json!("missed")).await;
    proxy.release();

    page.expect(json!({"what": "open"})).await;
    expect_event(
        &mut page,
        event_report(&missed, "orders/1", None, &json!("missed")),
    )
    .await;
    expect_live(&mut page, &srv, "orders/1").await;

    // The new stream: the new token, from the old stream's start.
    let [_, reconnect] = proxy.first_and_reconnect();
    let request_line = reconnect.lines().next().unwrap_or_default();
    assert!(
        request_line.contains(&format!("access_token={fresh}"))
            && request_line.contains(&format!("from={}", enc(&start))),
        "{request_line}"
    );
}
