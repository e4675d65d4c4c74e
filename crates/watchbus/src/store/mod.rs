//! The store: one ordered log of events, with retention.
//!
//! Every store (memory, Redis, ...) answers the same few questions, and the
//! hub, the matching and the transports never know which one runs:
//!
//! - [`Store::append`] gives drafts their ids and times, all or nothing;
//! - [`Store::resolve`] turns a resume point into a log position, or says
//!   the events after it are gone;
//! - [`Store::read_after`] replays the events after a position;
//! - the **live feed**: once [`Store::start_feed`] is called, the store hands
//!   every appended event to the [`Feed`] exactly once, in id order, whoever
//!   appended it (this process or, for a shared store, another node).
//!
//! # The 410 edge
//!
//! A store remembers the newest event it evicted. A resume after position
//! `p` is possible exactly when every event after `p` is retained, that is
//! when `p` is at or after the newest evicted id. Exactly at the edge it is
//! not gone.

use std::fmt;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use futures_util::future::BoxFuture;
use smallvec::SmallVec;
use thiserror::Error;
use watchbus_core::{Draft, Event, EventId, Filter, Timestamp};

pub mod memory;
mod once;
#[cfg(feature = "redis")]
pub mod redis;

pub use once::{Appended, IdempotencyKey, InvalidIdempotencyKey, Once, Receipt};

/// Where a subscriber resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumePoint {
    /// After this event id, exclusive (`Last-Event-ID`, `from`).
    After(EventId),
    /// At this time, inclusive: every event with `time >=` it
    /// (`from_timestamp`).
    At(Timestamp),
    /// From the oldest retained event (history without a resume point).
    Oldest,
}

/// How much of the log a store keeps for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many events (at least 1).
    pub max_events: usize,
    /// Also evict events older than this.
    pub max_age: Option<Duration>,
    /// Also evict the oldest events while they add up to more than this
    /// many bytes (each counted as [`Event::retained_bytes`]: its key, type
    /// and data plus a fixed allowance for the envelope).
    pub max_bytes: Option<u64>,
    /// How long an idempotency key is remembered ([`Store::append_once`]):
    /// a retry within it is answered, not stored again.
    pub idempotency_window: Duration,
}

impl Retention {
    /// The default [`Retention::idempotency_window`]: five minutes, longer
    /// than any client's retries take.
    pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);
}

impl Default for Retention {
    /// 10,000 events, no age or byte bound: the contract's default; keys
    /// remembered for [`Retention::DEFAULT_IDEMPOTENCY_WINDOW`].
    fn default() -> Self {
        Self {
            max_events: 10_000,
            max_age: None,
            max_bytes: None,
            idempotency_window: Self::DEFAULT_IDEMPOTENCY_WINDOW,
        }
    }
}

/// One page of a replay.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The matching events, in id order.
    pub events: Vec<Arc<Event>>,
    /// The position the read got to: every matching event up to it is in
    /// `events`. Read the next page after it.
    pub through: EventId,
    /// True when the read reached the newest event in the log.
    pub reached_head: bool,
}

/// What a store holds now, and its totals since start or the last reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Events appended.
    pub published: u64,
    /// Events in the log now.
    pub retained: u64,
    /// Events evicted.
    pub evicted: u64,
    /// The oldest retained event.
    pub oldest: Option<EventId>,
    /// The newest retained event.
    pub latest: Option<EventId>,
    /// The time of the oldest retained event: about how far back a resume
    /// can reach now.
    pub oldest_time: Option<Timestamp>,
}

/// The idempotency keys a store remembers in this process, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct KeyTableStats {
    /// Keys remembered now, each within its window.
    pub remembered: u64,
    /// Keys forgotten before their window ended, because the table was
    /// full, since the store was made: a retry of one of them was stored
    /// again. Only grows.
    pub forgotten_early: u64,
}

/// Why a store refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Some event after the resume point was evicted: the caller cannot be
    /// given every event after it.
    #[error("{0}")]
    Gone(Gone),
    /// An id of this store's current life that it has not issued yet, or of
    /// a life that has not begun: the client could not have had it from us.
    #[error("event id {0} was never issued by this server")]
    UnknownId(EventId),
    /// The store was closed ([`Store::close`]): its log ends with this
    /// process, and nothing appended now could reach anyone.
    #[error("the store is closed: the server is shutting down")]
    Closed,
    /// The store cannot be reached, or did not answer in time. A read
    /// changed nothing; an append that timed out may still be stored, then
    /// or later (Redis runs a command still queued when it wakes).
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An idempotency key that names another request within its window
    /// ([`Store::append_once`]); nothing was stored.
    #[error(
        "idempotency key {:?} was already used for a different request; a new request needs a new key",
        .0.as_str()
    )]
    KeyReused(IdempotencyKey),
}

/// Why [`Store::try_append_now`] did not append.
#[derive(Debug)]
pub enum AppendNowError {
    /// Appending needs to wait: here is the draft, untouched, for
    /// [`Store::append`].
    WouldWait(Draft),
    /// The store refused it.
    Refused(StoreError),
}

/// The facts of a `410 Gone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    /// The resume point the client asked for.
    pub from: ResumePoint,
    /// The newest evicted event, when known: resuming after it works.
    pub evicted_through: Option<EventId>,
}

impl Gone {
    /// What a stream opened to go on live past a gone resume point
    /// (`on_gone=event`) tells its client: what was lost, and that the
    /// stream goes on.
    pub fn notice(&self) -> String {
        format!("{}; this stream goes on live", Facts(self))
    }
}

/// What was lost, without what to do about it.
struct Facts<'a>(&'a Gone);

impl fmt::Display for Facts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.from {
            ResumePoint::After(id) => write!(f, "events after {id}")?,
            ResumePoint::At(time) => write!(f, "events at or after {time}")?,
            // Never gone; named for completeness.
            ResumePoint::Oldest => f.write_str("the oldest events")?,
        }
        f.write_str(" are no longer retained")?;
        match self.0.evicted_through {
            Some(edge) => write!(f, " (everything up to {edge} was evicted)"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Gone {
    /// The `410` message: what was lost, and how to go on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; resume without a resume point to go on live",
            Facts(self)
        )
    }
}

impl std::error::Error for Gone {}

/// Where a log stands, as far as the 410 rule is concerned: its life, its
/// newest event and its newest evicted event. Every store answers resume
/// questions through this one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogEdge {
    /// The log's current life.
    pub(crate) epoch: u64,
    /// The seq of the newest event appended (0: none yet).
    pub(crate) head: u64,
    /// The seq of the newest event evicted (0: none).
    pub(crate) evicted_through: u64,
}

impl LogEdge {
    /// `Gone` for a resume from `from`.
    pub(crate) fn gone(&self, from: ResumePoint) -> StoreError {
        let evicted_through =
            (self.evicted_through > 0).then(|| EventId::new(self.epoch, self.evicted_through));
        StoreError::Gone(Gone {
            from,
            evicted_through,
        })
    }

    /// Succeeds when every event after `after` is still in the log: `after`
    /// is at or past the newest evicted id (exactly at the edge is not gone),
    /// in this life, and not beyond the head.
    pub(crate) fn check_after(&self, after: EventId) -> Result<(), StoreError> {
        if after.epoch < self.epoch
            || (after.epoch == self.epoch && after.seq < self.evicted_through)
        {
            return Err(self.gone(ResumePoint::After(after)));
        }
        if after.epoch > self.epoch || after.seq > self.head {
            return Err(StoreError::UnknownId(after));
        }
        Ok(())
    }
}

/// The subscribers a [`Feed::deliver`] call found waiting, to wake once the
/// store has released its locks.
///
/// A store delivers under its lock, so that delivery order is id order, but
/// waking a task means scheduling it on the runtime, which may unpark
/// another worker thread: done under the lock, that would stall every other
/// publisher. The store keeps this alive past its lock guard; dropping it
/// wakes every waker pushed, so no wake-up can be lost.
#[derive(Debug, Default)]
pub struct Wakeups(
    /// Most deliveries wake one subscriber: no allocation for it.
    SmallVec<[Waker; 1]>,
);

impl Wakeups {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes `waker` when this is dropped.
    pub fn push(&mut self, waker: Waker) {
        self.0.push(waker);
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

/// Where a store delivers its live feed: the hub.
///
/// Calls never overlap and come in id order.
pub trait Feed: Send + Sync + 'static {
    /// New events, in id order. `evicted_through` is the newest event the
    /// log had evicted when the last of them was appended. Subscribers to
    /// wake go into `wakeups`, which the store drops once it no longer
    /// holds a lock.
    fn deliver(&self, events: &[Arc<Event>], evicted_through: EventId, wakeups: &mut Wakeups);
    /// The log evicted up to `through` without a new event (age retention).
    fn evicted(&self, through: EventId);
    /// The log was emptied (an admin reset, or a shared store that lost its
    /// data): every open stream must end. `position` is the log's head.
    fn reset(&self, position: EventId);
}

/// An ordered, retained event log. See the [module docs](self).
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Stores `drafts` in order, all or none, and returns them as events
    /// with their ids and times. Returns only once they are stored.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when nothing could be stored.
    fn append(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>>;

    /// Stores one draft without waiting, when this store can, and returns
    /// it as an event with its id and time, as [`Store::append`] would.
    ///
    /// The in-process publish path: no future, no vectors. The default
    /// always declines.
    ///
    /// # Errors
    /// [`AppendNowError::WouldWait`] hands the draft back untouched when
    /// the store cannot append without waiting (it has a server to ask):
    /// the caller then uses [`Store::append`]. [`AppendNowError::Refused`]
    /// as [`Store::append`] would refuse it.
    fn try_append_now(&self, draft: Draft) -> Result<Arc<Event>, AppendNowError> {
        Err(AppendNowError::WouldWait(draft))
    }

    /// Appends `drafts` as [`Store::append`] does, unless the request
    /// `once` names was appended within the retention's idempotency
    /// window: then nothing is stored and the first append's receipts are
    /// the answer. Two such requests at once, on any node, store once.
    ///
    /// # Errors
    /// As [`Store::append`]; [`StoreError::KeyReused`] when the key was
    /// appended with a different request within the window. A store that
    /// cannot remember keys answers [`StoreError::Unavailable`] (the
    /// default).
    fn append_once<'a>(
        &'a self,
        once: &'a Once,
        drafts: Vec<Draft>,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        let _ = (once, drafts);
        Box::pin(async {
            Err(StoreError::Unavailable(
                "this store does not support idempotency keys".into(),
            ))
        })
    }

    /// The hub is shutting down. A store whose log lives in this process
    /// refuses every append from now on ([`StoreError::Closed`]): no stream
    /// would deliver it, and the log ends with the process. Every append
    /// before it has reached the feed. A store that other processes share
    /// keeps appending, as their subscribers (and this server's, once
    /// restarted) will read it: the default does nothing.
    fn close(&self) {}

    /// The position to replay after for `point`: every matching event after
    /// it is to be sent.
    ///
    /// # Errors
    /// [`StoreError::Gone`] when some event after the point was evicted,
    /// [`StoreError::UnknownId`] for an id this store never issued.
    fn resolve(&self, point: ResumePoint) -> BoxFuture<'_, Result<EventId, StoreError>>;

    /// Up to `limit` events after `after` that match `filter`, in id order.
    ///
    /// # Errors
    /// As [`Store::resolve`] for `ResumePoint::After(after)`.
    fn read_after<'a>(
        &'a self,
        after: EventId,
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, StoreError>>;

    /// Evicts every event, keeps ids increasing, zeroes the totals, and
    /// resets the feed (which ends every open stream).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn reset(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// What the log holds now.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn stats(&self) -> BoxFuture<'_, Result<LogStats, StoreError>>;

    /// The idempotency keys this process remembers, when this store keeps
    /// them in this process with a bound. `None` (the default) for a store
    /// that keeps them elsewhere, such as Redis, which expires each key
    /// with its window.
    fn key_table(&self) -> Option<KeyTableStats> {
        None
    }

    /// Succeeds when the store can serve.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Starts the live feed into `feed` and returns the position it starts
    /// after: the feed delivers every event after it. Called once.
    fn start_feed(&self, feed: Arc<dyn Feed>) -> EventId;
}
