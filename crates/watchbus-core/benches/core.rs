//! Core benchmarks: SSE frame encoding (envelope and raw, small and 1 KiB
//! payloads), matching with 10,000 keys and 1,000 prefixes, and reading
//! the clock that stamps every event.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use watchbus_core::encode::sse_event;
use watchbus_core::{
    Clock, Data, Draft, Event, EventId, EventType, Filter, Key, KeyPrefix, MatchIndex, SystemClock,
    Target, Timestamp,
};

fn event(data: Data) -> Event {
    Draft::to_key(Key::new("users/42/orders").unwrap(), data)
        .with_type(EventType::new("order.updated").unwrap())
        .stored(
            EventId::new(1_795_452_000_123, 987_654),
            Timestamp(1_795_452_000_123),
        )
}

fn sse_encoding(c: &mut Criterion) {
    let small = event(Data::from_json(r#"{"id":42,"status":"shipped"}"#).unwrap());
    // About 1 KiB of JSON, and 1 KiB of multi-line text for the raw format.
    let object = format!(r#"{{"id":42,"note":"{}"}}"#, "x".repeat(1_000));
    let big_json = event(Data::from_json(&object).unwrap());
    let lines: String = (0..16)
        .map(|i| format!("line {i:02}: {}\n", "y".repeat(53)))
        .collect();
    let big_text = event(Data::text(&lines));

    let mut group = c.benchmark_group("sse_encode");
    for (name, event) in [
        ("small", &small),
        ("1KiB_json", &big_json),
        ("1KiB_text", &big_text),
    ] {
        let envelope = std::str::from_utf8(event.envelope()).unwrap();
        group.throughput(Throughput::Bytes(envelope.len() as u64));
        group.bench_function(format!("envelope/{name}"), |b| {
            b.iter(|| {
                sse_event(
                    black_box(&event.id()),
                    black_box(event.event_type()),
                    black_box(envelope),
                )
            });
        });
        group.throughput(Throughput::Bytes(event.data().as_json().len() as u64));
        group.bench_function(format!("raw/{name}"), |b| {
            b.iter(|| {
                let raw = black_box(event.data()).raw_text();
                sse_event(black_box(&event.id()), black_box(event.event_type()), &raw)
            });
        });
    }
    group.finish();
}

fn matching(c: &mut Criterion) {
    // Keys room/00000..room/09999; prefixes room/0000..room/0999, so each
    // prefix covers ten keys.
    let mut index: MatchIndex<u64> = MatchIndex::new();
    let mut id = 0u64;
    for i in 0..10_000 {
        id += 1;
        index.insert(
            id,
            &Filter::keys([Key::new(&format!("room/{i:05}")).unwrap()]),
            id,
        );
    }
    for j in 0..1_000 {
        id += 1;
        index.insert(
            id,
            &Filter::prefixes([KeyPrefix::new(&format!("room/{j:04}")).unwrap()]),
            id,
        );
    }
    let cases = [
        ("key_hit", Target::Key(Key::new("room/01234").unwrap())),
        ("key_miss", Target::Key(Key::new("lobby/1").unwrap())),
        (
            "broadcast_10_keys",
            Target::Prefix(KeyPrefix::new("room/0123").unwrap()),
        ),
        (
            "broadcast_1100",
            Target::Prefix(KeyPrefix::new("room/01").unwrap()),
        ),
        (
            "broadcast_all",
            Target::Prefix(KeyPrefix::new("room/").unwrap()),
        ),
    ];
    let mut group = c.benchmark_group("match_10k_keys_1k_prefixes");
    for (name, target) in &cases {
        let mut visited = 0u64;
        index.for_each_candidate(target, |_, _| visited += 1);
        eprintln!("match {name}: {visited} candidates");
        group.throughput(Throughput::Elements(1));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut sum = 0u64;
                index.for_each_candidate(black_box(target), |id, _| sum = sum.wrapping_add(id));
                sum
            });
        });
    }
    group.finish();
}

/// What every publish pays for its event's time: one read of the wall
/// clock, in milliseconds.
fn clock(c: &mut Criterion) {
    c.bench_function("clock/system_now", |b| {
        b.iter(|| black_box(SystemClock.now()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = sse_encoding, matching, clock
}
criterion_main!(benches);
