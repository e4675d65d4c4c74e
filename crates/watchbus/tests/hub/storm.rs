//! A concurrent publish storm: publishers on several tasks, subscribers of
//! every kind reading at the same time. Each subscriber must receive
//! exactly the matching events, each once, in id order. The expectation is
//! computed from the events the publishers got back, with a naive reading
//! of the contract's matching rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use watchbus::{Data, Draft, Event, EventId, Filter, Hub, Retention, Target};

use crate::support::*;

/// A subscription in the plainest terms, to compute what it should get.
#[derive(Debug, Clone)]
struct Wants {
    keys: Vec<&'static str>,
    prefixes: Vec<&'static str>,
    types: Vec<&'static str>,
}

impl Wants {
    fn filter(&self) -> Filter {
        Filter::new(
            self.keys.iter().map(|k| key(k)).collect(),
            self.prefixes.iter().map(|p| prefix(p)).collect(),
            self.types.iter().map(|t| ty(t)).collect(),
            64,
        )
        .unwrap()
    }

    fn matches(&self, event: &Event) -> bool {
        let type_ok = self.types.is_empty()
            || event
                .event_type()
                .is_some_and(|t| self.types.contains(&t.as_str()));
        let all_keys = self.keys.is_empty() && self.prefixes.is_empty();
        let target_ok = all_keys
            || match event.target() {
                Target::Key(k) => {
                    self.keys.contains(&k.as_str())
                        || self.prefixes.iter().any(|q| k.as_str().starts_with(q))
                }
                Target::Prefix(p) => {
                    let p = p.as_str();
                    self.keys.iter().any(|k| k.starts_with(p))
                        || self
                            .prefixes
                            .iter()
                            .any(|q| q.starts_with(p) || p.starts_with(q))
                }
            };
        type_ok && target_ok
    }
}

/// xorshift: enough randomness for key choice, and reproducible.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

const PUBLISHERS: u64 = 4;
const PER_PUBLISHER: usize = 1_500;
const TYPES: [Option<&str>; 4] = [None, Some("a"), Some("b"), Some("c")];

fn random_draft(state: &mut u64) -> Draft {
    let r = next(state);
    let event_type = TYPES[(r % 4) as usize];
    let n = (r >> 8) % 20;
    let draft = if (r >> 16) % 25 == 0 {
        // A broadcast now and then: to "k", "k1" or "k1/".
        let to = ["k", "k1", "k1/"][((r >> 24) % 3) as usize];
        Draft::to_prefix(prefix(to), Data::text(to))
    } else {
        let to = if n < 10 {
            format!("k{n}")
        } else {
            format!("k1/{n}")
        };
        Draft::to_key(key(&to), Data::from_json(&n.to_string()).unwrap())
    };
    match event_type {
        Some(t) => draft.with_type(ty(t)),
        None => draft,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_storm_delivers_exactly_the_matching_events_once_in_order() {
    let total = PUBLISHERS as usize * PER_PUBLISHER;
    // Retention above the total: nobody can lag, so nobody may miss anything.
    let hub = Hub::new(watchbus::MemoryStore::new(Retention {
        max_events: total * 2,
        ..Retention::default()
    }));
    let subscribers = vec![
        Wants {
            keys: vec!["k3"],
            prefixes: vec![],
            types: vec![],
        },
        Wants {
            keys: vec!["k1", "k1/12"],
            prefixes: vec![],
            types: vec![],
        },
        Wants {
            keys: vec![],
            prefixes: vec!["k1"],
            types: vec![],
        },
        Wants {
            keys: vec![],
            prefixes: vec!["k1/"],
            types: vec!["a", "b"],
        },
        Wants {
            keys: vec![],
            prefixes: vec![],
            types: vec![],
        },
        Wants {
            keys: vec![],
            prefixes: vec![],
            types: vec!["c"],
        },
        Wants {
            keys: vec!["k2", "k1/15"],
            prefixes: vec!["k1/1", "k1"],
            types: vec!["a"],
        },
        Wants {
            keys: vec!["k9"],
            prefixes: vec![],
            types: vec!["b", "c"],
        },
    ];
    let (go, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut readers = Vec::new();
    for wants in &subscribers {
        let mut sub = subscribe(&hub, wants.filter(), None).await.unwrap();
        let (mut go, wants) = (go.subscribe(), wants.clone());
        readers.push(tokio::spawn(async move {
            let _ = go.recv().await;
            let mut got: Vec<Arc<Event>> = Vec::new();
            let mut batch = Vec::new();
            loop {
                batch.clear();
                match tokio::time::timeout(HANG, sub.recv_batch(&mut batch, 50)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(end)) => panic!("{wants:?} ended {end:?} after {} events", got.len()),
                    Err(_) => panic!("{wants:?} hung after {} events", got.len()),
                }
                for event in batch.drain(..) {
                    let done = event.data().as_json() == r#""end""#;
                    got.push(event);
                    if done {
                        return got;
                    }
                }
            }
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (hub, mut go) = (hub.clone(), go.subscribe());
        publishers.push(tokio::spawn(async move {
            let _ = go.recv().await;
            let mut state = 0x9E37_79B9_7F4A_7C15 ^ (p + 1);
            let mut mine = Vec::with_capacity(PER_PUBLISHER);
            let mut i = 0;
            while i < PER_PUBLISHER {
                if next(&mut state) % 10 == 0 {
                    // Sometimes a small batch, all or nothing, in order.
                    let drafts: Vec<Draft> = (0..3).map(|_| random_draft(&mut state)).collect();
                    mine.extend(hub.publish_all(drafts).await.unwrap());
                    i += 3;
                } else {
                    mine.push(hub.publish_one(random_draft(&mut state)).await.unwrap());
                    i += 1;
                }
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            mine
        }));
    }
    go.send(()).unwrap();
    let mut published: Vec<Arc<Event>> = Vec::new();
    for publisher in publishers {
        published.extend(
            tokio::time::timeout(HANG, publisher)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // Every subscription matches a broadcast to "k" of every type: the end.
    let end = hub
        .publish_one(Draft::to_prefix(prefix("k"), Data::text("end")).with_type(ty("a")))
        .await
        .unwrap();
    let end_c = hub
        .publish_one(Draft::to_prefix(prefix("k"), Data::text("end")).with_type(ty("c")))
        .await
        .unwrap();
    let end_b = hub
        .publish_one(Draft::to_prefix(prefix("k"), Data::text("end")).with_type(ty("b")))
        .await
        .unwrap();
    published.extend([end, end_c, end_b]);
    published.sort_by_key(|e| e.id());

    let all_ids: Vec<EventId> = ids(&published);
    assert!(
        all_ids.windows(2).all(|w| w[0] < w[1]),
        "ids are unique across publishers"
    );

    for (wants, reader) in subscribers.iter().zip(readers) {
        let got = tokio::time::timeout(HANG, reader).await.unwrap().unwrap();
        // Up to the first end event it matches.
        let expected: Vec<EventId> = published
            .iter()
            .filter(|e| wants.matches(e))
            .scan(false, |done, e| {
                if *done {
                    return None;
                }
                *done = e.data().as_json() == r#""end""#;
                Some(e.id())
            })
            .collect();
        let got_ids = ids(&got);
        if got_ids != expected {
            let mut counts: BTreeMap<EventId, i32> = BTreeMap::new();
            for id in &got_ids {
                *counts.entry(*id).or_default() += 1;
            }
            for id in &expected {
                *counts.entry(*id).or_default() -= 1;
            }
            let diff: Vec<_> = counts
                .into_iter()
                .filter(|(_, c)| *c != 0)
                .take(10)
                .collect();
            panic!(
                "{wants:?}: got {} events, expected {}; extra(+)/missing(-): {diff:?}",
                got_ids.len(),
                expected.len()
            );
        }
        assert!(
            expected.len() > 10,
            "{wants:?} should see a fair share of the storm"
        );
    }
    assert_eq!(hub.metrics().subscriptions_lagged, 0);
}
