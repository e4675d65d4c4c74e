//! End-to-end runs of the bench against a tiny stand-in hub (axum, SSE over
//! chunked HTTP/1.1, WebSocket, `/v1/stats`), which injects loss,
//! duplicates and slow publish answers on demand, as a real hub must not.

use super::{BenchArgs, measure, run};
use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use clap::Parser;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::broadcast;

#[derive(Default)]
struct Hub {
    keys: std::sync::Mutex<HashMap<String, broadcast::Sender<String>>>,
    active: AtomicU64,
    published: AtomicU64,
    /// Acknowledge but do not deliver every n-th event (0 = never).
    drop_every: u64,
    /// Deliver every n-th event twice (0 = never).
    dup_every: u64,
    /// Answer each publish only after this long.
    publish_delay: std::time::Duration,
    /// Refuse every publish `403`, storing nothing.
    refuse_publishes: bool,
}

impl Hub {
    fn sender(&self, key: &str) -> broadcast::Sender<String> {
        let mut keys = self.keys.lock().unwrap();
        keys.entry(key.to_owned())
            .or_insert_with(|| broadcast::channel(4096).0)
            .clone()
    }
}

type Q = Query<HashMap<String, String>>;

async fn subscribe(
    State(hub): State<Arc<Hub>>,
    Query(q): Q,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = hub
        .sender(q.get("key").map_or("", String::as_str))
        .subscribe();
    hub.active.fetch_add(1, Ordering::SeqCst);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                // An envelope around the payload, like watchbus's.
                Ok(d) => {
                    let env = format!("{{\"id\":\"1\",\"key\":\"k\",\"time\":\"t\",\"data\":{d}}}");
                    return Some((Ok(Event::default().id("1").data(env)), rx));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
}

async fn subscribe_ws(
    State(hub): State<Arc<Hub>>,
    Query(q): Q,
    ws: WebSocketUpgrade,
) -> axum::response::Response {
    let mut rx = hub
        .sender(q.get("key").map_or("", String::as_str))
        .subscribe();
    hub.active.fetch_add(1, Ordering::SeqCst);
    ws.on_upgrade(|mut socket| async move {
        while let Ok(d) = rx.recv().await {
            if socket.send(Message::Text(d.into())).await.is_err() {
                break;
            }
        }
    })
}

async fn publish(
    State(hub): State<Arc<Hub>>,
    Query(q): Q,
    body: String,
) -> Result<String, axum::http::StatusCode> {
    tokio::time::sleep(hub.publish_delay).await;
    if hub.refuse_publishes {
        return Err(axum::http::StatusCode::FORBIDDEN);
    }
    let n = hub.published.fetch_add(1, Ordering::SeqCst) + 1;
    let tx = hub.sender(q.get("key").map_or("", String::as_str));
    if hub.drop_every == 0 || n % hub.drop_every != 0 {
        let _ = tx.send(body.clone());
        if hub.dup_every != 0 && n % hub.dup_every == 0 {
            let _ = tx.send(body);
        }
    }
    Ok(format!("{{\"id\":\"{n}\",\"time\":\"t\"}}"))
}

async fn stats(State(hub): State<Arc<Hub>>) -> String {
    format!(
        "{{\"subscribers\":{{\"active\":{},\"total\":0}}}}",
        hub.active.load(Ordering::SeqCst)
    )
}

async fn stand_in(hub: Hub) -> String {
    let app = Router::new()
        .route("/v1/events", get(subscribe).post(publish))
        .route("/v1/ws", get(subscribe_ws))
        .route("/v1/stats", get(stats))
        .with_state(Arc::new(hub));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn args(server: &str, extra: &[&str]) -> BenchArgs {
    let defaults = [("--drain", "3s"), ("--duration", "700ms")];
    let mut argv = vec!["bench", "--server", server, "--fail-on-loss"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            argv.extend([flag, value]);
        }
    }
    argv.extend(extra);
    Cli::try_parse_from(argv).unwrap().args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_fan_out_is_clean() {
    let server = stand_in(Hub::default()).await;
    let a = args(
        &server,
        &[
            "-s",
            "30",
            "-k",
            "4",
            "-r",
            "400",
            "-p",
            "3",
            "--warmup",
            "200ms",
            "--pid",
            &std::process::id().to_string(),
        ],
    );
    run(a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_fan_out_with_random_keys_is_clean() {
    let server = stand_in(Hub::default()).await;
    let a = args(
        &server,
        &[
            "-t",
            "ws",
            "-s",
            "10",
            "-k",
            "3",
            "--key-order",
            "random",
            "-r",
            "300",
        ],
    );
    run(a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_templates_work() {
    let server = stand_in(Hub::default()).await;
    let sub = format!("{server}/v1/events?key=t-{{key}}");
    let publ = format!("{server}/v1/events?key=t-{{key}}");
    let a = args(
        &server,
        &[
            "--sub-url",
            &sub,
            "--pub-url",
            &publ,
            "-s",
            "5",
            "-k",
            "2",
            "-r",
            "200",
            "--settle",
            "100ms",
        ],
    );
    run(a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_is_seen() {
    let server = stand_in(Hub {
        drop_every: 7,
        ..Hub::default()
    })
    .await;
    let a = args(
        &server,
        &["--json", "-s", "4", "-r", "300", "--drain", "300ms"],
    );
    let err = run(a).await.unwrap_err();
    assert!(err.to_string().contains("loss"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_seen() {
    let server = stand_in(Hub {
        dup_every: 5,
        ..Hub::default()
    })
    .await;
    let a = args(&server, &["--json", "-s", "4", "-r", "300"]);
    let err = run(a).await.unwrap_err();
    assert!(err.to_string().contains("duplicates"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_publishes_fail_fails() {
    let server = stand_in(Hub {
        refuse_publishes: true,
        ..Hub::default()
    })
    .await;
    for extra in [
        &["-s", "2", "-r", "50"][..],
        &["--publish-only", "-r", "50"],
    ] {
        let report = measure(args(&server, extra)).await.unwrap();
        assert!(!report.ok, "{extra:?}");
        assert_eq!(report.publish.accepted, 0);
        assert!(
            report.publish.errors.contains_key("403"),
            "{:?}",
            report.publish.errors
        );
        let human = report.human();
        assert!(human.contains("PROBLEMS"), "{human}");
        // The failures are the news, not the pace.
        assert!(human.contains(" publishes failed (403: "), "{human}");
        assert!(!human.contains("fell behind"), "{human}");
        let err = run(args(&server, extra)).await.unwrap_err();
        assert!(err.to_string().contains("failed publishes"), "{err:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_that_measure_nothing_are_usage_errors() {
    for extra in [
        &["--duration", "0s"][..],
        &["-s", "0"],
        &["-k", "0"],
        &["-p", "0"],
        &["--connect-rate", "0"],
        &["--drain", "1000000000years"],
        &["--duration", "2years"],
    ] {
        // No server is reached: the options are refused first.
        let err = run(args("http://127.0.0.1:9", extra)).await.unwrap_err();
        assert!(
            err.downcast_ref::<crate::exit::UsageError>().is_some(),
            "{extra:?}: {err:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_only_and_idle() {
    let server = stand_in(Hub::default()).await;
    run(args(
        &server,
        &[
            "--publish-only",
            "-r",
            "0",
            "-p",
            "2",
            "--duration",
            "300ms",
        ],
    ))
    .await
    .unwrap();
    let pid = std::process::id().to_string();
    run(args(
        &server,
        &["--idle", "-s", "20", "--pid", &pid, "--duration", "200ms"],
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscribers_are_reported() {
    let server = stand_in(Hub::default()).await;
    let sub = format!("{server}/nowhere?key={{key}}");
    let publ = format!("{server}/v1/events?key={{key}}");
    let a = args(
        &server,
        &[
            "--sub-url",
            &sub,
            "--pub-url",
            &publ,
            "-s",
            "3",
            "-r",
            "100",
            "--settle",
            "10ms",
        ],
    );
    assert!(run(a).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_the_scheduled_time_when_publishers_fall_behind() {
    // One publisher asked for an event every 5 ms against publishes that
    // take at least 20 ms: the k-th send (from 0) is due at 5k ms and goes
    // out no earlier than 20k ms, so it is at least 15k ms late, however
    // slow the machine. Only lower bounds follow; they are what is checked.
    let server = stand_in(Hub {
        publish_delay: std::time::Duration::from_millis(20),
        ..Hub::default()
    })
    .await;
    let report = measure(args(
        &server,
        &["-s", "2", "-r", "200", "-p", "1", "--duration", "500ms"],
    ))
    .await
    .unwrap();
    let human = report.human();
    assert!(report.ok, "{human}");
    let sent = report.publish.accepted_measured;
    assert!(
        (5..=26).contains(&sent),
        "{sent} publishes in 500 ms: {human}"
    );
    // Every send after the first is late.
    assert!(report.publish.late >= sent - 1, "{human}");
    assert!(report.publish.max_late_us >= 15_000 * (sent - 1), "{human}");
    // Measured from the actual send, the median publish would take about
    // 20 ms; from the scheduled time, the median one waited 15 ms for
    // every send before it as well.
    let median_wait_us = 15_000 * ((sent - 1) / 2);
    assert!(report.publish.latency_us.p50 >= median_wait_us, "{human}");
    let delivery = report.latency_us.as_ref().map_or(0, |l| l.p50);
    assert!(delivery >= median_wait_us, "{human}");
}
