//! Serving the API over HTTP/1.1, built for many long-lived streams.
//!
//! A subscriber may hold its SSE stream open for days, mostly idle, so what
//! an idle connection costs decides how many a machine can hold. hyper keeps
//! a 16 KiB read buffer and an 8 KiB write buffer for the whole life of each
//! connection, and neither can be made smaller; that was most of the memory
//! of an idle subscriber (docs/BENCHMARKS.md). So [`serve`] answers the
//! common requests itself: SSE subscriptions, the small JSON endpoints and
//! publishes with a body of up to 64 KiB.
//!
//! - The request is read into a buffer that holds just what arrived and is
//!   freed once the request is taken (`server::request`).
//! - The request goes through the same axum router as every other request,
//!   so auth, CORS, errors and the handlers are exactly the same.
//! - The response is written straight from the router's body: a sized body
//!   with `content-length`, a streamed one (SSE) chunk by chunk, each chunk
//!   written in one vectored write from the shared, once-encoded event
//!   frames, with no copy and no buffer kept between chunks (`server::respond`).
//!
//! HTTP/1.0 clients (nginx proxies by default) are served the same way,
//! with a stream's end marked by the close, as HTTP/1.0 has no chunks.
//!
//! Anything else (a chunked or larger body, `Expect: 100-continue`, a
//! WebSocket upgrade, `HEAD`, a request target that is not a path) is
//! handed to hyper with the bytes already read (`server::rewind`); hyper
//! serves that one request, and the connection closes after it, so that
//! every request head is read by the lean path, with the API's limits and
//! its JSON errors.
//!
//! [`serve_api`] serves the API alone and answers plain publishes without
//! the router, straight from the read buffer (`server::publish`).
//!
//! Mounting [`crate::router`] in your own axum server works as well; it only
//! costs hyper's buffers per connection.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use watchbus::Hub;

use crate::{AppState, HttpConfig};

mod closing;
mod conn;
mod publish;
mod request;
#[cfg(fuzzing)]
pub(crate) use request::check_both_paths;
mod respond;
mod rewind;
mod stall;

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting, lets every connection finish its current response (streams
/// end when [`watchbus::Hub::shutdown`] is called), and returns once every
/// connection has closed. Bound the wait yourself if clients may hold
/// connections open.
///
/// Any axum [`Router`] can be served this way, and each request carries
/// the peer's address as `ConnectInfo<SocketAddr>`, as under `axum::serve`
/// with connect info; plain requests (no body, or
/// up to 64 KiB framed by `Content-Length`) are answered by watchbus's own
/// lean connection handling, everything else by hyper (see the
/// [module docs](self)). A client that takes nothing written to it for
/// [`HttpConfig::DEFAULT_WRITE_TIMEOUT`] is disconnected, and a connection
/// that sends no request for [`HttpConfig::DEFAULT_IDLE_TIMEOUT`] is
/// closed.
///
/// It does not fail: a failure to accept is logged and retried, as a server
/// must survive running out of file descriptors for a moment.
pub async fn serve<F>(listener: TcpListener, router: Router, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    serve_app(
        listener,
        App {
            router,
            publishes: None,
            write_timeout: HttpConfig::DEFAULT_WRITE_TIMEOUT,
            idle_timeout: HttpConfig::DEFAULT_IDLE_TIMEOUT,
        },
        shutdown,
    )
    .await;
}

/// Serves the whole API over `hub` at the root, as
/// `serve(listener, router(hub, config), shutdown)` does, with the same
/// answers to every request, and returns as [`serve`] does.
///
/// Publishes (`POST /v1/events`) are answered without the router, straight
/// from the request's bytes, which takes about a third less CPU per
/// publish (docs/BENCHMARKS.md, scenario (f)), and the CORS headers the
/// router's layer would add are added to them.
pub async fn serve_api<F>(listener: TcpListener, hub: Hub, config: HttpConfig, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    let (write_timeout, idle_timeout) = (config.write_timeout, config.idle_timeout);
    let state = AppState::new(hub, config);
    let publishes = Some(Arc::new(publish::Publishes::new(state.clone())));
    let router = crate::routes_over(state);
    let app = App {
        router,
        publishes,
        write_timeout,
        idle_timeout,
    };
    serve_app(listener, app, shutdown).await;
}

/// What a server answers with.
#[derive(Clone)]
struct App {
    router: Router,
    /// The API whose publishes are answered without the router, if any.
    /// Shared: each connection holds a clone of its `App`.
    publishes: Option<Arc<publish::Publishes>>,
    /// [`HttpConfig::write_timeout`].
    write_timeout: Duration,
    /// [`HttpConfig::idle_timeout`].
    idle_timeout: Duration,
}

async fn serve_app<F>(listener: TcpListener, app: App, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    // Finish the router once: a bare `Router` converts its routes again for
    // every connection it is cloned into.
    let app = App {
        router: app.router.with_state(()),
        ..app
    };
    let closing = closing::Closing::default();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Frames are written whole, batched per wake: waiting to
                    // coalesce them would only add latency.
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%err, "cannot set TCP_NODELAY");
                    }
                    connections.spawn(conn::serve(stream, app.clone(), closing.listener()));
                }
                Err(err) if is_per_connection(&err) => {
                    tracing::debug!(%err, "a connection failed while being accepted");
                }
                Err(err) => {
                    // Out of file descriptors, typically: wait for some to
                    // close rather than spin, but not past a shutdown.
                    tracing::error!(%err, "cannot accept connections; retrying in 1 s");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    closing.close();
    connections.close();
    connections.wait().await;
}

/// Errors that concern one connection only, not the listener.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
