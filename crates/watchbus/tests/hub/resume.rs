//! Resume: after an id (exclusive), at a time (inclusive), from the oldest;
//! replay then live with no seam; the exact 410 edge; retention by count,
//! age and bytes.

use std::time::Duration;

use watchbus::{Data, EventId, Filter, Hub, MemoryStore, ResumePoint, Retention, Timestamp};

use crate::support::*;

#[tokio::test]
async fn resume_after_an_id_is_exclusive() {
    let hub = Hub::memory();
    let events = publish_n(&hub, "k", 5).await;
    let mut sub = resume_after(&hub, Filter::keys([key("k")]), events[1].id())
        .await
        .unwrap();
    assert_ids!(sub, ids(&events[2..]));
    assert_idle!(sub);
    assert_eq!(sub.position(), events[4].id());
}

#[tokio::test]
async fn resume_at_a_time_is_inclusive() {
    let (hub, clock) = clocked_hub(Retention::default());
    let at_t0 = publish(&hub, "k", "t0").await;
    clock.advance(1_000);
    let first_at_1s = publish(&hub, "k", "1s-a").await;
    let second_at_1s = publish(&hub, "k", "1s-b").await;
    clock.advance(1_000);
    let at_2s = publish(&hub, "k", "2s").await;

    let mut from_1s = subscribe(
        &hub,
        Filter::keys([key("k")]),
        Some(ResumePoint::At(Timestamp(T0.0 + 1_000))),
    )
    .await
    .unwrap();
    assert_ids!(from_1s, [first_at_1s.id(), second_at_1s.id(), at_2s.id()]);
    assert_idle!(from_1s);

    let mut from_just_after_t0 = subscribe(
        &hub,
        Filter::keys([key("k")]),
        Some(ResumePoint::At(Timestamp(T0.0 + 1))),
    )
    .await
    .unwrap();
    assert_ids!(
        from_just_after_t0,
        [first_at_1s.id(), second_at_1s.id(), at_2s.id()]
    );

    let mut from_t0 = subscribe(&hub, Filter::keys([key("k")]), Some(ResumePoint::At(T0)))
        .await
        .unwrap();
    assert_ids!(
        from_t0,
        [at_t0.id(), first_at_1s.id(), second_at_1s.id(), at_2s.id()]
    );

    // A time after every event: nothing to replay, then live.
    let mut from_later = subscribe(
        &hub,
        Filter::keys([key("k")]),
        Some(ResumePoint::At(Timestamp(T0.0 + 5_000))),
    )
    .await
    .unwrap();
    assert_idle!(from_later);
    clock.advance(10_000);
    let live = publish(&hub, "k", "live").await;
    assert_ids!(from_later, [live.id()]);
}

#[tokio::test]
async fn resume_from_oldest_replays_everything_retained() {
    let hub = hub_keeping(3);
    let events = publish_n(&hub, "k", 5).await;
    let mut sub = subscribe(&hub, Filter::all(), Some(ResumePoint::Oldest))
        .await
        .unwrap();
    assert_ids!(sub, ids(&events[2..]));
    assert_idle!(sub);
}

#[tokio::test]
async fn the_replay_is_filtered_like_live_events() {
    let hub = Hub::memory();
    let start = publish(&hub, "x", "start").await;
    let a1 = publish_typed(&hub, "a/1", "t", "1").await;
    publish_typed(&hub, "a/2", "u", "2").await;
    publish(&hub, "a/3", "untyped").await;
    broadcast(&hub, "a", "untyped broadcast").await;
    publish_typed(&hub, "b", "t", "4").await;
    let b_typed = hub
        .publish_one(watchbus::Draft::to_prefix(prefix("a/"), Data::null()).with_type(ty("t")))
        .await
        .unwrap();
    let filter = Filter::prefixes([prefix("a/")]).with_types([ty("t")]);
    let mut sub = resume_after(&hub, filter.clone(), start.id())
        .await
        .unwrap();
    assert_ids!(sub, [a1.id(), b_typed.id()]);
    assert_idle!(sub);
    // History answers the same question.
    let page = hub
        .history(&filter, Some(ResumePoint::After(start.id())), 100)
        .await
        .unwrap();
    assert_eq!(ids(&page.events), [a1.id(), b_typed.id()]);
    assert!(page.reached_head);
}

#[tokio::test]
async fn replay_then_live_has_no_gap_and_no_duplicate_at_the_seam() {
    let hub = Hub::memory();
    let before = publish_n(&hub, "k", 4).await;
    let mut sub = resume_after(&hub, Filter::keys([key("k")]), before[0].id())
        .await
        .unwrap();
    // Published after the subscription registered but before its replay
    // read the log: both the replay and the live mailbox see them.
    let between = publish_n(&hub, "k", 3).await;
    let first = recv(&mut sub).await.unwrap();
    assert_eq!(first.id(), before[1].id());
    // Published while the replay is being handed out.
    let during = publish_n(&hub, "k", 3).await;
    let mut want = ids(&before[2..]);
    want.extend(ids(&between));
    want.extend(ids(&during));
    assert_ids!(sub, want);
    assert_idle!(sub);
    let after = publish(&hub, "k", "after").await;
    assert_ids!(sub, [after.id()]);
}

/// Several replay pages, while another task publishes between our reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_published_during_a_long_replay_arrive_once_in_order() {
    let hub = Hub::memory();
    let mut expected = Vec::new();
    for i in 0..1_600 {
        let event = publish(&hub, if i % 3 == 0 { "other" } else { "k" }, &i.to_string()).await;
        if i % 3 != 0 {
            expected.push(event.id());
        }
    }
    let mut sub = subscribe(&hub, Filter::keys([key("k")]), Some(ResumePoint::Oldest))
        .await
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..1_000 {
                let event = publish(&hub, if i % 2 == 0 { "k" } else { "other" }, "live").await;
                if i % 2 == 0 {
                    mine.push(event.id());
                }
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            mine
        })
    };
    let mut got = Vec::new();
    let mut batch = Vec::new();
    while got.len() < expected.len() + 500 {
        batch.clear();
        tokio::time::timeout(HANG, sub.recv_batch(&mut batch, 37))
            .await
            .expect("hung")
            .unwrap();
        got.extend(batch.iter().map(|e| e.id()));
    }
    expected.extend(publisher.await.unwrap());
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "first difference at {:?}",
        got.iter().zip(&expected).position(|(a, b)| a != b)
    );
    assert_idle!(sub);
}

/// A store whose replay read is slow: live events pile up meanwhile.
#[tokio::test]
async fn live_events_published_while_the_replay_read_is_pending_arrive_once() {
    for gated in [Gated::ReadSnapshotFirst, Gated::ReadAfterGate] {
        let (hub, gate) = GatedStore::hub(Retention::default(), gated);
        let before = publish_n(&hub, "k", 3).await;
        let mut sub = resume_after(&hub, Filter::keys([key("k")]), before[0].id())
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let got = recv_n(&mut sub, 6).await;
            (sub, got)
        });
        gate.wait_entered(1).await;
        let during = publish_n(&hub, "k", 4).await;
        gate.open();
        let (mut sub, got) = reader.await.unwrap();
        let mut want = ids(&before[1..]);
        want.extend(ids(&during));
        assert_eq!(ids(&got), want, "{gated:?}");
        assert_idle!(sub);
    }
}

#[tokio::test]
async fn the_newest_evicted_id_is_not_gone_and_one_older_is() {
    let hub = hub_keeping(3);
    let events = publish_n(&hub, "k", 5).await; // retains 3..=5, evicted through 2
    let edge = events[1].id();
    let mut at_edge = resume_after(&hub, Filter::keys([key("k")]), edge)
        .await
        .unwrap();
    assert_ids!(at_edge, ids(&events[2..]));
    assert_idle!(at_edge);

    let gone = assert_gone!(resume_after(&hub, Filter::keys([key("k")]), events[0].id()).await);
    assert_eq!(gone.evicted_through, Some(edge));
    assert_eq!(gone.from, ResumePoint::After(events[0].id()));
    // Seq 0 of this epoch ("before the first event") is gone too.
    assert_gone!(resume_after(&hub, Filter::all(), EventId::new(edge.epoch, 0)).await);
    // The filter does not matter: the events after the point were evicted,
    // whatever their keys.
    assert_gone!(resume_after(&hub, Filter::keys([key("never-published")]), events[0].id()).await);
    // History applies the same rule.
    assert!(matches!(
        hub.history(&Filter::all(), Some(ResumePoint::After(events[0].id())), 10)
            .await,
        Err(watchbus::HubError::Gone(_))
    ));
    assert_eq!(
        ids(&hub
            .history(&Filter::all(), Some(ResumePoint::After(edge)), 10)
            .await
            .unwrap()
            .events),
        ids(&events[2..])
    );
}

#[tokio::test]
async fn an_id_from_an_older_store_is_gone() {
    let older = Hub::memory();
    let old_id = publish(&older, "k", "old").await.id();
    let hub = Hub::memory(); // a "restart": a newer epoch, nothing evicted
    publish_n(&hub, "k", 3).await;
    let gone = assert_gone!(resume_after(&hub, Filter::all(), old_id).await);
    assert_eq!(gone.evicted_through, None);
    // Even an older-epoch id with a seq far beyond this store's head.
    assert_gone!(resume_after(&hub, Filter::all(), EventId::new(old_id.epoch, 1_000_000)).await);
}

#[tokio::test]
async fn an_id_beyond_the_head_or_of_a_newer_epoch_is_unknown() {
    let hub = hub_keeping(3);
    let events = publish_n(&hub, "k", 5).await;
    let head = events[4].id();
    let beyond = EventId::new(head.epoch, head.seq + 1);
    assert_unknown_id!(resume_after(&hub, Filter::all(), beyond).await, beyond);
    let newer = EventId::new(head.epoch + 1, 1);
    assert_unknown_id!(resume_after(&hub, Filter::all(), newer).await, newer);
    // OnGone::GoLive does not turn an unknown id into a live start.
    assert_unknown_id!(go_live_after(&hub, Filter::all(), newer).await, newer);
    // The head itself is a fine resume point: it starts live.
    let mut at_head = resume_after(&hub, Filter::all(), head).await.unwrap();
    assert_idle!(at_head);
    let next = publish(&hub, "k", "next").await;
    assert_ids!(at_head, [next.id()]);
}

#[tokio::test]
async fn on_gone_go_live_starts_live_and_says_what_was_gone() {
    let hub = hub_keeping(2);
    let events = publish_n(&hub, "k", 4).await;
    let mut sub = go_live_after(&hub, Filter::keys([key("k")]), events[0].id())
        .await
        .unwrap();
    let gone = sub.gone().cloned().expect("gone is exposed");
    assert_eq!(gone.from, ResumePoint::After(events[0].id()));
    assert_eq!(gone.evicted_through, Some(events[1].id()));
    assert_eq!(
        sub.position(),
        events[3].id(),
        "starts live at the hub's position"
    );
    assert_idle!(sub); // no replay of the retained 3 and 4
    let live = publish(&hub, "k", "live").await;
    assert_ids!(sub, [live.id()]);
    // A resume point that is not gone replays as usual; gone() is None.
    let mut fine = go_live_after(&hub, Filter::keys([key("k")]), events[3].id())
        .await
        .unwrap();
    assert!(fine.gone().is_none());
    assert_ids!(fine, [live.id()]);
}

#[tokio::test]
async fn age_retention_evicts_old_events_on_read() {
    let retention = Retention {
        max_age: Some(Duration::from_secs(10)),
        ..Retention::default()
    };
    let (hub, clock) = clocked_hub(retention);
    let old = publish(&hub, "k", "old").await; // T0
    clock.advance(5_000);
    let young = publish(&hub, "k", "young").await; // T0 + 5 s
    clock.advance(5_000); // T0 + 10 s: `old` is exactly max_age old, still kept
    assert_eq!(hub.stats().await.unwrap().log.retained, 2);
    clock.advance(1); // now it is older than max_age
    let stats = hub.stats().await.unwrap();
    assert_eq!(
        (stats.log.retained, stats.log.evicted, stats.log.oldest),
        (1, 1, Some(young.id()))
    );

    // The edge rule holds for age eviction too.
    let mut after_old = resume_after(&hub, Filter::all(), old.id()).await.unwrap();
    assert_ids!(after_old, [young.id()]);
    let before_old = EventId::new(old.id().epoch, 0);
    let gone = assert_gone!(resume_after(&hub, Filter::all(), before_old).await);
    assert_eq!(
        gone.to_string(),
        format!(
            "events after {before_old} are no longer retained (everything up to {} was \
             evicted); resume without a resume point to go on live",
            old.id()
        )
    );
    // A stream that goes on past it says so instead.
    assert_eq!(
        gone.notice(),
        format!(
            "events after {before_old} are no longer retained (everything up to {} was \
             evicted); this stream goes on live",
            old.id()
        )
    );
    // At a time at or before the evicted event's time: gone. The message
    // says what `from_timestamp` means: at or after, not after.
    let gone = assert_gone!(subscribe(&hub, Filter::all(), Some(ResumePoint::At(T0))).await);
    assert_eq!(gone.from, ResumePoint::At(T0));
    assert_eq!(
        gone.to_string(),
        format!(
            "events at or after 2027-01-15T08:00:00.000Z are no longer retained (everything \
             up to {} was evicted); resume without a resume point to go on live",
            old.id()
        )
    );
    // Just after it: every event at or after that time is retained.
    let mut at = subscribe(
        &hub,
        Filter::all(),
        Some(ResumePoint::At(Timestamp(T0.0 + 1))),
    )
    .await
    .unwrap();
    assert_ids!(at, [young.id()]);
    let mut oldest = subscribe(&hub, Filter::all(), Some(ResumePoint::Oldest))
        .await
        .unwrap();
    assert_ids!(oldest, [young.id()]);

    clock.advance(60_000);
    let stats = hub.stats().await.unwrap();
    assert_eq!(
        (stats.log.retained, stats.log.oldest, stats.log.latest),
        (0, None, None)
    );
    let mut after_young = resume_after(&hub, Filter::all(), young.id()).await.unwrap();
    assert_idle!(after_young);
}

#[tokio::test]
async fn resume_at_a_time_before_the_store_began_replays_everything() {
    // 410 is for events this log evicted; a time before the log began is
    // not one (ids, whose epoch marks the log's life, detect restarts).
    let (hub, _clock) = clocked_hub(Retention::default());
    let first = publish(&hub, "k", "1").await;
    let mut early = subscribe(
        &hub,
        Filter::all(),
        Some(ResumePoint::At(Timestamp(T0.0 - 1))),
    )
    .await
    .unwrap();
    assert_eq!(early.recv().await.unwrap().id(), first.id());
    assert!(
        subscribe(&hub, Filter::all(), Some(ResumePoint::At(T0)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn byte_retention_keeps_the_newest_events_that_fit() {
    // Same-size events (by the size byte retention counts): find the size
    // with a throwaway store.
    let probe = Hub::memory();
    let size = publish(&probe, "k", "0").await.retained_bytes() as u64;
    let retention = Retention {
        max_bytes: Some(3 * size),
        ..Retention::default()
    };
    let hub = Hub::new(MemoryStore::new(retention));
    let events = publish_n(&hub, "k", 5).await;
    assert!(
        events.iter().all(|e| e.retained_bytes() as u64 == size),
        "test assumes same-size events"
    );
    let stats = hub.stats().await.unwrap();
    assert_eq!(
        (stats.log.retained, stats.log.evicted, stats.log.oldest),
        (3, 2, Some(events[2].id()))
    );
    let mut at_edge = resume_after(&hub, Filter::all(), events[1].id())
        .await
        .unwrap();
    assert_ids!(at_edge, ids(&events[2..]));
    assert_gone!(resume_after(&hub, Filter::all(), events[0].id()).await);
    // One big event pushes out all the small ones.
    let big = hub
        .publish(key("k"), Data::text(&"x".repeat(4 * size as usize)))
        .await
        .unwrap();
    let stats = hub.stats().await.unwrap();
    assert_eq!(
        (stats.log.retained, stats.log.latest),
        (0, None),
        "an event over the byte bound is not retained"
    );
    let mut after_big = resume_after(&hub, Filter::all(), big.id()).await.unwrap();
    assert_idle!(after_big);
    assert_gone!(resume_after(&hub, Filter::all(), events[4].id()).await);
}

#[tokio::test]
async fn history_pages_through_the_log() {
    let hub = Hub::memory();
    let events = publish_n(&hub, "k", 7).await;
    publish(&hub, "other", "x").await;
    let filter = Filter::keys([key("k")]);
    let first = hub.history(&filter, None, 3).await.unwrap();
    assert_eq!(ids(&first.events), ids(&events[..3]));
    assert!(!first.reached_head);
    let second = hub
        .history(&filter, Some(ResumePoint::After(first.through)), 3)
        .await
        .unwrap();
    assert_eq!(ids(&second.events), ids(&events[3..6]));
    let third = hub
        .history(&filter, Some(ResumePoint::After(second.through)), 3)
        .await
        .unwrap();
    assert_eq!(ids(&third.events), ids(&events[6..]));
    assert!(third.reached_head);
}
