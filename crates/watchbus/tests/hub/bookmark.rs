//! Bookmarks: a quiet subscriber's resume point moves with the hub, but
//! never past a matching event it has not handed out.

use watchbus::{Filter, ResumePoint, StreamEnd};

use crate::support::*;

#[tokio::test]
async fn a_bookmark_is_the_hub_position_after_non_matching_events() {
    let hub = hub_keeping(3);
    let mut sub = hub.watch(key("rare")).await.unwrap();
    assert_eq!(sub.bookmark(), None, "the hub has not moved");
    publish_n(&hub, "busy", 2).await;
    let last = publish(&hub, "busy", "last").await;
    assert_eq!(sub.bookmark(), Some(last.id()));
    assert_eq!(
        sub.bookmark(),
        None,
        "the same position is not advertised twice"
    );
    let next = publish(&hub, "busy", "next").await;
    assert_eq!(sub.bookmark(), Some(next.id()));
    // The bookmark keeps a quiet subscriber's resume point fresh: after
    // many more events, a resume from it is not gone.
    let rare = publish(&hub, "rare", "!").await;
    assert_ids!(sub, [rare.id()]);
    assert_eq!(
        sub.bookmark(),
        None,
        "nothing new since the event it handed out"
    );
}

#[tokio::test]
async fn a_live_start_offers_its_start_point_as_the_opening_bookmark() {
    let hub = hub_keeping(100);
    let empty = hub.watch(key("a")).await.unwrap();
    let start = empty.opening_bookmark().expect("a live start has one");
    assert_eq!(start.seq, 0, "before the first event: {start}");
    let events = publish_n(&hub, "b", 2).await;
    let mut live = hub.watch(key("a")).await.unwrap();
    assert_eq!(live.opening_bookmark(), Some(events[1].id()));
    // It names the start, whatever the subscription did since, and the
    // keep-alive bookmark does not advertise the same point again.
    assert_eq!(live.bookmark(), None);
    let a = publish(&hub, "a", "1").await;
    assert_ids!(live, [a.id()]);
    assert_eq!(live.opening_bookmark(), Some(events[1].id()));
    // Resuming from it misses nothing the subscription would have had.
    let mut resumed = resume_after(&hub, Filter::keys([key("a")]), start)
        .await
        .unwrap();
    assert_ids!(resumed, [a.id()]);
    // A subscription given a resume point, or told one by a gone notice,
    // already has it.
    assert_eq!(resumed.opening_bookmark(), None);
    let small = hub_keeping(1);
    let old = publish_n(&small, "a", 3).await;
    let told = go_live_after(&small, Filter::keys([key("a")]), old[0].id())
        .await
        .unwrap();
    assert!(told.gone().is_some());
    assert_eq!(told.opening_bookmark(), None);
}

#[tokio::test]
async fn no_bookmark_while_a_matching_event_is_pending() {
    let hub = hub_keeping(100);
    let mut sub = hub.watch(key("a")).await.unwrap();
    let pending = publish(&hub, "a", "1").await;
    publish_n(&hub, "b", 3).await;
    assert_eq!(sub.bookmark(), None);
    assert_ids!(sub, [pending.id()]);
    let b = publish(&hub, "b", "after").await;
    assert_eq!(sub.bookmark(), Some(b.id()));
}

#[tokio::test]
async fn a_bookmark_never_passes_an_undelivered_matching_event() {
    // Interleave matching and non-matching events, reading sometimes, and
    // check the promise after every step.
    let hub = hub_keeping(1_000);
    let mut sub = hub.watch(key("a")).await.unwrap();
    let mut undelivered = std::collections::VecDeque::new();
    for step in 0..300u32 {
        let to = if step % 7 == 0 || step % 11 == 0 {
            "a"
        } else {
            "b"
        };
        let event = publish(&hub, to, &step.to_string()).await;
        if to == "a" {
            undelivered.push_back(event.id());
        }
        if step % 5 == 0 {
            while let Some(Ok(event)) = try_recv(&mut sub) {
                assert_eq!(undelivered.pop_front(), Some(event.id()));
            }
        }
        if let Some(bookmark) = sub.bookmark() {
            if let Some(oldest) = undelivered.front() {
                assert!(
                    bookmark < *oldest,
                    "bookmark {bookmark} passes undelivered {oldest} at step {step}"
                );
            }
        }
    }
}

#[tokio::test]
async fn resuming_from_a_bookmark_delivers_the_next_matching_event_and_nothing_else() {
    let hub = hub_keeping(5);
    let mut sub = hub.watch(key("rare")).await.unwrap();
    let seen = publish(&hub, "rare", "seen").await;
    assert_ids!(sub, [seen.id()]);
    publish_n(&hub, "busy", 10).await; // `seen` is evicted now
    let bookmark = sub
        .bookmark()
        .expect("the hub moved past non-matching events");
    assert_gone!(resume_after(&hub, Filter::keys([key("rare")]), seen.id()).await);
    drop(sub);
    let next = publish(&hub, "rare", "next").await;
    publish(&hub, "busy", "more").await;
    let mut resumed = resume_after(&hub, Filter::keys([key("rare")]), bookmark)
        .await
        .unwrap();
    assert_ids!(resumed, [next.id()]);
    assert_idle!(resumed);
}

#[tokio::test]
async fn no_bookmark_during_a_replay() {
    let hub = hub_keeping(100);
    let events = publish_n(&hub, "a", 3).await;
    publish_n(&hub, "b", 3).await;
    let mut sub = subscribe(
        &hub,
        Filter::keys([key("a")]),
        Some(ResumePoint::After(events[0].id())),
    )
    .await
    .unwrap();
    assert_eq!(sub.bookmark(), None);
    assert_ids!(sub, ids(&events[1..]));
    assert_idle!(sub); // the next poll hands over to live
    // The replay ended at the head: the b events are behind it now.
    let last_b = hub.stats().await.unwrap().log.latest.unwrap();
    assert_eq!(sub.bookmark(), Some(last_b));
}

/// BUG (found by this test): a subscription whose mailbox was ended (lag,
/// reset, shutdown) but whose reader has not yet seen the end had an empty
/// mailbox (ending clears it), so `bookmark()` advertised the hub's
/// position, past matching events it never handed out. A client resuming
/// from that bookmark got no 410 and silently lost them.
#[tokio::test]
async fn a_lagged_reader_gets_no_bookmark_past_the_events_it_lost() {
    let hub = hub_keeping(3);
    let mut sub = hub.watch(key("a")).await.unwrap();
    let events = publish_n(&hub, "a", 6).await; // the reader lags
    assert_eq!(sub.bookmark(), None, "events 1..=6 were never handed out");
    assert_ended!(sub, StreamEnd::Lagged);
    assert_eq!(sub.bookmark(), None);
    assert_gone!(resume_after(&hub, Filter::keys([key("a")]), sub.position()).await);
    let _ = events;
}

#[tokio::test]
async fn a_reset_reader_gets_no_bookmark_past_the_events_it_lost() {
    let hub = hub_keeping(100);
    let mut sub = hub.watch(key("a")).await.unwrap();
    publish(&hub, "a", "pending").await;
    hub.reset().await.unwrap();
    assert_eq!(
        sub.bookmark(),
        None,
        "the pending event was never handed out"
    );
    assert_ended!(sub, StreamEnd::Reset);
    assert_eq!(sub.bookmark(), None);
}
