//! The in-memory store: the log of one process.
//!
//! Its epoch is the time the store was created, so an id handed out before a
//! restart has an older epoch and resolves to `410 Gone`, never to someone
//! else's event. Appends take one lock, and the feed is called under it, so
//! the hub sees events in exactly the order of their ids.
//!
//! Event times never go backwards: an event gets the later of the clock and
//! the previous event's time, which keeps the log sorted by time as well as
//! by id, so `from_timestamp` is a binary search.
//!
//! The lock is held for the bookkeeping and the dispatch only: the clock is
//! read and the events allocated before it, and the subscribers to wake are
//! woken and the evicted events freed after it. An evicted event is old, so
//! its memory is no longer in any cache; its time is kept next to it in the
//! log so that evicting it under the lock does not have to touch it.
//!
//! Once closed ([`Store::close`], when the hub shuts down) it refuses
//! appends, under the same lock: every event appended before reached the
//! feed, and no later one is acknowledged for a log that ends with the
//! process.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures_util::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use smallvec::SmallVec;
use watchbus_core::{Clock, Draft, Event, EventId, Filter, SystemClock, Timestamp};

use crate::cache::CacheAligned;

use super::once::{Remembered, Seen};
use super::{
    AppendNowError, Appended, Feed, KeyTableStats, LogEdge, LogStats, Once, Page, ResumePoint,
    Retention, Store, StoreError, Wakeups,
};

/// Epochs handed out in this process, so two stores created in the same
/// millisecond still differ.
static LAST_EPOCH: AtomicU64 = AtomicU64::new(0);

fn next_epoch(now: Timestamp) -> u64 {
    let mut last = LAST_EPOCH.load(Ordering::Relaxed);
    loop {
        let epoch = now.as_millis().max(last + 1);
        match LAST_EPOCH.compare_exchange_weak(last, epoch, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return epoch,
            Err(seen) => last = seen,
        }
    }
}

/// The log of one process. Cheap to share behind an `Arc`; see the
/// [module docs](self).
#[derive(Debug)]
pub struct MemoryStore {
    log: Arc<CacheAligned<Mutex<Log>>>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    /// The idempotency keys of recent appends. Apart from the log, so that
    /// appends without a key never touch it.
    remembered: Mutex<Remembered>,
}

/// A retained event, with its time at hand for retention and `At` resumes.
struct Slot {
    time: Timestamp,
    event: Arc<Event>,
}

/// `draft` as an event, allocated before the lock; [`Log::push`] stamps it.
fn unstamped(draft: Draft) -> Arc<Event> {
    Arc::new(draft.stored(EventId::default(), Timestamp::default()))
}

/// Events evicted under the lock, to free after it. Count retention evicts
/// one event per append: no allocation for it.
type Evicted = SmallVec<[Arc<Event>; 1]>;

// `repr(C)`: the fields an append writes come first, in the cache line of
// the lock (see `CacheAligned`); the head is not kept but counted, so that
// they fit.
#[repr(C)]
struct Log {
    /// The retained events: seqs `evicted_through + 1 ..= head()`.
    events: VecDeque<Slot>,
    last_time: Timestamp,
    /// The seq of the newest event evicted (0: none).
    evicted_through: u64,
    /// The time of the newest evicted event; meaningless while
    /// `evicted_through` is 0.
    evicted_time: Timestamp,
    epoch: u64,
    /// The retained bytes; counted only under a byte bound, as it reads
    /// the evicted event itself.
    bytes: u64,
    /// The head at the last reset: the totals since then are counted from
    /// the seqs, not kept, so an append writes two fields fewer.
    reset_at: u64,
    feed: Option<Arc<dyn Feed>>,
    /// [`Store::close`] was called: appends are refused. Next to the feed,
    /// which every append reads anyway.
    closed: bool,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("epoch", &self.epoch)
            .field("head", &self.head())
            .field("evicted_through", &self.evicted_through)
            .field("retained", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty log with `retention`, on the system clock.
    pub fn new(retention: Retention) -> Self {
        Self::with_clock(retention, Arc::new(SystemClock))
    }

    /// An empty log with `retention`, taking event times from `clock`.
    pub fn with_clock(retention: Retention, clock: Arc<dyn Clock>) -> Self {
        let retention = Retention {
            max_events: retention.max_events.max(1),
            ..retention
        };
        let now = clock.now();
        let log = Log {
            epoch: next_epoch(now),
            events: VecDeque::new(),
            evicted_through: 0,
            evicted_time: Timestamp(0),
            last_time: now,
            bytes: 0,
            reset_at: 0,
            feed: None,
            closed: false,
        };
        Self {
            log: Arc::new(CacheAligned(Mutex::new(log))),
            clock,
            retention,
            remembered: Mutex::default(),
        }
    }

    /// The most idempotency keys [`Store::append_once`] remembers unless
    /// told otherwise: about 15 MB of UUID keys.
    pub const DEFAULT_MAX_IDEMPOTENCY_KEYS: usize = Remembered::DEFAULT_MAX_KEYS;

    /// The same store, remembering at most `max` idempotency keys (at least
    /// one). Past it, the oldest key is forgotten before its window ends,
    /// a retry of it is stored again, and [`Store::key_table`] counts it.
    /// Keys already remembered are forgotten: set it before publishing.
    #[must_use]
    pub fn with_max_idempotency_keys(self, max: usize) -> Self {
        Self {
            remembered: Mutex::new(Remembered::new(max)),
            ..self
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn append_now(&self, drafts: Vec<Draft>) -> Result<Vec<Arc<Event>>, StoreError> {
        let now = self.now();
        let mut appended: Vec<Arc<Event>> = drafts.into_iter().map(unstamped).collect();
        // Declared before the guard, so dropped after it: wakes and frees
        // happen outside the lock.
        let mut evicted = Evicted::default();
        let mut wakeups = Wakeups::new();
        let mut log = self.log.lock();
        if log.closed {
            return Err(StoreError::Closed);
        }
        for event in &mut appended {
            log.push(event, now, &self.retention);
        }
        log.evict(&self.retention, now, &mut evicted);
        log.deliver(&appended, &mut wakeups);
        drop(log);
        drop(wakeups);
        Ok(appended)
    }

    /// [`Store::append_once`], at once.
    fn append_now_once(&self, once: &Once, drafts: Vec<Draft>) -> Result<Appended, StoreError> {
        // Held across the append: a second request with the same key waits
        // for the first and is then answered with its receipts.
        let mut remembered = self.remembered.lock();
        let now = self.now();
        if let Seen::Replay(receipts) =
            remembered.check(once, now, self.retention.idempotency_window)?
        {
            return Ok(Appended::Replayed(receipts));
        }
        let appended = Appended::Stored(self.append_now(drafts)?);
        remembered.note(once, now, appended.receipts());
        Ok(appended)
    }

    /// [`MemoryStore::append_now`] for one draft, without the vectors.
    fn append_one(&self, draft: Draft) -> Result<Arc<Event>, StoreError> {
        let now = self.now();
        let mut event = unstamped(draft);
        let mut evicted = Evicted::default();
        let mut wakeups = Wakeups::new();
        let mut log = self.log.lock();
        if log.closed {
            return Err(StoreError::Closed);
        }
        log.push(&mut event, now, &self.retention);
        log.evict(&self.retention, now, &mut evicted);
        log.deliver(std::slice::from_ref(&event), &mut wakeups);
        drop(log);
        drop(wakeups);
        Ok(event)
    }

    /// Evicts what has aged out, and tells the feed. Called by the sweeper
    /// and before every read, so reads see the exact edge.
    fn expire(&self) {
        let now = self.now();
        let mut evicted = Evicted::default();
        let mut log = self.log.lock();
        if log.evict(&self.retention, now, &mut evicted) {
            if let Some(feed) = &log.feed {
                feed.evicted(EventId::new(log.epoch, log.evicted_through));
            }
        }
    }

    fn start_sweeper(&self) {
        let Some(max_age) = self.retention.max_age else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: age retention is applied on append and read only");
            return;
        };
        let period = (max_age / 10).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(1),
        );
        let sweeper = Sweeper {
            log: Arc::downgrade(&self.log),
            clock: Arc::clone(&self.clock),
            retention: self.retention,
        };
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !sweeper.sweep() {
                    return;
                }
            }
        });
    }
}

/// Evicts aged events in the background while the store lives.
struct Sweeper {
    log: Weak<CacheAligned<Mutex<Log>>>,
    clock: Arc<dyn Clock>,
    retention: Retention,
}

impl Sweeper {
    /// False once the store is gone.
    fn sweep(&self) -> bool {
        let Some(log) = self.log.upgrade() else {
            return false;
        };
        let mut evicted = Evicted::default();
        let mut log = log.lock();
        if log.evict(&self.retention, self.clock.now(), &mut evicted) {
            if let Some(feed) = &log.feed {
                feed.evicted(EventId::new(log.epoch, log.evicted_through));
            }
        }
        true
    }
}

impl Log {
    fn id(&self, seq: u64) -> EventId {
        EventId::new(self.epoch, seq)
    }

    /// The seq of the newest event appended (0: none yet).
    fn head(&self) -> u64 {
        self.evicted_through + self.events.len() as u64
    }

    /// Appends `event` as the next one: gives it the next id and `now` or,
    /// should the clock have gone back, the previous event's time.
    fn push(&mut self, event: &mut Arc<Event>, now: Timestamp, retention: &Retention) {
        self.last_time = self.last_time.max(now);
        let id = EventId::new(self.epoch, self.head() + 1);
        match Arc::get_mut(event) {
            Some(unshared) => unshared.stamp(id, self.last_time),
            // Not reached: `unstamped` events are not shared yet.
            None => *event = Arc::new(Event::new(id, self.last_time, event.draft().clone())),
        }
        if retention.max_bytes.is_some() {
            self.bytes += event.retained_bytes() as u64;
        }
        self.events.push_back(Slot {
            time: self.last_time,
            event: Arc::clone(event),
        });
    }

    /// Hands the feed the events just appended; the subscribers to wake go
    /// into `wakeups`.
    fn deliver(&self, appended: &[Arc<Event>], wakeups: &mut Wakeups) {
        if let Some(feed) = &self.feed {
            feed.deliver(
                appended,
                EventId::new(self.epoch, self.evicted_through),
                wakeups,
            );
        }
    }

    /// Applies retention; true when something was evicted. The evicted
    /// events go into `evicted`, for the caller to free after the lock.
    fn evict(&mut self, retention: &Retention, now: Timestamp, evicted: &mut Evicted) -> bool {
        if retention.max_age.is_none() && retention.max_bytes.is_none() {
            return self.evict_over_count(retention.max_events, evicted);
        }
        let cutoff = retention
            .max_age
            .map(|age| Timestamp(now.as_millis().saturating_sub(age.as_millis() as u64)));
        let mut any = false;
        while let Some(oldest) = self.events.front() {
            let over_count = self.events.len() > retention.max_events;
            let over_bytes = retention.max_bytes.is_some_and(|max| self.bytes > max);
            let too_old = cutoff.is_some_and(|cutoff| oldest.time < cutoff);
            if !(over_count || over_bytes || too_old) {
                break;
            }
            if retention.max_bytes.is_some() {
                self.bytes -= oldest.event.retained_bytes() as u64;
            }
            self.evict_oldest(evicted);
            any = true;
        }
        any
    }

    /// [`Log::evict`] under a count bound alone (the default retention): on
    /// a full log, one pop per append, without reading times or sizes.
    fn evict_over_count(&mut self, max_events: usize, evicted: &mut Evicted) -> bool {
        let mut any = false;
        while self.events.len() > max_events {
            self.evict_oldest(evicted);
            any = true;
        }
        any
    }

    /// Evicts the oldest event (the caller has counted its bytes).
    #[inline]
    fn evict_oldest(&mut self, evicted: &mut Evicted) {
        if let Some(oldest) = self.events.pop_front() {
            // The log holds seqs `evicted_through + 1 ..= head`, so the
            // oldest one's seq is known without reading the event.
            debug_assert_eq!(oldest.event.id().seq, self.evicted_through + 1);
            self.evicted_through += 1;
            self.evicted_time = oldest.time;
            evicted.push(oldest.event);
        }
    }

    fn edge(&self) -> LogEdge {
        LogEdge {
            epoch: self.epoch,
            head: self.head(),
            evicted_through: self.evicted_through,
        }
    }

    fn resolve(&self, point: ResumePoint) -> Result<EventId, StoreError> {
        match point {
            ResumePoint::After(id) => self.edge().check_after(id).map(|()| id),
            ResumePoint::Oldest => Ok(self.id(self.evicted_through)),
            ResumePoint::At(time) => {
                // Gone when this log evicted an event at or after `time`. An
                // earlier life of the log (another process) is not known
                // here: ids carry the epoch that detects it, times cannot.
                if self.evicted_through > 0 && self.evicted_time >= time {
                    return Err(self.edge().gone(ResumePoint::At(time)));
                }
                let first = self.events.partition_point(|slot| slot.time < time);
                let seq = match self.events.get(first) {
                    Some(slot) => slot.event.id().seq - 1,
                    None => self.head(),
                };
                Ok(self.id(seq))
            }
        }
    }

    /// Appends to `page` the events after its `through` that match, up to
    /// `limit` of them, examining at most `scan` events.
    fn read_after(
        &self,
        page: &mut Page,
        filter: &Filter,
        limit: usize,
        scan: usize,
    ) -> Result<(), StoreError> {
        self.edge().check_after(page.through)?;
        let first_seq = self.evicted_through + 1;
        let skip = usize::try_from(page.through.seq + 1 - first_seq).unwrap_or(usize::MAX);
        page.reached_head = true;
        let rest = self.events.range(skip.min(self.events.len())..);
        for (examined, Slot { event, .. }) in rest.enumerate() {
            if page.events.len() == limit || examined == scan {
                page.reached_head = false;
                break;
            }
            if filter.matches(event) {
                page.events.push(Arc::clone(event));
            }
            page.through = event.id();
        }
        Ok(())
    }

    fn stats(&self) -> LogStats {
        LogStats {
            published: self.head() - self.reset_at,
            retained: self.events.len() as u64,
            // A reset evicts through the head, so the seqs evicted since
            // then are the ones after `reset_at`.
            evicted: self.evicted_through - self.reset_at,
            oldest: self.events.front().map(|slot| slot.event.id()),
            latest: self.events.back().map(|slot| slot.event.id()),
            oldest_time: self.events.front().map(|slot| slot.time),
        }
    }

    fn reset(&mut self) {
        if let Some(newest) = self.events.back() {
            self.evicted_through = newest.event.id().seq;
            self.evicted_time = newest.time;
        }
        self.events.clear();
        self.bytes = 0;
        self.reset_at = self.head();
        if let Some(feed) = &self.feed {
            feed.reset(self.id(self.head()));
        }
    }
}

/// The most events a read examines under one hold of the log's lock. A
/// read with a filter that matches little may examine the whole log; in
/// steps, publishers wait for one step at most, not for the whole read,
/// and between steps the reading task yields its worker to the others
/// (docs/BENCHMARKS.md, "Hostile clients").
const SCAN_PER_LOCK: usize = 4096;

impl MemoryStore {
    /// [`Store::read_after`], taking the log's lock for one step of `step`
    /// events at a time, and yielding between steps. When events after the
    /// position a step reached are evicted before the next step, the page
    /// ends there: reading on from it is then `Gone`, as it would be for any
    /// page.
    async fn read_after_in_steps(
        &self,
        after: EventId,
        filter: &Filter,
        limit: usize,
        step: usize,
    ) -> Result<Page, StoreError> {
        let mut page = Page {
            events: Vec::new(),
            through: after,
            reached_head: false,
        };
        self.log.lock().read_after(&mut page, filter, limit, step)?;
        while !page.reached_head && page.events.len() < limit {
            tokio::task::yield_now().await;
            let read = self.log.lock().read_after(&mut page, filter, limit, step);
            if read.is_err() {
                page.reached_head = false;
                break;
            }
        }
        Ok(page)
    }
}

impl Store for MemoryStore {
    fn append(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>> {
        let appended = self.append_now(drafts);
        async move { appended }.boxed()
    }

    fn try_append_now(&self, draft: Draft) -> Result<Arc<Event>, AppendNowError> {
        self.append_one(draft).map_err(AppendNowError::Refused)
    }

    fn append_once<'a>(
        &'a self,
        once: &'a Once,
        drafts: Vec<Draft>,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        let appended = self.append_now_once(once, drafts);
        async move { appended }.boxed()
    }

    fn close(&self) {
        self.log.lock().closed = true;
    }

    fn resolve(&self, point: ResumePoint) -> BoxFuture<'_, Result<EventId, StoreError>> {
        self.expire();
        let resolved = self.log.lock().resolve(point);
        async move { resolved }.boxed()
    }

    fn read_after<'a>(
        &'a self,
        after: EventId,
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        self.expire();
        self.read_after_in_steps(after, filter, limit, SCAN_PER_LOCK)
            .boxed()
    }

    fn reset(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.log.lock().reset();
        async { Ok(()) }.boxed()
    }

    fn stats(&self) -> BoxFuture<'_, Result<LogStats, StoreError>> {
        self.expire();
        let stats = self.log.lock().stats();
        async move { Ok(stats) }.boxed()
    }

    fn key_table(&self) -> Option<KeyTableStats> {
        let now = self.now();
        Some(
            self.remembered
                .lock()
                .stats(now, self.retention.idempotency_window),
        )
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async { Ok(()) }.boxed()
    }

    fn start_feed(&self, feed: Arc<dyn Feed>) -> EventId {
        let position = {
            let mut log = self.log.lock();
            log.feed = Some(feed);
            log.id(log.head())
        };
        self.start_sweeper();
        position
    }
}

#[cfg(test)]
mod tests {
    use watchbus_core::{Data, Key};

    use super::*;

    fn store_of(keys: &[&str]) -> MemoryStore {
        let store = MemoryStore::new(Retention {
            max_events: 1000,
            ..Retention::default()
        });
        for key in keys {
            let draft = Draft::to_key(Key::new(key).unwrap(), Data::text("x"));
            store.try_append_now(draft).unwrap();
        }
        store
    }

    fn filter(key: &str) -> Filter {
        Filter::keys([Key::new(key).unwrap()])
    }

    /// What a page says: its events' seqs, where it got to, and whether it
    /// reached the head.
    fn outline(page: &Page) -> (Vec<u64>, u64, bool) {
        let seqs = page.events.iter().map(|e| e.id().seq).collect();
        (seqs, page.through.seq, page.reached_head)
    }

    #[tokio::test]
    async fn a_read_in_steps_gives_the_page_of_a_read_in_one() {
        // a at 1, 4, 9, 10; b everywhere else.
        let keys = ["a", "b", "b", "a", "b", "b", "b", "b", "a", "a", "b"];
        let store = store_of(&keys);
        let epoch = store.log.lock().epoch;
        for after in 0..=keys.len() as u64 {
            for limit in 1..=5 {
                for key in ["a", "b", "c"] {
                    let after = EventId { epoch, seq: after };
                    let whole = store
                        .read_after_in_steps(after, &filter(key), limit, usize::MAX)
                        .await
                        .unwrap();
                    for step in [1, 2, 3, 7] {
                        let stepped = store
                            .read_after_in_steps(after, &filter(key), limit, step)
                            .await
                            .unwrap();
                        assert_eq!(
                            outline(&stepped),
                            outline(&whole),
                            "after {after} limit {limit} key {key} step {step}"
                        );
                    }
                }
            }
        }
        let all = store
            .read_after_in_steps(EventId { epoch, seq: 0 }, &filter("a"), 10, 2)
            .await
            .unwrap();
        assert_eq!(outline(&all), (vec![1, 4, 9, 10], 11, true));
    }

    #[test]
    fn a_step_whose_start_was_evicted_meanwhile_ends_the_page_there() {
        let store = store_of(&["a", "b", "b", "a"]);
        let epoch = store.log.lock().epoch;
        let mut page = Page {
            events: Vec::new(),
            through: EventId { epoch, seq: 0 },
            reached_head: false,
        };
        let mut log = store.log.lock();
        log.read_after(&mut page, &filter("a"), 10, 2).unwrap();
        assert_eq!(outline(&page), (vec![1], 2, false));
        // A reset between two steps evicts what the next step would read.
        log.reset();
        assert!(matches!(
            log.read_after(&mut page, &filter("a"), 10, 2),
            Err(StoreError::Gone(_))
        ));
        assert_eq!(outline(&page), (vec![1], 2, false));
    }
}
