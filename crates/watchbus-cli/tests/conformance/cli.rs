//! The command line contract: settings from flags, environment and config
//! file, human durations and sizes, retention by age, and the `publish` and
//! `watch` subcommands.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::server::TestStore;
use crate::support::{TestServer, enc, page_ids};

async fn retained_after(srv: &TestServer, n: usize) -> u64 {
    srv.publish_n("k", n).await;
    let stats = srv.stats().await;
    stats["events"]["retained"].as_u64().unwrap()
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "watchbus-conformance-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn flag_beats_environment_beats_config_file() {
    let store = TestStore::from_env();
    let env_only =
        TestServer::start_with_env(store.clone(), &[], &[("WATCHBUS_RETENTION_EVENTS", "2")]);
    assert_eq!(
        retained_after(&env_only, 5).await,
        2,
        "WATCHBUS_RETENTION_EVENTS"
    );
    drop(env_only);

    let flag = TestServer::start_with_env(
        store.clone(),
        &["--retention-events", "3"],
        &[("WATCHBUS_RETENTION_EVENTS", "2")],
    );
    assert_eq!(
        retained_after(&flag, 5).await,
        3,
        "a flag beats its variable"
    );
    drop(flag);

    let config = temp_config("retention", "retention_events = 4\n");
    let config_str = config.to_str().unwrap();
    let file_only = TestServer::start_with_env(store.clone(), &["--config", config_str], &[]);
    assert_eq!(retained_after(&file_only, 6).await, 4, "config file");
    drop(file_only);

    let env_over_file = TestServer::start_with_env(
        store,
        &["--config", config_str],
        &[("WATCHBUS_RETENTION_EVENTS", "2")],
    );
    assert_eq!(
        retained_after(&env_over_file, 6).await,
        2,
        "a variable beats the config file"
    );
    drop(env_over_file);
    let _ = std::fs::remove_file(config);
}

#[tokio::test]
async fn keep_alive_from_environment_and_sizes_in_plain_bytes() {
    let srv = TestServer::start_with_env(
        TestStore::from_env(),
        &["--max-body", "1500"],
        &[("WATCHBUS_KEEP_ALIVE", "1s")],
    );
    let mut sse = srv.sse("key=quiet").await;
    sse.opening().await;
    let frame = sse.next_frame().await.unwrap();
    assert_eq!(frame.comments, ["keep-alive"], "{:?}", frame.raw);
    let resp = srv
        .post("/v1/events?key=k")
        .header("content-type", "text/plain")
        .body("x".repeat(2000))
        .send()
        .await
        .unwrap();
    assert_error!(resp, 413);
    let resp = srv
        .post("/v1/events?key=k")
        .header("content-type", "text/plain")
        .body("x".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn retention_age_evicts_old_events() {
    let srv = TestServer::start(&["--retention-age", "1s"]);
    let old = srv.publish("k", json!("old")).await.id;
    // Wall-clock age is the subject here, so wait it out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let new = srv.publish("k", json!("new")).await.id;
    let deadline = tokio::time::Instant::now() + crate::support::FRAME_TIMEOUT;
    loop {
        let ids = page_ids(&srv.history("").await);
        if ids == [new.clone()] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event older than 1s was not evicted: history {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The evicted event is the newest evicted one: resuming from it is fine.
    let page = srv.history(&format!("from={}", enc(&old))).await;
    assert_ids!(page_ids(&page), [&new]);
}

/// Runs `watchbus <args>` with optional stdin, bounded.
pub(crate) async fn run_cli(args: Vec<String>, stdin: Option<&'static str>) -> Output {
    run_cli_bytes(args, stdin.map(|text| text.as_bytes().to_vec())).await
}

/// Runs `watchbus <args>` with optional stdin bytes, bounded.
pub(crate) async fn run_cli_bytes(args: Vec<String>, stdin: Option<Vec<u8>>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_watchbus"));
        cmd.args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(&text).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("watchbus {args:?} did not finish: {out:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn publish_subcommand_prints_the_id_and_parses_json_or_text() {
    let srv = TestServer::start(&[]);
    let s = |x: &str| x.to_owned();
    let json_out = run_cli(
        vec![
            s("publish"),
            s("--server"),
            srv.base.clone(),
            s("k"),
            s(r#"{"a":1}"#),
        ],
        None,
    )
    .await;
    assert!(json_out.status.success(), "{json_out:?}");
    let text_out = run_cli(
        vec![
            s("publish"),
            s("--server"),
            srv.base.clone(),
            s("--type"),
            s("note"),
            s("k"),
            s("hello there"),
        ],
        None,
    )
    .await;
    assert!(text_out.status.success(), "{text_out:?}");
    let stdin_out = run_cli(
        vec![
            s("publish"),
            s("--server"),
            srv.base.clone(),
            s("k"),
            s("-"),
        ],
        Some("1\nfoo\n"),
    )
    .await;
    assert!(stdin_out.status.success(), "{stdin_out:?}");
    let page = srv.history("").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "history {page}");
    assert_eq!(
        String::from_utf8_lossy(&json_out.stdout).trim(),
        events[0]["id"].as_str().unwrap()
    );
    assert_eq!(
        String::from_utf8_lossy(&text_out.stdout).trim(),
        events[1]["id"].as_str().unwrap()
    );
    assert_eq!(events[0]["data"], json!({"a": 1}));
    assert_eq!(events[1]["data"], json!("hello there"));
    assert_eq!(events[1]["type"], json!("note"));
    assert_eq!(events[2]["data"], json!(1));
    assert_eq!(events[3]["data"], json!("foo"));
}

/// The JSON a publisher writes is what subscribers get: the CLI sends it
/// as written, with its digits, key order and duplicate keys.
#[tokio::test]
async fn publish_subcommand_sends_json_as_written() {
    let srv = TestServer::start(&[]);
    let json = r#"{"z":1,"a":{"y":2,"b":3},"n":12345678901234567890123,"e":1E2,"d":[1,1]}"#;
    let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
    let s = |x: &str| x.to_owned();
    let out = run_cli(
        vec![
            s("publish"),
            s("--server"),
            srv.base.clone(),
            s("k"),
            s(json),
        ],
        None,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let out = publish_stdin(&srv, format!("{json}\n{deep}\n").into_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    let page = srv.get_text("/v1/events/history").await;
    assert_eq!(
        page.matches(&format!(r#""data":{json}}}"#)).count(),
        2,
        "{page:.600}"
    );
    assert_eq!(
        page.matches(&format!(r#""data":{deep}}}"#)).count(),
        1,
        "{page:.600}"
    );
}

/// `watchbus publish K -` against `srv`, reading `stdin`.
async fn publish_stdin(srv: &TestServer, stdin: Vec<u8>) -> Output {
    let args = ["publish", "--server", &srv.base, "k", "-"];
    run_cli_bytes(args.iter().map(|&a| a.to_owned()).collect(), Some(stdin)).await
}

/// The `data` of each event of a history page.
fn page_data(page: &Value) -> Vec<&Value> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .collect()
}

fn printed_ids(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn publish_from_stdin_fits_its_arrays_to_the_servers_body_limit() {
    let srv = TestServer::start(&["--max-body", "64KiB"]);
    // 200 lines of 1,000 bytes: 200 KB, over three times the limit, each
    // line far under it.
    let lines: Vec<String> = (0..200)
        .map(|i| format!("{i:04}{}", "x".repeat(996)))
        .collect();
    let out = publish_stdin(&srv, (lines.join("\n") + "\n").into_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    let page = srv.history("limit=1000").await;
    let events = page["events"].as_array().unwrap();
    let stored: Vec<&str> = events.iter().map(|e| e["data"].as_str().unwrap()).collect();
    assert_eq!(stored, lines, "every line once, in order");
    assert_eq!(printed_ids(&out), page_ids(&page));

    // A line the server would not take alone is where the command stops:
    // the lines before it are stored, none after.
    let big = "y".repeat(70_000);
    let out = publish_stdin(&srv, format!("before\n{big}\nafter\n").into_bytes()).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: the body is larger than the limit of 65536 bytes")
            && stderr.contains("nothing from line 2 on was stored"),
        "{stderr}"
    );
    let page = srv
        .history(&format!("from={}", enc(page_ids(&page).last().unwrap())))
        .await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["data"], json!("before"));
    assert_eq!(printed_ids(&out), page_ids(&page));
}

#[tokio::test]
async fn publish_from_stdin_stores_the_lines_before_one_that_is_not_utf8() {
    let srv = TestServer::start(&[]);
    let out = publish_stdin(&srv, b"1\r\ntwo\n\xff\n4\n".to_vec()).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("line 3: not UTF-8 (byte 1 of the line); nothing from line 3 on was stored"),
        "{out:?}"
    );
    let page = srv.history("").await;
    let data = page_data(&page);
    assert_eq!(data, [&json!(1), &json!("two")]);
    assert_eq!(printed_ids(&out), page_ids(&page));
}

#[tokio::test]
async fn watch_subcommand_exits_nonzero_on_410() {
    let srv = TestServer::start(&["--retention-events", "2"]);
    let ids = srv.publish_n("k", 5).await;
    let s = |x: &str| x.to_owned();
    let out = run_cli(
        vec![
            s("watch"),
            s("--server"),
            srv.base.clone(),
            s("--key"),
            s("k"),
            s("--from"),
            ids[0].clone(),
        ],
        None,
    )
    .await;
    assert!(
        !out.status.success(),
        "watch from a gone id must fail: {out:?}"
    );
    assert!(!out.stderr.is_empty(), "watch must say why it failed");
}

/// Waits until `srv` has `n` active subscribers.
async fn wait_for_subscribers(srv: &TestServer, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while srv.stats().await["subscribers"]["active"] != n {
        assert!(std::time::Instant::now() < deadline, "no subscriber came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits, bounded, for `child` to exit.
async fn exited(mut child: std::process::Child) -> Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("watch did not exit: {:?}", child.wait_with_output());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.wait_with_output().unwrap()
}

/// A file saved with a byte order mark publishes its first line as the
/// JSON it is; lines of only white space are skipped.
#[tokio::test]
async fn publish_from_stdin_skips_a_byte_order_mark_and_blank_lines() {
    let srv = TestServer::start(&[]);
    let out = publish_stdin(
        &srv,
        b"\xEF\xBB\xBF{\"n\":1}\r\n \t \r\n\n\xEF\xBB\xBFtwo\n".to_vec(),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let page = srv.history("").await;
    let data = page_data(&page);
    assert_eq!(data, [&json!({"n": 1}), &json!("\u{feff}two")]);
    assert_eq!(printed_ids(&out), page_ids(&page));
}

/// A publish whose ids cannot be printed fails, saying the events were
/// stored all the same, so that a script does not send them again.
#[tokio::test]
async fn publish_says_what_was_stored_when_it_cannot_print_the_ids() {
    let srv = TestServer::start(&[]);
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let publish = |args: &[&str], stdin: Stdio| {
        Command::new(env!("CARGO_BIN_EXE_watchbus"))
            .args(["publish", "--server", &srv.base, "k"])
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::from(full()))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = exited(publish(&["one"], Stdio::null())).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let ids = page_ids(&srv.history("").await);
    assert_eq!(ids.len(), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the event was stored as {}, but standard output could not take the ids: ",
            ids[0]
        )),
        "{stderr}"
    );

    let mut child = publish(&["-"], Stdio::piped());
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a\nb\nc\n").unwrap();
    }
    let out = exited(child).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // It stops at the first batch it cannot print: lines waiting together
    // form one, so how many depends on how fast they were read.
    let ids = page_ids(&srv.history("").await);
    let stored = match &ids[1..] {
        [id] => format!("the event was stored as {id}"),
        [first, .., last] => format!("{} events were stored, {first} to {last}", ids.len() - 1),
        [] => panic!("nothing stored: {out:?}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{stored}, but standard output could not take the ids: "
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn watch_stops_quietly_when_its_reader_goes_and_fails_when_stdout_does() {
    let srv = TestServer::start(&[]);
    let watch = |stdout: Stdio| {
        Command::new(env!("CARGO_BIN_EXE_watchbus"))
            .args(["watch", "--server", &srv.base, "--key", "k"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // A full disk: the event is not where it was asked, so exit 1.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = watch(Stdio::from(full));
    wait_for_subscribers(&srv, 1).await;
    srv.publish("k", json!(1)).await;
    let out = exited(child).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write to standard output"),
        "{out:?}"
    );

    // The reader went away (`watch | head -1`): exit 0, on a stream where
    // nothing comes too, which gives no write to fail.
    wait_for_subscribers(&srv, 0).await;
    let mut child = watch(Stdio::piped());
    drop(child.stdout.take());
    let out = exited(child).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // And once subscribed, quiet as the stream is.
    let mut child = watch(Stdio::piped());
    wait_for_subscribers(&srv, 1).await;
    drop(child.stdout.take());
    let started = std::time::Instant::now();
    let out = exited(child).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_for_subscribers(&srv, 0).await;
}

/// `watch --key k` on `srv` with `extra` arguments, its stdout read line by
/// line on a thread.
struct Watching {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
}

impl Watching {
    fn start(srv: &TestServer, extra: &[&str]) -> Self {
        use std::io::BufRead as _;

        let mut child = Command::new(env!("CARGO_BIN_EXE_watchbus"))
            .args(["watch", "--server", &srv.base, "--key", "k"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let _ = lines_tx.send(line.unwrap());
            }
        });
        Self {
            child,
            lines,
            reader,
        }
    }

    /// The next line printed, within 10 s.
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .expect("watch printed no line within 10 s")
    }

    /// Kills it; returns the lines not read yet and its output.
    fn stop(mut self) -> (Vec<String>, Output) {
        let _ = self.child.kill();
        let out = self.child.wait_with_output().unwrap();
        self.reader.join().unwrap();
        (self.lines.try_iter().collect(), out)
    }
}

/// The `id` of each printed envelope.
fn envelope_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn watch_started_live_misses_nothing_when_dropped_before_its_first_event() {
    let srv = TestServer::start(&[]);
    let watch = Watching::start(&srv, &[]);
    wait_for_subscribers(&srv, 1).await;
    // A reset ends the stream before any event; the events published while
    // watch waits to reconnect reach it through the stream's opening
    // bookmark.
    srv.reset().await;
    let ids = srv.publish_n("k", 3).await;
    let printed: Vec<String> = (0..3).map(|_| watch.next_line()).collect();
    let (rest, out) = watch.stop();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(envelope_ids(&printed), ids, "each event once, in order");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reconnecting in") && stderr.contains(" after id "),
        "watch should have reconnected from the opening bookmark: {stderr}"
    );
}

#[tokio::test]
async fn watch_replaces_a_silent_connection_and_misses_nothing() {
    // Keep-alives an hour apart: between events the stream is silent.
    let srv = TestServer::start(&["--keep-alive", "1h"]);
    let watch = Watching::start(&srv, &["--idle-timeout", "300ms"]);
    wait_for_subscribers(&srv, 1).await;
    let mut ids = srv.publish_n("k", 1).await;
    let mut printed = vec![watch.next_line()];
    // Silence: watch gives up on the connection and resumes after the
    // event it printed, more than once.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ids.extend(srv.publish_n("k", 2).await);
    printed.push(watch.next_line());
    printed.push(watch.next_line());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (rest, out) = watch.stop();
    printed.extend(rest);
    assert_eq!(envelope_ids(&printed), ids, "each event once, in order");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.matches("nothing received for 300ms").count() >= 2,
        "watch should have replaced the silent connection: {stderr}"
    );
}

#[tokio::test]
async fn default_retention_is_10000_events() {
    let srv = TestServer::start(&[]);
    for b in 0..10 {
        let batch: Vec<serde_json::Value> = (0..1000)
            .map(|i| json!({"key": "k", "data": b * 1000 + i}))
            .collect();
        srv.publish_batch(&batch).await;
    }
    let stats = srv.stats().await;
    assert_eq!(stats["events"]["retained"], json!(10_000), "stats {stats}");
    assert_eq!(stats["events"]["evicted"], json!(0), "stats {stats}");
    let last = srv.publish("k", json!("one more")).await.id;
    let stats = srv.stats().await;
    assert_eq!(stats["events"]["retained"], json!(10_000), "stats {stats}");
    assert_eq!(stats["events"]["evicted"], json!(1), "stats {stats}");
    assert_eq!(stats["events"]["latest_id"], json!(last), "stats {stats}");
}

/// `serve` raises its soft open-file limit to the hard one: under a
/// shell's common soft limit of 1,024, a server past about a thousand
/// subscribers would leave new clients waiting unanswered.
#[cfg(target_os = "linux")]
#[test]
fn serve_takes_every_file_descriptor_the_kernel_allows() {
    let (mut child, _addr) = crate::support::server::serve_under_ulimit("-Sn 256");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let open_files: Vec<&str> = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    let (soft, hard) = (open_files[0], open_files[1]);
    assert_eq!(soft, hard, "{limits}");
    assert_ne!(soft, "256", "{limits}");
}

/// A TLS front for the server at `backend` (`host:port`), with the
/// certificate of testdata/tls, as a proxy terminating HTTPS is: its
/// `https://` base URL.
async fn tls_front(backend: String) -> String {
    use std::sync::Arc;
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject as _};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tls");
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    base
}

/// `watchbus <args>` with `SSL_CERT_FILE` set to `ca`, if given.
fn cli_trusting(ca: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_watchbus"));
    cmd.args(args).stdin(Stdio::null());
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    cmd
}

/// `publish` and `watch` reach a server behind HTTPS, checking its
/// certificate against the system's CAs or `SSL_CERT_FILE`'s.
#[tokio::test]
async fn publish_and_watch_reach_a_server_over_https() {
    let srv = TestServer::start(&[]);
    let base = tls_front(srv.addr.clone()).await;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/tls/ca.pem");

    // A certificate no trusted CA signed is refused.
    let untrusted = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            cli_trusting(None, &["publish", "tls/1", "x", "--server", &base])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(untrusted.status.code(), Some(1), "{untrusted:?}");
    let said = String::from_utf8_lossy(&untrusted.stderr);
    assert!(said.contains("certificate"), "{said}");
    assert_eq!(srv.stats().await["events"]["published"], json!(0));

    let published = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            cli_trusting(
                Some(ca),
                &["publish", "tls/1", "{\"n\":1}", "--server", &base],
            )
            .output()
            .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(published.status.success(), "{published:?}");
    let id = String::from_utf8(published.stdout)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        srv.history_ids("key=tls%2F1").await,
        std::slice::from_ref(&id)
    );

    let mut watch = cli_trusting(
        Some(ca),
        &[
            "watch",
            "--key",
            "tls/1",
            "--from-timestamp",
            "2000-01-01T00:00:00Z",
            "--server",
            &base,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
            line
        }),
    )
    .await
    .expect("watch printed the event")
    .unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&event["id"], &event["data"]),
        (&json!(id), &json!({"n": 1}))
    );
}

/// A listener that answers every connection with `answer` (nothing, when
/// empty, holding the connection open): its `http://` base URL.
async fn fake_server(answer: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0_u8; 4096];
                let _ = stream.read(&mut request).await;
                if answer.is_empty() {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                } else {
                    let _ = stream.write_all(answer).await;
                }
            });
        }
    });
    base
}

/// Runs `watchbus <args>` and asserts that it exits 1 saying `said`.
async fn fails_saying(args: &[&str], stdin: Option<&'static str>, said: &str) {
    let out = run_cli(args.iter().map(|arg| arg.to_string()).collect(), stdin).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), said);
}

/// `watch` pointed at something that is not a watchbus server fails at
/// once, saying so, rather than reconnecting for ever; and a server that
/// never answers is given up after `--idle-timeout`.
#[tokio::test]
async fn watch_gives_up_on_what_is_not_an_event_stream() {
    let page = fake_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\nConnection: close\r\n\r\n<html>",
    )
    .await;
    fails_saying(
        &["watch", "--key", "k", "--server", &page],
        None,
        &format!(
            "error: {page}/v1/events answered 200 OK with text/html, not an event stream: \
             is it a watchbus server?"
        ),
    )
    .await;

    let silent = fake_server(b"").await;
    let started = std::time::Instant::now();
    fails_saying(
        &[
            "watch",
            "--key",
            "k",
            "--idle-timeout",
            "1s",
            "--server",
            &silent,
        ],
        None,
        &format!("error: cannot connect to {silent}/v1/events: no answer for 1s"),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A publish that gets no answer within `--timeout` may have been stored:
/// the error says so, for one event and for the lines of standard input;
/// one that could not connect says that nothing was.
#[tokio::test]
async fn publish_says_what_may_be_stored_when_no_answer_comes() {
    let silent = fake_server(b"").await;
    let args = |data| ["publish", "k", data, "--timeout", "1s", "--server", &silent];
    fails_saying(
        &args("x"),
        None,
        &format!(
            "error: no answer from {silent}/v1/events within 1s; the event may or may not have \
             been stored (look before sending it again, or publish with --idempotency-key)"
        ),
    )
    .await;
    // One line: how lines already waiting are batched depends on timing.
    fails_saying(
        &args("-"),
        Some("one\n"),
        &format!(
            "error: no answer from {silent}/v1/events within 1s; line 1 may or may not have \
             been stored (look before sending it again, or publish with --idempotency-key), \
             and nothing after it was"
        ),
    )
    .await;

    // Nobody listens there any more: nothing was sent.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let out = run_cli(
        ["publish", "k", "-", "--server", &closed]
            .map(String::from)
            .to_vec(),
        Some("one\n"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.starts_with(&format!("error: cannot reach {closed}/v1/events: "))
            && said
                .trim_end()
                .ends_with("; nothing from line 1 on was stored"),
        "{said}"
    );
}

/// Ctrl-C stops `bench`'s publishers early; it drains what was sent and
/// reports the run that took place, with no loss, then exits 0.
#[tokio::test]
async fn bench_interrupted_reports_what_ran() {
    let srv = TestServer::start(&[]);
    let bench = Command::new(env!("CARGO_BIN_EXE_watchbus"))
        .args([
            "bench",
            "--server",
            &srv.base,
            "--subscribers",
            "2",
            "--rate",
            "50",
            "--duration",
            "60s",
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while srv.stats().await["events"]["published"].as_u64() < Some(20) {
        assert!(
            std::time::Instant::now() < deadline,
            "the bench published nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Command::new("kill")
        .args(["-s", "INT", &bench.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let out = exited(bench).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = report["config"]["interrupted_after_s"].as_f64().unwrap();
    assert!(after > 0.0 && after < 60.0, "{after}");
    let deliveries = &report["deliveries"];
    assert!(deliveries["expected"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(deliveries["delivered"], deliveries["expected"], "{report}");
    assert_eq!(report["ok"], json!(true), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted: stopping the publishers"),
        "{out:?}"
    );
}
