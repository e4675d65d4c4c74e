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

    /// Holds new requests, unanswered, until [`Self::release`]; the
    /// connections it carries go on.
    pub(crate) fn hold(&self) {
        self.shared.passing.send_replace(false);
    }

    /// Closes every connection it carries, as a network that drops, and
    /// holds new requests until [`Self::release`].
    pub(crate) fn cut_and_hold(&self) {
        self.hold();
        for connection in self.shared.carried.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Lets the held requests, and the next ones, through.
    pub(crate) fn release(&self) {
        self.shared.passing.send_replace(true);
    }

    /// The heads (request line and headers) of the page's first request
    /// and of its one reconnect; panics unless there were exactly two.
    pub(crate) fn first_and_reconnect(&self) -> [String; 2] {
        let heads = self.shared.heads.lock().unwrap().clone();
        <[String; 2]>::try_from(heads)
            .unwrap_or_else(|heads| panic!("expected 2 requests, got {heads:#?}"))
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

/// Carries one connection: the server's bytes as they come, and the
/// client's requests one by one, each recorded and, while the proxy holds,
/// kept waiting. A browser reuses a connection for its next request (the
/// next EventSource), so every request is seen, not only the first. After
/// a WebSocket upgrade, the client's bytes pass as they come.
async fn carry(shared: Arc<Shared>, client: TcpStream) {
    let (mut from_client, mut to_client) = client.into_split();
    let mut pending = Vec::new();
    let Some(head) = next_head(&mut from_client, &mut pending).await else {
        return;
    };
    if !shared.pass(&head).await {
        return;
    }
    let Ok(server) = TcpStream::connect(&shared.upstream).await else {
        return;
    };
    let (mut from_server, mut to_server) = server.into_split();
    let requests = async {
        let mut head = head;
        loop {
            if to_server.write_all(&head).await.is_err() {
                return;
            }
            if header(&String::from_utf8_lossy(&head), "upgrade").is_some() {
                // What follows are WebSocket frames, not requests.
                if to_server.write_all(&pending).await.is_ok() {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                }
                return;
            }
            let Some(next) = next_head(&mut from_client, &mut pending).await else {
                return;
            };
            if !shared.pass(&next).await {
                return;
            }
            head = next;
        }
    };
    let responses = tokio::io::copy(&mut from_server, &mut to_client);
    // Either side closing ends the connection.
    tokio::select! {
        () = requests => {}
        _ = responses => {}
    }
}

impl Shared {
    /// Records a request's head, then waits while the proxy holds. `false`
    /// when the proxy is gone.
    async fn pass(&self, head: &[u8]) -> bool {
        self.heads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(head).into_owned());
        let mut passing = self.passing.subscribe();
        passing.wait_for(|passing| *passing).await.is_ok()
    }
}

/// The next request head (through its blank line) from `client`, the
/// bytes after it left in `pending`; `None` when the client closes first.
/// The browser's requests here are all `GET`s, without a body.
async fn next_head(
    client: &mut tokio::net::tcp::OwnedReadHalf,
    pending: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    let mut buf = [0_u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = pending.split_off(end + 4);
            return Some(std::mem::replace(pending, rest));
        }
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
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
