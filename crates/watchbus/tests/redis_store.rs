//! The Redis store against real `redis-server` processes: each test starts
//! its own on a free port (no persistence unless the test asks, its own
//! temp dir), killed on drop. Two stores on one Redis are two nodes.
//!
//! Without `redis-server` on PATH the tests print `SKIPPED` and pass,
//! unless `WATCHBUS_REQUIRE_REDIS=1`, which makes them fail.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use watchbus::{
    Appended, Data, Draft, Event, EventId, Filter, Hub, HubError, IdempotencyKey, Key, KeyPrefix,
    ManualClock, MemoryStore, Once, Receipt, RedisConfig, RedisStore, ResumePoint, Retention,
    Store, StoreError, StreamEnd, SubscribeRequest, Subscription, Timestamp,
};

// ---------------------------------------------------------------- harness

use watchbus_testkit::{Persistence, TestRedis, make_certs};

macro_rules! redis_or_skip {
    () => {
        redis_or_skip!(Persistence::None)
    };
    ($persistence:expr) => {
        match TestRedis::start($persistence) {
            Some(redis) => redis,
            None => return,
        }
    };
}

const WAIT: Duration = Duration::from_secs(15);

fn retention(max_events: usize) -> Retention {
    Retention {
        max_events,
        ..Retention::default()
    }
}

async fn node(redis: &TestRedis, retention: Retention) -> RedisStore {
    RedisStore::connect(&redis.url(), retention).await.unwrap()
}

/// Two servers' hubs on one Redis, with the default retention.
async fn two_nodes(redis: &TestRedis) -> (Hub, Hub) {
    let a = Hub::new(node(redis, Retention::default()).await);
    let b = Hub::new(node(redis, Retention::default()).await);
    (a, b)
}

/// Subscribes `hub` to key `k`, resuming after `after`.
async fn resume_after(hub: &Hub, k: &str, after: EventId) -> Subscription {
    let request = SubscribeRequest {
        filter: Filter::keys([key(k)]),
        from: Some(ResumePoint::After(after)),
        ..Default::default()
    };
    hub.subscribe(request).await.unwrap()
}

async fn node_with(config: RedisConfig) -> RedisStore {
    RedisStore::connect_with(config).await.unwrap()
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn prefix(p: &str) -> KeyPrefix {
    KeyPrefix::new(p).unwrap()
}

fn draft(k: &str, n: u64) -> Draft {
    Draft::to_key(key(k), Data::from_json(&n.to_string()).unwrap())
}

/// Publishes `1..=n` as JSON numbers to `k` through `hub`, in order.
async fn publish_numbers(hub: &Hub, k: &str, n: u64) -> Vec<Arc<Event>> {
    let mut published = Vec::new();
    for i in 1..=n {
        published.push(hub.publish_one(draft(k, i)).await.unwrap());
    }
    published
}

async fn recv(sub: &mut Subscription) -> Arc<Event> {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("no event in time")
        .expect("the stream ended")
}

/// Reads until the stream ends; returns why.
async fn end_of(sub: &mut Subscription) -> StreamEnd {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sub.recv())
            .await
            .expect("the stream did not end in time")
        {
            Ok(_) => continue,
            Err(end) => return end,
        }
    }
}

/// Nothing more arrives within a short while.
async fn assert_quiet(sub: &mut Subscription) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await {
        panic!("expected nothing more, got {got:?}");
    }
}

fn ids(events: &[Arc<Event>]) -> Vec<EventId> {
    events.iter().map(|e| e.id()).collect()
}

fn payloads(events: &[Arc<Event>]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.data().as_json().to_owned())
        .collect()
}

// ---------------------------------------------------------------- ids and order

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_come_from_redis_and_two_nodes_agree_on_ids_and_order() {
    let redis = redis_or_skip!();
    let a = node(&redis, Retention::default()).await;
    let b = node(&redis, Retention::default()).await;
    let from_a = a
        .append(vec![draft("k", 1), draft("k", 2), draft("k", 3)])
        .await
        .unwrap();
    let from_b = b.append(vec![draft("k", 4), draft("k", 5)]).await.unwrap();
    let epoch = from_a[0].id().epoch;
    assert!(epoch > 0);
    let all: Vec<EventId> = ids(&from_a).into_iter().chain(ids(&from_b)).collect();
    assert_eq!(
        all,
        (1..=5)
            .map(|seq| EventId::new(epoch, seq))
            .collect::<Vec<_>>(),
        "one sequence across both nodes"
    );
    for store in [&a, &b] {
        let page = store
            .read_after(EventId::new(epoch, 0), &Filter::all(), 100)
            .await
            .unwrap();
        assert_eq!(ids(&page.events), all);
        assert_eq!(payloads(&page.events), ["1", "2", "3", "4", "5"]);
        assert!(page.reached_head);
        assert_eq!(
            page.events[1].envelope(),
            from_a[1].envelope(),
            "the same event, byte for byte"
        );
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.published, stats.retained, stats.evicted), (5, 5, 0));
        assert_eq!((stats.oldest, stats.latest), (Some(all[0]), Some(all[4])));
        assert_eq!(stats.oldest_time, Some(page.events[0].time()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_after_pages_and_filters_like_the_memory_store() {
    let redis = redis_or_skip!();
    let store = node(&redis, Retention::default()).await;
    let drafts: Vec<Draft> = (1..=10)
        .map(|n| draft(if n % 2 == 0 { "even" } else { "odd" }, n))
        .collect();
    let events = store.append(drafts).await.unwrap();
    let epoch = events[0].id().epoch;
    let evens = Filter::keys([key("even")]);
    let first = store
        .read_after(EventId::new(epoch, 0), &evens, 2)
        .await
        .unwrap();
    assert_eq!(payloads(&first.events), ["2", "4"]);
    assert_eq!(first.through, EventId::new(epoch, 4));
    assert!(!first.reached_head);
    let second = store.read_after(first.through, &evens, 10).await.unwrap();
    assert_eq!(payloads(&second.events), ["6", "8", "10"]);
    assert!(second.reached_head);
    let at_head = store
        .read_after(EventId::new(epoch, 10), &evens, 10)
        .await
        .unwrap();
    assert!(at_head.events.is_empty() && at_head.reached_head);
    assert!(matches!(
        store.read_after(EventId::new(epoch, 11), &evens, 10).await,
        Err(StoreError::UnknownId(_))
    ));
    assert!(matches!(
        store
            .read_after(EventId::new(epoch + 1, 0), &evens, 10)
            .await,
        Err(StoreError::UnknownId(_))
    ));
}

// ---------------------------------------------------------------- live across nodes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_b_receives_what_a_publishes_exactly_once_in_order() {
    let redis = redis_or_skip!();
    let (a, b) = two_nodes(&redis).await;
    let mut on_b = b.watch(key("orders/1")).await.unwrap();
    let mut published = Vec::new();
    for n in 0..20 {
        published.push(
            a.publish(key("orders/1"), Data::from_json(&n.to_string()).unwrap())
                .await
                .unwrap(),
        );
        a.publish(key("orders/2"), Data::null()).await.unwrap();
    }
    let mut received = Vec::new();
    for _ in 0..20 {
        received.push(recv(&mut on_b).await);
    }
    assert_eq!(ids(&received), ids(&published));
    assert_eq!(payloads(&received), payloads(&published));
    assert_quiet(&mut on_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_still_publishes_and_its_streams_resume_on_another_without_loss() {
    let redis = redis_or_skip!();
    let (a, b) = two_nodes(&redis).await;
    let mut on_a = a.watch(key("k")).await.unwrap();
    let before = publish_numbers(&a, "k", 3).await;
    a.shutdown();
    // The log is shared: the other nodes' subscribers will read it.
    let after = a.publish(key("k"), Data::text("after")).await.unwrap();
    // A's stream hands out what its node had read from Redis (some prefix of
    // what was published before), in order, and then ends.
    let mut handed_out = Vec::new();
    let end = loop {
        match tokio::time::timeout(WAIT, on_a.recv()).await.unwrap() {
            Ok(event) => handed_out.push(event.id()),
            Err(end) => break end,
        }
    };
    assert_eq!(end, StreamEnd::Shutdown);
    assert_eq!(handed_out, ids(&before)[..handed_out.len()]);
    // Resumed on B from where A's stream stopped: the rest, and only it.
    let mut on_b = resume_after(&b, "k", on_a.position()).await;
    let mut rest = ids(&before)[handed_out.len()..].to_vec();
    rest.push(after.id());
    for expected in rest {
        assert_eq!(recv(&mut on_b).await.id(), expected);
    }
    assert_quiet(&mut on_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_b_with_an_id_from_a_replays_then_goes_live() {
    let redis = redis_or_skip!();
    let (a, b) = two_nodes(&redis).await;
    let published = publish_numbers(&a, "k", 5).await;
    let mut on_b = resume_after(&b, "k", published[1].id()).await;
    for expected in &published[2..] {
        assert_eq!(recv(&mut on_b).await.id(), expected.id());
    }
    let live = a.publish(key("k"), Data::text("live")).await.unwrap();
    assert_eq!(recv(&mut on_b).await.id(), live.id());
    assert_quiet(&mut on_b).await;
}

// ---------------------------------------------------------------- 410

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_on_b_for_an_id_evicted_through_a_and_the_edge_is_exact() {
    let redis = redis_or_skip!();
    let a = Hub::new(node(&redis, retention(3)).await);
    let b = Hub::new(node(&redis, retention(3)).await);
    let published = publish_numbers(&a, "k", 6).await;
    let id = |n: usize| published[n - 1].id();
    let store = b.store();
    // Evicted 1..=3: after 3 (the newest evicted) everything is retained.
    assert_eq!(
        store.resolve(ResumePoint::After(id(3))).await.unwrap(),
        id(3)
    );
    for gone in [id(1), id(2)] {
        match store.resolve(ResumePoint::After(gone)).await {
            Err(StoreError::Gone(g)) => {
                assert_eq!(g.from, ResumePoint::After(gone));
                assert_eq!(g.evicted_through, Some(id(3)));
            }
            other => panic!("expected gone for {gone}, got {other:?}"),
        }
    }
    assert_eq!(store.resolve(ResumePoint::Oldest).await.unwrap(), id(3));
    let page = b
        .history(&Filter::all(), Some(ResumePoint::After(id(3))), 10)
        .await
        .unwrap();
    assert_eq!(ids(&page.events), [id(4), id(5), id(6)]);
    let request = SubscribeRequest {
        from: Some(ResumePoint::After(id(2))),
        ..Default::default()
    };
    assert!(matches!(b.subscribe(request).await, Err(HubError::Gone(_))));
    let older_epoch = EventId::new(id(1).epoch - 1, 99);
    assert!(matches!(
        store.resolve(ResumePoint::After(older_epoch)).await,
        Err(StoreError::Gone(_))
    ));
    let never = EventId::new(id(1).epoch, 7);
    assert!(matches!(
        store.resolve(ResumePoint::After(never)).await,
        Err(StoreError::UnknownId(_))
    ));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.published, stats.retained, stats.evicted), (6, 3, 3));
    assert_eq!((stats.oldest, stats.latest), (Some(id(4)), Some(id(6))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_count_and_bytes_matches_the_memory_store() {
    let redis = redis_or_skip!();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    for (n, retention) in [
        Retention {
            max_events: 5,
            max_age: None,
            max_bytes: None,
            ..Retention::default()
        },
        Retention {
            max_events: 100,
            max_age: None,
            max_bytes: Some(400),
            ..Retention::default()
        },
        Retention {
            max_events: 4,
            max_age: None,
            max_bytes: Some(300),
            ..Retention::default()
        },
    ]
    .into_iter()
    .enumerate()
    {
        let config = RedisConfig::new(redis.url(), retention)
            .with_namespace(format!("bytes{n}"))
            .with_clock(Arc::new(clock.clone()));
        let redis_store = node_with(config).await;
        let memory = MemoryStore::with_clock(retention, Arc::new(clock.clone()));
        let mut seen = Vec::new();
        for round in 0u64..12 {
            let batch: Vec<Draft> = (0..(round % 3 + 1))
                .map(|i| {
                    Draft::to_key(
                        key("k"),
                        Data::text(&"x".repeat((round * 7 + i) as usize % 40)),
                    )
                })
                .collect();
            let from_redis = redis_store.append(batch.clone()).await.unwrap();
            let from_memory = memory.append(batch).await.unwrap();
            let sizes = |events: &[Arc<Event>]| {
                events
                    .iter()
                    .map(|e| (e.id().seq, e.retained_bytes()))
                    .collect::<Vec<_>>()
            };
            seen.push(sizes(&from_redis));
            assert_eq!(sizes(&from_redis), sizes(&from_memory));
            let (r, m) = (
                redis_store.stats().await.unwrap(),
                memory.stats().await.unwrap(),
            );
            let seqs = |s: watchbus::LogStats| {
                (
                    s.published,
                    s.retained,
                    s.evicted,
                    s.oldest.map(|i| i.seq),
                    s.latest.map(|i| i.seq),
                )
            };
            assert_eq!(
                seqs(r),
                seqs(m),
                "retention {retention:?} after round {round}"
            );
        }
        assert!(!seen.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_retention_is_exact_on_read() {
    let redis = redis_or_skip!();
    let clock = ManualClock::new(Timestamp(1_800_000_000_000));
    let retention = Retention {
        max_events: 100,
        max_age: Some(Duration::from_secs(10)),
        max_bytes: None,
        ..Retention::default()
    };
    let store =
        node_with(RedisConfig::new(redis.url(), retention).with_clock(Arc::new(clock.clone())))
            .await;
    let old = store
        .append(vec![draft("k", 1), draft("k", 2)])
        .await
        .unwrap();
    clock.advance(5_000);
    let newer = store.append(vec![draft("k", 3)]).await.unwrap();
    clock.advance(5_001);
    // The first two are now older than 10 s: a read sees them gone.
    assert!(matches!(
        store.resolve(ResumePoint::After(old[0].id())).await,
        Err(StoreError::Gone(_))
    ));
    assert_eq!(
        store
            .resolve(ResumePoint::After(old[1].id()))
            .await
            .unwrap(),
        old[1].id()
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.retained, stats.evicted, stats.oldest),
        (1, 2, Some(newer[0].id()))
    );
    // The oldest retained event's; once it ages out too, none.
    assert_eq!(stats.oldest_time, Some(newer[0].time()));
    assert_ne!(newer[0].time(), old[0].time());
    clock.advance(5_000);
    assert_eq!(store.stats().await.unwrap().oldest_time, None);
}

// ---------------------------------------------------------------- from_timestamp

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_timestamp_finds_the_first_event_at_or_after_the_time() {
    let redis = redis_or_skip!();
    let t0 = 1_800_000_000_000;
    let clock = ManualClock::new(Timestamp(t0));
    let store = node_with(
        RedisConfig::new(redis.url(), retention(100)).with_clock(Arc::new(clock.clone())),
    )
    .await;
    let e1 = store.append(vec![draft("k", 1)]).await.unwrap();
    clock.advance(1_000);
    let e23 = store
        .append(vec![draft("k", 2), draft("k", 3)])
        .await
        .unwrap();
    clock.advance(1_000);
    let e4 = store.append(vec![draft("k", 4)]).await.unwrap();
    assert_eq!(e23[0].time(), Timestamp(t0 + 1_000));
    let at = |ms: u64| ResumePoint::At(Timestamp(ms));
    assert_eq!(
        store.resolve(at(t0)).await.unwrap(),
        EventId::new(e1[0].id().epoch, 0)
    );
    assert_eq!(store.resolve(at(t0 + 1)).await.unwrap(), e1[0].id());
    assert_eq!(store.resolve(at(t0 + 1_000)).await.unwrap(), e1[0].id());
    assert_eq!(store.resolve(at(t0 + 1_500)).await.unwrap(), e23[1].id());
    assert_eq!(store.resolve(at(t0 + 2_000)).await.unwrap(), e23[1].id());
    assert_eq!(store.resolve(at(t0 + 9_000)).await.unwrap(), e4[0].id());
    assert_eq!(
        store.resolve(at(t0 - 1)).await.unwrap(),
        EventId::new(e1[0].id().epoch, 0),
        "a time before the log began replays everything retained"
    );
    // Times never go backwards, even when a node's clock does.
    clock.set(Timestamp(t0));
    let late = store.append(vec![draft("k", 5)]).await.unwrap();
    assert_eq!(late[0].time(), Timestamp(t0 + 2_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_timestamp_is_gone_when_an_event_at_or_after_it_was_evicted() {
    let redis = redis_or_skip!();
    let t0 = 1_800_000_000_000;
    let clock = ManualClock::new(Timestamp(t0));
    let store =
        node_with(RedisConfig::new(redis.url(), retention(2)).with_clock(Arc::new(clock.clone())))
            .await;
    for _ in 0..4 {
        store.append(vec![draft("k", 0)]).await.unwrap();
        clock.advance(1_000);
    }
    // Evicted the events at t0 and t0+1000.
    assert!(matches!(
        store.resolve(ResumePoint::At(Timestamp(t0 + 1_000))).await,
        Err(StoreError::Gone(_))
    ));
    let after = store
        .resolve(ResumePoint::At(Timestamp(t0 + 1_001)))
        .await
        .unwrap();
    assert_eq!(after.seq, 2);
}

// ---------------------------------------------------------------- reset

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_on_a_ends_streams_on_both_nodes_zeroes_stats_and_ids_keep_increasing() {
    let redis = redis_or_skip!();
    let (a, b) = two_nodes(&redis).await;
    let mut on_a = a.watch(key("k")).await.unwrap();
    let mut on_b = b.subscribe(SubscribeRequest::default()).await.unwrap();
    let before = a.publish(key("k"), Data::null()).await.unwrap();
    assert_eq!(recv(&mut on_b).await.id(), before.id());
    a.reset().await.unwrap();
    assert_eq!(end_of(&mut on_a).await, StreamEnd::Reset);
    assert_eq!(end_of(&mut on_b).await, StreamEnd::Reset);
    for hub in [&a, &b] {
        let stats = hub.stats().await.unwrap().log;
        assert_eq!(
            (
                stats.published,
                stats.retained,
                stats.evicted,
                stats.oldest,
                stats.latest
            ),
            (0, 0, 0, None, None)
        );
    }
    // The newest evicted id is the edge: resuming after it is fine.
    assert_eq!(
        b.store()
            .resolve(ResumePoint::After(before.id()))
            .await
            .unwrap(),
        before.id()
    );
    let mut again = b.watch(key("k")).await.unwrap();
    let after = a.publish(key("k"), Data::null()).await.unwrap();
    assert!(
        after.id() > before.id(),
        "ids keep increasing across a reset"
    );
    assert_eq!(recv(&mut again).await.id(), after.id());
    assert_eq!(b.stats().await.unwrap().log.published, 1);
}

// ---------------------------------------------------------------- faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_appends_quickly_and_ready_fails() {
    let redis = redis_or_skip!();
    let config = RedisConfig::new(redis.url(), Retention::default())
        .with_command_timeout(Duration::from_secs(1));
    let hub = Hub::new(node_with(config).await);
    hub.ready().await.unwrap();
    hub.publish(key("k"), Data::null()).await.unwrap();
    redis.kill();
    let started = Instant::now();
    let err = hub.publish(key("k"), Data::null()).await.unwrap_err();
    assert!(matches!(err, HubError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(hub.ready().await.is_err());
    assert!(matches!(
        hub.store().stats().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// A Redis at its `maxmemory` (with `noeviction`, as the docs advise)
/// refuses appends, but what it holds can still be read, streamed and
/// resumed, and a reset frees it. Retention by count alone never frees
/// room: nothing reaches the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_memory_refuses_appends_but_reads_and_reset_go_on() {
    let Some(redis) = TestRedis::start_with(
        Persistence::None,
        ["--maxmemory-policy", "noeviction"]
            .map(String::from)
            .to_vec(),
    ) else {
        return;
    };
    let hub = Hub::new(node(&redis, retention(100_000)).await);
    let mut live = hub.watch(key("k")).await.unwrap();
    let data = Data::text(&"x".repeat(10_000));
    let mut stored = Vec::new();
    for _ in 0..400 {
        stored.push(hub.publish(key("k"), data.clone()).await.unwrap());
    }
    // 4 MB of events, and room for 2 MB: Redis is over its limit, and stays
    // so whatever else it frees, until the log goes.
    redis_cli(&redis, &["CONFIG", "SET", "maxmemory", "2mb"]);
    let refusal = hub.publish(key("k"), data.clone()).await.unwrap_err();
    assert!(matches!(refusal, HubError::Unavailable(_)), "{refusal:?}");
    assert!(
        format!("{:?}", refusal).contains("OOM"),
        "says why: {refusal:?}"
    );
    // Reads go on: the totals, a page of history, a resume, the live stream.
    let log = hub.stats().await.unwrap().log;
    assert_eq!(
        (log.published, log.retained, log.latest),
        (
            stored.len() as u64,
            stored.len() as u64,
            stored.last().map(|e| e.id())
        )
    );
    let page = hub
        .history(&Filter::keys([key("k")]), None, 10_000)
        .await
        .unwrap();
    assert_eq!(ids(&page.events), ids(&stored));
    let mut resumed = resume_after(&hub, "k", stored[0].id()).await;
    for event in &stored[1..] {
        assert_eq!(recv(&mut resumed).await.id(), event.id());
    }
    for event in &stored {
        assert_eq!(recv(&mut live).await.id(), event.id());
    }
    hub.ready().await.unwrap();
    // A reset empties the log, and appends go on.
    hub.reset().await.unwrap();
    assert_eq!(end_of(&mut live).await, StreamEnd::Reset);
    let after = hub.publish(key("k"), data.clone()).await.unwrap();
    assert!(after.id() > stored.last().unwrap().id());
}

/// Publishes until Redis acknowledges.
async fn publish_retrying(hub: &Hub, k: &str, data: Data) -> Arc<Event> {
    publish_counting(hub, k, data, &AtomicU64::new(0)).await
}

/// Publishes until Redis acknowledges, counting the refusals.
async fn publish_counting(hub: &Hub, k: &str, data: Data, refused: &AtomicU64) -> Arc<Event> {
    let deadline = Instant::now() + WAIT;
    loop {
        match hub.publish(key(k), data.clone()).await {
            Ok(event) => return event,
            Err(HubError::Unavailable(_)) if Instant::now() < deadline => {
                refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("publish failed: {err:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_begins_a_new_epoch_ends_streams_and_old_ids_are_gone() {
    let redis = redis_or_skip!();
    let (a, b) = two_nodes(&redis).await;
    let mut on_a = a.watch(key("k")).await.unwrap();
    let mut on_b = b.watch(key("k")).await.unwrap();
    let old = a.publish(key("k"), Data::null()).await.unwrap();
    assert_eq!(recv(&mut on_b).await.id(), old.id());
    redis.kill();
    redis.restart();
    assert_eq!(end_of(&mut on_a).await, StreamEnd::Reset);
    assert_eq!(end_of(&mut on_b).await, StreamEnd::Reset);
    let new = publish_retrying(&a, "k", Data::null()).await;
    assert!(
        new.id().epoch > old.id().epoch,
        "{} then {}",
        old.id(),
        new.id()
    );
    assert_eq!(new.id().seq, 1);
    for hub in [&a, &b] {
        match hub.store().resolve(ResumePoint::After(old.id())).await {
            Err(StoreError::Gone(_)) => {}
            other => panic!("expected gone, got {other:?}"),
        }
    }
    // New subscribers go on in the new epoch.
    let mut again = b.watch(key("k")).await.unwrap();
    let newer = a.publish(key("k"), Data::null()).await.unwrap();
    assert_eq!(recv(&mut again).await.id(), newer.id());
}

/// Runs `redis-cli` against `redis`, for tests that change Redis behind the
/// store's back.
fn redis_cli(redis: &TestRedis, args: &[&str]) {
    let status = Command::new("redis-cli")
        .arg("-p")
        .arg(redis.port.to_string())
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli runs");
    assert!(status.success(), "redis-cli {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rolled_back_behind_what_nodes_saw_begins_a_new_epoch_instead_of_reusing_ids() {
    // A Redis restored from an older backup, or a replica that lagged: the
    // same epoch, a lower head. Handing out seq 4 again would give a seen
    // id to another event, and subscribers would silently skip it.
    let redis = redis_or_skip!();
    let (a, b) = two_nodes(&redis).await;
    let mut on_b = b.watch(key("k")).await.unwrap();
    let mut seen = Vec::new();
    for n in 1..=6 {
        seen.push(
            a.publish(key("k"), Data::text(&n.to_string()))
                .await
                .unwrap(),
        );
    }
    for event in &seen {
        assert_eq!(recv(&mut on_b).await.id(), event.id());
    }
    // Roll the log back to seq 3, as a restore would leave it.
    redis_cli(
        &redis,
        &[
            "HSET",
            "{watchbus}:meta",
            "head",
            "3",
            "published",
            "3",
            "last_time",
            "0",
        ],
    );
    redis_cli(&redis, &["XDEL", "{watchbus}:log", "4-0", "5-0", "6-0"]);
    let next = a.publish(key("k"), Data::text("7")).await.unwrap();
    let old = seen[5].id();
    assert!(next.id().epoch > old.epoch, "{} after {old}", next.id());
    assert_eq!(next.id().seq, 1);
    // Every open stream ends; a resume from a seen id is gone on both nodes.
    assert_eq!(end_of(&mut on_b).await, StreamEnd::Reset);
    for hub in [&a, &b] {
        match hub.store().resolve(ResumePoint::After(old)).await {
            Err(StoreError::Gone(_)) => {}
            other => panic!("expected gone, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_its_data_mid_stream_loses_nothing_acknowledged() {
    let redis = redis_or_skip!(Persistence::Aof);
    let (a, b) = two_nodes(&redis).await;
    let mut on_b = b.watch(key("k")).await.unwrap();
    let refused = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (a, refused) = (a.clone(), Arc::clone(&refused));
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..60u64 {
                acknowledged.push(
                    publish_counting(&a, "k", Data::from_json(&n.to_string()).unwrap(), &refused)
                        .await
                        .id(),
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    let acknowledged = tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .unwrap()
        .unwrap();
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the publisher never saw Redis down: the test did not test"
    );
    let last = *acknowledged.last().unwrap();
    let mut received = Vec::new();
    while received.last().is_none_or(|id| *id < last) {
        received.push(recv(&mut on_b).await.id());
    }
    let epoch = received[0].epoch;
    assert!(
        received.iter().all(|id| id.epoch == epoch),
        "no new epoch: the data survived"
    );
    for pair in received.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "no gap: {received:?}");
    }
    for id in &acknowledged {
        assert!(received.contains(id), "acknowledged {id} was not received");
    }
}

/// Kills the connection of every node's reader (the clients blocked in
/// `XREAD`); they reconnect after their backoff.
fn kill_readers(redis: &TestRedis) {
    let port = redis.port.to_string();
    let list = Command::new("redis-cli")
        .args(["-p", &port, "CLIENT", "LIST"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|line| line.contains("cmd=xread"))
    {
        let id = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("id="))
            .unwrap();
        Command::new("redis-cli")
            .args(["-p", &port, "CLIENT", "KILL", "ID", id])
            .output()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_falls_behind_retention_ends_its_streams_instead_of_skipping() {
    let redis = redis_or_skip!();
    let a = Hub::new(node(&redis, retention(3)).await);
    let b = Hub::new(node(&redis, retention(3)).await);
    let mut on_b = b.watch(key("k")).await.unwrap();
    let first = a.publish(key("k"), Data::null()).await.unwrap();
    assert_eq!(recv(&mut on_b).await.id(), first.id());
    // B's reader is cut off for its backoff while A goes 20 events on.
    kill_readers(&redis);
    let mut last = first.id();
    for _ in 0..20 {
        last = a.publish(key("k"), Data::null()).await.unwrap().id();
    }
    // Whatever B's subscriber gets, it never skips an event in silence:
    // consecutive seqs, then (after the hole) the end of its stream.
    let mut previous = first.id();
    let ended = loop {
        match tokio::time::timeout(WAIT, on_b.recv())
            .await
            .expect("neither an event nor the end")
        {
            Ok(event) => {
                assert_eq!(
                    event.id().seq,
                    previous.seq + 1,
                    "a silent gap after {previous}"
                );
                previous = event.id();
                if previous == last {
                    break None;
                }
            }
            Err(end) => break Some(end),
        }
    };
    // Reset when B's reader found the hole, Lagged when it caught up in
    // bursts faster than the subscriber read: either way the stream ends.
    assert!(
        matches!(ended, Some(StreamEnd::Reset | StreamEnd::Lagged)),
        "B fell 20 events behind a retention of 3, yet {ended:?}"
    );
    // Resuming from where it stood is the 410 path.
    assert!(matches!(
        b.store().resolve(ResumePoint::After(previous)).await,
        Err(StoreError::Gone(_))
    ));
    // And B goes on live, once its reader has caught up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = b.watch(key("k")).await.unwrap();
    let next = a.publish(key("k"), Data::null()).await.unwrap();
    assert_eq!(recv(&mut again).await.id(), next.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_in_the_url() {
    // Only this test makes certificates: the process id is unique enough.
    let certs = std::env::temp_dir().join(format!("watchbus-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    let Some(ca) = make_certs(&certs) else { return };
    let extra = vec!["--requirepass".into(), "s3cret".into()];
    let Some(redis) = TestRedis::start_tls(Persistence::None, &certs, extra) else {
        return;
    };
    let tls_port = redis.tls_port.unwrap();
    let url = format!("rediss://:s3cret@localhost:{tls_port}");
    let store =
        node_with(RedisConfig::new(url.clone(), Retention::default()).with_tls_root_ca(ca.clone()))
            .await;
    let hub = Hub::new(store);
    let mut watch = hub.watch(key("k")).await.unwrap();
    let event = hub.publish(key("k"), Data::text("over tls")).await.unwrap();
    assert_eq!(recv(&mut watch).await.id(), event.id());
    hub.ready().await.unwrap();
    // A wrong password, or a server the client does not trust, is refused.
    let wrong = RedisConfig::new(
        format!("rediss://:wrong@localhost:{tls_port}"),
        Retention::default(),
    )
    .with_tls_root_ca(ca);
    assert!(matches!(
        RedisStore::connect_with(wrong).await,
        Err(StoreError::Unavailable(_))
    ));
    let untrusted =
        RedisConfig::new(url, Retention::default()).with_command_timeout(Duration::from_secs(1));
    assert!(RedisStore::connect_with(untrusted).await.is_err());
    drop(redis);
    let _ = std::fs::remove_dir_all(&certs);
}

// ---------------------------------------------------------------- concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_both_nodes_every_subscriber_sees_every_event_once_in_order() {
    let redis = redis_or_skip!();
    let (a, b) = two_nodes(&redis).await;
    let mut subscribers = Vec::new();
    for hub in [&a, &b] {
        subscribers.push(hub.subscribe_prefix(prefix("room/")).await.unwrap());
        subscribers.push(hub.subscribe(SubscribeRequest::default()).await.unwrap());
    }
    let mut publishers = Vec::new();
    for (i, hub) in [&a, &a, &b, &b].into_iter().enumerate() {
        let hub = hub.clone();
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..50 {
                let k = key(&format!("room/{i}"));
                if n % 10 == 9 {
                    let drafts = vec![
                        Draft::to_key(k.clone(), Data::null()),
                        Draft::to_key(k, Data::null()),
                    ];
                    ids.extend(
                        hub.publish_all(drafts)
                            .await
                            .unwrap()
                            .iter()
                            .map(|e| e.id()),
                    );
                } else {
                    ids.push(hub.publish(k, Data::null()).await.unwrap().id());
                }
            }
            ids
        }));
    }
    let mut acknowledged = Vec::new();
    for publisher in publishers {
        acknowledged.extend(publisher.await.unwrap());
    }
    acknowledged.sort();
    assert_eq!(acknowledged.len(), 4 * 55);
    for sub in &mut subscribers {
        let mut received = Vec::new();
        while received.len() < acknowledged.len() {
            received.push(recv(sub).await.id());
        }
        assert_eq!(received, acknowledged, "every event once, in id order");
        assert_quiet(sub).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_keep_hubs_on_one_redis_apart() {
    let redis = redis_or_skip!();
    let one = Hub::new(
        node_with(RedisConfig::new(redis.url(), Retention::default()).with_namespace("one")).await,
    );
    let two = Hub::new(
        node_with(RedisConfig::new(redis.url(), Retention::default()).with_namespace("two")).await,
    );
    let mut on_two = two.watch(key("k")).await.unwrap();
    one.publish(key("k"), Data::text("for one")).await.unwrap();
    let mine = two.publish(key("k"), Data::text("for two")).await.unwrap();
    assert_eq!(recv(&mut on_two).await.id(), mine.id());
    assert_eq!(one.stats().await.unwrap().log.published, 1);
    assert_eq!(two.stats().await.unwrap().log.published, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resp3_connection_works_the_same() {
    let redis = redis_or_skip!();
    let url = format!("{}/0?protocol=resp3", redis.url());
    let a = Hub::new(RedisStore::connect(&url, retention(2)).await.unwrap());
    let b = Hub::new(node(&redis, retention(2)).await);
    let mut on_a = a.watch(key("k")).await.unwrap();
    let mut published = Vec::new();
    for n in 0..4 {
        let event = b
            .publish(key("k"), Data::from_json(&n.to_string()).unwrap())
            .await
            .unwrap();
        assert_eq!(recv(&mut on_a).await.id(), event.id());
        published.push(event);
    }
    let page = a.history(&Filter::all(), None, 10).await.unwrap();
    assert_eq!(ids(&page.events), ids(&published[2..]));
}

// ---------------------------------------------------------------- the seed's test

/// The Go seed's Redis test, translated: watch a key, subscribe to a
/// prefix, publish, publish to the prefix, unwatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prefix_subscribe_publish_prefix_publish_unwatch() {
    let redis = redis_or_skip!();
    let hub = Hub::new(node(&redis, Retention::default()).await);
    let mut watch = hub.watch(key("users/1")).await.unwrap();
    let mut users = hub.subscribe_prefix(prefix("users/")).await.unwrap();

    let published = hub
        .publish(key("users/1"), Data::text("hello"))
        .await
        .unwrap();
    for sub in [&mut watch, &mut users] {
        let got = recv(sub).await;
        assert_eq!(got.id(), published.id());
        assert_eq!(got.data().as_json(), r#""hello""#);
    }

    let broadcast = hub
        .broadcast(prefix("users/"), Data::text("to everyone"))
        .await
        .unwrap();
    for sub in [&mut watch, &mut users] {
        let got = recv(sub).await;
        assert_eq!(got.id(), broadcast.id());
        assert_eq!(got.target().as_str(), "users/");
    }

    assert_eq!(hub.stats().await.unwrap().subscribers_active, 2);
    drop(watch);
    assert_eq!(hub.stats().await.unwrap().subscribers_active, 1);
    let other = hub.publish(key("users/2"), Data::null()).await.unwrap();
    assert_eq!(recv(&mut users).await.id(), other.id());
    assert_quiet(&mut users).await;
}

// ---------------------------------------------------------------- idempotency keys

fn once(name: &str, drafts: &[Draft]) -> Once {
    Once::new(IdempotencyKey::new(name).unwrap(), drafts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_stores_once_across_nodes_and_is_refused_for_another_request() {
    let redis = redis_or_skip!();
    let (a, b) = two_nodes(&redis).await;
    let mut on_b = b.watch(key("orders/1")).await.unwrap();
    let batch = vec![draft("orders/1", 1), draft("orders/1", 2)];
    let request = once("req-1", &batch);

    let Appended::Stored(events) = a.publish_all_once(&request, batch.clone()).await.unwrap()
    else {
        panic!("the first append was not stored");
    };
    // The retry reaches the other node: answered, not stored.
    let retried = b.publish_all_once(&request, batch.clone()).await.unwrap();
    let Appended::Replayed(receipts) = &retried else {
        panic!("the retry on b was stored again");
    };
    assert_eq!(
        receipts,
        &[
            Receipt {
                id: events[0].id(),
                time: events[0].time()
            },
            Receipt {
                id: events[1].id(),
                time: events[1].time()
            },
        ]
    );

    // The same key for another request is refused on either node.
    let other = vec![draft("orders/1", 3)];
    for hub in [&a, &b] {
        match hub
            .publish_all_once(&once("req-1", &other), other.clone())
            .await
        {
            Err(HubError::KeyReused(key)) => assert_eq!(key.as_str(), "req-1"),
            answer => panic!("expected KeyReused, got {answer:?}"),
        }
    }

    let received = [recv(&mut on_b).await, recv(&mut on_b).await];
    assert_eq!(ids(&received), ids(&events));
    assert_quiet(&mut on_b).await;
    assert_eq!(a.stats().await.unwrap().log.published, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_forgotten_after_its_window() {
    let redis = redis_or_skip!();
    let hub = Hub::new(
        node(
            &redis,
            Retention {
                idempotency_window: Duration::from_millis(300),
                ..Retention::default()
            },
        )
        .await,
    );
    let batch = vec![draft("k", 1)];
    let request = once("short", &batch);
    let first = hub.publish_all_once(&request, batch.clone()).await.unwrap();
    assert!(matches!(first, Appended::Stored(_)));
    let deadline = Instant::now() + WAIT;
    loop {
        match hub.publish_all_once(&request, batch.clone()).await.unwrap() {
            Appended::Replayed(receipts) => assert_eq!(receipts, first.receipts()),
            Appended::Stored(events) => {
                assert_eq!(events[0].id().seq, first.receipts()[0].id.seq + 1);
                break;
            }
        }
        assert!(Instant::now() < deadline, "the key was never forgotten");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.stats().await.unwrap().log.published, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_timed_out_after_redis_stored_it_is_answered_on_retry_not_stored_twice() {
    let redis = redis_or_skip!();
    let mut config = RedisConfig::new(redis.url(), Retention::default());
    config.command_timeout = Duration::from_millis(200);
    let hub = Hub::new(node_with(config).await);
    // Redis then knows the append script: a script it must first load
    // could not run while the node waits.
    hub.publish_one(draft("k", 0)).await.unwrap();
    let batch = vec![draft("k", 1)];
    let request = once("slow", &batch);
    // Redis holds every write for a second: the append runs after the node
    // stopped waiting for its answer, the case where a publisher cannot
    // tell whether it was stored.
    redis_cli(&redis, &["CLIENT", "PAUSE", "1000", "WRITE"]);
    match hub.publish_all_once(&request, batch.clone()).await {
        Err(HubError::Unavailable(_)) => {}
        answer => panic!("expected a timeout, got {answer:?}"),
    }
    let deadline = Instant::now() + WAIT;
    let receipts = loop {
        match hub.publish_all_once(&request, batch.clone()).await {
            Ok(Appended::Replayed(receipts)) => break receipts,
            Ok(Appended::Stored(events)) => panic!("stored again: {:?}", ids(&events)),
            Err(HubError::Unavailable(_)) => {}
            Err(err) => panic!("{err}"),
        }
        assert!(Instant::now() < deadline, "never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = hub.stats().await.unwrap().log;
    assert_eq!(log.published, 2);
    assert_eq!(receipts.first().map(|r| r.id), log.latest);
}

/// The client's error is reachable through watchbus's own path, so an
/// application can match on its kind without depending on `redis` itself.
#[test]
fn the_redis_error_kind_is_reachable_through_watchbus() {
    use watchbus::store::redis::redis::{ErrorKind, RedisError};
    let refused = watchbus::RedisStoreError::from(RedisError::from((
        ErrorKind::AuthenticationFailed,
        "wrong password",
    )));
    let watchbus::RedisStoreError::Redis(inner) = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(inner.kind(), ErrorKind::AuthenticationFailed);
}
