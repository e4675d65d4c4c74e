//! The Redis Streams store: one log shared by every node of a cluster.
//!
//! Several watchbus servers on one Redis behave as one hub: an event
//! published on any node is delivered to the matching subscribers of every
//! node, in one order, and a subscriber can resume on any node with an id
//! another node handed out.
//!
//! # The keys
//!
//! Three keys per namespace (default `watchbus`, so several hubs can share
//! one Redis), and the append tokens. The `{namespace}` hash tag keeps them
//! in one cluster slot, since every script touches several.
//!
//! - `{ns}:log`, a stream: one entry per event, id `<seq>-0`, so a read
//!   after an event id is a direct `XRANGE`. Fields in `reply`'s docs.
//! - `{ns}:meta`, a hash: the epoch, the head seq, the newest evicted seq
//!   and its time (the exact 410 edge), the newest event time, when this
//!   life of the log began, the totals (published, evicted, retained bytes)
//!   and the reset generation.
//! - `{ns}:ctl`, a short stream of signals to every node: `reset` (an admin
//!   reset) and `epoch` (a new life of the log).
//! - `{ns}:append:<node>-<n>`, one short-lived string per append (its
//!   token, below), expiring after a few seconds.
//! - `{ns}:once:<key>`, one string per publish sent with an idempotency
//!   key ([`Store::append_once`]): the request's digest and its first
//!   receipts, expiring with the idempotency window. The append script
//!   checks and sets it with the append itself, so retries on any node
//!   store once.
//!
//! # Ids and times
//!
//! Ids are [`EventId`] `{epoch, seq}`. The epoch is created in Redis, from
//! Redis's own clock, the first time the log is used; when Redis comes back
//! empty (restarted without persistence, flushed) the next command creates
//! a new, larger epoch, so an old id resolves to `410 Gone`, never to
//! someone else's event. The seq is the meta hash's head, incremented by the
//! append script, so every node hands out the same id for the same event.
//! Event times come from the appending node's [`Clock`] and are clamped in
//! the script to never go backwards (`max(node time, newest time)`), so the
//! log is sorted by time and `from_timestamp` is a binary search over seqs
//! inside a script.
//!
//! # Atomic scripts
//!
//! Every change is one Lua script (see `scripts`), sent as `EVALSHA` with a
//! fallback to loading it: append (a whole batch, all or nothing: ids,
//! times, entries, retention, edge and totals), reset, and the reads, which
//! apply age retention first so they see the exact edge, as the memory
//! store does. Retention by count and by bytes (as
//! [`Event::retained_bytes`] counts them) is exact and applied on every
//! append; each entry carries the evicted-through seq as of its append, so
//! readers on other nodes learn the edge in order. Retention by age is
//! applied on append, on every read, and by a sweeper on each node (any
//! node may trim; the script keeps the edge exact whoever runs it).
//! Retention settings are the appending node's: give every node the same.
//!
//! A command whose connection broke is tried once more on a new connection
//! (the first command after Redis came back finds the old one dead). That
//! is safe for every script: reads change nothing but age retention, a
//! reset run twice only signals twice, and an append carries a token (kept
//! in Redis for a few seconds) so a second run returns the first run's ids
//! instead of storing the batch twice.
//!
//! # One reader per node
//!
//! [`Store::start_feed`] starts ONE task per store that runs `XREAD BLOCK`
//! on its own connection, from the last entry it saw, over the log and the
//! control stream together. It rebuilds each entry into an [`Event`] and
//! calls [`Feed::deliver`] in id order; a `reset` signal becomes
//! [`Feed::reset`]; a new epoch (Redis lost its data) also becomes
//! [`Feed::reset`], which ends every stream so clients resume and get the
//! 410 path instead of silently missing events. A hole in the seqs it reads
//! (this node fell further behind than retention, for instance cut off from
//! Redis while other nodes went on) is a reset too: never a silent skip.
//! Every feed call is made under one lock, so calls never overlap.
//!
//! When Redis is unreachable the reader retries with exponential backoff
//! (100 ms to 5 s), logs once at `warn` when it loses Redis and once at
//! `info` when it is back, and resumes after the last entry it saw, so no
//! subscriber misses an event appended meanwhile.
//!
//! An append returns once Redis has acknowledged it, and then waits (at
//! most the command timeout, and only while the reader is connected) until
//! this node's reader has delivered it, so a publisher's own node has
//! dispatched its event before the `200`, as with the memory store.
//!
//! # Connections
//!
//! The client is [redis-rs](https://docs.rs/redis) (`redis` crate): its
//! `ConnectionManager` is a multiplexed connection (every concurrent
//! command pipelined on one socket) that reconnects by itself, its `Script`
//! does `EVALSHA` with the `NOSCRIPT` fallback, and it speaks TLS through
//! rustls (`rediss://`) with AUTH and the database number in the URL
//! (`redis://user:password@host:6379/2`). It is a thin client we can see
//! through; `fred` brings its own reconnect policies, pools and command
//! queueing, more machinery than one multiplexed connection and one
//! blocking reader need. Every command runs under a timeout (2 s by
//! default), so a Redis that is down gives a quick
//! [`StoreError::Unavailable`] (HTTP `503`), never a hang. The reader has a
//! connection of its own, since `XREAD BLOCK` holds its connection.
//!
//! # Limits
//!
//! - A timeout after Redis ran an append but before its answer arrived is
//!   reported as unavailable although the events are stored: a publisher
//!   that retries may store them twice. Nothing acknowledged is ever lost.
//! - Needs Redis 7 (script flags, `XTRIM MINID`) on one primary: the keys
//!   share a hash tag, but the client is not a cluster client.
//! - Give Redis persistence (AOF) and a `maxmemory-policy` that does not
//!   evict these keys (`noeviction`, or a `volatile-*` policy): a lost log
//!   is detected and answered with 410, but it is still lost.
//! - Event times are the appending node's clock, never going backwards:
//!   keep the nodes' clocks in sync (NTP), or a node ahead of the others
//!   stamps the times of everyone's next events.
//! - A node that falls further behind than retention (cut off from Redis
//!   while others go on) ends its streams rather than skip; so does a
//!   subscriber handed a burst faster than it reads, as with the memory
//!   store. Size retention for the longest outage a node should ride out.
//! - [`Store::stats`] reports the cluster's log; subscriber counts are the
//!   hub's, per node.

mod reader;
mod reply;
mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ScriptInvocation, Value};
use futures_util::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::watch;
use watchbus_core::{Clock, Draft, Event, EventId, Filter, SystemClock, Target, Timestamp};

use super::{
    Appended, Feed, Gone, LogEdge, LogStats, Once, Page, Receipt, ResumePoint, Retention, Store,
    StoreError,
};
use reader::Gate;
use scripts::Scripts;

/// The Redis client crate, as [`RedisStoreError::Redis`] carries its
/// error: match on `redis::RedisError::kind()` without a dependency of
/// your own at the same version.
pub use ::redis;

/// Why a Redis command failed; the source of [`StoreError::Unavailable`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The client or Redis reported an error.
    #[error(transparent)]
    Redis(#[from] ::redis::RedisError),
    /// Redis answered something this store did not write or expect.
    #[error("unexpected reply from redis: {0}")]
    Reply(&'static str),
}

impl From<RedisStoreError> for StoreError {
    fn from(err: RedisStoreError) -> Self {
        StoreError::Unavailable(Box::new(err))
    }
}

/// How to reach Redis and what to keep; see [`RedisStore::connect_with`].
/// Its `Debug` hides the password in the URL.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: String,
    /// How much of the log to keep. Give every node the same.
    pub retention: Retention,
    /// The prefix of the keys, so several hubs can share one Redis.
    pub namespace: String,
    /// The longest any command may take before it fails as unavailable.
    pub command_timeout: Duration,
    /// How long the reader's `XREAD` blocks before it checks the log's
    /// epoch and starts again.
    pub block: Duration,
    /// Where event times come from.
    pub clock: Arc<dyn Clock>,
    /// For `rediss://`: the PEM certificate(s) of the authority that signed
    /// the server's, when it is not one the system trusts.
    pub tls_root_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("retention", &self.retention)
            .field("namespace", &self.namespace)
            .field("command_timeout", &self.command_timeout)
            .field("block", &self.block)
            .field("clock", &self.clock)
            .field(
                "tls_root_ca",
                &self.tls_root_ca.as_ref().map(|pem| pem.len()),
            )
            .finish()
    }
}

/// `url` without its credentials (user and password), for logs and error
/// messages.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => {
            format!("{scheme}://***{}", url.get(at..).unwrap_or_default())
        }
        _ => url.to_owned(),
    }
}

impl RedisConfig {
    /// The defaults: namespace `watchbus`, a 2 s command timeout, a 2 s
    /// block, the system clock.
    pub fn new(url: impl Into<String>, retention: Retention) -> Self {
        Self {
            url: url.into(),
            retention,
            namespace: "watchbus".to_owned(),
            command_timeout: Duration::from_secs(2),
            block: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
            tls_root_ca: None,
        }
    }

    /// The same, trusting the authority in `pem` for `rediss://`.
    #[must_use]
    pub fn with_tls_root_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_ca = Some(pem.into());
        self
    }

    /// The same, with another key namespace.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The same, with another clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same, with another command timeout.
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }
}

/// The log in Redis, shared by every node on it. See the
/// [module docs](self).
#[derive(Debug)]
pub struct RedisStore {
    inner: Arc<Inner>,
    /// Dropped with the store: stops its reader and sweeper.
    stop: watch::Sender<()>,
}

/// The key names.
#[derive(Debug)]
struct Keys {
    meta: String,
    log: String,
    ctl: String,
    /// Append tokens are this plus a node nonce and a counter.
    token_prefix: String,
    /// Publishers' idempotency keys are this plus the key.
    once_prefix: String,
}

struct Inner {
    client: ::redis::Client,
    /// Multiplexed, reconnecting: appends, reads, stats, pings.
    conn: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    retention: Retention,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    block: Duration,
    /// The newest log state this node has seen, `(epoch, head)`: a new
    /// epoch is above it, and a log behind it in Redis starts a new life.
    known: Mutex<(u64, u64)>,
    /// This store's part of every append token.
    nonce: u64,
    /// Appends made, the other part.
    appends: AtomicU64,
    /// The live feed's state; every feed call is made under this lock.
    gate: Mutex<Gate>,
    /// The newest position the feed has delivered, for appends to wait on.
    delivered: watch::Sender<EventId>,
    /// The reader is connected and reading: appends wait for it only then.
    reader_up: AtomicBool,
    runtime: tokio::runtime::Handle,
    /// The control stream's last entry when the store connected.
    first_ctl: String,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .field("retention", &self.retention)
            .field("gate", &*self.gate.lock())
            .finish_non_exhaustive()
    }
}

/// The log's state as a script reports it.
#[derive(Debug, Clone)]
struct State {
    epoch: u64,
    head: u64,
    through: u64,
    published: u64,
    evicted: u64,
    generation: u64,
    /// For a seek: `Some(seq)` to read after, `None` when gone.
    seek: Option<u64>,
    /// The control stream's last entry id.
    last_ctl: String,
    /// The first seq in the stream, 0 when it is empty.
    first: u64,
    /// The time of the oldest retained event, when asked for.
    oldest_time: Option<Timestamp>,
}

impl State {
    fn parse(value: Value) -> Result<Self, RedisStoreError> {
        let items = reply::array(value)?;
        let at = |n| reply::uint_at(&items, n);
        let last_ctl = items
            .get(10)
            .and_then(reply::text)
            .unwrap_or("0-0")
            .to_owned();
        Ok(Self {
            epoch: at(0)?,
            head: at(1)?,
            through: at(2)?,
            published: at(5)?,
            evicted: at(6)?,
            generation: at(7)?,
            seek: (reply::int_at(&items, 8)? == 0).then_some(at(9)?),
            last_ctl,
            first: at(11)?,
            oldest_time: u64::try_from(reply::int_at(&items, 12)?)
                .ok()
                .map(Timestamp),
        })
    }

    fn id(&self, seq: u64) -> EventId {
        EventId::new(self.epoch, seq)
    }

    fn edge(&self) -> LogEdge {
        LogEdge {
            epoch: self.epoch,
            head: self.head,
            evicted_through: self.through,
        }
    }

    fn stats(&self) -> LogStats {
        let retained = self.head.saturating_sub(self.through);
        LogStats {
            published: self.published,
            retained,
            evicted: self.evicted,
            oldest: (retained > 0).then(|| self.id(self.through + 1)),
            latest: (retained > 0).then(|| self.id(self.head)),
            oldest_time: self.oldest_time,
        }
    }
}

/// Whether `err` may have left the command unsent or unanswered because a
/// connection broke: worth one more try on a fresh connection.
fn is_connection_error(err: &::redis::RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal()
}

/// A number unlike any other node's, for append tokens.
fn node_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://`, `rediss://` for TLS;
    /// user, password and database in the URL) with the default settings.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is invalid or Redis cannot
    /// be reached.
    pub async fn connect(url: &str, retention: Retention) -> Result<Self, StoreError> {
        Self::connect_with(RedisConfig::new(url, retention)).await
    }

    /// The same, taking event times from `clock` (tests).
    ///
    /// # Errors
    /// As [`RedisStore::connect`].
    pub async fn with_clock(
        url: &str,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        Self::connect_with(RedisConfig::new(url, retention).with_clock(clock)).await
    }

    /// Connects with every setting given.
    ///
    /// # Errors
    /// As [`RedisStore::connect`].
    pub async fn connect_with(config: RedisConfig) -> Result<Self, StoreError> {
        if config.url.starts_with("rediss:") {
            // rustls needs a process-wide crypto provider; another part of
            // the program may have installed one already, which is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = match config.tls_root_ca {
            Some(root_cert) => {
                let certificates = ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                ::redis::Client::build_with_tls(config.url.as_str(), certificates)
            }
            None => ::redis::Client::open(config.url.as_str()),
        }
        .map_err(RedisStoreError::from)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            config.command_timeout,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        .map_err(|_| RedisStoreError::Timeout(config.command_timeout))?
        .map_err(RedisStoreError::from)?;
        let ns = &config.namespace;
        let keys = Keys {
            meta: format!("{{{ns}}}:meta"),
            log: format!("{{{ns}}}:log"),
            ctl: format!("{{{ns}}}:ctl"),
            token_prefix: format!("{{{ns}}}:append:"),
            once_prefix: format!("{{{ns}}}:once:"),
        };
        let retention = Retention {
            max_events: config.retention.max_events.max(1),
            ..config.retention
        };
        let (delivered, _) = watch::channel(EventId::default());
        let mut inner = Inner {
            client,
            conn,
            keys,
            scripts: Scripts::new(),
            retention,
            clock: config.clock,
            timeout: config.command_timeout,
            block: config.block,
            known: Mutex::new((0, 0)),
            nonce: node_nonce(),
            appends: AtomicU64::new(0),
            gate: Mutex::new(Gate::default()),
            delivered,
            reader_up: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::current(),
            first_ctl: String::new(),
        };
        let state = inner.state(None).await?;
        inner.gate.get_mut().start(&state);
        inner.delivered.send_replace(state.id(state.head));
        inner.first_ctl.clone_from(&state.last_ctl);
        let (stop, _) = watch::channel(());
        Ok(Self {
            inner: Arc::new(inner),
            stop,
        })
    }
}

impl Inner {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Age retention's cutoff: events before it are evicted; -1 for none.
    fn cutoff(&self, now: Timestamp) -> i64 {
        match self.retention.max_age {
            Some(age) => {
                let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
                i64::try_from(now.as_millis().saturating_sub(age)).unwrap_or(i64::MAX)
            }
            None => -1,
        }
    }

    /// Remembers that the log reached `head` in `epoch`.
    fn note(&self, epoch: u64, head: u64) {
        let mut known = self.known.lock();
        *known = (*known).max((epoch, head));
    }

    /// `EPOCH:HEAD`, the scripts' `known` argument.
    fn known(&self) -> String {
        let (epoch, head) = *self.known.lock();
        format!("{epoch}:{head}")
    }

    fn invocation<'s>(&self, script: &'s ::redis::Script) -> ScriptInvocation<'s> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.keys.meta)
            .key(&self.keys.log)
            .key(&self.keys.ctl);
        invocation
    }

    /// Runs a script on the shared connection, under the timeout. A
    /// broken connection (the first command after Redis came back finds
    /// the old one dead) gets one more try on a new one: every script is
    /// safe to run twice. Reads change nothing but age retention, appends
    /// carry a token, and a reset run twice only signals twice.
    async fn run(&self, invocation: &ScriptInvocation<'_>) -> Result<Value, RedisStoreError> {
        let attempts = async {
            let mut conn = self.conn.clone();
            match invocation.invoke_async::<Value>(&mut conn).await {
                Err(err) if is_connection_error(&err) => {
                    let mut conn = self.conn.clone();
                    invocation.invoke_async::<Value>(&mut conn).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisStoreError::Timeout(self.timeout)),
        }
    }

    /// How long Redis remembers an append's token: long enough for every
    /// retry within a command timeout.
    fn token_ttl(&self) -> Duration {
        (self.timeout * 4).max(Duration::from_secs(5))
    }

    fn state_invocation(&self, seek: Option<Timestamp>, oldest_time: bool) -> ScriptInvocation<'_> {
        let now = self.now();
        let mut invocation = self.invocation(&self.scripts.state);
        let seek = seek.map_or(-1, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        invocation
            .arg(now.as_millis())
            .arg(self.cutoff(now))
            .arg(self.known())
            .arg(seek)
            .arg(u8::from(oldest_time));
        invocation
    }

    /// The log's state, after age retention; with a seek, where it finds it.
    async fn state(&self, seek: Option<Timestamp>) -> Result<State, RedisStoreError> {
        self.run_state(seek, false).await
    }

    /// The log's state with the oldest retained event's time, which only
    /// stats need: resumes and the sweeper leave its read out.
    async fn state_with_oldest_time(&self) -> Result<State, RedisStoreError> {
        self.run_state(None, true).await
    }

    async fn run_state(
        &self,
        seek: Option<Timestamp>,
        oldest_time: bool,
    ) -> Result<State, RedisStoreError> {
        let invocation = self.state_invocation(seek, oldest_time);
        let state = State::parse(self.run(&invocation).await?)?;
        self.note(state.epoch, state.head);
        Ok(state)
    }

    async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Arc<Event>>, StoreError> {
        match self.append_once(None, drafts).await? {
            Appended::Stored(events) => Ok(events),
            // Without a key there is no earlier append to answer with.
            Appended::Replayed(_) => Err(StoreError::Unavailable(
                "the append script answered a replay to an append without a key".into(),
            )),
        }
    }

    /// Appends `drafts`; with `once`, only if its key was not appended
    /// within the window (see [`Store::append_once`]).
    async fn append_once(
        &self,
        once: Option<&Once>,
        drafts: Vec<Draft>,
    ) -> Result<Appended, StoreError> {
        if drafts.is_empty() {
            return Ok(Appended::Stored(Vec::new()));
        }
        let now = self.now();
        let mut invocation = self.invocation(&self.scripts.append);
        let token = format!(
            "{}{:016x}-{}",
            self.keys.token_prefix,
            self.nonce,
            self.appends.fetch_add(1, Ordering::Relaxed)
        );
        invocation.key(token);
        let (digest, window) = match once {
            Some(once) => {
                invocation.key(format!("{}{}", self.keys.once_prefix, once.key()));
                // Redis refuses an expiry of 0 ms.
                let window = self.retention.idempotency_window.as_millis().max(1);
                (
                    once.digest(),
                    u64::try_from(window).unwrap_or(u64::MAX).to_string(),
                )
            }
            None => (String::new(), String::new()),
        };
        let max_bytes = self
            .retention
            .max_bytes
            .map_or(-1, |max| i64::try_from(max).unwrap_or(i64::MAX));
        invocation
            .arg(now.as_millis())
            .arg(self.retention.max_events)
            .arg(max_bytes)
            .arg(self.cutoff(now))
            .arg(self.known())
            .arg(drafts.len())
            .arg(u64::try_from(self.token_ttl().as_millis()).unwrap_or(u64::MAX))
            .arg(digest)
            .arg(window);
        for draft in &drafts {
            let (kind, target) = match &draft.target {
                Target::Key(key) => ("k", key.as_str()),
                Target::Prefix(prefix) => ("p", prefix.as_str()),
            };
            let event_type = draft.event_type.as_ref().map_or("", |t| t.as_str());
            invocation
                .arg(kind)
                .arg(target)
                .arg(event_type)
                .arg(draft.data.as_json())
                .arg(draft.retained_bytes());
        }
        let items = reply::array(self.run(&invocation).await?)?;
        let (epoch, first, time, outcome) = (
            reply::uint_at(&items, 0)?,
            reply::uint_at(&items, 1)?,
            reply::uint_at(&items, 2)?,
            reply::uint_at(&items, 3)?,
        );
        match (outcome, once) {
            (0, _) => {}
            (1, Some(_)) => {
                let receipts = (first..)
                    .take(drafts.len())
                    .map(|seq| Receipt {
                        id: EventId::new(epoch, seq),
                        time: Timestamp(time),
                    })
                    .collect();
                return Ok(Appended::Replayed(receipts));
            }
            (2, Some(once)) => return Err(StoreError::KeyReused(once.key().clone())),
            _ => return Err(RedisStoreError::Reply("an append outcome of 0, 1 or 2").into()),
        }
        let appended = u64::try_from(drafts.len()).unwrap_or(u64::MAX);
        self.note(epoch, (first + appended).saturating_sub(1));
        let events: Vec<Arc<Event>> = drafts
            .into_iter()
            .zip(first..)
            .map(|(draft, seq)| {
                Arc::new(Event::new(EventId::new(epoch, seq), Timestamp(time), draft))
            })
            .collect();
        if let Some(last) = events.last() {
            self.await_delivery(last.id()).await;
        }
        Ok(Appended::Stored(events))
    }

    /// Waits, at most the command timeout, until this node's feed has
    /// delivered `id` (when the feed runs and its reader is connected).
    async fn await_delivery(&self, id: EventId) {
        if !self.reader_up.load(Ordering::Relaxed) || !self.gate.lock().is_started() {
            return;
        }
        let mut delivered = self.delivered.subscribe();
        let _ = tokio::time::timeout(self.timeout, delivered.wait_for(|position| *position >= id))
            .await;
    }

    async fn resolve(&self, point: ResumePoint) -> Result<EventId, StoreError> {
        match point {
            ResumePoint::After(id) => {
                let state = self.state(None).await?;
                state.edge().check_after(id).map(|()| id)
            }
            ResumePoint::Oldest => {
                let state = self.state(None).await?;
                Ok(state.id(state.through))
            }
            ResumePoint::At(time) => {
                let state = self.state(Some(time)).await?;
                match state.seek {
                    Some(seq) => Ok(state.id(seq)),
                    None => Err(state.edge().gone(ResumePoint::At(time))),
                }
            }
        }
    }

    async fn read_after(
        &self,
        after: EventId,
        filter: &Filter,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let count = limit.clamp(64, 1024);
        let mut page = Page {
            events: Vec::new(),
            through: after,
            reached_head: true,
        };
        loop {
            let now = self.now();
            let mut invocation = self.invocation(&self.scripts.read);
            invocation
                .arg(now.as_millis())
                .arg(self.cutoff(now))
                .arg(self.known())
                .arg(page.through.epoch)
                .arg(page.through.seq)
                .arg(count);
            let mut items = reply::array(self.run(&invocation).await?)?.into_iter();
            let mut next = || {
                items
                    .next()
                    .ok_or(RedisStoreError::Reply("read reply too short"))
            };
            let (code, epoch, head, through) = (
                reply::int(&next()?)?,
                reply::uint(&next()?)?,
                reply::uint(&next()?)?,
                reply::uint(&next()?)?,
            );
            let entries = reply::entries(next()?)?;
            self.note(epoch, head);
            match code {
                0 => {}
                1 => {
                    let evicted_through = (through > 0).then(|| EventId::new(epoch, through));
                    return Err(StoreError::Gone(Gone {
                        from: ResumePoint::After(after),
                        evicted_through,
                    }));
                }
                _ => return Err(StoreError::UnknownId(after)),
            }
            if entries.is_empty() {
                return Ok(page);
            }
            for entry in entries {
                if page.events.len() == limit {
                    page.reached_head = false;
                    return Ok(page);
                }
                if let Some(event) = entry.event.filter(|event| filter.matches(event)) {
                    page.events.push(event);
                }
                page.through = EventId::new(epoch, entry.seq);
            }
            if page.through.seq >= head {
                return Ok(page);
            }
            if page.events.len() == limit {
                page.reached_head = false;
                return Ok(page);
            }
        }
    }

    async fn reset(&self) -> Result<(), StoreError> {
        let mut invocation = self.invocation(&self.scripts.reset);
        invocation.arg(self.now().as_millis()).arg(self.known());
        let items = reply::array(self.run(&invocation).await?)?;
        let (epoch, head, generation) = (
            reply::uint_at(&items, 0)?,
            reply::uint_at(&items, 1)?,
            reply::uint_at(&items, 2)?,
        );
        self.note(epoch, head);
        // End this node's streams now; the reader skips the signal later.
        self.apply_reset(epoch, head, generation);
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let ping = ::redis::cmd("PING");
        let attempts = async {
            let mut conn = self.conn.clone();
            match ping.query_async::<String>(&mut conn).await {
                Err(err) if is_connection_error(&err) => {
                    ping.query_async::<String>(&mut self.conn.clone()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(RedisStoreError::from(err).into()),
            Err(_) => Err(RedisStoreError::Timeout(self.timeout).into()),
        }
    }
}

/// Runs a script on `conn` under `timeout`.
async fn run_on<C: ::redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    invocation: &ScriptInvocation<'_>,
    timeout: Duration,
) -> Result<Value, RedisStoreError> {
    match tokio::time::timeout(timeout, invocation.invoke_async::<Value>(conn)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(RedisStoreError::Timeout(timeout)),
    }
}

impl Store for RedisStore {
    fn append(&self, drafts: Vec<Draft>) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>> {
        self.inner.append(drafts).boxed()
    }

    fn append_once<'a>(
        &'a self,
        once: &'a Once,
        drafts: Vec<Draft>,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        self.inner.append_once(Some(once), drafts).boxed()
    }

    fn resolve(&self, point: ResumePoint) -> BoxFuture<'_, Result<EventId, StoreError>> {
        self.inner.resolve(point).boxed()
    }

    fn read_after<'a>(
        &'a self,
        after: EventId,
        filter: &'a Filter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        self.inner.read_after(after, filter, limit).boxed()
    }

    fn reset(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.reset().boxed()
    }

    fn stats(&self) -> BoxFuture<'_, Result<LogStats, StoreError>> {
        async move { Ok(self.inner.state_with_oldest_time().await?.stats()) }.boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.ready().boxed()
    }

    fn start_feed(&self, feed: Arc<dyn Feed>) -> EventId {
        let position = self.inner.gate.lock().attach(feed);
        // The reader is about to connect: appends wait for it unless it fails.
        self.inner.reader_up.store(true, Ordering::Relaxed);
        reader::spawn(&self.inner, &self.stop);
        position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        assert_eq!(
            redact_url("redis://user:secret@host:6379/2"),
            "redis://***@host:6379/2"
        );
        assert_eq!(redact_url("rediss://:p@ss@host"), "rediss://***@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        let shown = format!(
            "{:?}",
            RedisConfig::new("redis://u:hunter2@h", Retention::default())
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
