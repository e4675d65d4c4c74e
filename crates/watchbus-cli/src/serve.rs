//! `watchbus serve`: runs the server with resolved [`ServeSettings`].
//!
//! Start-up order matters to scripts and tests that read our stdout: the
//! listener is bound and the signal handlers are installed *before*
//! `listening on http://ADDR` is printed, so once that line is read the
//! server both serves and shuts down gracefully.
//!
//! Shutdown: SIGINT or SIGTERM calls [`watchbus::Hub::shutdown`], which ends
//! every SSE and WebSocket stream cleanly, and starts the server's graceful
//! shutdown (no new connections, in-flight requests finish). A client that
//! still holds a connection open [`SHUTDOWN_GRACE`] later is cut off, so the
//! process exits with status 0 within the contract's 5 s.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::exit::UsageError;
use crate::settings::{RoleTokens, SchemaFile, ServeSettings, StoreUrl};

/// How long open connections get after a shutdown signal before the
/// process exits anyway (the contract allows 5 s in all).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Reads and compiles the `--schema` files. Every error names the file.
fn load_schemas(files: &[SchemaFile]) -> anyhow::Result<watchbus_http::Schemas> {
    let mut schemas = watchbus_http::Schemas::new();
    for file in files {
        let text = std::fs::read_to_string(&file.path)
            .with_context(|| format!("cannot read the schema file {}", file.path.display()))?;
        let schema: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("the schema file {} is not JSON", file.path.display()))?;
        schemas
            .insert(file.event_type.clone(), &schema)
            .with_context(|| format!("schema file {}", file.path.display()))?;
        tracing::info!(event_type = %file.event_type, file = %file.path.display(), "schema");
    }
    Ok(schemas)
}

/// The scoped-token verifier of `--jwt-secret` and `--jwt-public-key`, with
/// the claims `--jwt-audience` and `--jwt-issuer` require:
/// either, both, or `None`.
fn scoped_tokens(tokens: &RoleTokens) -> anyhow::Result<Option<watchbus_http::ScopedTokens>> {
    let secret = tokens
        .jwt_secret
        .as_ref()
        .map(|secret| watchbus_http::ScopedTokens::hs256(secret.expose().as_bytes()))
        .transpose()
        .context("--jwt-secret")?;
    let public_key = match &tokens.jwt_public_key {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the JWT public key {}", path.display()))?;
            let key = watchbus_http::ScopedTokens::public_key_pem(&pem)
                .with_context(|| format!("the JWT public key {}", path.display()))?;
            tracing::info!(file = %path.display(), verifies = ?key, "JWT public key");
            Some(key)
        }
        None => None,
    };
    let mut scoped = match (secret, public_key) {
        (Some(secret), Some(key)) => secret.or(key),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => {
            // Claims to require of tokens nothing would verify: a
            // deployment that meant to check them must not start open.
            if tokens.jwt_audience.is_some() || tokens.jwt_issuer.is_some() {
                anyhow::bail!(
                    "--jwt-audience and --jwt-issuer need --jwt-secret or --jwt-public-key"
                );
            }
            return Ok(None);
        }
    };
    if let Some(audience) = &tokens.jwt_audience {
        scoped = scoped.audience(audience);
    }
    if let Some(issuer) = &tokens.jwt_issuer {
        scoped = scoped.issuer(issuer);
    }
    Ok(Some(scoped))
}

/// Runs the server until SIGINT or SIGTERM.
pub(crate) async fn run(settings: ServeSettings) -> anyhow::Result<()> {
    init_logging(&settings.log)?;
    // Before the store: a bad schema or key is a configuration error (exit
    // 2), to hear about at once.
    let schemas =
        load_schemas(&settings.schemas).map_err(|err| anyhow::Error::new(UsageError(err)))?;
    let scoped =
        scoped_tokens(&settings.tokens).map_err(|err| anyhow::Error::new(UsageError(err)))?;

    let retention = watchbus::Retention {
        max_events: settings.retention_events,
        max_age: settings.retention_age,
        max_bytes: settings.retention_bytes,
        idempotency_window: settings.idempotency_window,
    };
    let hub = match &settings.store {
        StoreUrl::Memory => {
            let store = watchbus::MemoryStore::new(retention);
            watchbus::Hub::new(match settings.idempotency_max_keys {
                Some(max) => store.with_max_idempotency_keys(max),
                None => store,
            })
        }
        // Redis keeps each key until its window ends, bounded by Redis's
        // own memory: a cap here would be a setting that does nothing.
        StoreUrl::Redis(_) if settings.idempotency_max_keys.is_some() => {
            let refusal = "--idempotency-max-keys is for the memory store: \
                           Redis keeps every key until its window ends";
            return Err(anyhow::Error::new(UsageError(anyhow::anyhow!(refusal))));
        }
        StoreUrl::Redis(url) => watchbus::Hub::new(
            watchbus::RedisStore::connect(url, retention)
                .await
                .with_context(|| {
                    format!(
                        "cannot connect to the store {}",
                        watchbus::store::redis::redact_url(url)
                    )
                })?,
        ),
    };
    let hub = match settings.max_subscribers {
        Some(max) => hub.with_max_subscribers(max),
        None => hub,
    };

    let tokens = &settings.tokens;
    let config = watchbus_http::HttpConfig {
        keep_alive: settings.keep_alive,
        write_timeout: settings.write_timeout,
        idle_timeout: settings.idle_timeout,
        max_body: settings.max_body,
        max_filters: settings.max_filters,
        tokens: watchbus_http::Tokens {
            publish: tokens.publish.as_ref().map(|t| t.expose().to_owned()),
            subscribe: tokens.subscribe.as_ref().map(|t| t.expose().to_owned()),
            admin: tokens.admin.as_ref().map(|t| t.expose().to_owned()),
            scoped,
        },
        cors_origins: settings.cors_origins.clone(),
        allowed_hosts: allowed_hosts(settings.listen, &settings.allowed_hosts),
        schemas,
    };

    // Every connection is a file descriptor. Take all the kernel allows
    // this process, not the shell's soft limit (often 1,024), as Go's
    // runtime does for its servers: past it, new clients are not even
    // refused, they wait unanswered.
    let open_files = rlimit::increase_nofile_limit(u64::MAX).ok();
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let mut signals = Signals::install().context("cannot install signal handlers")?;

    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")?;
        stdout.flush()?;
    }
    tracing::info!(%addr, store = %settings.store, open_files, "watchbus is serving");

    let signalled = Arc::new(Notify::new());
    let shutdown = {
        let signalled = Arc::clone(&signalled);
        let hub = hub.clone();
        async move {
            let name = signals.recv().await;
            tracing::info!(signal = name, "shutting down");
            hub.shutdown();
            signalled.notify_one();
        }
    };
    let server = watchbus_http::serve_api(listener, hub.clone(), config, shutdown);
    let deadline = async {
        signalled.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    // Upgraded WebSocket connections run in tasks of their own, which the
    // server does not wait for: wait until every subscription has ended, so
    // each socket got its close frame.
    let finished = async {
        server.await;
        hub.idle().await;
    };
    tokio::select! {
        () = finished => {}
        () = deadline => tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "connections still open after the shutdown grace period; closing them"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .with_context(|| format!("invalid log filter `{filter}`"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colors_wanted())
        .try_init()
        .map_err(|err| anyhow::anyhow!("cannot start logging: {err}"))
}

/// Whether the log may be colored: on a terminal, unless `NO_COLOR` is set
/// to anything (no-color.org), as clap's own messages do.
fn colors_wanted() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// SIGINT and SIGTERM, listened to from [`Signals::install`] on.
#[derive(Debug)]
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Waits for the next signal; returns its name.
    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// The hosts `serve` answers to: those of `--allowed-host` (`*` any), or,
/// with none, addresses and `localhost` when it listens on loopback, where
/// a page of a name rebound to `127.0.0.1` is the danger; elsewhere any.
fn allowed_hosts(
    listen: std::net::SocketAddr,
    names: &[String],
) -> Option<watchbus_http::AllowedHosts> {
    if names.iter().any(|name| name == "*") {
        None
    } else if !names.is_empty() {
        Some(watchbus_http::AllowedHosts::with_names(names))
    } else if listen.ip().is_loopback() {
        Some(watchbus_http::AllowedHosts::local())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use watchbus_http::AllowedHosts;

    use super::allowed_hosts;

    #[test]
    fn only_a_server_on_loopback_checks_hosts_unless_told() {
        let names = |names: &[&str]| names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();
        let loopback = "127.0.0.1:8080".parse().unwrap();
        let everywhere = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(allowed_hosts(loopback, &[]), Some(AllowedHosts::local()));
        assert_eq!(
            allowed_hosts("[::1]:8080".parse().unwrap(), &[]),
            Some(AllowedHosts::local())
        );
        assert_eq!(allowed_hosts(everywhere, &[]), None);
        let listed = Some(AllowedHosts::with_names(["hub.example"]));
        assert_eq!(allowed_hosts(loopback, &names(&["hub.example"])), listed);
        assert_eq!(allowed_hosts(everywhere, &names(&["hub.example"])), listed);
        assert_eq!(allowed_hosts(loopback, &names(&["hub.example", "*"])), None);
    }
}
