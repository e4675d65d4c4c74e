//! One connection: simple requests answered here, one after another, until
//! a request is hyper's; then hyper serves that request, and the connection
//! closes after it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::ConnectInfo;
use axum::http::Extensions;
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse as _, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower::ServiceExt as _;

use super::App;
use super::closing::Listener;
use super::request::{self, Incoming};
use super::respond::{self, Answer};
use super::rewind::Rewind;

/// Serves `stream` until it closes, or until `closing` between requests.
/// Every request the router sees carries [`ConnectInfo`] with the peer's
/// address, as under `axum::serve`.
pub(super) async fn serve(mut stream: TcpStream, app: App, closing: Listener) {
    let mut pending = Vec::new();
    let mut idle = request::Idle::new(app.idle_timeout);
    loop {
        let incoming = tokio::select! {
            incoming = request::read(&mut stream, &mut pending, app.publishes.is_some(), &mut idle) => incoming,
            () = closing.closed() => return,
        };
        let (answer, version, close) = match incoming {
            Ok(Incoming::Simple(mut simple)) => {
                let (version, close) = (simple.request.version(), simple.close);
                with_peer(&stream, simple.request.extensions_mut());
                let Ok(response) = app.router.clone().oneshot(simple.request).await;
                // A stream may last days: its idle subscriber holds no timer.
                if response.body().size_hint().exact().is_none() {
                    idle.release();
                }
                (Answer::Routed(response), version, close)
            }
            Ok(Incoming::Publish(request)) => {
                // `read` finds publishes only for a server that has them.
                let Some(publishes) = &app.publishes else {
                    return;
                };
                let answer = publishes.answer(&request, &pending).await;
                request::consume(request.len, &mut pending);
                (answer, request.version, request.close)
            }
            Ok(Incoming::Refused(error)) => {
                tracing::debug!(%error, "refused a request head");
                let response = error.into_response();
                if let Some(publishes) = &app.publishes {
                    publishes.meters().count(&response);
                }
                let out = respond::Out::new(&mut stream, app.write_timeout);
                let written = respond::write(out, response, Version::HTTP_11, true, &mut pending);
                match written.await {
                    Ok(_) => linger(stream).await,
                    Err(err) => tracing::debug!(%err, "connection ended while refusing a request"),
                }
                return;
            }
            Ok(Incoming::ForHyper) => {
                let mut peer = Extensions::new();
                with_peer(&stream, &mut peer);
                let io = Rewind::new(pending, stream, app.write_timeout);
                with_hyper(io, peer, app.router, closing).await;
                return;
            }
            Ok(Incoming::Closed | Incoming::Idle) => return,
            Err(err) => {
                tracing::debug!(%err, "connection failed while reading a request");
                return;
            }
        };
        // Written here, once the request is dropped: what a connection
        // holds while a response streams is what an idle subscriber costs.
        let out = respond::Out::new(&mut stream, app.write_timeout);
        let written = respond::write_answer(out, answer, version, close, &mut pending).await;
        match written {
            Ok(true) if !closing.is_closed() => {}
            Ok(_) => return,
            Err(err) => {
                tracing::debug!(%err, "connection ended while responding");
                return;
            }
        }
    }
}

/// Hands the connection, with the bytes read from it so far, to hyper.
async fn with_hyper(io: Rewind, peer: Extensions, router: Router, closing: Listener) {
    // One request, then the close (but for an upgrade, whose connection
    // goes on in the new protocol): the client's next request, on a new
    // connection, is read here first, with the API's limits and its JSON
    // errors. hyper answers a head it cannot parse with a bare status, and
    // has limits of its own.
    type HyperRequest = axum::http::Request<hyper::body::Incoming>;
    let router = router.map_request(move |mut request: HyperRequest| {
        request.extensions_mut().extend(peer.clone());
        request
    });
    let router =
        tower::ServiceExt::<HyperRequest>::map_response(router, |mut response: Response| {
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .with_upgrades();
    tokio::pin!(connection);
    let finished = tokio::select! {
        result = connection.as_mut() => Some(result),
        () = closing.closed() => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "connection failed");
    }
}

/// Adds the peer's address to `extensions`, as [`ConnectInfo`]. Asked of
/// the socket for each routed request rather than kept with the
/// connection, whose size is what an idle subscriber costs; a peer that
/// is already gone has none.
fn with_peer(stream: &TcpStream, extensions: &mut Extensions) {
    if let Ok(peer) = stream.peer_addr() {
        extensions.insert(ConnectInfo::<SocketAddr>(peer));
    }
}

/// How long a refused client gets to read its error before the close.
const LINGER: Duration = Duration::from_secs(1);

/// Closes after a refusal without losing the error: closing a socket with
/// unread input makes the kernel send a reset, which can destroy the
/// response before the client reads it. So: send FIN, then read and
/// discard until the client closes too, for at most [`LINGER`].
async fn linger(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        // On the heap: an array here would be part of every connection's
        // future, refused or not, for the connection's whole life.
        let mut sink = vec![0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs is mostly the size of this future: a
    /// buffer kept in it (say, an array held across an `.await`) is paid by
    /// every connection for its whole life. docs/BENCHMARKS.md, scenario (e).
    /// (About 1.5 KB in a release build.)
    #[tokio::test]
    async fn a_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let state = crate::AppState::new(watchbus::Hub::memory(), crate::HttpConfig::default());
        let app = App {
            router: crate::routes_over(state.clone()),
            publishes: Some(std::sync::Arc::new(crate::server::publish::Publishes::new(
                state,
            ))),
            write_timeout: crate::HttpConfig::DEFAULT_WRITE_TIMEOUT,
            idle_timeout: crate::HttpConfig::DEFAULT_IDLE_TIMEOUT,
        };
        let closing = crate::server::closing::Closing::default();
        let connection = serve(client, app, closing.listener());
        let size = std::mem::size_of_val(&connection);
        // Shown with `--nocapture`, for docs/BENCHMARKS.md.
        eprintln!("a connection's future is {size} bytes");
        assert!(size <= 2048, "a connection's future is {size} bytes");
    }

    /// Serves `request` with a router that knows no route, and returns what
    /// came back and how many events `config`'s hub stored.
    async fn answered_with_no_routes(config: crate::HttpConfig, request: &[u8]) -> (String, u64) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let hub = watchbus::Hub::memory();
        let app = App {
            router: Router::new(),
            publishes: Some(std::sync::Arc::new(crate::server::publish::Publishes::new(
                crate::AppState::new(hub.clone(), config),
            ))),
            write_timeout: crate::HttpConfig::DEFAULT_WRITE_TIMEOUT,
            idle_timeout: crate::HttpConfig::DEFAULT_IDLE_TIMEOUT,
        };
        let closing = crate::server::closing::Closing::default();
        let connection = tokio::spawn(serve(server, app, closing.listener()));
        client.write_all(request).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        connection.await.unwrap();
        (answer, hub.metrics().published_events)
    }

    /// With a router that knows no publish, only the direct path can store
    /// one; everything else still goes to the router.
    #[tokio::test]
    async fn publishes_are_answered_without_the_router() {
        let (answer, published) = answered_with_no_routes(
            crate::HttpConfig::default(),
            b"POST /v1/events?key=a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
              GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (published_answer, unrouted) = answer.split_once("HTTP/1.1 404").unwrap();
        assert!(
            published_answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{published_answer}"
        );
        assert!(published_answer.ends_with("\"}"), "{published_answer}");
        assert!(
            unrouted.ends_with("\r\n\r\n"),
            "the empty router's 404: {unrouted}"
        );
        assert_eq!(published, 1);
    }

    /// With CORS, the direct path answers too, with the CORS headers.
    #[tokio::test]
    async fn publishes_with_cors_are_answered_without_the_router() {
        let config = crate::HttpConfig {
            cors_origins: vec!["http://a.example".into()],
            ..crate::HttpConfig::default()
        };
        let (answer, published) = answered_with_no_routes(
            config,
            b"POST /v1/events?key=a HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n\
              Connection: close\r\nContent-Length: 2\r\n\r\nhi",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("\r\naccess-control-allow-origin: http://a.example\r\n"),
            "{answer}"
        );
        assert_eq!(published, 1);
    }
}
