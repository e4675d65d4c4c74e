//! In-process hub benchmarks (design.md, "Benchmarks to keep"):
//!
//! - `publish_1000_watched_keys`: the shape of the Go seed's
//!   `BenchmarkInMemoryPublish`: 1,000 subscribers, each watching one of
//!   1,000 keys and draining its events, while parallel publishers publish
//!   to random keys. Reports the time per publish.
//! - `publish_no_subscribers`: the same publishes with nobody watching: the
//!   store and the index lookup alone, to tell them from the cost of waking
//!   and draining subscribers. With 2 and 4 publishers it shows what the
//!   one ordered log costs parallel publishers: they take its lock in turn.
//! - `wake_floor_1000_tasks`: no hub at all. The same publishers hand a
//!   token to one of 1,000 tasks through a bare mutex and waker, and the
//!   tasks drain them as the subscribers do. It is the least any hub that
//!   wakes the subscriber of each event can cost on this runtime.
//! - `ordered_wake_floor_1000_tasks`: the wake floor, with every token
//!   first taking the next number of one shared sequence under a lock: the
//!   least a hub that puts all events in one ordered log and wakes the
//!   subscriber of each can cost.
//! - `fanout_10000_subscribers`: one event to 10,000 subscribers of one key,
//!   timed from the publish until all 10,000 have received it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};
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

/// One publish of the publish benches, to the key with index `key`.
trait Publish: Clone + Send + 'static {
    fn publish(&self, key: usize) -> impl Future<Output = ()> + Send;
}

/// Publishes to the hub, as an application would.
#[derive(Clone)]
struct HubPublisher {
    hub: Hub,
    keys: Arc<Vec<Key>>,
    data: Data,
}

impl Publish for HubPublisher {
    async fn publish(&self, key: usize) {
        self.hub
            .publish(self.keys[key].clone(), self.data.clone())
            .await
            .unwrap();
    }
}

/// The time `publishers` parallel tasks on `rt` take for `iters` publishes
/// in all, each to a random one of [`KEYS`] keys.
fn time_publishers(rt: &Runtime, publishers: u64, iters: u64, publisher: impl Publish) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..publishers)
            .map(|p| {
                let publisher = publisher.clone();
                let count = iters / publishers + u64::from(p < iters % publishers);
                tokio::spawn(async move {
                    let mut state = 0x2545_F491_4F6C_DD1D ^ (p + 1);
                    for i in 0..count {
                        let key = (next(&mut state) % KEYS as u64) as usize;
                        publisher.publish(key).await;
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
}

/// The group `name`: the time per publish of `publisher` with 1, 2 and 4
/// parallel publishers.
fn bench_publishers(c: &mut Criterion, name: &str, rt: &Runtime, publisher: &impl Publish) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for publishers in [1u64, 2, 4] {
        group.bench_with_input(
            BenchmarkId::new("publishers", publishers),
            &publishers,
            |b, &publishers| {
                b.iter_custom(|iters| time_publishers(rt, publishers, iters, publisher.clone()));
            },
        );
    }
    group.finish();
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
    let publisher = HubPublisher {
        hub: hub.clone(),
        keys,
        data: Data::text("payload"),
    };
    bench_publishers(c, "publish_1000_watched_keys", &rt, &publisher);
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
    let publisher = HubPublisher {
        hub,
        keys,
        data: Data::text("payload"),
    };
    bench_publishers(c, "publish_no_subscribers", &rt, &publisher);
}

/// A subscriber reduced to what waking it takes: the tokens handed to it
/// and not yet drained, and the waker of its task while it waits.
#[derive(Default)]
struct Slot(parking_lot::Mutex<(u64, Option<Waker>)>);

/// Hands a token to a slot and wakes its task if it waits, as a hub's
/// delivery does, with no store, event or match. With `order`, each token
/// first takes the next number of one shared sequence, as every event of
/// one ordered log takes the next id.
#[derive(Clone)]
struct WakePublisher {
    slots: Arc<Vec<Slot>>,
    order: Option<Arc<Sequence>>,
}

/// One shared counter behind a lock, alone in its cache line (as the log's
/// lock is in the hub).
#[derive(Default)]
#[repr(align(64))]
struct Sequence(parking_lot::Mutex<u64>);

impl Publish for WakePublisher {
    async fn publish(&self, key: usize) {
        if let Some(order) = &self.order {
            let mut last = order.0.lock();
            *last += 1;
            std::hint::black_box(*last);
        }
        let waker = {
            let mut slot = self.slots[key].0.lock();
            slot.0 += 1;
            slot.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The group `name`: [`WakePublisher`]s against 1,000 tasks that drain
/// their slots as subscribers do.
fn bench_wake_floor(c: &mut Criterion, name: &str, order: Option<Arc<Sequence>>) {
    let rt = runtime();
    let slots: Arc<Vec<Slot>> = Arc::new((0..KEYS).map(|_| Slot::default()).collect());
    rt.block_on(async {
        for key in 0..KEYS {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move {
                let mut drained = 0u64;
                loop {
                    drained += poll_fn(|cx| {
                        let mut slot = slots[key].0.lock();
                        if slot.0 > 0 {
                            Poll::Ready(std::mem::take(&mut slot.0))
                        } else {
                            slot.1 = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    })
                    .await;
                    std::hint::black_box(drained);
                }
            });
        }
    });
    let publisher = WakePublisher { slots, order };
    bench_publishers(c, name, &rt, &publisher);
}

fn wake_floor_1000_tasks(c: &mut Criterion) {
    bench_wake_floor(c, "wake_floor_1000_tasks", None);
}

fn ordered_wake_floor_1000_tasks(c: &mut Criterion) {
    let order = Arc::new(Sequence::default());
    bench_wake_floor(c, "ordered_wake_floor_1000_tasks", Some(order));
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
    targets = publish_1000_watched_keys, publish_no_subscribers, wake_floor_1000_tasks, ordered_wake_floor_1000_tasks, fanout_10000_subscribers
}
criterion_main!(benches);
