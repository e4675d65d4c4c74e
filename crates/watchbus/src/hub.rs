//! The hub: publish into the store, fan out the store's live feed.
//!
//! # The life of an event
//!
//! 1. [`Hub::publish`] (or the HTTP layer) hands validated drafts to
//!    [`Store::append`], which gives them ids and times, all or nothing.
//! 2. The store's live feed calls the hub's dispatch with the new events, in
//!    id order, whoever appended them.
//! 3. Dispatch looks the event's key up in the [`MatchIndex`] (exact keys,
//!    then prefixes, then all-key subscribers) and pushes a shared pointer
//!    into the mailbox of each match whose type filter passes. Subscribers
//!    that do not match are not touched.
//! 4. Each [`Subscription`] wakes, takes its mailbox in one batch, and its
//!    transport writes the frames (encoded once per event and format).
//!
//! Resume is a question to the store: [`Store::resolve`] the point, then
//! [`Store::read_after`] it, then the live mailbox (see [`Subscription`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use watchbus_core::{
    Data, Draft, Event, EventId, Filter, Key, KeyPrefix, MatchIndex, SubscriberId,
};

use crate::cache::CacheAligned;
use crate::error::HubError;
use crate::store::{
    AppendNowError, Appended, Feed, KeyTableStats, LogStats, Once, Page, ResumePoint, Store,
    StoreError, Wakeups,
};
use crate::subscription::{Mailbox, StreamEnd, Subscription};

/// The event hub. Cheap to clone: clones share one hub.
///
/// # Examples
///
/// ```
/// use watchbus::{Data, Hub, Key};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let hub = Hub::memory();
/// let key = Key::new("orders/42").unwrap();
/// let mut watch = hub.watch(key.clone()).await.unwrap();
/// let published = hub.publish(key, Data::text("shipped")).await.unwrap();
/// let event = watch.recv().await.unwrap();
/// assert_eq!(event.id(), published.id());
/// assert_eq!(event.data().as_json(), r#""shipped""#);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// What to subscribe to and where to start.
#[derive(Debug, Clone, Default)]
pub struct SubscribeRequest {
    /// The events wanted.
    pub filter: Filter,
    /// Where to resume; `None` starts live.
    pub from: Option<ResumePoint>,
    /// What to do when the resume point is gone.
    pub on_gone: OnGone,
}

/// What a subscription does when the events after its resume point are no
/// longer all retained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnGone {
    /// Refuse: [`HubError::Gone`] (HTTP `410`).
    #[default]
    Error,
    /// Start live, and say what was gone through [`Subscription::gone`]
    /// (HTTP `on_gone=event`).
    GoLive,
}

/// Subscriber counts and the log's state, as `GET /v1/stats` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Open subscriptions.
    pub subscribers_active: u64,
    /// Subscriptions opened since start or the last reset.
    pub subscribers_total: u64,
    /// The log.
    pub log: LogStats,
}

/// Counters that only ever grow, for Prometheus; they survive resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Events stored through this hub.
    pub published_events: u64,
    /// Idempotent publishes answered with an earlier publish's receipts
    /// ([`Hub::publish_all_once`]): retries that stored nothing.
    pub replayed_publishes: u64,
    /// Events the live feed delivered to this hub (from any node).
    pub dispatched_events: u64,
    /// Event deliveries into subscriber mailboxes.
    pub deliveries: u64,
    /// Subscriptions opened.
    pub subscriptions_opened: u64,
    /// Subscriptions open now (a gauge).
    pub subscriptions_active: u64,
    /// Subscriptions ended because they lagged out of retention.
    pub subscriptions_lagged: u64,
    /// Admin resets.
    pub resets: u64,
    /// The idempotency keys the store remembers in this process, when it
    /// keeps them here ([`Store::key_table`]).
    pub key_table: Option<KeyTableStats>,
}

/// The counters kept outside the registry. Dispatch counts its own under
/// the registry lock it holds anyway: an atomic add there would be one more
/// contended cache line on every publish.
#[derive(Debug, Default)]
struct Counters {
    published_events: AtomicU64,
    replayed_publishes: AtomicU64,
    subscriptions_opened: AtomicU64,
    subscriptions_lagged: AtomicU64,
    resets: AtomicU64,
}

pub(crate) struct Shared {
    store: Arc<dyn Store>,
    /// Signalled when the last subscription goes away.
    idle: tokio::sync::Notify,
    /// Shared with the store's feed, which dispatches into it.
    registry: Arc<CacheAligned<Mutex<Registry>>>,
    next_subscriber: AtomicU64,
    counters: Counters,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

// `repr(C)`: the fields a dispatch writes come first, in the cache line of
// the lock (see `CacheAligned`).
#[repr(C)]
struct Registry {
    /// The newest event dispatched.
    position: EventId,
    /// Events dispatched, ever ([`Metrics::dispatched_events`]).
    dispatched: u64,
    /// Mailbox deliveries, ever ([`Metrics::deliveries`]).
    deliveries: u64,
    index: MatchIndex<Arc<Mailbox>>,
    all: HashMap<SubscriberId, Arc<Mailbox>>,
    /// Subscriptions opened since start or the last reset.
    total: u64,
    /// The most subscriptions open at once ([`Hub::with_max_subscribers`]).
    max_subscribers: usize,
    shutting_down: bool,
}

impl Hub {
    /// A hub over `store`; starts the store's live feed.
    pub fn new(store: impl Store) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A hub over a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        let registry = Registry {
            index: MatchIndex::new(),
            all: HashMap::new(),
            position: EventId::new(0, 0),
            total: 0,
            max_subscribers: usize::MAX,
            shutting_down: false,
            dispatched: 0,
            deliveries: 0,
        };
        let shared = Arc::new(Shared {
            store,
            idle: tokio::sync::Notify::new(),
            registry: Arc::new(CacheAligned(Mutex::new(registry))),
            next_subscriber: AtomicU64::new(1),
            counters: Counters::default(),
        });
        let feed: Arc<dyn Feed> = Arc::new(HubFeed(Arc::clone(&shared.registry)));
        let position = shared.store.start_feed(feed);
        shared.registry.lock().position = position;
        Self { shared }
    }

    /// This hub, holding at most `max` subscriptions open at once (at
    /// least 1): one more is refused with [`HubError::TooManySubscribers`]
    /// until one closes. Every open subscription costs memory, and a stream
    /// a file descriptor: a bound refuses the next client clearly instead of
    /// failing every client when the process runs out. No bound by default.
    #[must_use]
    pub fn with_max_subscribers(self, max: usize) -> Self {
        self.shared.registry.lock().max_subscribers = max.max(1);
        self
    }

    /// A hub on a fresh in-memory store with the default retention.
    pub fn memory() -> Self {
        Self::new(crate::store::memory::MemoryStore::new(
            crate::store::Retention::default(),
        ))
    }

    /// The store under this hub.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Publishes `data` to `key`. Returns once the event is stored.
    ///
    /// # Errors
    /// [`HubError::Unavailable`] when the store did not confirm it: with
    /// Redis, an append that timed out may still be stored, then or later
    /// (see [`Hub::publish_all`]); [`HubError::ShuttingDown`] once the
    /// memory store is shut down.
    pub async fn publish(&self, key: Key, data: Data) -> Result<Arc<Event>, HubError> {
        self.publish_one(Draft::to_key(key, data)).await
    }

    /// Broadcasts `data` to every key starting with `prefix`.
    ///
    /// # Errors
    /// [`HubError::Unavailable`] when the store did not confirm it: with
    /// Redis, an append that timed out may still be stored, then or later
    /// (see [`Hub::publish_all`]); [`HubError::ShuttingDown`] once the
    /// memory store is shut down.
    pub async fn broadcast(&self, prefix: KeyPrefix, data: Data) -> Result<Arc<Event>, HubError> {
        self.publish_one(Draft::to_prefix(prefix, data)).await
    }

    /// Publishes one draft (typed, or a broadcast).
    ///
    /// # Errors
    /// [`HubError::Unavailable`] when the store did not confirm it: with
    /// Redis, an append that timed out may still be stored, then or later
    /// (see [`Hub::publish_all`]); [`HubError::ShuttingDown`] once the
    /// memory store is shut down.
    pub async fn publish_one(&self, draft: Draft) -> Result<Arc<Event>, HubError> {
        // An in-process store appends at once: no vectors, no future.
        let draft = match self.shared.store.try_append_now(draft) {
            Ok(event) => {
                self.shared
                    .counters
                    .published_events
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(event);
            }
            Err(AppendNowError::WouldWait(draft)) => draft,
            Err(AppendNowError::Refused(err)) => return Err(err.into()),
        };
        let mut events = self.publish_all(vec![draft]).await?;
        events
            .pop()
            .ok_or_else(|| HubError::Unavailable("the store returned no event".into()))
    }

    /// Publishes drafts in order, all or none.
    ///
    /// A publish future dropped before it completes (a timeout of the
    /// caller's, say) may still store its events: on Redis the append was
    /// sent and runs. Retrying after such a drop, or after
    /// [`HubError::Unavailable`], may store the events twice; use
    /// [`Hub::publish_all_once`] where that matters.
    ///
    /// # Errors
    /// [`HubError::Unavailable`] when the store did not confirm the append:
    /// a store that could not be reached stored nothing, but with Redis an
    /// append that timed out may still be stored, then or later (Redis
    /// runs a command still queued when it wakes); [`HubError::ShuttingDown`]
    /// once the memory store is shut down.
    pub async fn publish_all(&self, drafts: Vec<Draft>) -> Result<Vec<Arc<Event>>, HubError> {
        let events = self.shared.store.append(drafts).await?;
        self.shared
            .counters
            .published_events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(events)
    }

    /// Publishes drafts in order, all or none, once per idempotency key:
    /// a retry of the request `once` names, within the retention's
    /// idempotency window, stores nothing and answers the first publish's
    /// receipts ([`Appended::Replayed`]). For a publisher that retries
    /// when it cannot tell whether a publish was stored.
    ///
    /// # Errors
    /// [`HubError::KeyReused`] when the key named a different request;
    /// [`HubError::Unavailable`] as [`Hub::publish_all`].
    pub async fn publish_all_once(
        &self,
        once: &Once,
        drafts: Vec<Draft>,
    ) -> Result<Appended, HubError> {
        let appended = self.shared.store.append_once(once, drafts).await?;
        let counters = &self.shared.counters;
        match &appended {
            Appended::Stored(events) => counters
                .published_events
                .fetch_add(events.len() as u64, Ordering::Relaxed),
            Appended::Replayed(_) => counters.replayed_publishes.fetch_add(1, Ordering::Relaxed),
        };
        Ok(appended)
    }

    /// Watches one key, live.
    ///
    /// # Errors
    /// [`HubError::ShuttingDown`].
    pub async fn watch(&self, key: Key) -> Result<Subscription, HubError> {
        self.subscribe(SubscribeRequest {
            filter: Filter::keys([key]),
            ..SubscribeRequest::default()
        })
        .await
    }

    /// Subscribes to every key starting with `prefix`, live.
    ///
    /// # Errors
    /// [`HubError::ShuttingDown`].
    pub async fn subscribe_prefix(&self, prefix: KeyPrefix) -> Result<Subscription, HubError> {
        self.subscribe(SubscribeRequest {
            filter: Filter::prefixes([prefix]),
            ..SubscribeRequest::default()
        })
        .await
    }

    /// Subscribes with a filter and an optional resume point.
    ///
    /// # Errors
    /// [`HubError::Gone`] when events after the resume point were evicted
    /// (unless `on_gone` is [`OnGone::GoLive`]), [`HubError::UnknownId`] for
    /// an id never issued, [`HubError::Unavailable`], and
    /// [`HubError::ShuttingDown`], [`HubError::TooManySubscribers`].
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, HubError> {
        // Register first, so live events collect while the resume point is
        // resolved and replayed.
        let (id, mailbox, live_from) = self.shared.register(request.filter)?;
        let guard = Unregister {
            shared: &self.shared,
            id,
            mailbox: &mailbox,
            armed: true,
        };
        let (start, gone) = match request.from {
            None => (None, None),
            Some(point) => match self.shared.store.resolve(point).await {
                Ok(after) => (Some(after), None),
                Err(StoreError::Gone(gone)) if request.on_gone == OnGone::GoLive => {
                    (None, Some(gone))
                }
                Err(err) => return Err(err.into()),
            },
        };
        guard.disarm();
        self.shared.note_opened();
        Ok(Subscription::new(
            Arc::clone(&self.shared),
            id,
            mailbox,
            live_from,
            start,
            gone,
        ))
    }

    /// Up to `limit` events matching `filter` after `from` (from the oldest
    /// retained event when `None`).
    ///
    /// # Errors
    /// As [`Hub::subscribe`].
    pub async fn history(
        &self,
        filter: &Filter,
        from: Option<ResumePoint>,
        limit: usize,
    ) -> Result<Page, HubError> {
        let after = self
            .shared
            .store
            .resolve(from.unwrap_or(ResumePoint::Oldest))
            .await?;
        Ok(self.shared.store.read_after(after, filter, limit).await?)
    }

    /// Evicts every event, ends every stream and zeroes the totals. Ids keep
    /// increasing.
    ///
    /// # Errors
    /// [`HubError::Unavailable`].
    pub async fn reset(&self) -> Result<(), HubError> {
        self.shared.store.reset().await?;
        self.shared.counters.resets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Subscriber counts and the log's state.
    ///
    /// # Errors
    /// [`HubError::Unavailable`].
    pub async fn stats(&self) -> Result<Stats, HubError> {
        let log = self.shared.store.stats().await?;
        let registry = self.shared.registry.lock();
        Ok(Stats {
            subscribers_active: registry.all.len() as u64,
            subscribers_total: registry.total,
            log,
        })
    }

    /// The counters for Prometheus.
    pub fn metrics(&self) -> Metrics {
        let c = &self.shared.counters;
        // Before the registry lock: a keyed append holds the key table's
        // lock while it delivers, which takes the registry's.
        let key_table = self.shared.store.key_table();
        let registry = self.shared.registry.lock();
        Metrics {
            published_events: c.published_events.load(Ordering::Relaxed),
            replayed_publishes: c.replayed_publishes.load(Ordering::Relaxed),
            dispatched_events: registry.dispatched,
            deliveries: registry.deliveries,
            subscriptions_opened: c.subscriptions_opened.load(Ordering::Relaxed),
            subscriptions_active: registry.all.len() as u64,
            subscriptions_lagged: c.subscriptions_lagged.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
            key_table,
        }
    }

    /// Succeeds when the store can serve.
    ///
    /// # Errors
    /// [`HubError::Unavailable`].
    pub async fn ready(&self) -> Result<(), HubError> {
        Ok(self.shared.store.ready().await?)
    }

    /// Resolves once no subscription is open: after [`Hub::shutdown`], when
    /// every transport has finished (a WebSocket has sent its close frame).
    pub async fn idle(&self) {
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            // Register before looking, so a drop in between is not missed.
            notified.as_mut().enable();
            if self.shared.registry.lock().all.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Ends every stream with [`StreamEnd::Shutdown`], once it has handed
    /// out every event published before, and refuses new subscriptions.
    /// Publishing is refused too ([`HubError::ShuttingDown`]) on a store
    /// whose log lives in this process, where no one could read it any
    /// more; on a shared store (Redis) it goes on, for the other servers'
    /// subscribers. See [`Store::close`].
    pub fn shutdown(&self) {
        // First the store: every event it accepted has then reached the
        // mailboxes, which hand it out before they end.
        self.shared.store.close();
        let mut registry = self.shared.registry.lock();
        registry.shutting_down = true;
        for mailbox in registry.all.values() {
            mailbox.end(StreamEnd::Shutdown);
        }
    }
}

/// Unregisters a subscriber whose subscribe call failed or was cancelled.
struct Unregister<'a> {
    shared: &'a Arc<Shared>,
    id: SubscriberId,
    mailbox: &'a Arc<Mailbox>,
    armed: bool,
}

impl Unregister<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.unregister(self.id, self.mailbox);
        }
    }
}

impl Shared {
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn note_lagged(&self) {
        self.counters
            .subscriptions_lagged
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The newest event dispatched.
    pub(crate) fn position(&self) -> EventId {
        self.registry.lock().position
    }

    fn register(&self, filter: Filter) -> Result<(SubscriberId, Arc<Mailbox>, EventId), HubError> {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let mut registry = self.registry.lock();
        if registry.shutting_down {
            return Err(HubError::ShuttingDown);
        }
        if registry.all.len() >= registry.max_subscribers {
            return Err(HubError::TooManySubscribers {
                max: registry.max_subscribers,
            });
        }
        let mailbox = Arc::new(Mailbox::new(filter, registry.position));
        registry
            .index
            .insert(id, mailbox.filter(), Arc::clone(&mailbox));
        registry.all.insert(id, Arc::clone(&mailbox));
        Ok((id, mailbox, registry.position))
    }

    /// Counts a subscription once it is accepted (a refused or cancelled
    /// subscribe is not one).
    fn note_opened(&self) {
        self.registry.lock().total += 1;
        self.counters
            .subscriptions_opened
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unregister(&self, id: SubscriberId, mailbox: &Mailbox) {
        let mut registry = self.registry.lock();
        registry.index.remove(id, mailbox.filter());
        registry.all.remove(&id);
        if registry.all.is_empty() {
            self.idle.notify_waiters();
        }
    }
}

impl Registry {
    fn dispatch(&mut self, events: &[Arc<Event>], evicted_through: EventId, wakeups: &mut Wakeups) {
        let mut deliveries = 0u64;
        for event in events {
            self.index.for_each_candidate(event.target(), |_, mailbox| {
                deliveries += u64::from(mailbox.push(event, evicted_through, wakeups));
            });
            self.position = event.id();
        }
        self.dispatched += events.len() as u64;
        self.deliveries += deliveries;
    }

    fn end_all(&mut self, reason: StreamEnd, position: EventId) {
        self.position = self.position.max(position);
        for mailbox in self.all.values() {
            mailbox.end(reason);
        }
        self.total = 0;
    }
}

/// The hub as the store's feed. It holds the registry only, not the hub:
/// the store does not keep the hub alive through its feed, and a dispatch
/// costs no reference count on the hub.
struct HubFeed(Arc<CacheAligned<Mutex<Registry>>>);

impl Feed for HubFeed {
    fn deliver(&self, events: &[Arc<Event>], evicted_through: EventId, wakeups: &mut Wakeups) {
        self.0.lock().dispatch(events, evicted_through, wakeups);
    }

    fn evicted(&self, through: EventId) {
        let registry = self.0.lock();
        for mailbox in registry.all.values() {
            mailbox.check_lag(through);
        }
    }

    fn reset(&self, position: EventId) {
        self.0.lock().end_all(StreamEnd::Reset, position);
    }
}
