//! `TestServer`: the real `watchbus serve` binary on `127.0.0.1:0`.
//!
//! Each test starts its own server, so tests share no state and can run in
//! parallel. The store is chosen once, in [`TestStore::from_env`], so the
//! whole suite can be re-run against another store.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::redis::{Persistence, TestRedis};
use super::{STARTUP_TIMEOUT, sse::SseClient};

/// How the server under test stores its log.
///
/// The test target picks the store: `conformance` runs against `memory`,
/// `conformance_redis` (the same sources, a second `[[test]]` target)
/// against a private `redis-server` per store. `WATCHBUS_TEST_STORE`
/// (`memory` or `redis`) overrides the target's choice.
///
/// Each [`TestStore::from_env`] is a new, private store: for Redis its own
/// `redis-server`, killed when the last server using it is gone. Servers
/// started on the same `Arc<TestStore>` ([`TestServer::start_on`]) share
/// it: a restart of one server, or a cluster of several.
#[derive(Debug)]
pub(crate) struct TestStore {
    pub(crate) kind: StoreKind,
    pub(crate) args: Vec<String>,
    redis: Option<TestRedis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Memory,
    Redis,
}

impl StoreKind {
    /// The store this test target runs against.
    pub(crate) fn selected() -> Self {
        let chosen = std::env::var("WATCHBUS_TEST_STORE").unwrap_or_default();
        match chosen.as_str() {
            "memory" => Self::Memory,
            "redis" => Self::Redis,
            "" => match env!("CARGO_CRATE_NAME") {
                "conformance_redis" => Self::Redis,
                _ => Self::Memory,
            },
            other => panic!("WATCHBUS_TEST_STORE={other:?}: expected `memory` or `redis`"),
        }
    }

    /// The server remembers idempotency keys itself, in a bounded table
    /// that `/metrics` shows and `--idempotency-max-keys` sizes (Redis
    /// keeps them, each expiring on its own).
    pub(crate) fn remembers_keys_in_process(self) -> bool {
        self == Self::Memory
    }
}

impl TestStore {
    /// A new private store of the kind this target runs against.
    pub(crate) fn from_env() -> Arc<Self> {
        match StoreKind::selected() {
            StoreKind::Memory => Self::memory(),
            StoreKind::Redis => Self::redis(Persistence::None),
        }
    }

    pub(crate) fn memory() -> Arc<Self> {
        Arc::new(Self {
            kind: StoreKind::Memory,
            args: vec!["--store".to_owned(), "memory".to_owned()],
            redis: None,
        })
    }

    /// A private `redis-server` with that persistence.
    pub(crate) fn redis(persistence: Persistence) -> Arc<Self> {
        // Every test of the redis target needs Redis: none, nothing to run.
        watchbus_testkit::require_redis_or_skip_binary();
        let redis = TestRedis::start(persistence).expect("redis-server is available");
        Arc::new(Self {
            kind: StoreKind::Redis,
            args: vec!["--store".to_owned(), redis.url()],
            redis: Some(redis),
        })
    }

    /// The private Redis behind this store, to stop and restart it.
    pub(crate) fn redis_server(&self) -> Option<&TestRedis> {
        self.redis.as_ref()
    }

    // Capabilities: what the contract lets differ between stores.

    /// The log outlives a restart of the watchbus process (Redis keeps it;
    /// memory loses it, so old ids become `410`).
    pub(crate) fn log_survives_server_restart(&self) -> bool {
        self.kind == StoreKind::Redis
    }

    /// Several server processes can share the log (a cluster).
    pub(crate) fn is_shared_by_servers(&self) -> bool {
        self.kind == StoreKind::Redis
    }

    /// See [`StoreKind::remembers_keys_in_process`].
    pub(crate) fn remembers_keys_in_process(&self) -> bool {
        self.kind.remembers_keys_in_process()
    }
}

/// The `--store ...` arguments every test server gets: the one place that
/// turns the selected store into command-line arguments.
pub(crate) fn store_args(store: &TestStore) -> Vec<String> {
    match store.kind {
        StoreKind::Memory | StoreKind::Redis => store.args.clone(),
    }
}

/// A running `watchbus serve`. Killed on drop.
#[derive(Debug)]
pub(crate) struct TestServer {
    child: Option<Child>,
    pid: u32,
    /// `127.0.0.1:PORT` as printed by the server.
    pub(crate) addr: String,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    /// Token the helper methods send (`None`: no `Authorization` header).
    pub(crate) token: Option<String>,
    pub(crate) store: Arc<TestStore>,
    /// The raw listening line, for the test of its form.
    pub(crate) listening_line: String,
    log: Arc<Mutex<Vec<u8>>>,
}

/// What `POST /v1/events` answered for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) id: String,
    pub(crate) time: String,
}

impl TestServer {
    /// Starts `watchbus serve --listen 127.0.0.1:0 <store args> <args>`.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_on(TestStore::from_env(), args)
    }

    /// Starts a server on a given store (to restart on the same store).
    pub(crate) fn start_on(store: Arc<TestStore>, args: &[&str]) -> Self {
        Self::start_with_env(store, args, &[])
    }

    /// Starts a server with extra environment variables.
    pub(crate) fn start_with_env(
        store: Arc<TestStore>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let bin = env!("CARGO_BIN_EXE_watchbus");
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0");
        cmd.args(store_args(&store));
        cmd.args(args);
        // Settings must come from the arguments only.
        for (name, _) in std::env::vars() {
            if name.starts_with("WATCHBUS_") {
                cmd.env_remove(name);
            }
        }
        for (name, value) in env {
            cmd.env(name, value);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {bin}: {e}"));
        let pid = child.id();
        let log = Arc::new(Mutex::new(Vec::new()));

        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel::<String>();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                let mut tx = Some(tx);
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if line.starts_with("listening on ") {
                                if let Some(tx) = tx.take() {
                                    let _ = tx.send(line.clone());
                                }
                            }
                            if let Ok(mut log) = log.lock() {
                                log.extend_from_slice(b"[stdout] ");
                                log.extend_from_slice(line.as_bytes());
                            }
                        }
                    }
                }
            });
        }
        let stderr = child.stderr.take().expect("stderr piped");
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut stderr = stderr;
                let mut buf = [0_u8; 8192];
                loop {
                    match stderr.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Ok(mut log) = log.lock() {
                                log.extend_from_slice(&buf[..n]);
                                // Keep the tail only.
                                if log.len() > 4 << 20 {
                                    let cut = log.len() - (2 << 20);
                                    log.drain(..cut);
                                }
                            }
                        }
                    }
                }
            });
        }

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let line = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
                        panic!(
                            "watchbus serve exited with {status} before listening; output:\n{text}"
                        );
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
                        panic!(
                            "watchbus serve did not print its listening line in {STARTUP_TIMEOUT:?}; output:\n{text}"
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.kill();
                    let status = child.wait();
                    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
                    panic!(
                        "watchbus serve closed stdout before listening ({status:?}); output:\n{text}"
                    );
                }
            }
        };
        let listening_line = line.trim_end_matches(['\r', '\n']).to_owned();
        let addr = listening_line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("bad listening line {listening_line:?}"))
            .to_owned();
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(4)
            .build()
            .expect("reqwest client");
        Self {
            child: Some(child),
            pid,
            base: format!("http://{addr}"),
            addr,
            http,
            token: None,
            store,
            listening_line,
            log,
        }
    }

    pub(crate) fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    pub(crate) fn get(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.auth(self.http.get(self.url(path_and_query)))
    }

    pub(crate) fn post(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.auth(self.http.post(self.url(path_and_query)))
    }

    /// `POST /v1/events` with a JSON body; the raw response.
    pub(crate) async fn publish_raw(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/events")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("publish request")
    }

    /// `POST /v1/events` with a JSON body sent chunked, so that the server
    /// reads it the ordinary way, through the router; the raw response.
    pub(crate) async fn publish_chunked(&self, body: &Value) -> reqwest::Response {
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(body.to_string())]);
        self.post("/v1/events")
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .expect("publish request")
    }

    /// Publishes one event object (the JSON form), expecting `200`.
    pub(crate) async fn publish_event(&self, event: Value) -> Published {
        let resp = self.publish_raw(&event).await;
        published_from(&json_ok(resp, &format!("publish {event}")).await)
    }

    /// Publishes `data` to `key`, without a type.
    pub(crate) async fn publish(&self, key: &str, data: Value) -> Published {
        self.publish_event(json!({"key": key, "data": data})).await
    }

    /// Publishes `data` to `key` with an event type.
    pub(crate) async fn publish_typed(
        &self,
        key: &str,
        event_type: &str,
        data: Value,
    ) -> Published {
        self.publish_event(json!({"key": key, "type": event_type, "data": data}))
            .await
    }

    /// Publishes an array of event objects in one request, expecting `200`.
    pub(crate) async fn publish_batch(&self, events: &[Value]) -> Vec<Published> {
        let body = Value::Array(events.to_vec());
        let resp = self.publish_raw(&body).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("publish body");
        assert_eq!(status, 200, "batch publish answered {status}: {text}");
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("publish answer {text:?}: {e}"));
        let items = value
            .as_array()
            .unwrap_or_else(|| panic!("batch answer is not an array: {value}"));
        assert_eq!(items.len(), events.len(), "batch answer length: {value}");
        items.iter().map(published_from).collect()
    }

    /// `n` untyped events on `key` with data `0..n`, one request each.
    pub(crate) async fn publish_n(&self, key: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(self.publish(key, json!(i)).await.id);
        }
        ids
    }

    /// `GET path`, expecting `200` and a JSON body.
    pub(crate) async fn get_json(&self, path_and_query: &str) -> Value {
        let resp = self.get(path_and_query).send().await.expect("GET");
        json_ok(resp, &format!("GET {path_and_query}")).await
    }

    /// The body of `GET path_and_query` as text, whatever its status.
    pub(crate) async fn get_text(&self, path_and_query: &str) -> String {
        let resp = self.get(path_and_query).send().await.expect("GET");
        resp.text().await.expect("GET body")
    }

    /// The server process's resident memory, in KiB (Linux).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    pub(crate) async fn stats(&self) -> Value {
        self.get_json("/v1/stats").await
    }

    /// `GET /v1/events/history?<query>`, expecting `200`.
    pub(crate) async fn history(&self, query: &str) -> Value {
        self.get_json(&format!("/v1/events/history?{query}")).await
    }

    /// Asserts that resuming on `key` after `id` is `410 Gone` by each way
    /// of asking: SSE with `from=`, SSE with `Last-Event-ID`, and history.
    pub(crate) async fn assert_resume_gone(&self, key: &str, id: &str) {
        let (key, from) = (super::enc(key), super::enc(id));
        let resp = self
            .get(&format!("/v1/events?key={key}&from={from}"))
            // A stream that starts instead would never end: fail, not hang.
            .timeout(super::FRAME_TIMEOUT)
            .send()
            .await
            .unwrap();
        assert_error!(resp, 410, ctx = "SSE from {id} on {}", self.base);
        let resp = self
            .get(&format!("/v1/events?key={key}"))
            .header("Last-Event-ID", id)
            .timeout(super::FRAME_TIMEOUT)
            .send()
            .await
            .unwrap();
        assert_error!(
            resp,
            410,
            ctx = "SSE with Last-Event-ID {id} on {}",
            self.base
        );
        let resp = self
            .get(&format!("/v1/events/history?from={from}"))
            .timeout(super::FRAME_TIMEOUT)
            .send()
            .await
            .unwrap();
        assert_error!(resp, 410, ctx = "history from {id} on {}", self.base);
    }

    /// Every retained event id in log order, paging with `next`.
    pub(crate) async fn history_ids(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..10_000 {
            let mut q = format!("limit=1000&{query}");
            if let Some(from) = &from {
                q.push_str(&format!("&from={}", super::enc(from)));
            }
            let page = self.history(&q).await;
            for event in page["events"].as_array().expect("events array") {
                ids.push(event["id"].as_str().expect("id").to_owned());
            }
            match page["next"].as_str() {
                Some(next) => from = Some(next.to_owned()),
                None => return ids,
            }
        }
        panic!("history paging did not end");
    }

    pub(crate) async fn reset(&self) {
        let resp = self.post("/v1/admin/reset").send().await.expect("reset");
        assert_eq!(
            resp.status().as_u16(),
            204,
            "reset: {:?}",
            resp.text().await
        );
    }

    /// Polls `/v1/stats` until `subscribers.active == n` (bounded).
    pub(crate) async fn wait_active(&self, n: u64) {
        let deadline = Instant::now() + super::FRAME_TIMEOUT;
        loop {
            let stats = self.stats().await;
            let active = stats["subscribers"]["active"].as_u64();
            if active == Some(n) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscribers.active did not become {n} within {:?}; last stats: {stats}",
                super::FRAME_TIMEOUT
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Opens an SSE stream on `/v1/events?<query>` and expects `200`.
    pub(crate) async fn sse(&self, query: &str) -> SseClient {
        self.sse_with(query, &[]).await
    }

    /// Like [`Self::sse`], with extra request headers.
    pub(crate) async fn sse_with(&self, query: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(token) = &self.token {
            all.push(("authorization".to_owned(), format!("Bearer {token}")));
        }
        let path = format!("/v1/events?{query}");
        let client = SseClient::connect(&self.addr, &path, &all).await;
        client.expect_ok(&path)
    }

    /// Sends a signal (`"TERM"`, `"INT"`) with `kill` and waits (bounded)
    /// for the process to exit; `None` if it did not.
    pub(crate) fn signal(&mut self, signal: &str, within: Duration) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid);
        self.wait_exit(within)
    }

    /// Waits (bounded) for the process to exit; `None` if it did not.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process has not exited.
    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's stdout and stderr so far.
    pub(crate) fn output(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let out = self.output();
            let tail_start = out.len().saturating_sub(16 * 1024);
            let tail = out.get(tail_start..).unwrap_or(&out);
            eprintln!(
                "---- watchbus server {} output (tail) ----\n{tail}\n---- end of server output ----",
                self.addr
            );
        }
    }
}

fn published_from(value: &Value) -> Published {
    let obj = value
        .as_object()
        .unwrap_or_else(|| panic!("publish answer is not an object: {value}"));
    let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["id", "time"], "publish answer fields: {value}");
    let id = obj["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id is not a string: {value}"))
        .to_owned();
    let time = obj["time"]
        .as_str()
        .unwrap_or_else(|| panic!("time is not a string: {value}"))
        .to_owned();
    assert!(!id.is_empty(), "empty id: {value}");
    super::assert_time_format(&time);
    Published { id, time }
}

/// The JSON body of `resp`, asserting `200` and a JSON content type;
/// `what` names the request in failure messages.
async fn json_ok(resp: reqwest::Response, what: &str) -> Value {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let text = resp.text().await.expect("body");
    assert_eq!(status, 200, "{what} answered {status}: {text}");
    assert!(
        ct.starts_with("application/json"),
        "{what}: content-type {ct:?}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// `watchbus serve --listen 127.0.0.1:0` started by `sh` after
/// `ulimit ULIMIT` (e.g. `-Sn 256`), for tests of the open-file limit;
/// the process (the server itself, by `exec`) and the address it listens
/// on. Stop it yourself.
#[cfg(target_os = "linux")]
pub(crate) fn serve_under_ulimit(ulimit: &str) -> (Child, String) {
    let script = format!(
        "ulimit {ulimit} && exec '{}' serve --listen 127.0.0.1:0",
        env!("CARGO_BIN_EXE_watchbus")
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
        .to_owned();
    (child, addr)
}
