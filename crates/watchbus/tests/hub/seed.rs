//! The Go prototype's tests, translated. There a watcher was a channel and
//! a context; here it is a `Subscription`, and dropping it unwatches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use watchbus::{Data, Filter, Hub, HubError, StreamEnd};

use crate::support::*;

/// `TestWatchPublish`: a watcher of a key receives what is published to it.
#[tokio::test]
async fn watch_then_publish_delivers() {
    let hub = Hub::memory();
    let mut watcher = hub.watch(key("test-key")).await.unwrap();
    hub.publish(key("test-key"), Data::text("test-message"))
        .await
        .unwrap();
    let event = recv(&mut watcher).await.unwrap();
    assert_eq!(event.data().as_json(), r#""test-message""#);
    assert_eq!(event.target().as_str(), "test-key");
}

/// `TestPrefixWatch`: a prefix watcher receives a publish to a key under
/// it, then a prefix publish.
#[tokio::test]
async fn prefix_subscribe_then_publish_and_prefix_publish_deliver() {
    let hub = Hub::memory();
    let mut watcher = hub.subscribe_prefix(prefix("test-prefix")).await.unwrap();
    hub.publish(key("test-prefix-key"), Data::text("message1"))
        .await
        .unwrap();
    hub.broadcast(prefix("test-prefix"), Data::text("message2"))
        .await
        .unwrap();
    assert_events!(
        watcher,
        ["test-prefix-key:message1", "test-prefix*:message2"]
    );
    assert_idle!(watcher);
}

/// `TestWatchContextCancel`: cancelling the watcher's context removes it.
#[tokio::test]
async fn a_cancelled_watcher_is_cleaned_up() {
    let hub = Hub::memory();
    let watcher = hub.watch(key("test-key")).await.unwrap();
    let prefix_watcher = hub.subscribe_prefix(prefix("test")).await.unwrap();
    assert_eq!(active(&hub).await, 2);
    drop(watcher);
    drop(prefix_watcher);
    assert_eq!(active(&hub).await, 0);
    // Publishing afterwards reaches nobody and does not fail.
    let before = hub.metrics().deliveries;
    hub.publish(key("test-key"), Data::text("late"))
        .await
        .unwrap();
    assert_eq!(hub.metrics().deliveries, before);
}

/// `TestUnwatchUnknown`: in Rust a subscription cannot be dropped twice;
/// the nearest thing is dropping one after the hub already ended it.
#[tokio::test]
async fn dropping_a_subscription_after_reset_or_shutdown_is_harmless() {
    let hub = Hub::memory();
    let mut reset_one = hub.watch(key("k")).await.unwrap();
    let never_read = hub.subscribe_prefix(prefix("k")).await.unwrap();
    hub.reset().await.unwrap();
    assert_ended!(reset_one, StreamEnd::Reset);
    drop(reset_one);
    drop(never_read);
    assert_eq!(active(&hub).await, 0);
    let mut after_reset = hub.watch(key("k")).await.unwrap();
    let event = publish(&hub, "k", "still works").await;
    assert_ids!(after_reset, [event.id()]);

    let mut shut = hub.watch(key("k")).await.unwrap();
    hub.shutdown();
    assert_ended!(shut, StreamEnd::Shutdown);
    drop(shut);
    drop(after_reset);
    assert_eq!(active(&hub).await, 0);
    assert!(matches!(
        hub.publish(key("k"), Data::text("after shutdown")).await,
        Err(HubError::ShuttingDown)
    ));
    // The hub itself dropped while a subscription lives: the subscription
    // keeps the hub's state alive and drops cleanly later.
    let hub2 = Hub::memory();
    let sub = hub2.watch(key("k")).await.unwrap();
    drop(hub2);
    drop(sub);
}

/// `TestConcurrentUnwatch`: watchers come and go while events are
/// published; nothing panics or deadlocks, and nothing stays registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unwatch_while_publishing() {
    let hub = hub_keeping(1_000);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (hub, stop) = (hub.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let to = format!("key-{}", n % 10);
                hub.publish(key(&to), Data::text("m")).await.unwrap();
                n += 1;
                if n % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            n
        })
    };
    let mut watchers = Vec::new();
    for task in 0..4u64 {
        let hub = hub.clone();
        watchers.push(tokio::spawn(async move {
            let mut received = 0usize;
            for i in 0..200u64 {
                let mut sub = match (task + i) % 3 {
                    0 => hub.watch(key(&format!("key-{}", i % 10))).await.unwrap(),
                    1 => hub.subscribe_prefix(prefix("key-")).await.unwrap(),
                    _ => hub
                        .subscribe(watchbus::SubscribeRequest {
                            filter: Filter::all(),
                            ..Default::default()
                        })
                        .await
                        .unwrap(),
                };
                if i % 2 == 0 {
                    // Read a little (or time out quietly), then drop.
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(std::time::Duration::from_millis(1), sub.recv()).await
                    {
                        received += 1;
                    }
                }
                drop(sub);
            }
            received
        }));
    }
    for watcher in watchers {
        tokio::time::timeout(HANG, watcher)
            .await
            .expect("a watcher hung")
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let published = tokio::time::timeout(HANG, publisher)
        .await
        .expect("the publisher hung")
        .unwrap();
    assert!(published > 0);
    assert_eq!(active(&hub).await, 0);
    assert_eq!(hub.stats().await.unwrap().subscribers_total, 800);
}
