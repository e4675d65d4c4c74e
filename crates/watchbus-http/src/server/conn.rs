//! One connection: simple requests answered here, one after another, until
//! a request is hyper's; then hyper serves the rest of the connection.

use std::time::Duration;

use axum::Router;
use axum::http::Version;
use axum::response::IntoResponse as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower::ServiceExt as _;

use super::closing::Listener;
use super::request::{self, Incoming};
use super::respond;
use super::rewind::Rewind;

/// Serves `stream` until it closes, or until `closing` between requests.
pub(super) async fn serve(mut stream: TcpStream, router: Router, closing: Listener) {
    let mut pending = Vec::new();
    loop {
        let incoming = tokio::select! {
            incoming = request::read(&mut stream, &mut pending) => incoming,
            () = closing.closed() => return,
        };
        match incoming {
            Ok(Incoming::Simple(simple)) => {
                let version = simple.request.version();
                let Ok(response) = router.clone().oneshot(simple.request).await;
                let written =
                    respond::write(&mut stream, response, version, simple.close, &mut pending);
                match written.await {
                    Ok(true) if !closing.is_closed() => {}
                    Ok(_) => return,
                    Err(err) => {
                        tracing::debug!(%err, "connection ended while responding");
                        return;
                    }
                }
            }
            Ok(Incoming::Refused(error)) => {
                tracing::debug!(%error, "refused a request head");
                let response = error.into_response();
                let written =
                    respond::write(&mut stream, response, Version::HTTP_11, true, &mut pending);
                match written.await {
                    Ok(_) => linger(stream).await,
                    Err(err) => tracing::debug!(%err, "connection ended while refusing a request"),
                }
                return;
            }
            Ok(Incoming::ForHyper) => {
                with_hyper(stream, pending, router, closing).await;
                return;
            }
            Ok(Incoming::Closed) => return,
            Err(err) => {
                tracing::debug!(%err, "connection failed while reading a request");
                return;
            }
        }
    }
}

/// Hands the connection, and the bytes read from it so far, to hyper.
async fn with_hyper(stream: TcpStream, read: Vec<u8>, router: Router, closing: Listener) {
    let connection = hyper::server::conn::http1::Builder::new()
        // With a timer, hyper bounds each later request head by its 30 s
        // default, as the lean path does; it closes without a response.
        .timer(TokioTimer::new())
        .serve_connection(
            TokioIo::new(Rewind::new(read, stream)),
            TowerToHyperService::new(router),
        )
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
    /// (About 1.6 KB in a debug build.)
    #[tokio::test]
    async fn a_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let router = crate::router(watchbus::Hub::memory(), crate::HttpConfig::default());
        let closing = crate::server::closing::Closing::default();
        let connection = serve(client, router, closing.listener());
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 2048, "a connection's future is {size} bytes");
    }
}
