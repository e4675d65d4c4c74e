//! The memory store against a `VecDeque` model, under random appends
//! (random keys, broadcasts and types), clock moves (also backwards),
//! resolves, reads after random positions, resets and retention settings.
//! The model is the contract written plainly; both must give the same
//! events, the same Gone/UnknownId answers and the same stats.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use proptest::prelude::*;
use watchbus::{
    Data, Draft, Event, EventId, Filter, Gone, LogStats, ManualClock, MemoryStore, Page,
    ResumePoint, Retention, Store, StoreError, Target, Timestamp,
};

use crate::support::{T0, key, prefix, ty};

const KEYS: [&str; 5] = ["a", "ab", "a/x", "b/1", "c"];
const PREFIXES: [&str; 4] = ["a", "a/", "b", "ab/"];
const TYPES: [Option<&str>; 3] = [None, Some("t1"), Some("t2")];

/// (keys, prefixes, types) of the filters reads use.
const FILTERS: [(&[&str], &[&str], &[&str]); 5] = [
    (&[], &[], &[]),
    (&["a"], &[], &[]),
    (&[], &["a"], &[]),
    (&["b/1"], &["a/"], &["t1"]),
    (&[], &[], &["t2"]),
];

fn filter(index: usize) -> Filter {
    let (keys, prefixes, types) = FILTERS[index];
    Filter::new(
        keys.iter().map(|k| key(k)).collect(),
        prefixes.iter().map(|p| prefix(p)).collect(),
        types.iter().map(|t| ty(t)).collect(),
        64,
    )
    .unwrap()
}

#[derive(Debug, Clone)]
enum IdChoice {
    /// This epoch, `n` below the head (saturating at 0).
    BelowHead(u64),
    /// This epoch, `n + 1` above the head.
    BeyondHead(u64),
    /// An older epoch.
    OlderEpoch(u64, u64),
    /// A newer epoch.
    NewerEpoch(u64, u64),
}

#[derive(Debug, Clone)]
enum Op {
    /// (target index, is a broadcast, type index), appended as one batch.
    Append(Vec<(usize, bool, usize)>),
    Advance(u64),
    Rewind(u64),
    ResolveAfter(IdChoice),
    /// Milliseconds relative to the clock's now.
    ResolveAt(i64),
    ResolveOldest,
    Read(IdChoice, usize, usize),
    Reset,
    Stats,
}

fn id_choice() -> impl Strategy<Value = IdChoice> {
    prop_oneof![
        6 => (0u64..12).prop_map(IdChoice::BelowHead),
        1 => (0u64..3).prop_map(IdChoice::BeyondHead),
        1 => ((0u64..3), (0u64..30)).prop_map(|(e, s)| IdChoice::OlderEpoch(e, s)),
        1 => ((0u64..3), (0u64..30)).prop_map(|(e, s)| IdChoice::NewerEpoch(e, s)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec((0..KEYS.len(), prop::bool::weighted(0.2), 0..TYPES.len()), 1..4).prop_map(Op::Append),
        3 => (0u64..25).prop_map(Op::Advance),
        1 => (0u64..25).prop_map(Op::Rewind),
        3 => id_choice().prop_map(Op::ResolveAfter),
        2 => (-80i64..10).prop_map(Op::ResolveAt),
        1 => Just(Op::ResolveOldest),
        4 => (id_choice(), 0..FILTERS.len(), 1usize..8).prop_map(|(id, f, limit)| Op::Read(id, f, limit)),
        1 => Just(Op::Reset),
        2 => Just(Op::Stats),
    ]
}

fn retention() -> impl Strategy<Value = Retention> {
    (
        1usize..9,
        prop::option::of(0u64..60),
        prop::option::of(80u64..600),
    )
        .prop_map(|(max_events, age, bytes)| Retention {
            max_events,
            max_age: age.map(Duration::from_millis),
            max_bytes: bytes,
            ..Retention::default()
        })
}

#[derive(Debug, Clone)]
struct ModelEvent {
    seq: u64,
    time: u64,
    target: String,
    broadcast: bool,
    event_type: Option<String>,
    bytes: u64,
}

/// The contract, plainly: one ordered log; retention evicts from the old
/// end; a resume after `p` works exactly when no event after `p` was
/// evicted.
#[derive(Debug)]
struct Model {
    retention: Retention,
    epoch: u64,
    events: VecDeque<ModelEvent>,
    head: u64,
    /// Every evicted event so far in this life (seq, time): kept whole, to
    /// ask "was any event after p evicted?" literally.
    evicted_log: Vec<(u64, u64)>,
    last_time: u64,
    published: u64,
    evicted: u64,
}

impl Model {
    fn id(&self, seq: u64) -> EventId {
        EventId::new(self.epoch, seq)
    }

    fn evict(&mut self, now: u64) {
        let cutoff = self
            .retention
            .max_age
            .map(|age| now.saturating_sub(age.as_millis() as u64));
        loop {
            let bytes: u64 = self.events.iter().map(|e| e.bytes).sum();
            let Some(oldest) = self.events.front() else {
                break;
            };
            let over = self.events.len() > self.retention.max_events
                || self.retention.max_bytes.is_some_and(|max| bytes > max)
                || cutoff.is_some_and(|cutoff| oldest.time < cutoff);
            if !over {
                break;
            }
            self.evicted_log.push((oldest.seq, oldest.time));
            self.evicted += 1;
            self.events.pop_front();
        }
    }

    fn newest_evicted(&self) -> Option<EventId> {
        self.evicted_log
            .iter()
            .map(|(seq, _)| *seq)
            .max()
            .map(|seq| self.id(seq))
    }

    fn gone(&self, from: ResumePoint) -> StoreError {
        StoreError::Gone(Gone {
            from,
            evicted_through: self.newest_evicted(),
        })
    }

    fn check_after(&self, after: EventId) -> Result<(), StoreError> {
        if after.epoch < self.epoch {
            return Err(self.gone(ResumePoint::After(after)));
        }
        if after.epoch > self.epoch || after.seq > self.head {
            return Err(StoreError::UnknownId(after));
        }
        if self.evicted_log.iter().any(|(seq, _)| *seq > after.seq) {
            return Err(self.gone(ResumePoint::After(after)));
        }
        Ok(())
    }

    fn resolve(&self, point: ResumePoint) -> Result<EventId, StoreError> {
        match point {
            ResumePoint::After(id) => self.check_after(id).map(|()| id),
            ResumePoint::Oldest => Ok(self.id(self.newest_evicted().map_or(0, |id| id.seq))),
            ResumePoint::At(time) => {
                if self.evicted_log.iter().any(|(_, t)| *t >= time.0) {
                    return Err(self.gone(ResumePoint::At(time)));
                }
                let first = self.events.iter().find(|e| e.time >= time.0);
                Ok(self.id(first.map_or(self.head, |e| e.seq - 1)))
            }
        }
    }

    fn matches(event: &ModelEvent, filter_index: usize) -> bool {
        let (keys, prefixes, types) = FILTERS[filter_index];
        let type_ok = types.is_empty()
            || event
                .event_type
                .as_deref()
                .is_some_and(|t| types.contains(&t));
        let target = event.target.as_str();
        let target_ok = (keys.is_empty() && prefixes.is_empty())
            || if event.broadcast {
                keys.iter().any(|k| k.starts_with(target))
                    || prefixes
                        .iter()
                        .any(|q| q.starts_with(target) || target.starts_with(q))
            } else {
                keys.contains(&target) || prefixes.iter().any(|q| target.starts_with(q))
            };
        type_ok && target_ok
    }

    /// (matching seqs, through, reached_head).
    fn read_after(
        &self,
        after: EventId,
        filter_index: usize,
        limit: usize,
    ) -> Result<(Vec<u64>, EventId, bool), StoreError> {
        self.check_after(after)?;
        let later: Vec<&ModelEvent> = self.events.iter().filter(|e| e.seq > after.seq).collect();
        let matching: Vec<usize> = later
            .iter()
            .enumerate()
            .filter(|(_, e)| Self::matches(e, filter_index))
            .map(|(i, _)| i)
            .collect();
        let taken: Vec<u64> = matching.iter().take(limit).map(|&i| later[i].seq).collect();
        // It stops once it holds `limit` events and sees one more.
        let stop_at = matching
            .get(limit - 1)
            .map(|&i| i + 1)
            .filter(|&next| next < later.len());
        let (through, reached) = match stop_at {
            Some(next) => (later[next - 1].seq, false),
            None => (later.last().map_or(after.seq, |e| e.seq), true),
        };
        Ok((taken, self.id(through), reached))
    }

    fn reset(&mut self) {
        while let Some(event) = self.events.pop_front() {
            self.evicted_log.push((event.seq, event.time));
        }
        self.published = 0;
        self.evicted = 0;
    }

    fn stats(&self) -> LogStats {
        LogStats {
            published: self.published,
            retained: self.events.len() as u64,
            evicted: self.evicted,
            oldest: self.events.front().map(|e| self.id(e.seq)),
            latest: self.events.back().map(|e| self.id(e.seq)),
            oldest_time: self.events.front().map(|e| Timestamp(e.time)),
        }
    }

    fn pick(&self, choice: &IdChoice) -> EventId {
        match *choice {
            IdChoice::BelowHead(n) => self.id(self.head.saturating_sub(n)),
            IdChoice::BeyondHead(n) => self.id(self.head + 1 + n),
            IdChoice::OlderEpoch(e, seq) => EventId::new(self.epoch - 1 - e, seq),
            IdChoice::NewerEpoch(e, seq) => EventId::new(self.epoch + 1 + e, seq),
        }
    }
}

/// Store futures of the memory store are ready at once.
fn now<T>(future: futures_util::future::BoxFuture<'_, T>) -> T {
    future
        .now_or_never()
        .expect("memory store futures are ready at once")
}

/// Errors compared by what a caller sees.
fn answer<T: std::fmt::Debug>(result: Result<T, StoreError>) -> Result<T, String> {
    result.map_err(|err| match err {
        StoreError::Gone(gone) => format!("gone {gone:?}"),
        StoreError::UnknownId(id) => format!("unknown {id}"),
        other => format!("other {other}"),
    })
}

fn page_answer(page: Result<Page, StoreError>) -> Result<(Vec<u64>, EventId, bool), String> {
    answer(page.map(|p| {
        (
            p.events.iter().map(|e| e.id().seq).collect(),
            p.through,
            p.reached_head,
        )
    }))
}

fn run(retention: Retention, ops: &[Op]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new(T0);
    let store = MemoryStore::with_clock(retention, Arc::new(clock.clone()));
    let epoch = now(store.resolve(ResumePoint::Oldest)).unwrap().epoch;
    let retention = Retention {
        max_events: retention.max_events.max(1),
        ..retention
    };
    let mut model = Model {
        retention,
        epoch,
        events: VecDeque::new(),
        head: 0,
        evicted_log: Vec::new(),
        last_time: T0.0,
        published: 0,
        evicted: 0,
    };
    let mut clock_now = T0.0;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append(drafts) => {
                let drafts: Vec<Draft> = drafts
                    .iter()
                    .map(|&(target, broadcast, type_index)| {
                        let draft = if broadcast {
                            Draft::to_prefix(
                                prefix(PREFIXES[target % PREFIXES.len()]),
                                Data::null(),
                            )
                        } else {
                            Draft::to_key(
                                key(KEYS[target]),
                                Data::from_json(&step.to_string()).unwrap(),
                            )
                        };
                        match TYPES[type_index] {
                            Some(t) => draft.with_type(ty(t)),
                            None => draft,
                        }
                    })
                    .collect();
                let events: Vec<Arc<Event>> = now(store.append(drafts.clone())).unwrap();
                prop_assert_eq!(events.len(), drafts.len());
                model.last_time = model.last_time.max(clock_now);
                for (event, draft) in events.iter().zip(&drafts) {
                    model.head += 1;
                    prop_assert_eq!(
                        event.id(),
                        model.id(model.head),
                        "step {}: ids are the next seqs",
                        step
                    );
                    prop_assert_eq!(
                        event.time(),
                        Timestamp(model.last_time),
                        "step {}: time",
                        step
                    );
                    prop_assert_eq!(event.draft(), draft);
                    let (target, broadcast) = match event.target() {
                        Target::Key(k) => (k.to_string(), false),
                        Target::Prefix(p) => (p.to_string(), true),
                    };
                    model.events.push_back(ModelEvent {
                        seq: model.head,
                        time: model.last_time,
                        target,
                        broadcast,
                        event_type: event.event_type().map(|t| t.to_string()),
                        bytes: event.retained_bytes() as u64,
                    });
                }
                model.published += events.len() as u64;
                model.evict(clock_now);
            }
            Op::Advance(ms) => {
                clock_now += ms;
                clock.set(Timestamp(clock_now));
            }
            Op::Rewind(ms) => {
                clock_now = clock_now.saturating_sub(*ms);
                clock.set(Timestamp(clock_now));
            }
            Op::ResolveAfter(choice) => {
                let id = model.pick(choice);
                model.evict(clock_now);
                prop_assert_eq!(
                    answer(now(store.resolve(ResumePoint::After(id)))),
                    answer(model.resolve(ResumePoint::After(id))),
                    "step {}: after {}",
                    step,
                    id
                );
            }
            Op::ResolveAt(offset) => {
                let time = Timestamp(clock_now.saturating_add_signed(*offset));
                model.evict(clock_now);
                prop_assert_eq!(
                    answer(now(store.resolve(ResumePoint::At(time)))),
                    answer(model.resolve(ResumePoint::At(time))),
                    "step {}: at {}",
                    step,
                    time
                );
            }
            Op::ResolveOldest => {
                model.evict(clock_now);
                prop_assert_eq!(
                    answer(now(store.resolve(ResumePoint::Oldest))),
                    answer(model.resolve(ResumePoint::Oldest)),
                    "step {}",
                    step
                );
            }
            Op::Read(choice, filter_index, limit) => {
                let id = model.pick(choice);
                model.evict(clock_now);
                let filter = filter(*filter_index);
                let page = now(store.read_after(id, &filter, *limit));
                prop_assert_eq!(
                    page_answer(page),
                    answer(model.read_after(id, *filter_index, *limit)),
                    "step {}: read after {} filter {} limit {}",
                    step,
                    id,
                    filter_index,
                    limit
                );
            }
            Op::Reset => {
                now(store.reset()).unwrap();
                model.reset();
            }
            Op::Stats => {
                model.evict(clock_now);
                prop_assert_eq!(now(store.stats()).unwrap(), model.stats(), "step {}", step);
            }
        }
    }
    model.evict(clock_now);
    prop_assert_eq!(now(store.stats()).unwrap(), model.stats(), "at the end");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_memory_store_agrees_with_a_model(retention in retention(), ops in prop::collection::vec(op(), 1..60)) {
        run(retention, &ops)?;
    }

    /// Count retention only, long runs: the 410 edge arithmetic.
    #[test]
    fn the_memory_store_agrees_with_a_model_under_count_retention(max_events in 1usize..6, ops in prop::collection::vec(op(), 50..150)) {
        run(Retention { max_events, ..Retention::default() }, &ops)?;
    }
}

/// Replaying the whole log page by page after any retained position gives
/// every matching retained event after it, once, in order.
#[test]
fn paging_through_the_log_visits_each_matching_event_once() {
    let store = MemoryStore::new(Retention {
        max_events: 50,
        ..Retention::default()
    });
    let mut published = Vec::new();
    for i in 0..80usize {
        let draft = Draft::to_key(key(KEYS[i % KEYS.len()]), Data::null());
        let draft = if i % 3 == 0 {
            draft.with_type(ty("t1"))
        } else {
            draft
        };
        published.extend(now(store.append(vec![draft])).unwrap());
    }
    for filter_index in 0..FILTERS.len() {
        let filter = filter(filter_index);
        for limit in [1, 2, 7, 100] {
            let mut after = now(store.resolve(ResumePoint::Oldest)).unwrap();
            let mut got = Vec::new();
            loop {
                let page = now(store.read_after(after, &filter, limit)).unwrap();
                assert!(page.events.len() <= limit);
                got.extend(page.events.iter().map(|e| e.id()));
                after = page.through;
                if page.reached_head {
                    break;
                }
            }
            let want: Vec<EventId> = published[30..]
                .iter()
                .filter(|e| filter.matches(e))
                .map(|e| e.id())
                .collect();
            assert_eq!(got, want, "filter {filter_index} limit {limit}");
        }
    }
}
