//! Graceful shutdown on SIGTERM/SIGINT, and the listening line.

use std::time::Duration;

use serde_json::json;

use crate::support::ws::{self, WsNext};
use crate::support::{End, FRAME_TIMEOUT, TestServer};

#[tokio::test]
async fn listening_line_names_the_real_port() {
    let srv = TestServer::start(&[]);
    let addr: std::net::SocketAddr = srv
        .addr
        .parse()
        .unwrap_or_else(|e| panic!("{:?}: {e}", srv.listening_line));
    assert_ne!(
        addr.port(),
        0,
        "the line must carry the real port: {:?}",
        srv.listening_line
    );
    assert_eq!(
        srv.listening_line,
        format!("listening on http://127.0.0.1:{}", addr.port())
    );
    let resp = srv
        .http
        .get(format!("http://127.0.0.1:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

async fn shutdown_with_open_streams(signal: &str) {
    let mut srv = TestServer::start(&[]);
    let mut sse = srv.sse("key=k").await;
    let idle_sse = srv.sse("key=idle").await;
    let mut sock = ws::connect(&srv, "key=k").await;
    srv.wait_active(3).await;
    let p = srv.publish("k", json!("before shutdown")).await;
    assert_ids!(sse.next_ids(1).await, [&p.id]);
    assert_eq!(ws::next_event(&mut sock).await["id"], json!(p.id));

    // Read the streams while the server shuts down, as real clients would
    // (a WebSocket client answers the close handshake).
    let readers: Vec<_> = [sse, idle_sse]
        .into_iter()
        .map(|mut stream| tokio::spawn(async move { stream.read_to_end(FRAME_TIMEOUT).await }))
        .collect();
    let ws_reader = tokio::spawn(async move { ws::read_to_end(&mut sock, FRAME_TIMEOUT).await });

    let started = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| srv.signal(signal, Duration::from_secs(5)));
    let Some(status) = status else {
        panic!("watchbus did not exit within 5 s of SIG{signal}");
    };
    assert!(status.success(), "exit status after SIG{signal}: {status}");
    assert!(started.elapsed() <= Duration::from_secs(6));

    for reader in readers {
        let (frames, end) = reader.await.unwrap();
        assert!(frames.is_empty(), "no events after shutdown: {frames:?}");
        assert_eq!(
            end,
            End::Clean,
            "the SSE stream must end cleanly on shutdown"
        );
    }
    match ws_reader.await.unwrap() {
        (texts, WsNext::Close(_)) => assert!(texts.is_empty(), "{texts:?}"),
        (_, other) => panic!("the WebSocket should get a close frame on shutdown, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_open_streams_exits_0_within_5s_and_ends_streams_cleanly() {
    shutdown_with_open_streams("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_shuts_down_gracefully_too() {
    shutdown_with_open_streams("INT").await;
}

#[tokio::test]
async fn sigterm_when_idle_exits_0() {
    let mut srv = TestServer::start(&[]);
    let status = srv
        .signal("TERM", Duration::from_secs(5))
        .expect("exit within 5 s");
    assert!(status.success(), "exit status {status}");
    assert!(!srv.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_a_close_frame_to_a_lone_websocket() {
    // Only a WebSocket open: nothing else keeps the server busy while the
    // stream is being closed.
    let mut srv = TestServer::start(&[]);
    let mut sock = ws::connect(&srv, "key=k").await;
    ws::opening(&mut sock).await;
    srv.wait_active(1).await;
    let reader = tokio::spawn(async move { ws::read_to_end(&mut sock, FRAME_TIMEOUT).await });
    let status = tokio::task::block_in_place(|| srv.signal("TERM", Duration::from_secs(5)))
        .expect("exit within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    match reader.await.unwrap() {
        (texts, WsNext::Close(_)) => assert!(texts.is_empty(), "{texts:?}"),
        (_, other) => panic!("the WebSocket should get a close frame on shutdown, got {other:?}"),
    }
}

/// A server out of file descriptors retries `accept` once a second; a
/// shutdown signal does not wait for the retry. Signalled at three points
/// of the retry's second, it exits at once each time.
#[cfg(target_os = "linux")]
#[test]
fn a_server_out_of_file_descriptors_stops_at_once() {
    use std::process::Command;
    use std::time::Instant;

    for wait in [1300, 1600, 1900].map(Duration::from_millis) {
        // `ulimit -n` sets the hard limit too: the server cannot raise it.
        let (mut child, addr) = crate::support::server::serve_under_ulimit("-n 40");
        let addr = addr.as_str();
        // More connections than descriptors: the kernel's backlog takes
        // the rest, and the server's `accept` fails.
        let clients: Vec<std::net::TcpStream> = (0..60)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(wait);
        let signalled = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(10),
                "no exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = signalled.elapsed();
        drop(clients);
        assert!(status.success(), "{status}");
        assert!(
            took < Duration::from_millis(500),
            "signalled {wait:?} after the flood, it took {took:?} to exit"
        );
    }
}
