//! The node's one reader of the shared log, and the gate every feed call
//! passes through.
//!
//! The reader is one task with one connection of its own. It runs
//! `XREAD BLOCK` over the log and the control stream from the last entries
//! it saw and hands what it reads to the [`Gate`]: events in seq order,
//! resets, new epochs. The gate holds the feed's position and makes every
//! [`Feed`] call under one lock, so calls never overlap, whoever makes them
//! (the reader, the sweeper, or a reset on this node).
//!
//! # Faults
//!
//! Any error drops the reader's connection; it reconnects with exponential
//! backoff (100 ms to 5 s), logs once when it loses Redis and once when it
//! is back, and first checks the log's state: a new epoch (Redis lost its
//! data) or a hole after its position (it fell further behind than
//! retention) resets the feed, which ends every stream. Then it reads on
//! after its position, so nothing appended meanwhile is missed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Value};
use tokio::sync::watch;
use watchbus_core::{Event, EventId};

use super::reply::{self, Entry, Signal};
use super::{Inner, RedisStoreError, State, run_on};
use crate::store::{Feed, Wakeups};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Entries per `XREAD`.
const READ_COUNT: usize = 1024;

/// The live feed's state.
#[derive(Default)]
pub(super) struct Gate {
    feed: Option<Arc<dyn Feed>>,
    /// The epoch the feed is in.
    epoch: u64,
    /// The seq the feed has delivered through (or skipped to).
    position: u64,
    /// The reset generation the feed has seen.
    generation: u64,
    /// The newest eviction edge told to the feed.
    told_evicted: u64,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("started", &self.feed.is_some())
            .field("epoch", &self.epoch)
            .field("position", &self.position)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Starts at the log's head as the store connected.
    pub(super) fn start(&mut self, state: &State) {
        self.epoch = state.epoch;
        self.position = state.head;
        self.generation = state.generation;
        self.told_evicted = state.through;
    }

    /// Attaches the feed; returns the position it delivers after.
    pub(super) fn attach(&mut self, feed: Arc<dyn Feed>) -> EventId {
        self.feed = Some(feed);
        EventId::new(self.epoch, self.position)
    }

    pub(super) fn is_started(&self) -> bool {
        self.feed.is_some()
    }

    fn id(&self) -> EventId {
        EventId::new(self.epoch, self.position)
    }

    /// Ends every stream; the feed goes on after `position`.
    fn reset_feed(&mut self, position: u64) {
        self.position = position;
        if let Some(feed) = &self.feed {
            feed.reset(self.id());
        }
    }
}

impl Inner {
    /// The feed's epoch, position and reset generation.
    fn cursor(&self) -> (u64, u64, u64) {
        let gate = self.gate.lock();
        (gate.epoch, gate.position, gate.generation)
    }

    /// Delivers log entries in seq order, in batches that share an eviction
    /// edge, up to the first one of a newer epoch; returns true when it
    /// stopped there. Entries at or before the
    /// position are skipped (a reset already covered them); a hole before
    /// an entry resets the feed, since the events in it are gone.
    fn deliver(
        &self,
        entries: &mut std::iter::Peekable<impl Iterator<Item = Entry>>,
        through: Option<u64>,
    ) -> bool {
        // Declared before the guard: the subscribers are woken after the
        // gate is released.
        let mut wakeups = Wakeups::new();
        let mut gate = self.gate.lock();
        let mut batch: Vec<Arc<Event>> = Vec::new();
        let mut edge = gate.told_evicted;
        let mut newer_epoch = false;
        while let Some(entry) =
            entries.next_if(|entry| through.is_none_or(|through| entry.seq <= through))
        {
            let epoch = if entry.epoch == 0 {
                gate.epoch
            } else {
                entry.epoch
            };
            if epoch > gate.epoch {
                newer_epoch = true;
                break;
            }
            if epoch < gate.epoch || entry.seq <= gate.position {
                continue;
            }
            if entry.seq > gate.position + 1 {
                flush(&gate, &mut batch, edge, &mut wakeups);
                tracing::warn!(
                    after = %gate.id(),
                    next = entry.seq,
                    "events were evicted before this node read them; ending its streams so clients resume and learn what is gone"
                );
                gate.reset_feed(entry.seq - 1);
            }
            // Each append's events go with the edge as of that append (a
            // later edge would count them as lagging already): a new edge
            // starts a new batch.
            if entry.evicted_through > edge {
                flush(&gate, &mut batch, edge, &mut wakeups);
                edge = entry.evicted_through;
            }
            gate.position = entry.seq;
            if let Some(event) = entry.event {
                batch.push(event);
            }
        }
        flush(&gate, &mut batch, edge, &mut wakeups);
        gate.told_evicted = edge;
        self.delivered.send_replace(gate.id());
        newer_epoch
    }

    /// A reset or a new epoch: ends every stream when it is news, and goes
    /// on after `position`. Returns true when applied.
    pub(super) fn apply_reset(&self, epoch: u64, position: u64, generation: u64) -> bool {
        let mut gate = self.gate.lock();
        if epoch < gate.epoch || (epoch == gate.epoch && generation <= gate.generation) {
            return false;
        }
        let position = if epoch == gate.epoch {
            gate.position.max(position)
        } else {
            position
        };
        if epoch > gate.epoch {
            tracing::warn!(
                old = gate.epoch,
                new = epoch,
                "the redis log began a new life (its data was lost); ending every stream"
            );
            gate.epoch = epoch;
            gate.told_evicted = 0;
        }
        gate.generation = generation;
        gate.reset_feed(position);
        self.delivered.send_replace(gate.id());
        true
    }

    /// The events after the position up to `to` are gone: ends every stream.
    fn skip_to(&self, epoch: u64, to: u64) {
        let mut gate = self.gate.lock();
        if epoch != gate.epoch || to <= gate.position {
            return;
        }
        tracing::warn!(after = %gate.id(), through = to, "events were evicted before this node read them; ending its streams");
        gate.reset_feed(to);
        self.delivered.send_replace(gate.id());
    }

    /// Tells the feed about evictions without a new event (age retention).
    fn note_evicted(&self, epoch: u64, through: u64) {
        let mut gate = self.gate.lock();
        if epoch != gate.epoch || through <= gate.told_evicted {
            return;
        }
        gate.told_evicted = through;
        if let Some(feed) = &gate.feed {
            feed.evicted(EventId::new(epoch, through));
        }
    }
}

fn flush(gate: &Gate, batch: &mut Vec<Arc<Event>>, edge: u64, wakeups: &mut Wakeups) {
    if batch.is_empty() {
        return;
    }
    if let Some(feed) = &gate.feed {
        feed.deliver(batch, EventId::new(gate.epoch, edge), wakeups);
    }
    batch.clear();
}

/// Starts the reader, and the age sweeper when retention has a max age;
/// both stop when `stop` is dropped.
pub(super) fn spawn(inner: &Arc<Inner>, stop: &watch::Sender<()>) {
    let reader = Reader {
        inner: Arc::clone(inner),
        conn: None,
        ctl_cursor: inner.first_ctl.clone(),
        must_sync: true,
        down: false,
    };
    let mut stopped = stop.subscribe();
    inner.runtime.spawn(async move {
        tokio::select! {
            _ = stopped.changed() => {}
            () = reader.run() => {}
        }
    });
    if let Some(max_age) = inner.retention.max_age {
        let period = (max_age / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let (inner, mut stopped) = (Arc::clone(inner), stop.subscribe());
        inner.runtime.clone().spawn(async move {
            tokio::select! {
                _ = stopped.changed() => {}
                () = sweep(inner, period) => {}
            }
        });
    }
}

/// Applies age retention every `period`, and tells the feed what went.
async fn sweep(inner: Arc<Inner>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match inner.state(None).await {
            Ok(state) => inner.note_evicted(state.epoch, state.through),
            Err(err) => tracing::debug!(error = %err, "age retention sweep failed"),
        }
    }
}

struct Reader {
    inner: Arc<Inner>,
    /// Its own connection: `XREAD BLOCK` holds it.
    conn: Option<MultiplexedConnection>,
    /// The control stream's last entry read.
    ctl_cursor: String,
    /// Check the log's state before the next read.
    must_sync: bool,
    /// Redis is unreachable (logged once).
    down: bool,
}

impl Reader {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.step().await {
                Ok(()) => {
                    if self.down {
                        self.down = false;
                        let (epoch, position, _) = self.inner.cursor();
                        tracing::info!(after = %EventId::new(epoch, position), "redis is reachable again; the reader goes on");
                    }
                    backoff = MIN_BACKOFF;
                }
                Err(err) => {
                    self.inner.reader_up.store(false, Ordering::Relaxed);
                    self.conn = None;
                    self.must_sync = true;
                    if self.down {
                        tracing::debug!(error = %err, "redis still unreachable");
                    } else {
                        self.down = true;
                        tracing::warn!(error = %err, "the redis reader lost redis; retrying with backoff up to {MAX_BACKOFF:?}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One read (after connecting and checking the state when needed).
    async fn step(&mut self) -> Result<(), RedisStoreError> {
        let timeout = self.inner.timeout;
        let block = self.inner.block;
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(block + timeout));
                let connecting = self
                    .inner
                    .client
                    .get_multiplexed_async_connection_with_config(&config);
                let conn = tokio::time::timeout(timeout, connecting)
                    .await
                    .map_err(|_| RedisStoreError::Timeout(timeout))??;
                self.conn.insert(conn)
            }
        };
        if self.must_sync {
            sync(&self.inner, conn, &mut self.ctl_cursor).await?;
            self.must_sync = false;
        }
        // Connected and in step with the log: appends may wait for us.
        self.inner.reader_up.store(true, Ordering::Relaxed);
        let (_, position, _) = self.inner.cursor();
        let keys = &self.inner.keys;
        let mut xread = ::redis::cmd("XREAD");
        xread
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&keys.log)
            .arg(&keys.ctl)
            .arg(format!("{position}-0"))
            .arg(&self.ctl_cursor);
        let reply = tokio::time::timeout(block + timeout, xread.query_async::<Value>(conn))
            .await
            .map_err(|_| RedisStoreError::Timeout(block + timeout))??;
        let streams = reply::xread(reply)?;
        if streams.is_empty() {
            // Idle: check the epoch and the edge before the next read.
            self.must_sync = true;
            return Ok(());
        }
        let (mut log, mut signals) = (Vec::new(), Vec::new());
        for (name, items) in streams {
            if name == keys.log {
                log = items.iter().map(reply::entry).collect::<Result<_, _>>()?;
            } else if name == keys.ctl {
                signals = items.iter().map(reply::signal).collect::<Result<_, _>>()?;
            }
        }
        if process(&self.inner, &mut self.ctl_cursor, log, signals) {
            sync(&self.inner, conn, &mut self.ctl_cursor).await?;
        }
        Ok(())
    }
}

/// Hands one read to the gate: each reset after the events before it,
/// then the rest. True when a newer epoch showed up: the caller syncs and
/// the next read starts over in it.
fn process(inner: &Inner, ctl_cursor: &mut String, log: Vec<Entry>, signals: Vec<Signal>) -> bool {
    let mut log = log.into_iter().peekable();
    for signal in signals {
        ctl_cursor.clone_from(&signal.id);
        let (epoch, _, generation) = inner.cursor();
        if signal.epoch > epoch {
            return true;
        }
        if signal.kind == "reset" && signal.epoch == epoch && signal.generation > generation {
            if inner.deliver(&mut log, Some(signal.head)) {
                return true;
            }
            inner.apply_reset(signal.epoch, signal.head, signal.generation);
        }
    }
    inner.deliver(&mut log, None)
}

/// Checks the log's state against the feed's: a new epoch or reset
/// generation resets the feed, a hole after its position skips it (ending
/// streams), and age evictions are told.
async fn sync(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
    ctl_cursor: &mut String,
) -> Result<(), RedisStoreError> {
    let invocation = inner.state_invocation(None, false);
    let state = State::parse(run_on(conn, &invocation, inner.timeout).await?)?;
    inner.note(state.epoch, state.head);
    let (epoch, position, generation) = inner.cursor();
    if state.epoch > epoch {
        inner.apply_reset(state.epoch, state.through, state.generation);
        ctl_cursor.clone_from(&state.last_ctl);
    } else if state.epoch == epoch {
        if state.generation > generation {
            inner.apply_reset(state.epoch, state.through, state.generation);
        } else if state.head > position && (state.first == 0 || state.first > position + 1) {
            let to = if state.first == 0 {
                state.head
            } else {
                state.first - 1
            };
            inner.skip_to(state.epoch, to);
        }
        inner.note_evicted(state.epoch, state.through);
    }
    Ok(())
}
