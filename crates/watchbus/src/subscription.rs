//! A subscription: one subscriber's view of the log.
//!
//! The hub matches each event once and pushes a shared pointer to it into
//! the mailbox of every subscriber it matches; nothing is copied and no other
//! subscriber is woken. The mailbox is a pre-filtered cursor into the log:
//! it only ever holds events that are (or were) in the log, in id order.
//!
//! # Lagging
//!
//! A subscriber that reads too slowly is never skipped ahead. When the
//! oldest event still waiting in its mailbox has been evicted from the log,
//! the subscription ends with [`StreamEnd::Lagged`]: the client was sent
//! every event up to [`Subscription::position`], and a resume from there is
//! answered `410 Gone`, as it should be.
//!
//! # Replay, then live
//!
//! A subscription with a resume point is registered for live events first,
//! then replays the log after its resume point page by page, then goes on
//! with the live events it collected meanwhile, skipping those the replay
//! already covered. There is no seam: no gap, no duplicate.
//!
//! # Cancel safety
//!
//! [`Subscription::recv_batch`] and [`Subscription::recv`] are cancel safe:
//! dropping the future loses nothing, the next call resumes where it was.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::Stream;
use parking_lot::Mutex;
use watchbus_core::{Event, EventId, Filter, SubscriberId};

use crate::hub::Shared;
use crate::store::{Gone, Page, StoreError, Wakeups};

/// Why a subscription ended. After the end, it yields nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamEnd {
    /// The subscriber fell so far behind that events it still needed were
    /// evicted. Resuming from [`Subscription::position`] is `410 Gone`.
    #[error("the subscriber fell behind retention: events it needed were evicted")]
    Lagged,
    /// An admin reset evicted the log.
    #[error("the log was reset")]
    Reset,
    /// The hub is shutting down. Every event that reached the subscriber
    /// before [`crate::Hub::shutdown`] was handed out first.
    #[error("the hub is shutting down")]
    Shutdown,
    /// The store failed while replaying.
    #[error("the store was unavailable while replaying")]
    StoreUnavailable,
}

/// How many events a replay reads from the store at a time.
const REPLAY_PAGE: usize = 512;

/// The hub's side of a subscriber: its mailbox.
// `repr(C)`: what a push reads (`any_type`, then the state) comes first, in
// the cache lines next to the reference count; the filter, which a push
// reads only when it names types, comes last.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Mailbox {
    /// The filter names no types: every event passes the type check.
    any_type: bool,
    state: Mutex<MailboxState>,
    filter: Filter,
}

#[derive(Debug)]
struct MailboxState {
    queue: VecDeque<Arc<Event>>,
    /// The newest event pushed; pushes of older ids are ignored, which also
    /// de-duplicates a subscriber reached through two of its keys.
    last_pushed: EventId,
    waker: Option<Waker>,
    ended: Option<StreamEnd>,
}

impl Mailbox {
    pub(crate) fn new(filter: Filter, position: EventId) -> Self {
        let state = MailboxState {
            queue: VecDeque::new(),
            last_pushed: position,
            waker: None,
            ended: None,
        };
        Self {
            any_type: filter.type_list().is_empty(),
            state: Mutex::new(state),
            filter,
        }
    }

    pub(crate) fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Delivers `event` if its type matches and it is new to this
    /// subscriber; ends the subscriber if it lags. True when pushed. A
    /// subscriber waiting for events goes into `wakeups`, woken once the
    /// caller has released its locks.
    pub(crate) fn push(
        &self,
        event: &Arc<Event>,
        evicted_through: EventId,
        wakeups: &mut Wakeups,
    ) -> bool {
        if !self.any_type && !self.filter.matches_type(event.event_type()) {
            return false;
        }
        let mut state = self.state.lock();
        if state.ended.is_some() || event.id() <= state.last_pushed {
            return false;
        }
        state.last_pushed = event.id();
        if state
            .queue
            .front()
            .is_some_and(|oldest| oldest.id() <= evicted_through)
        {
            drop(state);
            self.end(StreamEnd::Lagged);
            return false;
        }
        state.queue.push_back(Arc::clone(event));
        // Taken, so only the first event of a batch wakes the subscriber.
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            wakeups.push(waker);
        }
        true
    }

    /// The replay has handed this subscriber every matching event up to
    /// `through`: drop their live copies, and ignore any still to come.
    /// (Left queued, a covered copy would look like a pending event, and its
    /// eviction like a lag.)
    pub(crate) fn covered(&self, through: EventId) {
        let mut state = self.state.lock();
        state.last_pushed = state.last_pushed.max(through);
        while state.queue.front().is_some_and(|e| e.id() <= through) {
            state.queue.pop_front();
        }
    }

    /// Ends the subscriber if the oldest event it waits for was evicted.
    pub(crate) fn check_lag(&self, evicted_through: EventId) {
        let lagging = self
            .state
            .lock()
            .queue
            .front()
            .is_some_and(|oldest| oldest.id() <= evicted_through);
        if lagging {
            self.end(StreamEnd::Lagged);
        }
    }

    /// Ends the subscriber (the first reason wins) and wakes it. On a
    /// shutdown it first hands out what is already queued: those events
    /// were accepted, and an in-memory log dies with the process. Otherwise
    /// the queue goes: a lagging one is behind the log, a reset one evicted.
    pub(crate) fn end(&self, reason: StreamEnd) {
        let mut state = self.state.lock();
        if state.ended.is_none() {
            state.ended = Some(reason);
        }
        if state.ended != Some(StreamEnd::Shutdown) {
            state.queue.clear();
        }
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Nothing pending. An ended mailbox may have been cleared, so it never
    /// counts as empty: a bookmark must not pass the events it dropped.
    fn is_empty(&self) -> bool {
        let state = self.state.lock();
        state.queue.is_empty() && state.ended.is_none()
    }
}

struct Replay {
    /// Read the next page after this position.
    after: EventId,
    /// Replayed events not yet handed out.
    buffer: VecDeque<Arc<Event>>,
    fetch: Option<BoxFuture<'static, Result<Page, StoreError>>>,
    /// The last page reached the log's head.
    done: bool,
}

/// A stream of the events that match one filter, in id order, each once.
///
/// Dropping it unsubscribes. See the [module docs](self) for lagging,
/// replay and cancel safety.
pub struct Subscription {
    hub: Arc<Shared>,
    id: SubscriberId,
    mailbox: Arc<Mailbox>,
    replay: Option<Replay>,
    /// The id of the last event handed out, or the start point.
    position: EventId,
    /// The position last advertised or handed out, for bookmarks.
    bookmarked: EventId,
    /// The live start point, when there was no resume point to start from.
    opening: Option<EventId>,
    gone: Option<Gone>,
    ended: Option<StreamEnd>,
    end_reported: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("filter", self.mailbox.filter())
            .field("position", &self.position)
            .field("replaying", &self.replay.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Subscription {
    /// A registered subscriber. `live_from` is the hub's position when the
    /// mailbox was registered; `start` the resolved resume point, if any.
    pub(crate) fn new(
        hub: Arc<Shared>,
        id: SubscriberId,
        mailbox: Arc<Mailbox>,
        live_from: EventId,
        start: Option<EventId>,
        gone: Option<Gone>,
    ) -> Self {
        let replay = start.map(|after| Replay {
            after,
            buffer: VecDeque::new(),
            fetch: None,
            done: false,
        });
        let opening = (start.is_none() && gone.is_none()).then_some(live_from);
        let position = start.unwrap_or(live_from);
        Self {
            hub,
            id,
            mailbox,
            replay,
            position,
            bookmarked: position,
            opening,
            gone,
            ended: None,
            end_reported: false,
        }
    }

    /// The filter this subscription matches.
    pub fn filter(&self) -> &Filter {
        self.mailbox.filter()
    }

    /// The id of the last event handed out or, before the first one, the
    /// point the subscription started from. A resume from it misses nothing.
    pub fn position(&self) -> EventId {
        self.position
    }

    /// For a subscription that started live (no resume point): the point it
    /// started from, for the transport to send before any event. A client
    /// that keeps it and loses the connection before its first event
    /// resumes from it and misses nothing published meanwhile; without it,
    /// such a client could only start live again. `None` when the client
    /// gave a resume point, or was told one in the gone notice.
    pub fn opening_bookmark(&self) -> Option<EventId> {
        self.opening
    }

    /// When the subscription was asked to go on live after its resume point
    /// turned out to be gone: what was gone. The transport tells the client
    /// first.
    pub fn gone(&self) -> Option<&Gone> {
        self.gone.as_ref()
    }

    /// Why the subscription ended, once it has.
    pub fn end_reason(&self) -> Option<StreamEnd> {
        self.ended
    }

    /// Waits for the next event.
    ///
    /// # Errors
    /// The [`StreamEnd`] once the subscription has ended; it ends for good.
    pub async fn recv(&mut self) -> Result<Arc<Event>, StreamEnd> {
        let mut one = Vec::with_capacity(1);
        poll_fn(|cx| self.poll_recv_batch(cx, &mut one, 1)).await?;
        one.pop().ok_or(StreamEnd::Shutdown)
    }

    /// Waits until at least one event is ready, then appends up to `max`
    /// ready events to `out`. Lets a transport write a backlog in one go.
    ///
    /// # Errors
    /// The [`StreamEnd`] once the subscription has ended.
    pub async fn recv_batch(
        &mut self,
        out: &mut Vec<Arc<Event>>,
        max: usize,
    ) -> Result<(), StreamEnd> {
        poll_fn(|cx| self.poll_recv_batch(cx, out, max.max(1))).await
    }

    /// The position to advertise in a bookmark: the hub's position when this
    /// subscriber has nothing pending and the hub has moved past events that
    /// did not match it. Every matching event up to it was handed out.
    ///
    /// Each position is handed out once: a second call before the hub moves
    /// on answers `None` (nothing new to advertise), as does a call while
    /// events are pending, a replay runs or after the end. Call it when a
    /// keep-alive is due, and send what it gives.
    pub fn bookmark(&mut self) -> Option<EventId> {
        if self.replay.is_some() || self.ended.is_some() {
            return None;
        }
        // Read the hub's position before looking at the mailbox: every push
        // up to that position has then happened.
        let position = self.hub.position();
        if position <= self.bookmarked || !self.mailbox.is_empty() {
            return None;
        }
        self.bookmarked = position;
        Some(position)
    }

    fn finish(&mut self, reason: StreamEnd) -> Poll<Result<(), StreamEnd>> {
        if reason == StreamEnd::Lagged {
            self.hub.note_lagged();
        }
        self.ended = Some(reason);
        self.replay = None;
        // A replay that failed ends the mailbox too: no more live events
        // are queued for a subscription that will never read them.
        self.mailbox.end(reason);
        Poll::Ready(Err(reason))
    }

    /// Records that events up to `last` were handed out.
    fn handed_out(&mut self, last: EventId) {
        self.position = last;
        self.bookmarked = self.bookmarked.max(last);
    }

    /// The poll form of [`Subscription::recv_batch`].
    pub fn poll_recv_batch(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Arc<Event>>,
        max: usize,
    ) -> Poll<Result<(), StreamEnd>> {
        if let Some(reason) = self.ended {
            return Poll::Ready(Err(reason));
        }
        if self.replay.is_some() {
            if let Some(poll) = self.poll_replay(cx, out, max) {
                return poll;
            }
        }
        self.poll_live(cx, out, max)
    }

    /// Serves the live mailbox, once the replay (if any) is over.
    fn poll_live(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Arc<Event>>,
        max: usize,
    ) -> Poll<Result<(), StreamEnd>> {
        let start_len = out.len();
        let mut state = self.mailbox.state.lock();
        while out.len() - start_len < max {
            let Some(event) = state.queue.pop_front() else {
                break;
            };
            out.push(event);
        }
        if out.len() > start_len {
            drop(state);
            if let Some(last) = out.last().map(|e| e.id()) {
                self.handed_out(last);
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = state.ended {
            drop(state);
            return self.finish(reason);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Serves the replay while there is one; `None` once it has handed over
    /// to the live mailbox. Out of line: only a subscription still
    /// replaying runs it, and the live path, run on every wake, stays small.
    #[inline(never)]
    fn poll_replay(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Arc<Event>>,
        max: usize,
    ) -> Option<Poll<Result<(), StreamEnd>>> {
        loop {
            let replay = self.replay.as_mut()?;
            if !replay.buffer.is_empty() {
                let take = max.min(replay.buffer.len());
                out.extend(replay.buffer.drain(..take));
                if let Some(last) = out.last().map(|e| e.id()) {
                    self.handed_out(last);
                }
                return Some(Poll::Ready(Ok(())));
            }
            if replay.done {
                self.replay = None;
                return None;
            }
            // A reset or shutdown during a slow replay ends it at once.
            let ended = self.mailbox.state.lock().ended;
            if let Some(reason) = ended {
                return Some(self.finish(reason));
            }
            let after = replay.after;
            let fetch = replay.fetch.get_or_insert_with(|| {
                let (hub, filter) = (Arc::clone(&self.hub), self.mailbox.filter().clone());
                async move { hub.store().read_after(after, &filter, REPLAY_PAGE).await }.boxed()
            });
            match fetch.poll_unpin(cx) {
                Poll::Pending => {
                    self.mailbox.state.lock().waker = Some(cx.waker().clone());
                    return Some(Poll::Pending);
                }
                Poll::Ready(Ok(page)) => {
                    replay.fetch = None;
                    replay.after = page.through;
                    replay.buffer = page.events.into();
                    replay.done = page.reached_head;
                    self.mailbox.covered(page.through);
                }
                Poll::Ready(Err(StoreError::Gone(_))) => {
                    return Some(self.finish(StreamEnd::Lagged));
                }
                Poll::Ready(Err(_)) => return Some(self.finish(StreamEnd::StoreUnavailable)),
            }
        }
    }
}

impl Stream for Subscription {
    /// Events, then the reason the subscription ended, then nothing.
    type Item = Result<Arc<Event>, StreamEnd>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.end_reported {
            return Poll::Ready(None);
        }
        let mut one = Vec::with_capacity(1);
        match this.poll_recv_batch(cx, &mut one, 1) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(one.pop().map(Ok)),
            Poll::Ready(Err(reason)) => {
                this.end_reported = true;
                Poll::Ready(Some(Err(reason)))
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(self.id, &self.mailbox);
    }
}
