//! Builders, receive helpers with a hang guard, and a store wrapper whose
//! reads can be held at a gate (to test what happens while a replay waits).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::{Semaphore, watch};
use watchbus::{
    Data, Draft, Event, EventId, EventType, Feed, Filter, Hub, HubError, Key, KeyPrefix, LogStats,
    ManualClock, MemoryStore, OnGone, Page, ResumePoint, Retention, Store, StoreError, StreamEnd,
    SubscribeRequest, Subscription, Target, Timestamp,
};

/// Only to detect a hang; no test asserts on speed.
pub(crate) const HANG: Duration = Duration::from_secs(10);

/// A fixed start for manual clocks: 2027-01-15T08:00:00.000Z.
pub(crate) const T0: Timestamp = Timestamp(1_800_000_000_000);

pub(crate) fn key(text: &str) -> Key {
    Key::new(text).unwrap()
}

pub(crate) fn prefix(text: &str) -> KeyPrefix {
    KeyPrefix::new(text).unwrap()
}

pub(crate) fn ty(text: &str) -> EventType {
    EventType::new(text).unwrap()
}

pub(crate) fn keep(max_events: usize) -> Retention {
    Retention {
        max_events,
        ..Retention::default()
    }
}

pub(crate) fn hub_keeping(max_events: usize) -> Hub {
    Hub::new(MemoryStore::new(keep(max_events)))
}

/// A hub whose events take their times from a manual clock at [`T0`].
pub(crate) fn clocked_hub(retention: Retention) -> (Hub, ManualClock) {
    let clock = ManualClock::new(T0);
    (
        Hub::new(MemoryStore::with_clock(retention, Arc::new(clock.clone()))),
        clock,
    )
}

/// The epoch of the hub's store (from its oldest position).
pub(crate) async fn epoch(hub: &Hub) -> u64 {
    hub.store()
        .resolve(ResumePoint::Oldest)
        .await
        .unwrap()
        .epoch
}

/// `"key:text"` for a key event, `"prefix*:text"` for a broadcast.
pub(crate) fn label(event: &Event) -> String {
    match event.target() {
        Target::Key(key) => format!("{key}:{}", event.data().raw_text()),
        Target::Prefix(prefix) => format!("{prefix}*:{}", event.data().raw_text()),
    }
}

pub(crate) fn ids(events: &[Arc<Event>]) -> Vec<EventId> {
    events.iter().map(|e| e.id()).collect()
}

pub(crate) async fn publish(hub: &Hub, to: &str, text: &str) -> Arc<Event> {
    hub.publish(key(to), Data::text(text)).await.unwrap()
}

pub(crate) async fn publish_typed(hub: &Hub, to: &str, event_type: &str, text: &str) -> Arc<Event> {
    hub.publish_one(Draft::to_key(key(to), Data::text(text)).with_type(ty(event_type)))
        .await
        .unwrap()
}

pub(crate) async fn broadcast(hub: &Hub, to: &str, text: &str) -> Arc<Event> {
    hub.broadcast(prefix(to), Data::text(text)).await.unwrap()
}

/// Publishes `n` events to `to`, with texts `"0"`, `"1"`, ...
pub(crate) async fn publish_n(hub: &Hub, to: &str, n: usize) -> Vec<Arc<Event>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(publish(hub, to, &i.to_string()).await);
    }
    out
}

pub(crate) async fn subscribe(
    hub: &Hub,
    filter: Filter,
    from: Option<ResumePoint>,
) -> Result<Subscription, HubError> {
    hub.subscribe(SubscribeRequest {
        filter,
        from,
        on_gone: OnGone::Error,
    })
    .await
}

pub(crate) async fn resume_after(
    hub: &Hub,
    filter: Filter,
    after: EventId,
) -> Result<Subscription, HubError> {
    subscribe(hub, filter, Some(ResumePoint::After(after))).await
}

/// Resumes after `after`, or, if that is gone, goes on live and says so
/// (`on_gone=event`).
pub(crate) async fn go_live_after(
    hub: &Hub,
    filter: Filter,
    after: EventId,
) -> Result<Subscription, HubError> {
    hub.subscribe(SubscribeRequest {
        filter,
        from: Some(ResumePoint::After(after)),
        on_gone: OnGone::GoLive,
    })
    .await
}

/// The next event or end, failing the test after [`HANG`].
pub(crate) async fn recv(sub: &mut Subscription) -> Result<Arc<Event>, StreamEnd> {
    match tokio::time::timeout(HANG, sub.recv()).await {
        Ok(answer) => answer,
        Err(_) => panic!("recv hung for {HANG:?} on {sub:?}"),
    }
}

/// Exactly `n` events; fails on an early end or a hang.
pub(crate) async fn recv_n(sub: &mut Subscription, n: usize) -> Vec<Arc<Event>> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match recv(sub).await {
            Ok(event) => got.push(event),
            Err(end) => panic!(
                "ended {end:?} after {} of {n} events: {:?}",
                got.len(),
                got.iter().map(|e| label(e)).collect::<Vec<_>>()
            ),
        }
    }
    got
}

/// What one poll gives: `None` when nothing is ready. `recv` is cancel
/// safe, so this loses nothing.
pub(crate) fn try_recv(sub: &mut Subscription) -> Option<Result<Arc<Event>, StreamEnd>> {
    sub.recv().now_or_never()
}

/// A gate that store calls can be held at.
#[derive(Debug)]
pub(crate) struct Gate {
    closed: AtomicBool,
    permits: Semaphore,
    entered: watch::Sender<usize>,
}

impl Gate {
    fn new() -> Self {
        Self {
            closed: AtomicBool::new(true),
            permits: Semaphore::new(0),
            entered: watch::Sender::new(0),
        }
    }

    /// Lets every call through from now on.
    pub(crate) fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.permits.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// Lets `n` held calls through.
    pub(crate) fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Waits until `n` calls have reached the gate in total.
    pub(crate) async fn wait_entered(&self, n: usize) {
        let mut seen = self.entered.subscribe();
        let reached = tokio::time::timeout(HANG, seen.wait_for(|k| *k >= n)).await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "{n} calls never reached the gate"
        );
    }

    async fn pass(&self) {
        if !self.closed.load(Ordering::SeqCst) {
            return;
        }
        self.entered.send_modify(|k| *k += 1);
        self.permits.acquire().await.unwrap().forget();
    }
}

/// Which store calls wait at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gated {
    /// `resolve` waits (a subscribe call is in flight).
    Resolve,
    /// `read_after` reads the log when called, then waits before answering.
    ReadSnapshotFirst,
    /// `read_after` waits, then reads the log.
    ReadAfterGate,
}

/// A memory store whose `resolve` or `read_after` can be held, as a slow
/// (remote) store would be.
#[derive(Debug)]
pub(crate) struct GatedStore {
    inner: MemoryStore,
    gate: Arc<Gate>,
    gated: Gated,
}

impl GatedStore {
    pub(crate) fn hub(retention: Retention, gated: Gated) -> (Hub, Arc<Gate>) {
        let gate = Arc::new(Gate::new());
        let store = Self {
            inner: MemoryStore::new(retention),
            gate: Arc::clone(&gate),
            gated,
        };
        (Hub::new(store), gate)
    }
}

impl Store for GatedStore {
    fn append(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>> {
        self.inner.append(drafts)
    }

    fn resolve(&self, point: ResumePoint) -> BoxFuture<'_, Result<EventId, StoreError>> {
        if self.gated != Gated::Resolve {
            return self.inner.resolve(point);
        }
        async move {
            self.gate.pass().await;
            self.inner.resolve(point).await
        }
        .boxed()
    }

    fn read_after<'a>(
        &'a self,
        after: EventId,
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        match self.gated {
            Gated::Resolve => self.inner.read_after(after, filter, limit),
            Gated::ReadSnapshotFirst => {
                let page = self.inner.read_after(after, filter, limit);
                async move {
                    self.gate.pass().await;
                    page.await
                }
                .boxed()
            }
            Gated::ReadAfterGate => async move {
                self.gate.pass().await;
                self.inner.read_after(after, filter, limit).await
            }
            .boxed(),
        }
    }

    fn reset(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.reset()
    }

    fn stats(&self) -> BoxFuture<'_, Result<LogStats, StoreError>> {
        self.inner.stats()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.ready()
    }

    fn start_feed(&self, feed: Arc<dyn Feed>) -> EventId {
        self.inner.start_feed(feed)
    }
}

/// Open subscriptions, as stats show them.
pub(crate) async fn active(hub: &Hub) -> u64 {
    hub.stats().await.unwrap().subscribers_active
}

/// Public handles can move between tasks.
#[test]
fn public_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Hub>();
    send::<Subscription>();
    send_sync::<Arc<Event>>();
    send_sync::<HubError>();
}
