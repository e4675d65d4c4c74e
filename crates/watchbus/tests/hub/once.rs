//! Idempotent publishes: a retry of the same request within the window is
//! answered with the first publish's receipts and stores nothing.

use std::time::Duration;

use watchbus::{
    Appended, Data, Draft, Hub, HubError, IdempotencyKey, MemoryStore, Once, Receipt, Retention,
    Timestamp,
};

use crate::support::*;

fn drafts(to: &str, texts: &[&str]) -> Vec<Draft> {
    texts
        .iter()
        .map(|text| Draft::to_key(key(to), Data::text(text)))
        .collect()
}

fn once(name: &str, drafts: &[Draft]) -> Once {
    Once::new(IdempotencyKey::new(name).unwrap(), drafts)
}

fn stored(appended: Appended) -> Vec<Receipt> {
    match appended {
        Appended::Stored(_) => appended.receipts(),
        Appended::Replayed(receipts) => panic!("replayed {receipts:?}, expected stored"),
    }
}

fn replayed(appended: Appended) -> Vec<Receipt> {
    match appended {
        Appended::Replayed(receipts) => receipts,
        Appended::Stored(events) => panic!("stored {} events, expected a replay", events.len()),
    }
}

#[tokio::test]
async fn a_retry_within_the_window_is_answered_with_the_first_receipts_and_stores_nothing() {
    let (hub, clock) = clocked_hub(Retention {
        idempotency_window: Duration::from_secs(60),
        ..Retention::default()
    });
    let mut watch = hub.watch(key("orders/1")).await.unwrap();
    let batch = drafts("orders/1", &["a", "b"]);
    let request = once("req-1", &batch);
    let first = stored(hub.publish_all_once(&request, batch.clone()).await.unwrap());
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].time, T0);
    assert_eq!(first[1].id.seq, first[0].id.seq + 1);

    clock.advance(59_999);
    let again = replayed(hub.publish_all_once(&request, batch.clone()).await.unwrap());
    assert_eq!(again, first);
    // A publish without a key, and another key, are their own requests.
    let plain = publish(&hub, "orders/1", "c").await;
    let other = stored(
        hub.publish_all_once(&once("req-2", &batch), batch.clone())
            .await
            .unwrap(),
    );
    assert_eq!(other[0].id.seq, plain.id().seq + 1);

    assert_events!(
        watch,
        [
            "orders/1:a",
            "orders/1:b",
            "orders/1:c",
            "orders/1:a",
            "orders/1:b"
        ]
    );
    assert_idle!(watch);
    assert_eq!(hub.metrics().published_events, 5);
    assert_eq!(hub.metrics().replayed_publishes, 1);
    assert_eq!(hub.stats().await.unwrap().log.published, 5);

    // Once the window has passed, the key is forgotten: the same request
    // is a new one.
    clock.advance(1);
    let later = stored(hub.publish_all_once(&request, batch).await.unwrap());
    assert_eq!(later[0].id.seq, other[1].id.seq + 1);
    assert_eq!(later[0].time, Timestamp(T0.as_millis() + 60_000));
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused_and_stores_nothing() {
    let hub = Hub::memory();
    let first = drafts("k", &["one"]);
    stored(
        hub.publish_all_once(&once("req", &first), first)
            .await
            .unwrap(),
    );
    for other in [
        drafts("k", &["two"]),
        drafts("other", &["one"]),
        drafts("k", &["one", "one"]),
    ] {
        let refused = hub.publish_all_once(&once("req", &other), other).await;
        match refused {
            Err(HubError::KeyReused(key)) => assert_eq!(key.as_str(), "req"),
            other => panic!("expected KeyReused, got {other:?}"),
        }
    }
    assert_eq!(
        HubError::KeyReused(IdempotencyKey::new("req").unwrap()).to_string(),
        "idempotency key \"req\" was already used for a different request; a new request needs a new key"
    );
    assert_eq!(hub.stats().await.unwrap().log.published, 1);
}

#[tokio::test]
async fn concurrent_retries_store_once() {
    let hub = Hub::memory();
    let batch = drafts("k", &["x"]);
    let request = once("same", &batch);
    let attempts = (0..8).map(|_| {
        let (hub, request, batch) = (hub.clone(), request.clone(), batch.clone());
        tokio::spawn(async move { hub.publish_all_once(&request, batch).await.unwrap() })
    });
    let mut answers = Vec::new();
    for attempt in attempts {
        answers.push(attempt.await.unwrap());
    }
    let stored_count = answers
        .iter()
        .filter(|a| matches!(a, Appended::Stored(_)))
        .count();
    assert_eq!(stored_count, 1);
    let receipts: Vec<_> = answers.iter().map(Appended::receipts).collect();
    assert!(receipts.iter().all(|r| *r == receipts[0]), "{receipts:?}");
    assert_eq!(hub.stats().await.unwrap().log.published, 1);
}

#[tokio::test]
async fn past_its_most_keys_the_memory_store_forgets_the_oldest_and_counts_it() {
    let hub = Hub::new(MemoryStore::new(Retention::default()).with_max_idempotency_keys(2));
    let table = |remembered, forgotten_early| {
        let table = hub.metrics().key_table.unwrap();
        assert_eq!(
            (table.remembered, table.forgotten_early),
            (remembered, forgotten_early)
        );
    };
    table(0, 0);
    let batch = drafts("k", &["x"]);
    let mut first = Vec::new();
    for name in ["a", "b", "c"] {
        first.push(stored(
            hub.publish_all_once(&once(name, &batch), batch.clone())
                .await
                .unwrap(),
        ));
    }
    table(2, 1);
    // "a" was forgotten before its window ended: its retry is stored again;
    // "c" is still remembered.
    let again = stored(
        hub.publish_all_once(&once("a", &batch), batch.clone())
            .await
            .unwrap(),
    );
    assert_ne!(again, first[0]);
    let replay = replayed(
        hub.publish_all_once(&once("c", &batch), batch.clone())
            .await
            .unwrap(),
    );
    assert_eq!(replay, first[2]);
    table(2, 2);
    assert_eq!(hub.stats().await.unwrap().log.published, 4);
}
