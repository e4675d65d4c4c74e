//! Resuming: `Last-Event-ID` > `from` > `from_timestamp`, replay then live
//! without a seam, `410 Gone` and its exact edge, `on_gone=event`, and
//! subscribers that fall behind.

use std::time::Duration;

use serde_json::json;

use crate::support::sse::Pending;
use crate::support::{
    End, FRAME_TIMEOUT, Published, TestServer, enc, format_time, frame_ids, parse_time,
};

/// Publishes `n` events on `key`, at least 15 ms apart, so their times
/// differ (the server stamps on acceptance, after our previous answer).
async fn publish_spaced(srv: &TestServer, key: &str, n: usize) -> Vec<Published> {
    let mut out = Vec::new();
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        out.push(srv.publish(key, json!(i)).await);
    }
    for pair in out.windows(2) {
        assert!(
            parse_time(&pair[0].time) < parse_time(&pair[1].time),
            "times must differ: {pair:?}"
        );
    }
    out
}

#[tokio::test]
async fn from_is_exclusive_then_live_follows() {
    let srv = TestServer::start(&[]);
    let e = srv.publish_n("k", 5).await;
    srv.publish("other", json!(0)).await;
    let mut sse = srv.sse(&format!("key=k&from={}", enc(&e[1]))).await;
    assert_ids!(sse.next_ids(3).await, [&e[2], &e[3], &e[4]]);
    let e6 = srv.publish("k", json!(6)).await.id;
    assert_ids!(sse.next_ids(1).await, [e6]);
}

#[tokio::test]
async fn last_event_id_header_resumes() {
    let srv = TestServer::start(&[]);
    let e = srv.publish_n("k", 5).await;
    let mut sse = srv.sse_with("key=k", &[("Last-Event-ID", &e[2])]).await;
    assert_ids!(sse.next_ids(2).await, [&e[3], &e[4]]);
    let e6 = srv.publish("k", json!(6)).await.id;
    assert_ids!(sse.next_ids(1).await, [e6]);
}

#[tokio::test]
async fn without_a_resume_point_the_stream_starts_live() {
    let srv = TestServer::start(&[]);
    srv.publish_n("k", 3).await;
    let mut sse = srv.sse("key=k").await;
    let live = srv.publish("k", json!("live")).await.id;
    assert_ids!(sse.next_ids(1).await, [live]);
}

/// A stream without a resume point opens with a bookmark of the point it
/// starts live from: a client that loses it before its first event resumes
/// from there and misses nothing published meanwhile.
#[tokio::test]
async fn a_live_stream_opens_with_a_bookmark_to_resume_from() {
    let srv = TestServer::start(&[]);
    // On an empty log the start is "before the first event".
    let mut sse = srv.sse("key=k").await;
    let empty = sse.opening().await;
    assert!(empty.ends_with("-0"), "start of an empty log: {empty}");
    sse.close();
    let before = srv.publish_n("k", 2).await;
    let mut again = srv.sse_with("key=k", &[("Last-Event-ID", &empty)]).await;
    assert_ids!(again.next_ids(2).await, &before);
    again.close();

    // The start is the newest event of any key, not of the filter's.
    let other = srv.publish("other", json!(0)).await.id;
    let mut sse = srv.sse("key=k").await;
    assert_eq!(sse.opening().await, other);
    sse.close();
    let missed = srv.publish_n("k", 3).await;
    srv.publish("other", json!(1)).await;
    for resume in [
        srv.sse_with("key=k", &[("Last-Event-ID", &other)]).await,
        srv.sse(&format!("key=k&from={}", enc(&other))).await,
    ] {
        let mut resume = resume;
        // A resumed stream has a resume point: its first frame is an event.
        let first = resume.next_frame().await.unwrap();
        assert_eq!(
            first.id.as_deref(),
            Some(missed[0].as_str()),
            "{:?}",
            first.raw
        );
        assert!(first.is_event(), "{:?}", first.raw);
        assert_ids!(resume.next_ids(2).await, &missed[1..]);
    }
    // WebSocket: the same start, as a bookmark frame.
    let mut sock = crate::support::ws::connect(&srv, "key=k").await;
    let head = srv.stats().await["events"]["latest_id"].clone();
    assert_eq!(json!(crate::support::ws::opening(&mut sock).await), head);
}

#[tokio::test]
async fn last_event_id_beats_from() {
    let srv = TestServer::start(&[]);
    let e = srv.publish_n("k", 5).await;
    let mut sse = srv
        .sse_with(
            &format!("key=k&from={}", enc(&e[0])),
            &[("Last-Event-ID", &e[3])],
        )
        .await;
    let live = srv.publish("k", json!("live")).await.id;
    assert_ids!(sse.next_ids(2).await, [&e[4], &live]);
}

#[tokio::test]
async fn last_event_id_beats_from_timestamp() {
    let srv = TestServer::start(&[]);
    let e = publish_spaced(&srv, "k", 5).await;
    let q = format!("key=k&from_timestamp={}", enc(&e[0].time));
    let mut sse = srv.sse_with(&q, &[("Last-Event-ID", &e[3].id)]).await;
    let live = srv.publish("k", json!("live")).await.id;
    assert_ids!(sse.next_ids(2).await, [&e[4].id, &live]);
}

#[tokio::test]
async fn from_beats_from_timestamp() {
    let srv = TestServer::start(&[]);
    let e = publish_spaced(&srv, "k", 5).await;
    let q = format!(
        "key=k&from={}&from_timestamp={}",
        enc(&e[2].id),
        enc(&e[0].time)
    );
    let mut sse = srv.sse(&q).await;
    let live = srv.publish("k", json!("live")).await.id;
    assert_ids!(sse.next_ids(3).await, [&e[3].id, &e[4].id, &live]);
    // All three: the header wins.
    let q = format!(
        "key=k&from={}&from_timestamp={}",
        enc(&e[0].id),
        enc(&e[0].time)
    );
    let mut sse = srv.sse_with(&q, &[("Last-Event-ID", &e[4].id)]).await;
    assert_ids!(sse.next_ids(1).await, [&live]);
}

#[tokio::test]
async fn from_timestamp_is_inclusive() {
    let srv = TestServer::start(&[]);
    let e = publish_spaced(&srv, "k", 4).await;
    let mut sse = srv
        .sse(&format!("key=k&from_timestamp={}", enc(&e[1].time)))
        .await;
    assert_ids!(sse.next_ids(3).await, [&e[1].id, &e[2].id, &e[3].id]);
    // One millisecond later excludes it.
    let later = format_time(parse_time(&e[1].time) + time::Duration::milliseconds(1));
    let mut sse = srv
        .sse(&format!("key=k&from_timestamp={}", enc(&later)))
        .await;
    assert_ids!(sse.next_ids(2).await, [&e[2].id, &e[3].id]);
    // So does one nanosecond later: event times are whole milliseconds,
    // and the event is before it.
    let just_after = e[1].time.replace('Z', "000001Z");
    let mut sse = srv
        .sse(&format!("key=k&from_timestamp={}", enc(&just_after)))
        .await;
    assert_ids!(sse.next_ids(2).await, [&e[2].id, &e[3].id]);
    // A time after every event: nothing replayed, live follows.
    let future = format_time(parse_time(&e[3].time) + time::Duration::hours(1));
    let mut sse = srv
        .sse(&format!("key=k&from_timestamp={}", enc(&future)))
        .await;
    let live = srv.publish("k", json!("live")).await.id;
    assert_ids!(sse.next_ids(1).await, [live]);
}

#[tokio::test]
async fn from_timestamp_accepts_offsets_and_plus_decoded_as_space() {
    let srv = TestServer::start(&[]);
    let e = publish_spaced(&srv, "k", 3).await;
    let t = parse_time(&e[1].time);
    let east = t.to_offset(time::UtcOffset::from_hms(1, 0, 0).unwrap());
    let west = t.to_offset(time::UtcOffset::from_hms(-5, 0, 0).unwrap());
    let fmt = |t: time::OffsetDateTime, sign: char, hh: u8| {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{sign}{hh:02}:00",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    };
    let plus = fmt(east, '+', 1);
    let minus = fmt(west, '-', 5);
    for query in [
        // A literal `+` in a query string decodes to a space.
        format!("key=k&from_timestamp={plus}"),
        format!("key=k&from_timestamp={}", enc(&plus)),
        format!("key=k&from_timestamp={}", enc(&minus)),
        format!("key=k&from_timestamp={}", enc(&e[1].time)),
    ] {
        let mut sse = srv.sse(&query).await;
        assert_ids!(sse.next_ids(2).await, [&e[1].id, &e[2].id]);
    }
    // Without fraction digits (RFC 3339 makes them optional): whole seconds.
    let whole = format!("{}Z", &e[1].time[..19]);
    let floor = parse_time(&whole);
    let want: Vec<&String> = e
        .iter()
        .filter(|p| parse_time(&p.time) >= floor)
        .map(|p| &p.id)
        .collect();
    let mut sse = srv
        .sse(&format!("key=k&from_timestamp={}", enc(&whole)))
        .await;
    assert_ids!(sse.next_ids(want.len()).await, want);
}

#[tokio::test]
async fn malformed_id_is_400_not_410() {
    let srv = TestServer::start(&[]);
    let e = srv.publish_n("k", 2).await;
    for bad in ["not-an-id", "-", "🙂", "1 2", "k"] {
        let resp = srv
            .get(&format!("/v1/events?key=k&from={}", enc(bad)))
            .send()
            .await
            .unwrap();
        assert_error!(resp, 400);
        let resp = srv
            .get(&format!("/v1/events/history?from={}", enc(bad)))
            .send()
            .await
            .unwrap();
        assert_error!(resp, 400);
        if bad.is_ascii() {
            let resp = srv
                .get("/v1/events?key=k")
                .header("Last-Event-ID", bad)
                .send()
                .await
                .unwrap();
            assert_error!(resp, 400);
        }
    }
    // The header is the resume point, so a malformed header is a 400 even
    // with a valid `from`.
    let resp = srv
        .get(&format!("/v1/events?key=k&from={}", enc(&e[0])))
        .header("Last-Event-ID", "not-an-id")
        .send()
        .await
        .unwrap();
    assert_error!(resp, 400);
}

/// A server with `--retention-events 5` and ten events: `e[0..5]` evicted.
async fn retained_five_of_ten() -> (TestServer, Vec<String>) {
    let srv = TestServer::start(&["--retention-events", "5"]);
    let e = srv.publish_n("k", 10).await;
    let stats = srv.stats().await;
    assert_eq!(stats["events"]["retained"], json!(5), "stats {stats}");
    assert_eq!(stats["events"]["evicted"], json!(5), "stats {stats}");
    assert_eq!(stats["events"]["oldest_id"], json!(e[5]), "stats {stats}");
    assert_eq!(stats["events"]["latest_id"], json!(e[9]), "stats {stats}");
    (srv, e)
}

#[tokio::test]
async fn newest_evicted_id_is_not_gone_but_one_older_is() {
    let (srv, e) = retained_five_of_ten().await;
    // The newest evicted id: everything after it is retained.
    let mut sse = srv.sse(&format!("key=k&from={}", enc(&e[4]))).await;
    assert_ids!(sse.next_ids(5).await, &e[5..]);
    let mut sse2 = srv.sse_with("key=k", &[("Last-Event-ID", &e[4])]).await;
    assert_ids!(sse2.next_ids(5).await, &e[5..]);
    let live = srv.publish("k", json!("live")).await.id;
    assert_ids!(sse.next_ids(1).await, [&live]);
    assert_ids!(sse2.next_ids(1).await, [&live]);
}

#[tokio::test]
async fn one_before_the_newest_evicted_id_is_410() {
    let (srv, e) = retained_five_of_ten().await;
    for old in [&e[3], &e[0]] {
        srv.assert_resume_gone("k", old).await;
        let resp = srv
            .get(&format!(
                "/v1/events?key=k&format=raw&on_gone=error&from={}",
                enc(old)
            ))
            .send()
            .await
            .unwrap();
        assert_error!(resp, 410);
    }
    // A malformed id is still a 400, not a 410, when events were evicted.
    for bad in ["not-an-id", "🙂"] {
        let resp = srv
            .get(&format!("/v1/events?key=k&from={}", enc(bad)))
            .send()
            .await
            .unwrap();
        assert_error!(resp, 400, ctx = "from={bad:?}");
    }
    // Gone even for a filter that no evicted event matched: the store
    // cannot tell.
    let resp = srv
        .get(&format!("/v1/events?key=never&from={}", enc(&e[3])))
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410);
}

#[tokio::test]
async fn from_timestamp_before_the_retained_window_is_410() {
    let srv = TestServer::start(&["--retention-events", "3"]);
    let e = publish_spaced(&srv, "k", 6).await;
    // e[0..3] evicted. A time at or before an evicted event is gone.
    for t in [&e[0].time, &e[2].time] {
        let resp = srv
            .get(&format!("/v1/events?key=k&from_timestamp={}", enc(t)))
            .send()
            .await
            .unwrap();
        assert_error!(resp, 410);
    }
    // The oldest retained event's time: every event at or after it is retained.
    let mut sse = srv
        .sse(&format!("key=k&from_timestamp={}", enc(&e[3].time)))
        .await;
    assert_ids!(sse.next_ids(3).await, [&e[3].id, &e[4].id, &e[5].id]);
}

#[tokio::test]
async fn from_timestamp_between_the_newest_evicted_and_the_oldest_retained_is_not_gone() {
    let srv = TestServer::start(&["--retention-events", "3"]);
    let e = publish_spaced(&srv, "k", 6).await;
    // After e[2] (evicted) and before e[3]: nothing after it was evicted.
    let between = format_time(parse_time(&e[2].time) + time::Duration::milliseconds(1));
    assert!(parse_time(&between) < parse_time(&e[3].time));
    let mut sse = srv
        .sse(&format!("key=k&from_timestamp={}", enc(&between)))
        .await;
    assert_ids!(sse.next_ids(3).await, [&e[3].id, &e[4].id, &e[5].id]);
}

#[tokio::test]
async fn on_gone_event_answers_200_with_a_gone_frame_then_goes_live() {
    let (srv, e) = retained_five_of_ten().await;
    // on_gone=event on a resume point that is not gone is an ordinary replay.
    let mut sse = srv
        .sse(&format!("key=k&on_gone=event&from={}", enc(&e[4])))
        .await;
    assert_ids!(sse.next_ids(5).await, &e[5..]);
    for by_header in [false, true] {
        let mut sse = if by_header {
            srv.sse_with("key=k&on_gone=event", &[("Last-Event-ID", &e[3])])
                .await
        } else {
            srv.sse(&format!("key=k&on_gone=event&from={}", enc(&e[0])))
                .await
        };
        // The gone frame comes first and carries the id to resume from:
        // no opening bookmark.
        let first = sse.next_frame().await.unwrap();
        assert_eq!(
            first.event.as_deref(),
            Some("gone"),
            "first frame {:?}",
            first.raw
        );
        let data = first.json();
        let obj = data
            .as_object()
            .unwrap_or_else(|| panic!("gone data {data}"));
        assert_eq!(obj.len(), 2, "gone data is {{code, message}}: {data}");
        assert_eq!(data["code"], json!("gone"), "gone data {data}");
        let message = data["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!(
                "events after {} are no longer retained",
                if by_header { &e[3] } else { &e[0] }
            )) && message.ends_with("; this stream goes on live"),
            "gone data {data}"
        );
        let live = srv.publish("k", json!("live")).await.id;
        let next = sse.next_event().await;
        assert_eq!(
            next.id.as_deref(),
            Some(live.as_str()),
            "after the gone frame the stream goes on live: {:?}",
            next.raw
        );
    }
}

/// Asserts that every way of resuming from `id` answers `410`.
async fn assert_resume_gone(srv: &TestServer, id: &str) {
    let resp = srv
        .get(&format!("/v1/events?key=k&from={}", enc(id)))
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410, ctx = "from={id}");
    let resp = srv
        .get("/v1/events?key=k")
        .header("Last-Event-ID", id)
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410, ctx = "Last-Event-ID: {id}");
    let resp = srv
        .get(&format!("/v1/events/history?from={}", enc(id)))
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410, ctx = "history from={id}");
}

/// What a restart loses depends on the store. Memory: the log goes with
/// the process, so an id from before a restart of the server is `410`.
/// Redis: the log outlives the server, so such an id resumes exactly; the
/// log is lost when Redis restarts empty, and then the old ids are `410`.
/// Either way, ids are never reused and keep increasing.
#[tokio::test]
async fn an_id_from_before_a_restart_is_410() {
    let srv = TestServer::start(&[]);
    let old = srv.publish_n("k", 3).await;
    let store = srv.store.clone();
    drop(srv);
    let srv = TestServer::start_on(store.clone(), &[]);
    let new = srv.publish("k", json!("new")).await.id;
    if store.log_survives_server_restart() {
        // The log is still there: resume and history go on exactly.
        let mut sse = srv.sse(&format!("key=k&from={}", enc(&old[0]))).await;
        assert_ids!(sse.next_ids(3).await, [&old[1], &old[2], &new]);
        let mut sse = srv
            .sse_with("key=k", &[("Last-Event-ID", old[2].as_str())])
            .await;
        assert_ids!(sse.next_ids(1).await, [&new]);
        assert_ids!(
            crate::support::page_ids(&srv.history(&format!("from={}", enc(&old[0]))).await),
            [&old[1], &old[2], &new]
        );
        // Its equivalent of "the log is gone": Redis restarted empty.
        let redis = store
            .redis_server()
            .expect("a store whose log survives the server is a Redis");
        redis.kill();
        redis.restart_empty();
        let mut all = old.clone();
        all.push(new.clone());
        for id in [&old[0], &old[2], &new] {
            assert_resume_gone(&srv, id).await;
        }
        let newer = srv.publish("k", json!("newer")).await.id;
        assert!(
            !all.contains(&newer),
            "id {newer} reused after Redis lost its data"
        );
        crate::support::assert_increasing(&[new.clone(), newer]);
    } else {
        for id in [&old[0], &old[2]] {
            assert_resume_gone(&srv, id).await;
        }
    }
    // Never reused: the new process's ids are new ones, and larger.
    assert!(!old.contains(&new), "id {new} reused after restart");
    crate::support::assert_increasing(&[old[2].clone(), new]);
}

#[tokio::test]
async fn concurrent_publishers_and_a_reconnecting_subscriber_see_every_event_once_in_order() {
    const TASKS: usize = 4;
    const PER_TASK: usize = 750;
    const TOTAL: usize = TASKS * PER_TASK;
    let srv = TestServer::start(&[]);
    let mut sse = srv.sse("prefix=load%2F").await;
    let mut publishers = Vec::new();
    for t in 0..TASKS {
        let http = srv.http.clone();
        let url = srv.url("/v1/events");
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                let body = json!({"key": format!("load/{t}"), "data": i}).to_string();
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 200);
                let v: serde_json::Value = resp.json().await.unwrap();
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut received: Vec<String> = Vec::with_capacity(TOTAL);
    // Disconnect and resume several times mid-flight.
    for round in 0..8 {
        let want = (180 + round * 70).min(TOTAL - received.len());
        received.extend(sse.next_ids(want).await);
        sse.close();
        let last = received.last().unwrap().clone();
        sse = srv
            .sse_with("prefix=load%2F", &[("Last-Event-ID", &last)])
            .await;
    }
    let rest = TOTAL - received.len();
    received.extend(sse.next_ids(rest).await);

    let mut published = Vec::new();
    for p in publishers {
        let ids = p.await.unwrap();
        crate::support::assert_increasing(&ids);
        published.extend(ids);
    }
    let log = srv.history_ids("prefix=load%2F").await;
    assert_eq!(log.len(), TOTAL);
    assert_ids!(received, log);
    let mut a = published.clone();
    let mut b = received.clone();
    a.sort();
    b.sort();
    assert!(a == b, "the received ids are not the published ids");
    // Nothing more arrives.
    let extra = srv.publish("load/x", json!("after")).await.id;
    assert_ids!(sse.next_ids(1).await, [extra]);
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_ended_without_a_gap_and_its_resume_is_410() {
    const EVENTS: usize = 20_000;
    const BATCH: usize = 500;
    let srv = TestServer::start(&["--retention-events", "1000"]);
    let pending = Pending::send(&srv.addr, "/v1/events?prefix=big", &[], Some(4096)).await;
    srv.wait_active(1).await;
    let payload = "x".repeat(1024);
    let mut published: Vec<String> = Vec::with_capacity(EVENTS);
    for b in 0..EVENTS / BATCH {
        let batch: Vec<serde_json::Value> = (0..BATCH)
            .map(|i| json!({"key": format!("big/{}", i % 7), "data": format!("{b}:{i}:{payload}")}))
            .collect();
        published.extend(srv.publish_batch(&batch).await.into_iter().map(|p| p.id));
    }
    // Now read what it got.
    let mut sse = pending.finish().await.expect_ok("never-reading subscriber");
    let (frames, end) = sse.read_to_end(Duration::from_secs(60)).await;
    let got = frame_ids(&frames);
    eprintln!(
        "never-reading subscriber: got {} of {EVENTS} events, then {end:?}",
        got.len()
    );
    assert!(
        !got.is_empty(),
        "the subscriber got nothing at all (ended {end:?})"
    );
    assert!(
        got.len() < EVENTS,
        "a subscriber that never read while {EVENTS} events passed a retention of 1000 must have lagged out, but got them all"
    );
    assert!(matches!(end, End::Clean | End::Truncated(_)), "end {end:?}");
    // No gap: exactly the first events, in order.
    assert_ids!(got, &published[..got.len()]);
    let last = got.last().unwrap();
    let resp = srv
        .get("/v1/events?prefix=big")
        .header("Last-Event-ID", last.as_str())
        .send()
        .await
        .unwrap();
    assert_error!(resp, 410);
    // The server is fine.
    let resp = srv.get("/healthz").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let _ = FRAME_TIMEOUT;
}
