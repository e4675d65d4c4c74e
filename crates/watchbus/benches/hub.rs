//! In-process hub benchmarks (design.md, "Benchmarks to keep"):
//!
//! - `publish_1000_watched_keys`: the shape of the Go seed's
//!   `BenchmarkInMemoryPublish`: 1,000 subscribers, each watching one of
//!   1,000 keys and draining its events, while parallel publishers publish
//!   to random keys. Reports the time per publish.
//! - `publish_no_subscribers`: the same publishes with nobody watching: the
//!   store and the index lookup alone, to tell them from the cost of waking
//!   and draining subscribers.
//! - `fanout_10000_subscribers`: one event to 10,000 subscribers of one key,
//!   timed from the publish until all 10,000 have received it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use watchbus::{Data, Hub, Key, MemoryStore, Retention};

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// xorshift, so the key choice costs next to nothing.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The keys of the publish benches.
const KEYS: usize = 1_000;

/// The hub and keys of the publish benches. The retention is large enough
/// that drainers scheduled a little late never lag out.
fn publish_setup() -> (Hub, Arc<Vec<Key>>) {
    let hub = Hub::new(MemoryStore::new(Retention {
        max_events: 1_000_000,
        ..Retention::default()
    }));
    let keys = (0..KEYS)
        .map(|i| Key::new(&format!("bench/key/{i}")).unwrap())
        .collect();
    (hub, Arc::new(keys))
}

fn publish_1000_watched_keys(c: &mut Criterion) {
    let rt = runtime();
    let (hub, keys) = publish_setup();
    // A counter per drainer: one shared counter would bounce its cache line
    // between the cores on every drain, a cost of the harness, not the hub.
    let delivered: Vec<Arc<AtomicUsize>> =
        keys.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();
    rt.block_on(async {
        for (key, delivered) in keys.iter().zip(&delivered) {
            let mut sub = hub.watch(key.clone()).await.unwrap();
            let delivered = Arc::clone(delivered);
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(256);
                while sub.recv_batch(&mut batch, 256).await.is_ok() {
                    delivered.fetch_add(batch.len(), Ordering::Relaxed);
                    batch.clear();
                }
            });
        }
    });
    let data = Data::text("payload");
    let mut group = c.benchmark_group("publish_1000_watched_keys");
    group.throughput(Throughput::Elements(1));
    for publishers in [1u64, 2, 4] {
        group.bench_with_input(
            BenchmarkId::new("publishers", publishers),
            &publishers,
            |b, &publishers| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..publishers)
                            .map(|p| {
                                let (hub, keys, data) =
                                    (hub.clone(), Arc::clone(&keys), data.clone());
                                let count = iters / publishers + u64::from(p < iters % publishers);
                                tokio::spawn(async move {
                                    let mut state = 0x2545_F491_4F6C_DD1D ^ (p + 1);
                                    for i in 0..count {
                                        let key = &keys[(next(&mut state) % KEYS as u64) as usize];
                                        hub.publish(key.clone(), data.clone()).await.unwrap();
                                        // A memory-store publish never waits; let the
                                        // subscribers on this worker drain now and then.
                                        if i % 32 == 31 {
                                            tokio::task::yield_now().await;
                                        }
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        start.elapsed()
                    })
                });
            },
        );
    }
    group.finish();
    let metrics = hub.metrics();
    eprintln!(
        "publish_1000_watched_keys: {} published, {} delivered to mailboxes, {} drained, {} subscribers lagged out",
        metrics.published_events,
        metrics.deliveries,
        delivered
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum::<usize>(),
        metrics.subscriptions_lagged
    );
}

fn publish_no_subscribers(c: &mut Criterion) {
    let rt = runtime();
    let (hub, keys) = publish_setup();
    let data = Data::text("payload");
    let mut group = c.benchmark_group("publish_no_subscribers");
    group.throughput(Throughput::Elements(1));
    group.bench_function("publishers/1", |b| {
        b.iter_custom(|iters| {
            let (hub, keys, data) = (hub.clone(), Arc::clone(&keys), data.clone());
            // On a worker, as the publishers of `publish_1000_watched_keys`.
            rt.block_on(rt.spawn(async move {
                let mut state = 0x2545_F491_4F6C_DD1D;
                let start = Instant::now();
                for i in 0..iters {
                    let key = &keys[(next(&mut state) % KEYS as u64) as usize];
                    hub.publish(key.clone(), data.clone()).await.unwrap();
                    if i % 32 == 31 {
                        tokio::task::yield_now().await;
                    }
                }
                start.elapsed()
            }))
            .unwrap()
        });
    });
    group.finish();
}

fn fanout_10000_subscribers(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 10_000;
    let rt = runtime();
    let hub = Hub::memory();
    let key = Key::new("bench/fanout").unwrap();
    let remaining = Arc::new(AtomicUsize::new(0));
    let all_received = Arc::new(Notify::new());
    rt.block_on(async {
        for _ in 0..SUBSCRIBERS {
            let mut sub = hub.watch(key.clone()).await.unwrap();
            let (remaining, all_received) = (Arc::clone(&remaining), Arc::clone(&all_received));
            tokio::spawn(async move {
                while sub.recv().await.is_ok() {
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        all_received.notify_one();
                    }
                }
            });
        }
    });
    let data = Data::text("fan-out");
    let mut group = c.benchmark_group("fanout_10000_subscribers");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function("one_event", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    remaining.store(SUBSCRIBERS, Ordering::Release);
                    let start = Instant::now();
                    hub.publish(key.clone(), data.clone()).await.unwrap();
                    tokio::time::timeout(Duration::from_secs(30), all_received.notified())
                        .await
                        .expect("a subscriber never received the event");
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = publish_1000_watched_keys, publish_no_subscribers, fanout_10000_subscribers
}
criterion_main!(benches);
