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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures_util::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use watchbus_core::{Clock, Draft, Event, EventId, Filter, SystemClock, Timestamp};

use super::{Feed, LogEdge, LogStats, Page, ResumePoint, Retention, Store, StoreError};

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
    log: Arc<Mutex<Log>>,
    clock: Arc<dyn Clock>,
    retention: Retention,
}

struct Log {
    epoch: u64,
    events: VecDeque<Arc<Event>>,
    /// The seq of the newest event appended (0: none yet).
    head: u64,
    /// The seq of the newest event evicted (0: none).
    evicted_through: u64,
    /// The time of the newest evicted event.
    evicted_time: Option<Timestamp>,
    last_time: Timestamp,
    bytes: u64,
    published: u64,
    evicted: u64,
    feed: Option<Arc<dyn Feed>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("epoch", &self.epoch)
            .field("head", &self.head)
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
            head: 0,
            evicted_through: 0,
            evicted_time: None,
            last_time: now,
            bytes: 0,
            published: 0,
            evicted: 0,
            feed: None,
        };
        Self {
            log: Arc::new(Mutex::new(log)),
            clock,
            retention,
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn append_now(&self, drafts: Vec<Draft>) -> Vec<Arc<Event>> {
        let now = self.now();
        let mut log = self.log.lock();
        let mut appended = Vec::with_capacity(drafts.len());
        for draft in drafts {
            log.head += 1;
            log.last_time = log.last_time.max(now);
            let event = Arc::new(draft.stored(EventId::new(log.epoch, log.head), log.last_time));
            log.bytes += event.retained_bytes() as u64;
            log.events.push_back(Arc::clone(&event));
            appended.push(event);
        }
        log.published += appended.len() as u64;
        log.evict(&self.retention, now);
        if let Some(feed) = &log.feed {
            feed.deliver(&appended, EventId::new(log.epoch, log.evicted_through));
        }
        appended
    }

    /// Evicts what has aged out, and tells the feed. Called by the sweeper
    /// and before every read, so reads see the exact edge.
    fn expire(&self) {
        let now = self.now();
        let mut log = self.log.lock();
        if log.evict(&self.retention, now) {
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
    log: Weak<Mutex<Log>>,
    clock: Arc<dyn Clock>,
    retention: Retention,
}

impl Sweeper {
    /// False once the store is gone.
    fn sweep(&self) -> bool {
        let Some(log) = self.log.upgrade() else {
            return false;
        };
        let mut log = log.lock();
        if log.evict(&self.retention, self.clock.now()) {
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

    /// Applies retention; true when something was evicted.
    fn evict(&mut self, retention: &Retention, now: Timestamp) -> bool {
        let cutoff = retention
            .max_age
            .map(|age| Timestamp(now.as_millis().saturating_sub(age.as_millis() as u64)));
        let mut any = false;
        while let Some(oldest) = self.events.front() {
            let over_count = self.events.len() > retention.max_events;
            let over_bytes = retention.max_bytes.is_some_and(|max| self.bytes > max);
            let too_old = cutoff.is_some_and(|cutoff| oldest.time() < cutoff);
            if !(over_count || over_bytes || too_old) {
                break;
            }
            self.evicted_through = oldest.id().seq;
            self.evicted_time = Some(oldest.time());
            self.bytes -= oldest.retained_bytes() as u64;
            self.evicted += 1;
            self.events.pop_front();
            any = true;
        }
        any
    }

    fn edge(&self) -> LogEdge {
        LogEdge {
            epoch: self.epoch,
            head: self.head,
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
                if self.evicted_time.is_some_and(|evicted| evicted >= time) {
                    return Err(self.edge().gone(time.to_string()));
                }
                let first = self.events.partition_point(|e| e.time() < time);
                let seq = match self.events.get(first) {
                    Some(event) => event.id().seq - 1,
                    None => self.head,
                };
                Ok(self.id(seq))
            }
        }
    }

    fn read_after(
        &self,
        after: EventId,
        filter: &Filter,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.edge().check_after(after)?;
        let first_seq = self.evicted_through + 1;
        let skip = usize::try_from(after.seq + 1 - first_seq).unwrap_or(usize::MAX);
        let mut page = Page {
            events: Vec::new(),
            through: after,
            reached_head: true,
        };
        for event in self.events.iter().skip(skip) {
            if page.events.len() == limit {
                page.reached_head = false;
                break;
            }
            if filter.matches(event) {
                page.events.push(Arc::clone(event));
            }
            page.through = event.id();
        }
        Ok(page)
    }

    fn stats(&self) -> LogStats {
        LogStats {
            published: self.published,
            retained: self.events.len() as u64,
            evicted: self.evicted,
            oldest: self.events.front().map(|e| e.id()),
            latest: self.events.back().map(|e| e.id()),
        }
    }

    fn reset(&mut self) {
        if let Some(newest) = self.events.back() {
            self.evicted_through = newest.id().seq;
            self.evicted_time = Some(newest.time());
        }
        self.events.clear();
        self.bytes = 0;
        self.published = 0;
        self.evicted = 0;
        if let Some(feed) = &self.feed {
            feed.reset(self.id(self.head));
        }
    }
}

impl Store for MemoryStore {
    fn append(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>> {
        let appended = self.append_now(drafts);
        async move { Ok(appended) }.boxed()
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
        let page = self.log.lock().read_after(after, filter, limit);
        async move { page }.boxed()
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

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async { Ok(()) }.boxed()
    }

    fn start_feed(&self, feed: Arc<dyn Feed>) -> EventId {
        let position = {
            let mut log = self.log.lock();
            log.feed = Some(feed);
            log.id(log.head)
        };
        self.start_sweeper();
        position
    }
}
