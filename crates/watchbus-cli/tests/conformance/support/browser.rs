//! For the browser tests: the page a headless Chromium shows, which
//! reports every callback of its EventSource or WebSocket back to the
//! test, and a proxy between the browser and the server that can cut the
//! browser's connections and hold its reconnects.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};

use super::{FRAME_TIMEOUT, enc};

/// The page: subscribes as its query says, reports by `POST /report`.
const PAGE: &str = include_str!("page.html");

/// The page's server, on a port of its own: the page's origin is not the
/// API's.
pub(crate) struct Page {
    addr: String,
    reports: mpsc::UnboundedReceiver<Value>,
    server: JoinHandle<()>,
}

impl Page {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, reports) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/report", post(report))
            .with_state(tx);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            reports,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, what the browser sends as `Origin`.
    pub(crate) fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The page's URL with these query parameters.
    pub(crate) fn url(&self, params: &[(&str, &str)]) -> String {
        let query: Vec<String> = params
            .iter()
            .map(|(name, value)| format!("{name}={}", enc(value)))
            .collect();
        format!("{}/?{}", self.origin(), query.join("&"))
    }

    /// The page's next report, in the order its callbacks ran.
    pub(crate) async fn next(&mut self) -> Value {
        match tokio::time::timeout(FRAME_TIMEOUT, self.reports.recv()).await {
            Ok(Some(report)) => report,
            Ok(None) => panic!("the page's server stopped"),
            Err(_) => panic!("the page reported nothing within {FRAME_TIMEOUT:?}"),
        }
    }

    /// Asserts that the page's next report is exactly `want`.
    pub(crate) async fn expect(&mut self, want: Value) {
        let got = self.next().await;
        super::assert_json_eq(&got, &want, "the page's next report");
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn report(State(reports): State<mpsc::UnboundedSender<Value>>, body: String) {
    let report = serde_json::from_str(&body)
        .unwrap_or_else(|err| panic!("the page sent a report that is not JSON ({err}): {body}"));
    let _ = reports.send(report);
}

/// A TCP proxy to the server that records each request's head and can
/// cut every connection it carries.
pub(crate) struct Proxy {
    /// `127.0.0.1:PORT`, to give the browser instead of the server's.
    pub(crate) addr: String,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

struct Shared {
    upstream: String,
    /// While `false`, a new connection's request waits, unanswered.
    passing: watch::Sender<bool>,
    /// The connections being carried.
    carried: Mutex<Vec<AbortHandle>>,
    /// Each request's head, in the order they arrived.
    heads: Mutex<Vec<String>>,
}

impl Proxy {
    pub(crate) async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            passing: watch::Sender::new(true),
            carried: Mutex::new(Vec::new()),
            heads: Mutex::new(Vec::new()),
        });
        let acceptor = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let carry = tokio::spawn(carry(Arc::clone(&shared), client));
                    shared.carried.lock().unwrap().push(carry.abort_handle());
                }
            }
        });
        Self {
            addr,
            shared,
            acceptor,
        }
    }

    /// Closes every connection it carries, as a network that drops, and
    /// holds new requests until [`Self::release`].
    pub(crate) fn cut_and_hold(&self) {
        self.shared.passing.send_replace(false);
        for connection in self.shared.carried.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Lets the held requests, and the next ones, through.
    pub(crate) fn release(&self) {
        self.shared.passing.send_replace(true);
    }

    /// Each request's head so far (request line and headers).
    pub(crate) fn heads(&self) -> Vec<String> {
        self.shared.heads.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        for connection in self.shared.carried.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

/// Reads one request's head, waits while the proxy holds, then carries the
/// connection both ways.
async fn carry(shared: Arc<Shared>, mut client: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    shared
        .heads
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    let mut passing = shared.passing.subscribe();
    if passing.wait_for(|passing| *passing).await.is_err() {
        return;
    }
    let Ok(mut server) = TcpStream::connect(&shared.upstream).await else {
        return;
    };
    if server.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// The value of header `name` in a request head, compared without case.
pub(crate) fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field
            .trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}
