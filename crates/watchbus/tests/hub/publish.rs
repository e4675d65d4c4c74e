//! Publishing and matching: keys, prefixes, the broadcast overlap rule,
//! type filters; ids, epochs and times.

use watchbus::{Data, Draft, EventId, Filter, Hub, ManualClock, MemoryStore, Retention, Timestamp};

use crate::support::*;

#[tokio::test]
async fn a_watcher_receives_the_events_of_its_key_only() {
    let hub = Hub::memory();
    let mut watch = hub.watch(key("orders/1")).await.unwrap();
    publish(&hub, "orders/1", "a").await;
    publish(&hub, "orders/10", "b").await;
    publish(&hub, "orders/", "c").await;
    publish(&hub, "orders/1", "d").await;
    assert_events!(watch, ["orders/1:a", "orders/1:d"]);
    assert_idle!(watch);
}

#[tokio::test]
async fn a_prefix_is_a_plain_string_prefix() {
    let hub = Hub::memory();
    let mut sub = hub.subscribe_prefix(prefix("foo")).await.unwrap();
    for to in ["foo", "fo", "foo1", "xfoo", "foo/bar", "Foo"] {
        publish(&hub, to, to).await;
    }
    assert_events!(sub, ["foo:foo", "foo1:foo1", "foo/bar:foo/bar"]);
    assert_idle!(sub);
}

#[tokio::test]
async fn a_subscription_without_keys_or_prefixes_receives_every_key() {
    let hub = Hub::memory();
    let mut all = subscribe(&hub, Filter::all(), None).await.unwrap();
    publish(&hub, "a", "1").await;
    broadcast(&hub, "b/", "2").await;
    publish(&hub, "c/d", "3").await;
    assert_events!(all, ["a:1", "b/*:2", "c/d:3"]);
}

#[tokio::test]
async fn a_broadcast_reaches_every_subscription_that_could_match_a_key_under_it() {
    let hub = Hub::memory();
    // An exact key under the broadcast prefix: reached.
    let mut exact_under = hub.watch(key("room/1")).await.unwrap();
    // An exact key equal to the prefix: reached (the key starts with it).
    let mut exact_equal = hub.watch(key("room/")).await.unwrap();
    // An exact key that the prefix extends: not reached.
    let mut exact_shorter = hub.watch(key("room")).await.unwrap();
    // A prefix that starts with the broadcast prefix (Q starts with P).
    let mut longer_prefix = hub.subscribe_prefix(prefix("room/1")).await.unwrap();
    // A prefix that the broadcast prefix starts with (P starts with Q).
    let mut shorter_prefix = hub.subscribe_prefix(prefix("ro")).await.unwrap();
    // A prefix beside it.
    let mut other_prefix = hub.subscribe_prefix(prefix("rooms")).await.unwrap();
    let mut all = subscribe(&hub, Filter::all(), None).await.unwrap();

    let event = broadcast(&hub, "room/", "closing").await;

    for sub in [
        &mut exact_under,
        &mut exact_equal,
        &mut longer_prefix,
        &mut shorter_prefix,
        &mut all,
    ] {
        assert_ids!(*sub, [event.id()]);
    }
    assert_idle!(exact_shorter);
    assert_idle!(other_prefix);
}

#[tokio::test]
async fn a_narrower_broadcast_skips_keys_it_does_not_cover() {
    let hub = Hub::memory();
    let mut room1 = hub.watch(key("room/1")).await.unwrap();
    let mut room12 = hub.watch(key("room/12")).await.unwrap();
    let mut prefix2 = hub.subscribe_prefix(prefix("room/2")).await.unwrap();
    let event = broadcast(&hub, "room/12", "x").await;
    assert_ids!(room12, [event.id()]);
    assert_idle!(room1);
    assert_idle!(prefix2);
}

#[tokio::test]
async fn a_type_filter_passes_only_the_named_types() {
    let hub = Hub::memory();
    let filter = Filter::keys([key("k")]).with_types([ty("user.created"), ty("user.deleted")]);
    let mut typed = subscribe(&hub, filter, None).await.unwrap();
    let mut untyped_filter = hub.watch(key("k")).await.unwrap();
    let created = publish_typed(&hub, "k", "user.created", "1").await;
    let updated = publish_typed(&hub, "k", "user.updated", "2").await;
    let plain = publish(&hub, "k", "3").await;
    let deleted = publish_typed(&hub, "k", "user.deleted", "4").await;
    publish_typed(&hub, "other", "user.created", "5").await;
    assert_ids!(typed, [created.id(), deleted.id()]);
    assert_idle!(typed);
    assert_ids!(
        untyped_filter,
        [created.id(), updated.id(), plain.id(), deleted.id()]
    );
}

#[tokio::test]
async fn an_untyped_event_matches_no_type_filter() {
    let hub = Hub::memory();
    let mut typed_all = subscribe(&hub, Filter::all().with_types([ty("a")]), None)
        .await
        .unwrap();
    publish(&hub, "k", "untyped").await;
    broadcast(&hub, "k", "untyped broadcast").await;
    assert_idle!(typed_all);
    let typed = publish_typed(&hub, "k", "a", "typed").await;
    assert_ids!(typed_all, [typed.id()]);
}

#[tokio::test]
async fn a_subscription_reached_through_several_keys_and_prefixes_receives_each_event_once() {
    let hub = Hub::memory();
    let filter = Filter::new(
        vec![key("a/b"), key("a/c")],
        vec![prefix("a/"), prefix("a"), prefix("a/b")],
        vec![],
        64,
    )
    .unwrap();
    let mut sub = subscribe(&hub, filter, None).await.unwrap();
    let e1 = publish(&hub, "a/b", "1").await;
    let e2 = broadcast(&hub, "a/", "2").await;
    let e3 = broadcast(&hub, "a", "3").await;
    let e4 = publish(&hub, "a/c", "4").await;
    assert_ids!(sub, [e1.id(), e2.id(), e3.id(), e4.id()]);
    assert_idle!(sub);
    assert_eq!(
        hub.metrics().deliveries,
        4,
        "one delivery per event, not per matching key"
    );
}

#[tokio::test]
async fn events_carry_what_was_published_and_the_clock_time() {
    let (hub, _clock) = clocked_hub(Retention::default());
    let mut all = subscribe(&hub, Filter::all(), None).await.unwrap();
    let published = hub
        .publish_one(
            Draft::to_key(key("users/1"), Data::from_json(r#"{"n": 1}"#).unwrap())
                .with_type(ty("user.created")),
        )
        .await
        .unwrap();
    let got = recv(&mut all).await.unwrap();
    assert_eq!(got.id(), published.id());
    assert_eq!(got.event_type(), Some(&ty("user.created")));
    assert_eq!(got.data().as_json(), r#"{"n":1}"#);
    assert_eq!(got.time(), T0);
    let envelope = std::str::from_utf8(got.envelope()).unwrap();
    assert_eq!(
        envelope,
        format!(
            r#"{{"id":"{}","key":"users/1","type":"user.created","time":"2027-01-15T08:00:00.000Z","data":{{"n":1}}}}"#,
            got.id()
        )
    );
}

#[tokio::test]
async fn ids_strictly_increase_in_the_order_events_were_accepted() {
    let hub = Hub::memory();
    let mut all = subscribe(&hub, Filter::all(), None).await.unwrap();
    let mut published = publish_n(&hub, "a", 5).await;
    let batch = hub
        .publish_all(vec![
            Draft::to_key(key("b"), Data::null()),
            Draft::to_prefix(prefix("c"), Data::null()),
            Draft::to_key(key("a"), Data::null()),
        ])
        .await
        .unwrap();
    published.extend(batch);
    published.extend(publish_n(&hub, "d", 3).await);
    let ids = ids(&published);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing: {ids:?}"
    );
    assert!(
        ids.iter().all(|id| id.epoch == ids[0].epoch),
        "one epoch per store life"
    );
    assert_ids!(all, ids.clone());
}

#[tokio::test]
async fn two_stores_have_different_epochs() {
    let older = Hub::memory();
    let newer = Hub::memory();
    let a = publish(&older, "k", "1").await;
    let b = publish(&newer, "k", "1").await;
    assert!(a.id().epoch < b.id().epoch, "{} vs {}", a.id(), b.id());
    assert_ne!(a.id(), b.id());
    // Also with the same manual clock time.
    let clock = ManualClock::new(T0);
    let s1 = Hub::new(MemoryStore::with_clock(
        Retention::default(),
        std::sync::Arc::new(clock.clone()),
    ));
    let s2 = Hub::new(MemoryStore::with_clock(
        Retention::default(),
        std::sync::Arc::new(clock),
    ));
    assert_ne!(epoch(&s1).await, epoch(&s2).await);
}

#[tokio::test]
async fn event_times_never_go_backwards_even_when_the_clock_does() {
    let (hub, clock) = clocked_hub(Retention::default());
    clock.set(Timestamp(T0.0 + 10_000));
    let first = publish(&hub, "k", "1").await;
    clock.set(T0);
    let second = publish(&hub, "k", "2").await;
    clock.set(Timestamp(T0.0 + 5_000));
    let third = publish(&hub, "k", "3").await;
    clock.set(Timestamp(T0.0 + 20_000));
    let fourth = publish(&hub, "k", "4").await;
    assert_eq!(first.time(), Timestamp(T0.0 + 10_000));
    assert_eq!(second.time(), first.time());
    assert_eq!(third.time(), first.time());
    assert_eq!(fourth.time(), Timestamp(T0.0 + 20_000));
    assert!(first.id() < second.id() && second.id() < third.id() && third.id() < fourth.id());
}

#[tokio::test]
async fn stats_count_publishes_and_subscribers() {
    let hub = hub_keeping(3);
    let a = hub.watch(key("a")).await.unwrap();
    let _b = hub.watch(key("b")).await.unwrap();
    let events = publish_n(&hub, "a", 5).await;
    drop(a);
    let stats = hub.stats().await.unwrap();
    assert_eq!(stats.subscribers_active, 1);
    assert_eq!(stats.subscribers_total, 2);
    assert_eq!(stats.log.published, 5);
    assert_eq!(stats.log.retained, 3);
    assert_eq!(stats.log.evicted, 2);
    assert_eq!(stats.log.oldest, Some(events[2].id()));
    assert_eq!(stats.log.latest, Some(events[4].id()));
    assert_eq!(hub.metrics().published_events, 5);
}

#[tokio::test]
async fn an_empty_store_has_no_oldest_or_latest_and_resolves_oldest_to_seq_zero() {
    let hub = Hub::memory();
    let stats = hub.stats().await.unwrap();
    assert_eq!(
        (stats.log.oldest, stats.log.latest, stats.log.published),
        (None, None, 0)
    );
    let oldest = hub
        .store()
        .resolve(watchbus::ResumePoint::Oldest)
        .await
        .unwrap();
    assert_eq!(oldest.seq, 0);
    let first = publish(&hub, "k", "1").await;
    assert_eq!(first.id(), EventId::new(oldest.epoch, 1));
}
