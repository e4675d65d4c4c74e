//! WebSocket helpers over tokio-tungstenite.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{FRAME_TIMEOUT, TestServer};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server sent next.
#[derive(Debug)]
pub(crate) enum WsNext {
    Text(String),
    Ping,
    Close(Option<(u16, String)>),
    /// EOF or an error without a close frame.
    Gone(#[allow(dead_code, reason = "shown in failure messages")] String),
    Timeout,
    Other(#[allow(dead_code, reason = "shown in failure messages")] String),
}

fn ws_url(srv: &TestServer, query: &str) -> String {
    let mut url = format!("ws://{}/v1/ws?{query}", srv.addr);
    if let Some(token) = &srv.token {
        url.push_str(&format!("&access_token={}", super::enc(token)));
    }
    url
}

/// Connects to `/v1/ws?<query>`; panics unless the upgrade succeeds.
pub(crate) async fn connect(srv: &TestServer, query: &str) -> Ws {
    match try_connect(srv, query, None).await {
        Ok(ws) => ws,
        Err((status, body)) => {
            panic!("WebSocket /v1/ws?{query}: upgrade refused with {status}: {body:?}")
        }
    }
}

/// Connects with an optional small receive buffer; on refusal, the HTTP
/// status and body.
pub(crate) async fn try_connect(
    srv: &TestServer,
    query: &str,
    recv_buffer: Option<u32>,
) -> Result<Ws, (u16, Option<String>)> {
    try_connect_with(srv, query, recv_buffer, &[]).await
}

/// Like [`try_connect`], with extra request headers.
pub(crate) async fn try_connect_with(
    srv: &TestServer,
    query: &str,
    recv_buffer: Option<u32>,
    headers: &[(&'static str, &str)],
) -> Result<Ws, (u16, Option<String>)> {
    let url = ws_url(srv, query);
    let addr: std::net::SocketAddr = srv.addr.parse().expect("addr");
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let stream = tokio::time::timeout(FRAME_TIMEOUT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut request = url
        .as_str()
        .into_client_request()
        .expect("WebSocket request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("header value"));
    }
    let handshake = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream));
    match tokio::time::timeout(FRAME_TIMEOUT, handshake).await {
        Err(_) => panic!("WebSocket handshake timed out: {url}"),
        Ok(Ok((ws, resp))) => {
            assert_eq!(resp.status().as_u16(), 101, "upgrade status");
            Ok(ws)
        }
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned());
            Err((status, body))
        }
        Ok(Err(e)) => panic!("WebSocket handshake failed: {e}"),
    }
}

/// Expects the upgrade to be refused with `status` and the error envelope.
pub(crate) async fn expect_refused(srv: &TestServer, query: &str, status: u16) {
    match try_connect(srv, query, None).await {
        Ok(_) => panic!(
            "WebSocket /v1/ws?{query}: expected {status} before the upgrade, but it upgraded"
        ),
        Err((got, body)) => {
            assert_eq!(
                got, status,
                "WebSocket /v1/ws?{query}: status before upgrade; body {body:?}"
            );
            if let Some(body) = body.filter(|b| !b.is_empty()) {
                let value: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("error body not JSON ({e}): {body:?}"));
                if let Err(why) = super::check_error_value(&value) {
                    panic!("{why}");
                }
            }
        }
    }
}

/// The next message within `timeout`.
pub(crate) async fn next_within(ws: &mut Ws, timeout: Duration) -> WsNext {
    match tokio::time::timeout(timeout, ws.next()).await {
        Err(_) => WsNext::Timeout,
        Ok(None) => WsNext::Gone("end of stream".to_owned()),
        Ok(Some(Err(e))) => WsNext::Gone(e.to_string()),
        Ok(Some(Ok(msg))) => match msg {
            Message::Text(text) => WsNext::Text(text.as_str().to_owned()),
            Message::Ping(_) => WsNext::Ping,
            Message::Close(frame) => {
                WsNext::Close(frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())))
            }
            other => WsNext::Other(format!("{other:?}")),
        },
    }
}

/// The next text frame (skipping pings), parsed as JSON; panics otherwise.
pub(crate) async fn next_json(ws: &mut Ws) -> Value {
    let text = next_text(ws).await;
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("WebSocket text frame is not JSON ({e}): {text:?}"))
}

/// The next text frame (skipping pings).
pub(crate) async fn next_text(ws: &mut Ws) -> String {
    loop {
        match next_within(ws, FRAME_TIMEOUT).await {
            WsNext::Text(text) => return text,
            WsNext::Ping => {}
            other => panic!("waiting for a WebSocket text frame, got {other:?}"),
        }
    }
}

/// The next event envelope (skipping pings and bookmarks).
pub(crate) async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let value = next_json(ws).await;
        if value.get("bookmark").is_none() {
            return value;
        }
    }
}

/// Reads until close or EOF (bounded); returns the text frames and the end.
pub(crate) async fn read_to_end(ws: &mut Ws, timeout: Duration) -> (Vec<String>, WsNext) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut texts = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_within(ws, left).await {
            WsNext::Text(text) => texts.push(text),
            WsNext::Ping | WsNext::Other(_) => {}
            WsNext::Timeout => panic!(
                "WebSocket did not end within {timeout:?} ({} texts, last {:?})",
                texts.len(),
                texts.last()
            ),
            end => return (texts, end),
        }
    }
}

/// Reads the opening bookmark of a stream that started live, asserting its
/// exact text (`{"bookmark":"<start>"}`), and returns the id.
pub(crate) async fn opening(ws: &mut Ws) -> String {
    let text = next_text(ws).await;
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the opening frame is not JSON ({e}): {text:?}"));
    let id = value["bookmark"]
        .as_str()
        .unwrap_or_else(|| panic!("the opening frame is not a bookmark: {text:?}"))
        .to_owned();
    assert_eq!(text, format!(r#"{{"bookmark":"{id}"}}"#), "opening frame");
    id
}
