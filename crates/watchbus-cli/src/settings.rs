//! `watchbus serve` settings: raw flags, environment and config file,
//! resolved once into [`ServeSettings`] (ripgrep's low args → high args).
//!
//! Each source is read into a [`Layer`] of the same shape, every value
//! parsed and checked by the same function whatever its source, so an error
//! names where the bad value came from (`--keep-alive`, `WATCHBUS_KEEP_ALIVE`
//! or the config file's `keep_alive`). The layers then merge, highest first:
//!
//! 1. the flag,
//! 2. its `WATCHBUS_<FLAG_IN_UPPER_SNAKE>` variable (an empty variable counts
//!    as unset; `WATCHBUS_CORS_ORIGIN` is a comma-separated list; `--log`
//!    also reads `RUST_LOG`, below `WATCHBUS_LOG`; `WATCHBUS_SCHEMA` is a
//!    comma-separated list too), not read at all when the flag is given,
//! 3. the TOML config file (`--config FILE` or `WATCHBUS_CONFIG`), whose keys
//!    are the flag names in snake case; an unknown key is an error, and a
//!    relative schema or JWT public key path is read from the config file's
//!    directory,
//! 4. the default.
//!
//! The environment is read through [`Env`], so tests pass a map instead of
//! touching the process environment.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;

use crate::size::parse_size;

/// Default `--listen`.
pub(crate) const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
/// Default `--retention-events`.
pub(crate) const DEFAULT_RETENTION_EVENTS: usize = 10_000;
/// Default `--keep-alive`.
pub(crate) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Default `--max-body`: 1 MiB.
pub(crate) const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Default `--max-filters`.
pub(crate) const DEFAULT_MAX_FILTERS: usize = watchbus_core::DEFAULT_MAX_FILTERS;
/// Default `--log`.
pub(crate) const DEFAULT_LOG: &str = "info";

/// The flags of `watchbus serve`, as typed on the command line.
///
/// No field has a clap default: an absent flag is `None`, so the layers
/// below it can still supply the value.
#[derive(Debug, Default, clap::Args)]
#[command(after_long_help = SERVE_AFTER_HELP)]
pub(crate) struct ServeArgs {
    /// Address to bind; port 0 picks a free port [default: 127.0.0.1:8080] [env: WATCHBUS_LISTEN]
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    listen: Option<SocketAddr>,

    /// `memory`, or `redis://host:port[/db]` / `rediss://...` [default: memory] [env: WATCHBUS_STORE]
    // Parsed by `StoreParser`, whose error does not echo the URL and its
    // password, as clap's would.
    #[arg(long, value_name = "URL", value_parser = StoreParser)]
    store: Option<StoreUrl>,

    /// Events kept for replay, at least 1 [default: 10000] [env: WATCHBUS_RETENTION_EVENTS]
    #[arg(long, value_name = "N", value_parser = parse_retention_events)]
    retention_events: Option<usize>,

    /// Also evict events older than this, e.g. `1h` [default: none] [env: WATCHBUS_RETENTION_AGE]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    retention_age: Option<Duration>,

    /// Also evict the oldest events while the retained data is over this size, e.g. `256MiB` [default: none] [env: WATCHBUS_RETENTION_BYTES]
    #[arg(long, value_name = "SIZE", value_parser = parse_positive_size)]
    retention_bytes: Option<u64>,

    /// How long a publish's Idempotency-Key is remembered: a retry within it is answered, not stored again [default: 5m] [env: WATCHBUS_IDEMPOTENCY_WINDOW]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    idempotency_window: Option<Duration>,

    /// Memory store: the most Idempotency-Keys remembered (about 150 bytes each); past it the oldest are forgotten before their window ends [default: 100000] [env: WATCHBUS_IDEMPOTENCY_MAX_KEYS]
    #[arg(long, value_name = "N", value_parser = parse_at_least_one)]
    idempotency_max_keys: Option<usize>,

    /// SSE comment / WebSocket ping cadence, above zero [default: 15s] [env: WATCHBUS_KEEP_ALIVE]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    keep_alive: Option<Duration>,

    /// A client that takes no byte of what is written to it for this long is disconnected: a stalled subscriber's stream ends, and it resumes with Last-Event-ID [default: 30s] [env: WATCHBUS_WRITE_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    write_timeout: Option<Duration>,

    /// A connection that sends no request for this long, between requests or before its first, is closed; streams are not idle [default: 2m] [env: WATCHBUS_IDLE_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    idle_timeout: Option<Duration>,

    /// Largest publish body, e.g. `1MiB`, `64KiB` or bytes [default: 1MiB] [env: WATCHBUS_MAX_BODY]
    #[arg(long, value_name = "SIZE", value_parser = parse_max_body)]
    max_body: Option<usize>,

    /// Most filters per subscription: keys and prefixes together, and event types [default: 64] [env: WATCHBUS_MAX_FILTERS]
    #[arg(long, value_name = "N", value_parser = parse_max_filters)]
    max_filters: Option<usize>,

    /// Most subscribers (SSE, WebSocket) open at once; one more is refused 503 until one leaves [default: none] [env: WATCHBUS_MAX_SUBSCRIBERS]
    #[arg(long, value_name = "N", value_parser = parse_at_least_one)]
    max_subscribers: Option<usize>,

    /// Bearer token of the publish role [default: none, open] [env: WATCHBUS_PUBLISH_TOKEN]
    #[arg(long, value_name = "T")]
    publish_token: Option<String>,

    /// Bearer token of the subscribe role [default: none, open] [env: WATCHBUS_SUBSCRIBE_TOKEN]
    #[arg(long, value_name = "T")]
    subscribe_token: Option<String>,

    /// Bearer token of the admin role [default: none, open] [env: WATCHBUS_ADMIN_TOKEN]
    #[arg(long, value_name = "T")]
    admin_token: Option<String>,

    /// Secret (at least 32 bytes) that signs scoped tokens: HS256 JWTs naming the keys and prefixes each role reaches. When set, no role is open [default: none] [env: WATCHBUS_JWT_SECRET]
    // Checked in `resolve`, not by clap, whose error would show it.
    #[arg(long, value_name = "SECRET")]
    jwt_secret: Option<String>,

    /// PEM public key (RSA, EC P-256/P-384 or Ed25519) whose private key signs scoped tokens (RS256/PS256 and up, ES256, ES384, EdDSA). When set, no role is open [default: none] [env: WATCHBUS_JWT_PUBLIC_KEY]
    #[arg(long, value_name = "FILE")]
    jwt_public_key: Option<PathBuf>,

    /// Audience every scoped token must name in its `aud` claim (a string, or an array holding it); tokens for other services are refused [default: none, `aud` not read] [env: WATCHBUS_JWT_AUDIENCE]
    #[arg(long, value_name = "AUD", value_parser = parse_claim)]
    jwt_audience: Option<String>,

    /// Issuer every scoped token must name in its `iss` claim [default: none, `iss` not read] [env: WATCHBUS_JWT_ISSUER]
    #[arg(long, value_name = "ISS", value_parser = parse_claim)]
    jwt_issuer: Option<String>,

    /// Browser origin whose pages may call the API (SSE by CORS; WebSocket, publish and reset by their Origin); repeatable, `*` for any [default: none: the server's own origin only] [env: WATCHBUS_CORS_ORIGIN, comma-separated]
    #[arg(long, value_name = "ORIGIN", value_parser = parse_cors_origin)]
    cors_origin: Vec<String>,

    /// Host name the server may be reached by, besides IP addresses and `localhost`; repeatable; `.example.com` allows its subdomains too, `*` any. Listening on loopback, a request for another `Host` is refused 403, against DNS rebinding [default: none: on loopback, addresses and localhost only; elsewhere, any host] [env: WATCHBUS_ALLOWED_HOST, comma-separated]
    #[arg(long, value_name = "NAME")]
    allowed_host: Vec<String>,

    /// JSON Schema for the data of one event type, as TYPE=FILE; repeatable. A publish of that type whose data fails it is refused 422 [default: none] [env: WATCHBUS_SCHEMA, comma-separated]
    #[arg(long, value_name = "TYPE=FILE", value_parser = parse_schema)]
    schema: Vec<SchemaFile>,

    /// Log filter in tracing's syntax, e.g. `info` or `watchbus=debug,info` [default: info] [env: WATCHBUS_LOG, then RUST_LOG]
    #[arg(long, value_name = "LEVEL", value_parser = parse_log)]
    log: Option<String>,

    /// TOML file with the same settings, keys in snake case (`retention_events = 500`) [env: WATCHBUS_CONFIG]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

const SERVE_AFTER_HELP: &str = "\
Precedence: a flag beats its WATCHBUS_* variable, which beats the config file, which beats the default.

Config file example (keys are the flag names in snake case; unknown keys are an error):

    listen = \"0.0.0.0:8080\"
    retention_events = 500
    retention_age = \"1h\"
    keep_alive = \"15s\"
    write_timeout = \"30s\"
    max_body = \"1MiB\"
    cors_origin = [\"http://localhost:3000\"]
    schema = [\"order.created=schemas/order.json\"]  # relative to this file

Durations: 500ms, 15s, 1h. Sizes: 1MiB, 64KiB (powers of 1024), 1MB (powers of 1000), or plain bytes.
On start, prints `listening on http://ADDR` to stdout; logs go to stderr. SIGINT/SIGTERM shut down gracefully.";

/// A JSON Schema file for the data of one event type (`--schema TYPE=FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaFile {
    /// A valid event type.
    pub(crate) event_type: watchbus::EventType,
    pub(crate) path: PathBuf,
}

impl fmt::Display for SchemaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.event_type, self.path.display())
    }
}

/// Where events are stored. Shown (`Display`, `Debug`) with a Redis URL's
/// credentials hidden, so that it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    /// In-process memory: fast, lost on restart.
    Memory,
    /// A Redis server, by `redis://` or `rediss://` URL (shared by several servers).
    Redis(String),
}

impl FromStr for StoreUrl {
    type Err = String;

    /// `memory` or a Redis URL whose host, port and database parse; the
    /// error shows the URL without its credentials.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "memory" {
            return Ok(Self::Memory);
        }
        let shown = watchbus::store::redis::redact_url(text);
        let invalid = |why: &str| format!("invalid store `{shown}`: {why}");
        let Some(rest) = text
            .strip_prefix("redis://")
            .or_else(|| text.strip_prefix("rediss://"))
        else {
            return Err(invalid(
                "expected `memory` or a `redis://host:port[/db]` (or `rediss://`) URL",
            ));
        };
        let no_host = "the Redis URL has no host, e.g. redis://127.0.0.1:6379";
        if rest.is_empty() {
            return Err(invalid(no_host));
        }
        let url = url::Url::parse(text)
            .map_err(|err| invalid(&format!("the Redis URL does not parse: {err}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(no_host));
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(invalid(
                "the database, after the host, is a number, e.g. redis://127.0.0.1:6379/2",
            ));
        }
        Ok(Self::Redis(text.to_owned()))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Redis(url) => f.write_str(&watchbus::store::redis::redact_url(url)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis(_) => write!(f, "Redis({self})"),
        }
    }
}

/// `--store`'s parser: as [`StoreUrl::from_str`], with an error that names
/// the flag but does not repeat the value (clap's would, password and all).
#[derive(Clone)]
struct StoreParser;

impl clap::builder::TypedValueParser for StoreParser {
    type Value = StoreUrl;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<StoreUrl, clap::Error> {
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                "--store: the URL is not UTF-8\n",
            )
        })?;
        text.parse().map_err(|message| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--store: {message}\n"),
            )
        })
    }
}

/// A token: kept out of `Debug` output so settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// The token itself.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Bearer tokens per role; `None` leaves the role open unless
/// `jwt_secret` or `jwt_public_key` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoleTokens {
    pub(crate) publish: Option<Secret>,
    pub(crate) subscribe: Option<Secret>,
    pub(crate) admin: Option<Secret>,
    /// At least [`watchbus_http::ScopedTokens::MIN_SECRET_BYTES`] long.
    pub(crate) jwt_secret: Option<Secret>,
    /// A PEM file, read when the server starts.
    pub(crate) jwt_public_key: Option<PathBuf>,
    /// Not empty; only with `jwt_secret` or `jwt_public_key`.
    pub(crate) jwt_audience: Option<String>,
    /// Not empty; only with `jwt_secret` or `jwt_public_key`.
    pub(crate) jwt_issuer: Option<String>,
}

/// Everything `watchbus serve` needs, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServeSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) store: StoreUrl,
    /// At least 1.
    pub(crate) retention_events: usize,
    /// Above zero when set.
    pub(crate) retention_age: Option<Duration>,
    /// Above zero when set.
    pub(crate) retention_bytes: Option<u64>,
    /// Above zero.
    pub(crate) idempotency_window: Duration,
    /// At least 1 when set; for the memory store only.
    pub(crate) idempotency_max_keys: Option<usize>,
    /// Above zero.
    pub(crate) keep_alive: Duration,
    /// Above zero.
    pub(crate) write_timeout: Duration,
    /// Above zero.
    pub(crate) idle_timeout: Duration,
    /// Above zero.
    pub(crate) max_body: usize,
    /// At least 1.
    pub(crate) max_filters: usize,
    /// At least 1 when set.
    pub(crate) max_subscribers: Option<usize>,
    pub(crate) tokens: RoleTokens,
    pub(crate) cors_origins: Vec<String>,
    /// `--allowed-host`: empty when none was given.
    pub(crate) allowed_hosts: Vec<String>,
    /// At most one per event type.
    pub(crate) schemas: Vec<SchemaFile>,
    /// A filter `tracing_subscriber::EnvFilter` accepts.
    pub(crate) log: String,
}

/// One source's view of the settings: `None` where the source is silent.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Layer {
    listen: Option<SocketAddr>,
    store: Option<StoreUrl>,
    retention_events: Option<usize>,
    retention_age: Option<Duration>,
    retention_bytes: Option<u64>,
    idempotency_window: Option<Duration>,
    idempotency_max_keys: Option<usize>,
    keep_alive: Option<Duration>,
    write_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_body: Option<usize>,
    max_filters: Option<usize>,
    max_subscribers: Option<usize>,
    publish_token: Option<Secret>,
    subscribe_token: Option<Secret>,
    admin_token: Option<Secret>,
    jwt_secret: Option<Secret>,
    jwt_public_key: Option<PathBuf>,
    jwt_audience: Option<String>,
    jwt_issuer: Option<String>,
    cors_origin: Option<Vec<String>>,
    allowed_host: Option<Vec<String>>,
    schema: Option<Vec<SchemaFile>>,
    log: Option<String>,
}

/// Where environment variables come from.
pub(crate) trait Env {
    /// The variable's value, `None` when unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
    }
}

impl<K, V> Env for HashMap<K, V>
where
    K: std::borrow::Borrow<str> + Hash + Eq,
    V: AsRef<str>,
{
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|value| value.as_ref().to_owned())
    }
}

/// Resolves `serve`'s settings from its flags, the process environment
/// and the config file.
///
/// # Errors
///
/// A bad value in a variable whose flag is not given or in the config
/// file, or an unreadable
/// config file, or a JWT secret too short (other bad flag values are
/// already refused by clap).
pub(crate) fn resolve(args: ServeArgs, env: &dyn Env) -> anyhow::Result<ServeSettings> {
    let (flags, config) = args.into_layer();
    if let Some(secret) = &flags.jwt_secret {
        parse_jwt_secret(secret.expose()).map_err(|m| anyhow::anyhow!("--jwt-secret: {m}"))?;
    }
    for (flag, token) in [
        ("--publish-token", &flags.publish_token),
        ("--subscribe-token", &flags.subscribe_token),
        ("--admin-token", &flags.admin_token),
    ] {
        if let Some(token) = token {
            parse_token(token.expose()).map_err(|m| anyhow::anyhow!("{flag}: {m}"))?;
        }
    }
    // A flag beats its variable: a variable the flag overrides is not
    // read, so a broken one stops nothing.
    let unread = flags.given_variables();
    let from_env = Layer::from_env(&Unread {
        env,
        names: &unread,
    })?;
    let config = config.or_else(|| non_empty(env.var("WATCHBUS_CONFIG")).map(PathBuf::from));
    let from_file = match config {
        Some(path) => Layer::from_file(&path)?,
        None => Layer::default(),
    };
    Ok(flags.over(from_env).over(from_file).finish())
}

impl ServeArgs {
    /// The flags as a layer, and the config file path if given.
    fn into_layer(self) -> (Layer, Option<PathBuf>) {
        let layer = Layer {
            listen: self.listen,
            store: self.store,
            retention_events: self.retention_events,
            retention_age: self.retention_age,
            retention_bytes: self.retention_bytes,
            idempotency_window: self.idempotency_window,
            idempotency_max_keys: self.idempotency_max_keys,
            keep_alive: self.keep_alive,
            write_timeout: self.write_timeout,
            idle_timeout: self.idle_timeout,
            max_body: self.max_body,
            max_filters: self.max_filters,
            max_subscribers: self.max_subscribers,
            publish_token: self.publish_token.map(Secret),
            subscribe_token: self.subscribe_token.map(Secret),
            admin_token: self.admin_token.map(Secret),
            jwt_secret: self.jwt_secret.map(Secret),
            jwt_public_key: self.jwt_public_key,
            jwt_audience: self.jwt_audience,
            jwt_issuer: self.jwt_issuer,
            cors_origin: (!self.cors_origin.is_empty()).then_some(self.cors_origin),
            allowed_host: (!self.allowed_host.is_empty()).then_some(self.allowed_host),
            schema: (!self.schema.is_empty()).then_some(self.schema),
            log: self.log,
        };
        (layer, self.config)
    }
}

/// The environment without the variables of the flags given.
struct Unread<'a> {
    env: &'a dyn Env,
    names: &'a [&'static str],
}

impl Env for Unread<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if self.names.contains(&name) {
            None
        } else {
            self.env.var(name)
        }
    }
}

impl Layer {
    /// The variables of the settings this layer gives (`RUST_LOG` with
    /// `WATCHBUS_LOG`).
    fn given_variables(&self) -> Vec<&'static str> {
        let given = [
            (self.listen.is_some(), "WATCHBUS_LISTEN"),
            (self.store.is_some(), "WATCHBUS_STORE"),
            (self.retention_events.is_some(), "WATCHBUS_RETENTION_EVENTS"),
            (self.retention_age.is_some(), "WATCHBUS_RETENTION_AGE"),
            (self.retention_bytes.is_some(), "WATCHBUS_RETENTION_BYTES"),
            (
                self.idempotency_window.is_some(),
                "WATCHBUS_IDEMPOTENCY_WINDOW",
            ),
            (
                self.idempotency_max_keys.is_some(),
                "WATCHBUS_IDEMPOTENCY_MAX_KEYS",
            ),
            (self.keep_alive.is_some(), "WATCHBUS_KEEP_ALIVE"),
            (self.write_timeout.is_some(), "WATCHBUS_WRITE_TIMEOUT"),
            (self.idle_timeout.is_some(), "WATCHBUS_IDLE_TIMEOUT"),
            (self.max_body.is_some(), "WATCHBUS_MAX_BODY"),
            (self.max_filters.is_some(), "WATCHBUS_MAX_FILTERS"),
            (self.max_subscribers.is_some(), "WATCHBUS_MAX_SUBSCRIBERS"),
            (self.publish_token.is_some(), "WATCHBUS_PUBLISH_TOKEN"),
            (self.subscribe_token.is_some(), "WATCHBUS_SUBSCRIBE_TOKEN"),
            (self.admin_token.is_some(), "WATCHBUS_ADMIN_TOKEN"),
            (self.jwt_secret.is_some(), "WATCHBUS_JWT_SECRET"),
            (self.jwt_public_key.is_some(), "WATCHBUS_JWT_PUBLIC_KEY"),
            (self.jwt_audience.is_some(), "WATCHBUS_JWT_AUDIENCE"),
            (self.jwt_issuer.is_some(), "WATCHBUS_JWT_ISSUER"),
            (self.cors_origin.is_some(), "WATCHBUS_CORS_ORIGIN"),
            (self.allowed_host.is_some(), "WATCHBUS_ALLOWED_HOST"),
            (self.schema.is_some(), "WATCHBUS_SCHEMA"),
            (self.log.is_some(), "WATCHBUS_LOG"),
            (self.log.is_some(), "RUST_LOG"),
        ];
        given
            .into_iter()
            .filter_map(|(given, name)| given.then_some(name))
            .collect()
    }

    /// `self` where it has a value, else `lower`.
    fn over(self, lower: Layer) -> Layer {
        Layer {
            listen: self.listen.or(lower.listen),
            store: self.store.or(lower.store),
            retention_events: self.retention_events.or(lower.retention_events),
            retention_age: self.retention_age.or(lower.retention_age),
            retention_bytes: self.retention_bytes.or(lower.retention_bytes),
            idempotency_window: self.idempotency_window.or(lower.idempotency_window),
            idempotency_max_keys: self.idempotency_max_keys.or(lower.idempotency_max_keys),
            keep_alive: self.keep_alive.or(lower.keep_alive),
            write_timeout: self.write_timeout.or(lower.write_timeout),
            idle_timeout: self.idle_timeout.or(lower.idle_timeout),
            max_body: self.max_body.or(lower.max_body),
            max_filters: self.max_filters.or(lower.max_filters),
            max_subscribers: self.max_subscribers.or(lower.max_subscribers),
            publish_token: self.publish_token.or(lower.publish_token),
            subscribe_token: self.subscribe_token.or(lower.subscribe_token),
            admin_token: self.admin_token.or(lower.admin_token),
            jwt_secret: self.jwt_secret.or(lower.jwt_secret),
            jwt_public_key: self.jwt_public_key.or(lower.jwt_public_key),
            jwt_audience: self.jwt_audience.or(lower.jwt_audience),
            jwt_issuer: self.jwt_issuer.or(lower.jwt_issuer),
            cors_origin: self.cors_origin.or(lower.cors_origin),
            allowed_host: self.allowed_host.or(lower.allowed_host),
            schema: self.schema.or(lower.schema),
            log: self.log.or(lower.log),
        }
    }

    /// Fills what no source gave with the defaults.
    fn finish(self) -> ServeSettings {
        ServeSettings {
            listen: self.listen.unwrap_or(DEFAULT_LISTEN),
            store: self.store.unwrap_or(StoreUrl::Memory),
            retention_events: self.retention_events.unwrap_or(DEFAULT_RETENTION_EVENTS),
            retention_age: self.retention_age,
            retention_bytes: self.retention_bytes,
            idempotency_window: self
                .idempotency_window
                .unwrap_or(watchbus::Retention::DEFAULT_IDEMPOTENCY_WINDOW),
            idempotency_max_keys: self.idempotency_max_keys,
            keep_alive: self.keep_alive.unwrap_or(DEFAULT_KEEP_ALIVE),
            write_timeout: self
                .write_timeout
                .unwrap_or(watchbus_http::HttpConfig::DEFAULT_WRITE_TIMEOUT),
            idle_timeout: self
                .idle_timeout
                .unwrap_or(watchbus_http::HttpConfig::DEFAULT_IDLE_TIMEOUT),
            max_body: self.max_body.unwrap_or(DEFAULT_MAX_BODY),
            max_filters: self.max_filters.unwrap_or(DEFAULT_MAX_FILTERS),
            max_subscribers: self.max_subscribers,
            tokens: RoleTokens {
                publish: self.publish_token,
                subscribe: self.subscribe_token,
                admin: self.admin_token,
                jwt_secret: self.jwt_secret,
                jwt_public_key: self.jwt_public_key,
                jwt_audience: self.jwt_audience,
                jwt_issuer: self.jwt_issuer,
            },
            cors_origins: self.cors_origin.unwrap_or_default(),
            allowed_hosts: self.allowed_host.unwrap_or_default(),
            schemas: self.schema.unwrap_or_default(),
            log: self.log.unwrap_or_else(|| DEFAULT_LOG.to_owned()),
        }
    }

    /// Reads the `WATCHBUS_*` variables (and `RUST_LOG`).
    fn from_env(env: &dyn Env) -> anyhow::Result<Layer> {
        Ok(Layer {
            listen: env_value(env, "WATCHBUS_LISTEN", parse_listen)?,
            store: env_value(env, "WATCHBUS_STORE", parse_store)?,
            retention_events: env_value(env, "WATCHBUS_RETENTION_EVENTS", parse_retention_events)?,
            retention_age: env_value(env, "WATCHBUS_RETENTION_AGE", parse_positive_duration)?,
            retention_bytes: env_value(env, "WATCHBUS_RETENTION_BYTES", parse_positive_size)?,
            idempotency_window: env_value(
                env,
                "WATCHBUS_IDEMPOTENCY_WINDOW",
                parse_positive_duration,
            )?,
            idempotency_max_keys: env_value(
                env,
                "WATCHBUS_IDEMPOTENCY_MAX_KEYS",
                parse_at_least_one,
            )?,
            keep_alive: env_value(env, "WATCHBUS_KEEP_ALIVE", parse_positive_duration)?,
            write_timeout: env_value(env, "WATCHBUS_WRITE_TIMEOUT", parse_positive_duration)?,
            idle_timeout: env_value(env, "WATCHBUS_IDLE_TIMEOUT", parse_positive_duration)?,
            max_body: env_value(env, "WATCHBUS_MAX_BODY", parse_max_body)?,
            max_filters: env_value(env, "WATCHBUS_MAX_FILTERS", parse_max_filters)?,
            max_subscribers: env_value(env, "WATCHBUS_MAX_SUBSCRIBERS", parse_at_least_one)?,
            publish_token: env_value(env, "WATCHBUS_PUBLISH_TOKEN", parse_token)?.map(Secret),
            subscribe_token: env_value(env, "WATCHBUS_SUBSCRIBE_TOKEN", parse_token)?.map(Secret),
            admin_token: env_value(env, "WATCHBUS_ADMIN_TOKEN", parse_token)?.map(Secret),
            jwt_secret: env_value(env, "WATCHBUS_JWT_SECRET", parse_jwt_secret)?.map(Secret),
            jwt_public_key: non_empty(env.var("WATCHBUS_JWT_PUBLIC_KEY")).map(PathBuf::from),
            jwt_audience: env_value(env, "WATCHBUS_JWT_AUDIENCE", parse_claim)?,
            jwt_issuer: env_value(env, "WATCHBUS_JWT_ISSUER", parse_claim)?,
            cors_origin: env_list(env, "WATCHBUS_CORS_ORIGIN", parse_cors_origin)?,
            allowed_host: env_list(env, "WATCHBUS_ALLOWED_HOST", |host| Ok(host.to_owned()))?,
            schema: env_list(env, "WATCHBUS_SCHEMA", parse_schema)?,
            log: match env_value(env, "WATCHBUS_LOG", parse_log)? {
                Some(log) => Some(log),
                None => env_value(env, "RUST_LOG", parse_log)?,
            },
        })
    }

    /// Reads a TOML config file.
    fn from_file(path: &Path) -> anyhow::Result<Layer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut layer = Layer::from_toml(&text)
            .map_err(|message| anyhow::anyhow!("config file {}: {message}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        for schema in layer.schema.iter_mut().flatten() {
            schema.path = dir.join(&schema.path);
        }
        if let Some(key) = &mut layer.jwt_public_key {
            *key = dir.join(&*key);
        }
        Ok(layer)
    }

    /// Parses a config file's text; the error is one line, naming the
    /// line and column where the file went wrong.
    fn from_toml(text: &str) -> Result<Layer, String> {
        let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            let message = err.message().trim_end().replace('\n', "; ");
            match err.span() {
                Some(span) => {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = line_of(text, span.start);
                    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                    format!("line {line}, column {column}: {message}")
                }
                None => message,
            }
        })?;
        // Where each key's value starts, to name its line in an error.
        let spans: BTreeMap<String, toml::Spanned<toml::Value>> =
            toml::from_str(text).unwrap_or_default();
        let mut layer = Layer::default();
        for (key, value) in &table {
            let taken = (|| -> Result<(), String> {
                match key.as_str() {
                    "listen" => layer.listen = Some(file_scalar(key, value, parse_listen)?),
                    "store" => layer.store = Some(file_scalar(key, value, parse_store)?),
                    "retention_events" => {
                        layer.retention_events =
                            Some(file_scalar(key, value, parse_retention_events)?);
                    }
                    "retention_age" => {
                        layer.retention_age =
                            Some(file_scalar(key, value, parse_positive_duration)?);
                    }
                    "retention_bytes" => {
                        layer.retention_bytes = Some(file_scalar(key, value, parse_positive_size)?);
                    }
                    "idempotency_window" => {
                        layer.idempotency_window =
                            Some(file_scalar(key, value, parse_positive_duration)?);
                    }
                    "idempotency_max_keys" => {
                        layer.idempotency_max_keys =
                            Some(file_scalar(key, value, parse_at_least_one)?);
                    }
                    "keep_alive" => {
                        layer.keep_alive = Some(file_scalar(key, value, parse_positive_duration)?);
                    }
                    "write_timeout" => {
                        layer.write_timeout =
                            Some(file_scalar(key, value, parse_positive_duration)?);
                    }
                    "idle_timeout" => {
                        layer.idle_timeout =
                            Some(file_scalar(key, value, parse_positive_duration)?);
                    }
                    "max_body" => layer.max_body = Some(file_scalar(key, value, parse_max_body)?),
                    "max_filters" => {
                        layer.max_filters = Some(file_scalar(key, value, parse_max_filters)?);
                    }
                    "max_subscribers" => {
                        layer.max_subscribers = Some(file_scalar(key, value, parse_at_least_one)?);
                    }
                    "publish_token" => layer.publish_token = Some(file_token(key, value)?),
                    "subscribe_token" => layer.subscribe_token = Some(file_token(key, value)?),
                    "admin_token" => layer.admin_token = Some(file_token(key, value)?),
                    "jwt_secret" => {
                        let secret = file_string(key, value)?;
                        parse_jwt_secret(&secret).map_err(|m| format!("`{key}`: {m}"))?;
                        layer.jwt_secret = Some(Secret(secret));
                    }
                    "jwt_public_key" => {
                        layer.jwt_public_key = Some(PathBuf::from(file_string(key, value)?));
                    }
                    "jwt_audience" => layer.jwt_audience = Some(file_claim(key, value)?),
                    "jwt_issuer" => layer.jwt_issuer = Some(file_claim(key, value)?),
                    "cors_origin" => {
                        let origins = file_list(key, value)?;
                        let parsed = origins.iter().map(|origin| {
                            parse_cors_origin(origin).map_err(|m| format!("`{key}`: {m}"))
                        });
                        layer.cors_origin = Some(parsed.collect::<Result<_, _>>()?);
                    }
                    "allowed_host" => layer.allowed_host = Some(file_list(key, value)?),
                    "schema" => {
                        layer.schema = Some(
                            file_list(key, value)?
                                .iter()
                                .map(|text| parse_schema(text).map_err(|m| format!("`{key}`: {m}")))
                                .collect::<Result<_, _>>()?,
                        );
                    }
                    "log" => layer.log = Some(file_scalar(key, value, parse_log)?),
                    unknown => return Err(unknown_key(unknown)),
                }
                Ok(())
            })();
            taken.map_err(|message| match spans.get(key) {
                Some(value) => format!("line {}: {message}", line_of(text, value.span().start)),
                None => message,
            })?;
        }
        Ok(layer)
    }
}

/// The error of a config file's key that is none of [`FILE_KEYS`]: the
/// key it most likely meant (a flag's name with dashes, a typo), as clap
/// suggests for flags; else every key.
fn unknown_key(unknown: &str) -> String {
    let snake = unknown.replace('-', "_");
    let meant = FILE_KEYS
        .iter()
        .map(|key| (strsim::jaro(&snake, key), key))
        .filter(|(likeness, _)| *likeness > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match meant {
        Some((_, key)) => format!("unknown key `{unknown}` (did you mean `{key}`?)"),
        None => format!(
            "unknown key `{unknown}` (known keys: {})",
            FILE_KEYS.join(", ")
        ),
    }
}

/// The line (from 1) of the byte at `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).unwrap_or(text).matches('\n').count() + 1
}

/// The keys a config file may have.
const FILE_KEYS: &[&str] = &[
    "listen",
    "store",
    "retention_events",
    "retention_age",
    "retention_bytes",
    "idempotency_window",
    "idempotency_max_keys",
    "keep_alive",
    "write_timeout",
    "idle_timeout",
    "max_body",
    "max_filters",
    "max_subscribers",
    "publish_token",
    "subscribe_token",
    "admin_token",
    "jwt_secret",
    "jwt_public_key",
    "jwt_audience",
    "jwt_issuer",
    "cors_origin",
    "allowed_host",
    "schema",
    "log",
];

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.trim().is_empty())
}

fn env_value<T>(
    env: &dyn Env,
    name: &str,
    parse: fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    match non_empty(env.var(name)) {
        None => Ok(None),
        Some(value) => parse(&value)
            .map(Some)
            .map_err(|message| anyhow::anyhow!("{name}: {message}")),
    }
}

/// A comma-separated list in a variable, each item parsed as a flag's value.
fn env_list<T>(
    env: &dyn Env,
    name: &str,
    parse: fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<Vec<T>>> {
    let Some(list) = non_empty(env.var(name)) else {
        return Ok(None);
    };
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse(item).map_err(|message| anyhow::anyhow!("{name}: {message}")))
        .collect::<anyhow::Result<_>>()
        .map(Some)
}

/// A string or integer value, read as the same text a flag would be.
/// A config file's `jwt_audience` or `jwt_issuer`: a string, not empty.
fn file_claim(key: &str, value: &toml::Value) -> Result<String, String> {
    parse_claim(&file_string(key, value)?).map_err(|message| format!("`{key}`: {message}"))
}

fn file_scalar<T>(
    key: &str,
    value: &toml::Value,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, String> {
    let text = match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Integer(number) => number.to_string(),
        other => {
            return Err(format!(
                "`{key}`: expected a string or an integer, found {}",
                other.type_str()
            ));
        }
    };
    parse(&text).map_err(|message| format!("`{key}`: {message}"))
}

fn file_string(key: &str, value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        other => Err(format!(
            "`{key}`: expected a string, found {}",
            other.type_str()
        )),
    }
}

/// An array of strings, or one string.
fn file_list(key: &str, value: &toml::Value) -> Result<Vec<String>, String> {
    match value {
        toml::Value::String(text) => Ok(vec![text.clone()]),
        toml::Value::Array(items) => items.iter().map(|item| file_string(key, item)).collect(),
        other => Err(format!(
            "`{key}`: expected an array of strings, found {}",
            other.type_str()
        )),
    }
}

// Value parsers, shared by flags (through clap), variables and the file.

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("invalid address `{text}`: expected IP:PORT, e.g. 127.0.0.1:8080"))
}

fn parse_store(text: &str) -> Result<StoreUrl, String> {
    text.parse()
}

/// A browser origin as a page's `Origin` header says it, which is what it
/// is compared with, byte for byte: `scheme://host[:port]` in lower case,
/// with no path and no default port; or `*` (any), or `null`.
fn parse_cors_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" || text == "null" {
        return Ok(text.to_owned());
    }
    let not_origin = |why: &str| format!("`{text}` is not an origin a browser sends: {why}");
    let Ok(url) = url::Url::parse(text) else {
        return Err(not_origin(
            "an origin is scheme://host[:port], such as https://app.example",
        ));
    };
    let origin = url.origin();
    if !origin.is_tuple() {
        return Err(not_origin(
            "an origin is scheme://host[:port], such as https://app.example",
        ));
    }
    let serialized = origin.ascii_serialization();
    if serialized != text {
        return Err(not_origin(&format!(
            "browsers send it as `{serialized}` (no path, no default port, in lower case)"
        )));
    }
    Ok(serialized)
}

fn parse_retention_events(text: &str) -> Result<usize, String> {
    parse_at_least_one(text)
}

/// A required `aud` or `iss` (`serve --jwt-audience`, `token --audience`):
/// any text but an empty one, which no issuer means.
pub(crate) fn parse_claim(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(text.to_owned())
}

/// A role's bearer token: what a client can send in `Authorization:
/// Bearer`, so visible ASCII without spaces. The error never shows it.
fn parse_token(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty: leave it out to leave the role open".into());
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be visible ASCII without spaces, as a client sends it in Authorization: Bearer"
                .into(),
        );
    }
    Ok(text.to_owned())
}

fn file_token(key: &str, value: &toml::Value) -> Result<Secret, String> {
    let token = file_string(key, value)?;
    parse_token(&token).map_err(|m| format!("`{key}`: {m}"))?;
    Ok(Secret(token))
}

/// A secret long enough to sign scoped tokens; the error never shows it.
fn parse_jwt_secret(text: &str) -> Result<String, String> {
    watchbus_http::ScopedTokens::hs256(text.as_bytes())
        .map(|_| text.to_owned())
        .map_err(|weak| weak.to_string())
}

fn parse_max_filters(text: &str) -> Result<usize, String> {
    parse_at_least_one(text)
}

fn parse_at_least_one(text: &str) -> Result<usize, String> {
    let number: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid number `{text}`: expected a whole number, at least 1"))?;
    if number == 0 {
        return Err("must be at least 1".to_owned());
    }
    Ok(number)
}

pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration `{text}`: {err} (e.g. 500ms, 15s, 1h)"))?;
    if duration.is_zero() {
        return Err("must be above zero".to_owned());
    }
    Ok(duration)
}

fn parse_positive_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if size == 0 {
        return Err("must be above zero".to_owned());
    }
    Ok(size)
}

fn parse_max_body(text: &str) -> Result<usize, String> {
    let size = parse_positive_size(text)?;
    usize::try_from(size).map_err(|_| format!("invalid size `{text}`: too large"))
}

fn parse_schema(text: &str) -> Result<SchemaFile, String> {
    let Some((event_type, path)) = text.split_once('=') else {
        return Err(format!(
            "invalid schema `{text}`: expected TYPE=FILE, e.g. order.created=schemas/order.json"
        ));
    };
    let event_type = watchbus::EventType::new(event_type.trim())
        .map_err(|err| format!("invalid schema `{text}`: {err}"))?;
    let path = path.trim();
    if path.is_empty() {
        return Err(format!("invalid schema `{text}`: no file after `=`"));
    }
    Ok(SchemaFile {
        event_type,
        path: PathBuf::from(path),
    })
}

fn parse_log(text: &str) -> Result<String, String> {
    let text = text.trim();
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map_err(|err| format!("invalid log filter `{text}`: {err}"))?;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// Flags parsed by clap, as `watchbus serve ARGS` would.
    fn flags(args: &[&str]) -> Layer {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()));
        match cli {
            Ok(cli) => cli.serve.into_layer().0,
            Err(err) => panic!("{args:?}: {err}"),
        }
    }

    fn env(vars: &[(&str, &str)]) -> Layer {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        match Layer::from_env(&map) {
            Ok(layer) => layer,
            Err(err) => panic!("{vars:?}: {err:#}"),
        }
    }

    fn file(text: &str) -> Layer {
        match Layer::from_toml(text) {
            Ok(layer) => layer,
            Err(err) => panic!("{text:?}: {err}"),
        }
    }

    fn resolve_layers(flags: Layer, env: Layer, file: Layer) -> ServeSettings {
        flags.over(env).over(file).finish()
    }

    #[test]
    fn nothing_given_yields_the_contract_defaults() {
        let settings = resolve_layers(Layer::default(), Layer::default(), Layer::default());
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.store, StoreUrl::Memory);
        assert_eq!(settings.retention_events, 10_000);
        assert_eq!(settings.retention_age, None);
        assert_eq!(settings.retention_bytes, None);
        assert_eq!(settings.idempotency_window, Duration::from_secs(300));
        assert_eq!(settings.idempotency_max_keys, None);
        assert_eq!(settings.keep_alive, Duration::from_secs(15));
        assert_eq!(settings.write_timeout, Duration::from_secs(30));
        assert_eq!(settings.idle_timeout, Duration::from_secs(120));
        assert_eq!(settings.max_body, 1_048_576);
        assert_eq!(settings.max_filters, 64);
        assert_eq!(settings.max_subscribers, None);
        assert_eq!(settings.tokens, RoleTokens::default());
        assert!(settings.cors_origins.is_empty());
        assert!(settings.allowed_hosts.is_empty());
        assert_eq!(settings.log, "info");
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let file = file("retention_events = 3\nkeep_alive = \"3s\"\nmax_body = 3\nmax_filters = 3");
        let env = env(&[
            ("WATCHBUS_RETENTION_EVENTS", "2"),
            ("WATCHBUS_KEEP_ALIVE", "2s"),
            ("WATCHBUS_MAX_BODY", "2"),
        ]);
        let flags = flags(&["--retention-events", "1"]);

        let settings = resolve_layers(flags, env, file);
        assert_eq!(settings.retention_events, 1, "flag beats env and file");
        assert_eq!(
            settings.keep_alive,
            Duration::from_secs(2),
            "env beats file"
        );
        assert_eq!(settings.max_body, 2, "env beats file");
        assert_eq!(settings.max_filters, 3, "file beats default");
        assert_eq!(settings.log, "info", "default when no source speaks");
    }

    /// Every flag of `serve` but `--config`, with a value.
    const EVERY_FLAG: &[&str] = &[
        "--listen",
        "0.0.0.0:0",
        "--store",
        "redis://127.0.0.1:6379/2",
        "--retention-events",
        "500",
        "--retention-age",
        "1h",
        "--retention-bytes",
        "64MiB",
        "--idempotency-window",
        "90s",
        "--idempotency-max-keys",
        "250000",
        "--keep-alive",
        "500ms",
        "--write-timeout",
        "2m",
        "--idle-timeout",
        "5m",
        "--max-body",
        "64KiB",
        "--max-filters",
        "8",
        "--max-subscribers",
        "9000",
        "--publish-token",
        "p",
        "--subscribe-token",
        "s",
        "--admin-token",
        "a",
        "--jwt-secret",
        "flag-secret-of-at-least-32-bytes!",
        "--jwt-public-key",
        "keys/jwt.pub.pem",
        "--jwt-audience",
        "flag-aud",
        "--jwt-issuer",
        "flag-iss",
        "--cors-origin",
        "http://a",
        "--cors-origin",
        "http://b",
        "--allowed-host",
        "hub.example",
        "--allowed-host",
        ".corp.example",
        "--schema",
        "order.created=schemas/order.json",
        "--schema",
        " note = /etc/note.json ",
        "--log",
        "debug",
    ];

    /// Every variable `serve` reads but `WATCHBUS_CONFIG`, with a value.
    const EVERY_VARIABLE: &[(&str, &str)] = &[
        ("WATCHBUS_LISTEN", "127.0.0.1:9000"),
        ("WATCHBUS_STORE", "rediss://cache:6380"),
        ("WATCHBUS_RETENTION_EVENTS", "7"),
        ("WATCHBUS_RETENTION_AGE", "15m"),
        ("WATCHBUS_RETENTION_BYTES", "1MB"),
        ("WATCHBUS_IDEMPOTENCY_WINDOW", "1h"),
        ("WATCHBUS_IDEMPOTENCY_MAX_KEYS", "12"),
        ("WATCHBUS_KEEP_ALIVE", "1s"),
        ("WATCHBUS_WRITE_TIMEOUT", "5s"),
        ("WATCHBUS_IDLE_TIMEOUT", "9s"),
        ("WATCHBUS_MAX_BODY", "2048"),
        ("WATCHBUS_MAX_FILTERS", "100"),
        ("WATCHBUS_MAX_SUBSCRIBERS", "7"),
        ("WATCHBUS_PUBLISH_TOKEN", "p"),
        ("WATCHBUS_SUBSCRIBE_TOKEN", "s"),
        ("WATCHBUS_ADMIN_TOKEN", "a"),
        ("WATCHBUS_JWT_SECRET", "env-secret-of-at-least-32-bytes!!"),
        ("WATCHBUS_JWT_PUBLIC_KEY", "/etc/watchbus/jwt.pem"),
        ("WATCHBUS_JWT_AUDIENCE", "env-aud"),
        ("WATCHBUS_JWT_ISSUER", "https://idp.example/"),
        ("WATCHBUS_CORS_ORIGIN", "http://a, http://b,,"),
        ("WATCHBUS_ALLOWED_HOST", "hub.example, *"),
        ("WATCHBUS_SCHEMA", "a=a.json, b=/b.json,"),
        ("WATCHBUS_LOG", "warn"),
    ];

    /// A flag beats its variable: a variable the flag overrides is not
    /// even read, so a broken one stops nothing. Without the flags, the
    /// same variables stop `serve`.
    #[test]
    fn a_flag_beats_its_variable_even_a_broken_one() {
        let broken: HashMap<&str, &str> = EVERY_VARIABLE
            .iter()
            .map(|&(name, _)| (name, "\u{1}broken"))
            .chain([("RUST_LOG", "\u{1}broken")])
            .collect();
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(EVERY_FLAG.iter().copied()))
            .unwrap();
        let settings = resolve(cli.serve, &broken).unwrap();
        assert_eq!(settings, flags(EVERY_FLAG).finish());
        assert!(resolve(ServeArgs::default(), &broken).is_err());
    }

    #[test]
    fn every_setting_reads_its_flag() {
        let layer = flags(EVERY_FLAG);
        let settings = layer.finish();
        assert_eq!(settings.listen.to_string(), "0.0.0.0:0");
        assert_eq!(
            settings.store,
            StoreUrl::Redis("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(settings.retention_events, 500);
        assert_eq!(settings.retention_age, Some(Duration::from_secs(3600)));
        assert_eq!(settings.retention_bytes, Some(64 << 20));
        assert_eq!(settings.idempotency_window, Duration::from_secs(90));
        assert_eq!(settings.idempotency_max_keys, Some(250_000));
        assert_eq!(settings.keep_alive, Duration::from_millis(500));
        assert_eq!(settings.write_timeout, Duration::from_secs(120));
        assert_eq!(settings.idle_timeout, Duration::from_secs(300));
        assert_eq!(settings.max_body, 64 << 10);
        assert_eq!(settings.max_filters, 8);
        assert_eq!(settings.max_subscribers, Some(9000));
        assert_eq!(settings.tokens.publish, Some(Secret("p".into())));
        assert_eq!(settings.tokens.subscribe, Some(Secret("s".into())));
        assert_eq!(settings.tokens.admin, Some(Secret("a".into())));
        assert_eq!(
            settings.tokens.jwt_secret,
            Some(Secret("flag-secret-of-at-least-32-bytes!".into()))
        );
        assert_eq!(
            settings.tokens.jwt_public_key,
            Some(PathBuf::from("keys/jwt.pub.pem"))
        );
        assert_eq!(settings.tokens.jwt_audience.as_deref(), Some("flag-aud"));
        assert_eq!(settings.tokens.jwt_issuer.as_deref(), Some("flag-iss"));
        assert_eq!(settings.cors_origins, ["http://a", "http://b"]);
        assert_eq!(settings.allowed_hosts, ["hub.example", ".corp.example"]);
        assert_eq!(
            schema_args(&settings),
            ["order.created=schemas/order.json", "note=/etc/note.json"]
        );
        assert_eq!(settings.log, "debug");
    }

    #[test]
    fn every_setting_reads_its_variable() {
        let settings = env(EVERY_VARIABLE).finish();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(
            settings.store,
            StoreUrl::Redis("rediss://cache:6380".into())
        );
        assert_eq!(settings.retention_events, 7);
        assert_eq!(settings.retention_age, Some(Duration::from_secs(900)));
        assert_eq!(settings.retention_bytes, Some(1_000_000));
        assert_eq!(settings.idempotency_window, Duration::from_secs(3600));
        assert_eq!(settings.idempotency_max_keys, Some(12));
        assert_eq!(settings.keep_alive, Duration::from_secs(1));
        assert_eq!(settings.write_timeout, Duration::from_secs(5));
        assert_eq!(settings.idle_timeout, Duration::from_secs(9));
        assert_eq!(settings.max_body, 2048);
        assert_eq!(settings.max_filters, 100);
        assert_eq!(settings.max_subscribers, Some(7));
        assert_eq!(settings.tokens.publish, Some(Secret("p".into())));
        assert_eq!(settings.tokens.subscribe, Some(Secret("s".into())));
        assert_eq!(settings.tokens.admin, Some(Secret("a".into())));
        assert_eq!(
            settings.tokens.jwt_secret,
            Some(Secret("env-secret-of-at-least-32-bytes!!".into()))
        );
        assert_eq!(
            settings.tokens.jwt_public_key,
            Some(PathBuf::from("/etc/watchbus/jwt.pem"))
        );
        assert_eq!(settings.tokens.jwt_audience.as_deref(), Some("env-aud"));
        assert_eq!(
            settings.tokens.jwt_issuer.as_deref(),
            Some("https://idp.example/")
        );
        assert_eq!(settings.cors_origins, ["http://a", "http://b"]);
        assert_eq!(settings.allowed_hosts, ["hub.example", "*"]);
        assert_eq!(schema_args(&settings), ["a=a.json", "b=/b.json"]);
        assert_eq!(settings.log, "warn");
    }

    #[test]
    fn every_setting_reads_its_file_key() {
        let settings = file(
            r#"
            listen = "[::1]:0"
            store = "memory"
            retention_events = 500
            retention_age = "2h"
            retention_bytes = 4096
            idempotency_window = "10m"
            idempotency_max_keys = 1000000
            keep_alive = "30s"
            write_timeout = "1m"
            idle_timeout = "45s"
            max_body = "1MiB"
            max_filters = 16
            max_subscribers = 20000
            publish_token = "p"
            subscribe_token = "s"
            admin_token = "a"
            jwt_secret = "file-secret-of-at-least-32-bytes!"
            jwt_public_key = "/etc/jwt.pem"
            jwt_audience = "file-aud"
            jwt_issuer = "file-iss"
            cors_origin = ["http://a"]
            allowed_host = ["hub.example"]
            schema = ["a=a.json"]
            log = "watchbus=debug,info"
            "#,
        )
        .finish();
        assert_eq!(settings.listen.to_string(), "[::1]:0");
        assert_eq!(settings.store, StoreUrl::Memory);
        assert_eq!(settings.retention_events, 500);
        assert_eq!(settings.retention_age, Some(Duration::from_secs(7200)));
        assert_eq!(settings.retention_bytes, Some(4096));
        assert_eq!(settings.idempotency_window, Duration::from_secs(600));
        assert_eq!(settings.idempotency_max_keys, Some(1_000_000));
        assert_eq!(settings.keep_alive, Duration::from_secs(30));
        assert_eq!(settings.write_timeout, Duration::from_secs(60));
        assert_eq!(settings.idle_timeout, Duration::from_secs(45));
        assert_eq!(settings.max_body, 1 << 20);
        assert_eq!(settings.max_filters, 16);
        assert_eq!(settings.max_subscribers, Some(20_000));
        assert_eq!(settings.tokens.admin, Some(Secret("a".into())));
        assert_eq!(
            settings.tokens.jwt_secret,
            Some(Secret("file-secret-of-at-least-32-bytes!".into()))
        );
        assert_eq!(
            settings.tokens.jwt_public_key,
            Some(PathBuf::from("/etc/jwt.pem"))
        );
        assert_eq!(settings.tokens.jwt_audience.as_deref(), Some("file-aud"));
        assert_eq!(settings.tokens.jwt_issuer.as_deref(), Some("file-iss"));
        assert_eq!(settings.cors_origins, ["http://a"]);
        assert_eq!(settings.allowed_hosts, ["hub.example"]);
        assert_eq!(schema_args(&settings), ["a=a.json"]);
        assert_eq!(settings.log, "watchbus=debug,info");
    }

    #[test]
    fn a_single_string_is_a_one_origin_list_in_the_file() {
        assert_eq!(file("cors_origin = \"*\"").finish().cors_origins, ["*"]);
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let layer = env(&[("WATCHBUS_KEEP_ALIVE", ""), ("WATCHBUS_CORS_ORIGIN", " ")]);
        assert_eq!(layer, Layer::default());
    }

    #[test]
    fn watchbus_log_beats_rust_log_which_beats_the_file() {
        let from_both = env(&[("WATCHBUS_LOG", "warn"), ("RUST_LOG", "trace")]);
        assert_eq!(from_both.log.as_deref(), Some("warn"));
        let rust_log = env(&[("RUST_LOG", "trace")]);
        let settings = resolve_layers(Layer::default(), rust_log, file("log = \"error\""));
        assert_eq!(settings.log, "trace");
    }

    #[test]
    fn flag_origins_replace_env_origins_rather_than_adding() {
        let settings = resolve_layers(
            flags(&["--cors-origin", "http://flag"]),
            env(&[("WATCHBUS_CORS_ORIGIN", "http://env")]),
            Layer::default(),
        );
        assert_eq!(settings.cors_origins, ["http://flag"]);
    }

    #[test]
    fn the_store_must_be_memory_or_a_redis_url() {
        assert_eq!("memory".parse(), Ok(StoreUrl::Memory));
        assert_eq!(
            "redis://h:1/0".parse(),
            Ok(StoreUrl::Redis("redis://h:1/0".into()))
        );
        for bad in ["postgres://x", "Memory", "redis://", "", "http://redis"] {
            let err = bad.parse::<StoreUrl>().err().unwrap_or_default();
            assert!(err.contains("invalid store"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn bad_flag_values_are_refused_by_clap() {
        for args in [
            &["--store", "postgres://x"][..],
            &["--retention-events", "0"],
            &["--keep-alive", "0s"],
            &["--keep-alive", "15"],
            &["--max-body", "1.5MiB"],
            &["--listen", "localhost"],
            &["--log", "=="],
        ] {
            let argv = std::iter::once("serve").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn bad_variables_name_the_variable() {
        let map = HashMap::from([("WATCHBUS_RETENTION_EVENTS", "0")]);
        let err = Layer::from_env(&map).err().map(|e| format!("{e:#}"));
        assert_eq!(
            err.as_deref(),
            Some("WATCHBUS_RETENTION_EVENTS: must be at least 1")
        );
        let map = HashMap::from([("WATCHBUS_STORE", "mysql://x")]);
        let err = Layer::from_env(&map).err().map(|e| format!("{e:#}"));
        assert!(
            err.as_deref()
                .unwrap_or_default()
                .starts_with("WATCHBUS_STORE: invalid store"),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_file_keys_are_an_error_naming_the_key() {
        let err = Layer::from_toml("retention_event = 5")
            .err()
            .unwrap_or_default();
        assert_eq!(
            err,
            "line 1: unknown key `retention_event` (did you mean `retention_events`?)"
        );
        let err = Layer::from_toml("retention-events = 5")
            .err()
            .unwrap_or_default();
        assert_eq!(
            err,
            "line 1: unknown key `retention-events` (did you mean `retention_events`?)"
        );
        let err = Layer::from_toml("config = \"x.toml\"")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("line 1: unknown key `config` (known keys: listen, "),
            "{err}"
        );
    }

    #[test]
    fn a_bad_file_value_names_its_line() {
        let err =
            Layer::from_toml("listen = \"127.0.0.1:0\"\n\n# the cadence\nkeep_alive = \"0s\"\n")
                .err()
                .unwrap_or_default();
        assert_eq!(err, "line 4: `keep_alive`: must be above zero");
    }

    #[test]
    fn bad_file_values_name_the_key() {
        let err = Layer::from_toml("keep_alive = \"0s\"")
            .err()
            .unwrap_or_default();
        assert_eq!(err, "line 1: `keep_alive`: must be above zero");
        let err = Layer::from_toml("retention_events = true")
            .err()
            .unwrap_or_default();
        assert_eq!(
            err,
            "line 1: `retention_events`: expected a string or an integer, found boolean"
        );
        let err = Layer::from_toml("cors_origin = [1]")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("line 1: `cors_origin`: expected a string"),
            "{err}"
        );
    }

    #[test]
    fn toml_syntax_errors_are_one_line_with_the_line_and_column() {
        let err = |text: &str| Layer::from_toml(text).err().unwrap_or_default();
        let cases = [
            ("listen = \"x\"\nkeep_alive = ", "line 2, column 14: "),
            // A fault at a line's first column is on that line, not the
            // one before.
            ("retention_events = 5\n@bad = 1", "line 2, column 1: "),
            ("log = \"info\"\nlog = \"debug\"", "line 2, column 1: "),
            ("log = \"unterminated", "line 1, column 20: "),
        ];
        for (text, start) in cases {
            let err = err(text);
            assert!(err.starts_with(start), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_missing_config_file_is_a_clear_error() {
        let args = ServeArgs {
            config: Some(PathBuf::from("/nonexistent/watchbus.toml")),
            ..ServeArgs::default()
        };
        let err = resolve(args, &HashMap::<&str, &str>::new())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.starts_with("cannot read config file /nonexistent/watchbus.toml: "),
            "{err}"
        );
    }

    #[test]
    fn the_config_path_also_comes_from_the_environment() {
        let map = HashMap::from([("WATCHBUS_CONFIG", "/nonexistent/from-env.toml")]);
        let err = resolve(ServeArgs::default(), &map)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/from-env.toml"), "{err}");
    }

    /// The schemas as `--schema` values.
    fn schema_args(settings: &ServeSettings) -> Vec<String> {
        settings.schemas.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn paths_in_a_config_file_are_read_from_its_directory() {
        let dir = std::env::temp_dir().join(format!("watchbus-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("watchbus.toml");
        std::fs::write(
            &config,
            "schema = [\"a=schemas/a.json\", \"b=/abs/b.json\"]\n\
             jwt_public_key = \"keys/jwt.pub.pem\"",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(config),
            ..ServeArgs::default()
        };
        let settings = resolve(args, &HashMap::<&str, &str>::new()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let a = dir.join("schemas/a.json");
        assert_eq!(
            schema_args(&settings),
            [format!("a={}", a.display()), "b=/abs/b.json".to_owned()]
        );
        assert_eq!(
            settings.tokens.jwt_public_key,
            Some(dir.join("keys/jwt.pub.pem"))
        );
        // A flag's path stays as given: the shell already made it relative
        // to where the command runs.
        assert_eq!(
            schema_args(&flags(&["--schema", "a=schemas/a.json"]).finish()),
            ["a=schemas/a.json"]
        );
    }

    #[test]
    fn a_schema_needs_a_valid_type_and_a_file() {
        for (text, message) in [
            (
                "order.created",
                "invalid schema `order.created`: expected TYPE=FILE, e.g. order.created=schemas/order.json",
            ),
            ("a=", "invalid schema `a=`: no file after `=`"),
            (
                "a b=x.json",
                "invalid schema `a b=x.json`: invalid type \"a b\": may only hold the characters A-Z a-z 0-9 . _ : / -",
            ),
            (
                "=x.json",
                "invalid schema `=x.json`: invalid type \"\": must not be empty",
            ),
        ] {
            assert_eq!(parse_schema(text), Err(message.to_owned()));
        }
        let env_error = Layer::from_env(&HashMap::from([("WATCHBUS_SCHEMA", "a=a.json,b")]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            env_error.as_deref(),
            Some(
                "WATCHBUS_SCHEMA: invalid schema `b`: expected TYPE=FILE, e.g. order.created=schemas/order.json"
            )
        );
        let file_error = Layer::from_toml("schema = [\"a\"]").err();
        assert_eq!(
            file_error.as_deref(),
            Some(
                "line 1: `schema`: invalid schema `a`: expected TYPE=FILE, e.g. order.created=schemas/order.json"
            )
        );
    }

    #[test]
    fn an_empty_audience_or_issuer_is_refused() {
        let parse_error = |argv: &[&str]| {
            let mut full = vec!["watchbus"];
            full.extend(argv);
            Cli::try_parse_from(full).err().map(|e| e.to_string())
        };
        let flag = parse_error(&["--jwt-audience", ""]).unwrap();
        assert!(
            flag.contains("invalid value '' for '--jwt-audience <AUD>': must not be empty"),
            "{flag}"
        );
        assert!(parse_error(&["--jwt-issuer", ""]).is_some());
        assert_eq!(
            Layer::from_toml("jwt_audience = \"\"").err().as_deref(),
            Some("line 1: `jwt_audience`: must not be empty")
        );
        assert_eq!(
            Layer::from_toml("jwt_issuer = 7").err().as_deref(),
            Some("line 1: `jwt_issuer`: expected a string, found integer")
        );
        // An empty variable counts as unset, as every other.
        let unset = env(&[("WATCHBUS_JWT_AUDIENCE", ""), ("WATCHBUS_JWT_ISSUER", " ")]);
        assert_eq!(unset.finish().tokens.jwt_audience, None);
    }

    #[test]
    fn tokens_stay_out_of_debug_output() {
        let secret = "hunter2-hunter2-hunter2-hunter2-hunter2";
        let settings = flags(&["--admin-token", "hunter2", "--jwt-secret", secret]).finish();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn a_cors_origin_is_taken_only_in_the_form_a_browser_sends() {
        for good in [
            "*",
            "null",
            "http://localhost:3000",
            "https://app.example",
            "http://[::1]:8080",
        ] {
            assert_eq!(parse_cors_origin(good).as_deref(), Ok(good));
        }
        let as_sent = |text: &str, sent: &str| {
            format!(
                "`{text}` is not an origin a browser sends: browsers send it as `{sent}` \
                 (no path, no default port, in lower case)"
            )
        };
        let no_origin = |text: &str| {
            format!(
                "`{text}` is not an origin a browser sends: an origin is scheme://host[:port], \
                 such as https://app.example"
            )
        };
        for (bad, why) in [
            (
                "https://app.example/",
                as_sent("https://app.example/", "https://app.example"),
            ),
            (
                "https://App.Example",
                as_sent("https://App.Example", "https://app.example"),
            ),
            (
                "http://app.example:80",
                as_sent("http://app.example:80", "http://app.example"),
            ),
            ("app.example", no_origin("app.example")),
            ("", no_origin("")),
            ("file:///tmp/page.html", no_origin("file:///tmp/page.html")),
        ] {
            assert_eq!(parse_cors_origin(bad), Err(why), "{bad}");
        }
        let file = Layer::from_toml(r#"cors_origin = ["https://a.example", "b.example"]"#).err();
        assert_eq!(
            file,
            Some(format!("line 1: `cors_origin`: {}", no_origin("b.example")))
        );
        let env = Layer::from_env(&HashMap::from([(
            "WATCHBUS_CORS_ORIGIN",
            "https://a.example/",
        )]))
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            env,
            Some(format!(
                "WATCHBUS_CORS_ORIGIN: {}",
                as_sent("https://a.example/", "https://a.example")
            ))
        );
    }

    #[test]
    fn a_store_url_is_shown_and_refused_without_its_password() {
        let url: StoreUrl = "redis://user:s3cr%40t@cache:6380/3".parse().unwrap();
        assert_eq!(
            url,
            StoreUrl::Redis("redis://user:s3cr%40t@cache:6380/3".into())
        );
        assert_eq!(url.to_string(), "redis://***@cache:6380/3");
        assert_eq!(format!("{url:?}"), "Redis(redis://***@cache:6380/3)");
        for (bad, why) in [
            (
                "reddis://:pw@h:1",
                "expected `memory` or a `redis://host:port[/db]` (or `rediss://`) URL",
            ),
            (
                "redis://:pw@h:port",
                "the Redis URL does not parse: invalid port number",
            ),
            (
                "redis://:pw@h:1/db",
                "the database, after the host, is a number, e.g. redis://127.0.0.1:6379/2",
            ),
            ("redis://:pw@/0", "the Redis URL does not parse: empty host"),
        ] {
            let shown = watchbus::store::redis::redact_url(bad);
            assert!(!shown.contains("pw"), "{shown}");
            assert_eq!(
                bad.parse::<StoreUrl>(),
                Err(format!("invalid store `{shown}`: {why}")),
                "{bad}"
            );
            let flag = Cli::try_parse_from(["serve", "--store", bad])
                .unwrap_err()
                .to_string();
            assert_eq!(
                flag,
                format!("error: --store: invalid store `{shown}`: {why}\n")
            );
        }
        for good in [
            "redis://h",
            "redis://h:1/",
            "rediss://:pw@h:6380/15",
            "redis://[::1]:6379/0",
        ] {
            assert!(good.parse::<StoreUrl>().is_ok(), "{good}");
        }
    }

    #[test]
    fn a_role_token_no_client_could_send_is_refused_without_being_shown() {
        let empty = "must not be empty: leave it out to leave the role open";
        let spaced =
            "must be visible ASCII without spaces, as a client sends it in Authorization: Bearer";
        for (token, message) in [
            ("", empty),
            ("a b", spaced),
            (" t", spaced),
            ("tök", spaced),
        ] {
            let cli = Cli::try_parse_from(["serve", "--publish-token", token]).unwrap();
            let flag_error = resolve(cli.serve, &HashMap::<&str, &str>::new())
                .err()
                .map(|e| e.to_string());
            assert_eq!(flag_error, Some(format!("--publish-token: {message}")));
            let file_error = Layer::from_toml(&format!("admin_token = \"{token}\"")).err();
            assert_eq!(
                file_error,
                Some(format!("line 1: `admin_token`: {message}"))
            );
            if !token.is_empty() {
                let env_error =
                    Layer::from_env(&HashMap::from([("WATCHBUS_SUBSCRIBE_TOKEN", token)]))
                        .err()
                        .map(|e| e.to_string());
                assert_eq!(
                    env_error,
                    Some(format!("WATCHBUS_SUBSCRIBE_TOKEN: {message}"))
                );
            }
        }
        // An empty variable is no variable, as for every setting.
        let layer = Layer::from_env(&HashMap::from([("WATCHBUS_ADMIN_TOKEN", "")])).unwrap();
        assert_eq!(layer.admin_token, None);
        let cli = Cli::try_parse_from(["serve", "--admin-token", "a.B-c_9~+/="]).unwrap();
        let settings = resolve(cli.serve, &HashMap::<&str, &str>::new()).unwrap();
        assert_eq!(settings.tokens.admin, Some(Secret("a.B-c_9~+/=".into())));
    }

    #[test]
    fn a_jwt_secret_shorter_than_32_bytes_is_refused_without_being_shown() {
        let short = "31-bytes-31-bytes-31-bytes-31-b";
        let message = "a JWT secret needs at least 32 bytes, this one has 31";
        assert_eq!(parse_jwt_secret(short), Err(message.to_owned()));
        let env_error = Layer::from_env(&HashMap::from([("WATCHBUS_JWT_SECRET", short)]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(env_error, Some(format!("WATCHBUS_JWT_SECRET: {message}")));
        let file_error = Layer::from_toml(&format!("jwt_secret = \"{short}\"")).err();
        assert_eq!(file_error, Some(format!("line 1: `jwt_secret`: {message}")));
        let number = Layer::from_toml("jwt_secret = 12345").err();
        assert_eq!(
            number.as_deref(),
            Some("line 1: `jwt_secret`: expected a string, found integer")
        );
    }
}
