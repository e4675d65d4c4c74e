//! A fixed-size run of the `publish_1000_watched_keys` benchmark's workload,
//! for profilers: criterion's adaptive iteration counts make instruction
//! counts hard to compare, this does exactly the same work every run.
//!
//! `SUBSCRIBERS` tasks each watch one of `SUBSCRIBERS` keys and drain with
//! `recv_batch`, while `PUBLISHERS` tasks on a 2-worker runtime publish
//! `EVENTS` events in total to random keys. It exits once every event was
//! drained. With 0 subscribers it measures the publish path alone.
//!
//! ```text
//! cargo build --release --example publish_profile
//! valgrind --tool=callgrind target/release/examples/publish_profile 1 200000 1000
//! ```
//!
//! Arguments: `PUBLISHERS EVENTS SUBSCRIBERS WARMUP YIELD_EVERY` (default
//! `1 200000 1000 0 32`). `WARMUP` events are published first, untimed: the
//! benchmark runs millions of events through its 1,000,000-event retention,
//! so its log is full and every append also evicts; a warm-up of 1,000,000
//! gets there. Each publisher yields after every `YIELD_EVERY` publishes,
//! as the benchmark's do; 0 never yields, which only suits a run without
//! subscribers (they would get no turn, and lag out): it leaves out what
//! the benchmark's yields cost, waking the other, idle worker.
//! Run it twice with different `EVENTS` and divide the difference in
//! instructions by the difference in events for a per-publish figure that
//! leaves out the setup.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use watchbus::{Data, Hub, Key, MemoryStore, Retention};

/// As the benchmark: a memory-store publish never waits, so the publishers
/// yield now and then to let the subscribers on their worker drain.
const YIELD_EVERY: u64 = 32;

/// Whether a publisher that yields every `every` publishes (0: never)
/// yields after its publish number `i`.
fn yields_after(every: u64, i: u64) -> bool {
    every != 0 && i % every == every - 1
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `events` publishes from `publishers` parallel tasks, as the benchmark's
/// iteration does.
async fn publish(
    hub: &Hub,
    keys: &Arc<Vec<Key>>,
    publishers: u64,
    events: u64,
    seed: u64,
    yield_every: u64,
) {
    let data = Data::text("payload");
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (hub, keys, data) = (hub.clone(), Arc::clone(keys), data.clone());
            let count = events / publishers + u64::from(p < events % publishers);
            tokio::spawn(async move {
                let mut state = 0x2545_F491_4F6C_DD1D ^ (seed << 8) ^ (p + 1);
                for i in 0..count {
                    let key = &keys[(next(&mut state) % 1_000) as usize];
                    hub.publish(key.clone(), data.clone()).await.unwrap();
                    if yields_after(yield_every, i) {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are numbers"))
        .collect();
    let publishers = args.first().copied().unwrap_or(1).max(1);
    let events = args.get(1).copied().unwrap_or(200_000);
    let subscribers = args.get(2).copied().unwrap_or(1_000) as usize;
    let warmup = args.get(3).copied().unwrap_or(0);
    let yield_every = args.get(4).copied().unwrap_or(YIELD_EVERY);
    let key_count = subscribers.max(1_000);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hub = Hub::new(MemoryStore::new(Retention {
        max_events: 1_000_000,
        ..Retention::default()
    }));
    let keys: Arc<Vec<Key>> = Arc::new(
        (0..key_count)
            .map(|i| Key::new(&format!("bench/key/{i}")).unwrap())
            .collect(),
    );
    let drained = Arc::new(AtomicUsize::new(0));
    let all_drained = Arc::new(tokio::sync::Notify::new());
    let elapsed = rt.block_on(async {
        for key in keys.iter().take(subscribers) {
            let mut sub = hub.watch(key.clone()).await.unwrap();
            let (drained, all_drained) = (Arc::clone(&drained), Arc::clone(&all_drained));
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(256);
                while sub.recv_batch(&mut batch, 256).await.is_ok() {
                    let n = drained.fetch_add(batch.len(), Ordering::AcqRel) + batch.len();
                    if n as u64 == warmup + events {
                        all_drained.notify_one();
                    }
                    batch.clear();
                }
            });
        }
        publish(&hub, &keys, publishers, warmup, 1, yield_every).await;
        let start = Instant::now();
        publish(&hub, &keys, publishers, events, 2, yield_every).await;
        let published = start.elapsed();
        if subscribers >= 1_000 {
            all_drained.notified().await;
        }
        (published, start.elapsed())
    });
    let metrics = hub.metrics();
    eprintln!(
        "{publishers} publishers, {events} events, {subscribers} subscribers: \
         published in {:?} ({:.0} ns/op), drained in {:?}; {} delivered, {} drained",
        elapsed.0,
        elapsed.0.as_nanos() as f64 / events as f64,
        elapsed.1,
        metrics.deliveries,
        drained.load(Ordering::Relaxed),
    );
}
