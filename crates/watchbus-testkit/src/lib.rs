//! Test support shared by the watchbus crates' tests. Not published.
//!
//! [`TestRedis`]: a private `redis-server` on a free port, in its own temp
//! dir, killed (and its dir removed) on drop, so tests that start, kill and
//! restart Redis never disturb each other or a Redis already running.
//!
//! Without `redis-server` on PATH, Redis tests are skipped with a loud
//! `SKIPPED` line, unless `WATCHBUS_REQUIRE_REDIS=1`, which makes them fail
//! (CI sets it).
//!
//! [`TestBrowser`]: a headless Chromium, Firefox or WebKit ([`Engine`])
//! showing one page, skipped the same way unless
//! `WATCHBUS_REQUIRE_BROWSER=1`.

// Test support: a failure here should stop the test at once, loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;

pub use browser::{Engine, TestBrowser};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// How a private Redis keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `--save "" --appendonly no`: a restart comes back empty.
    None,
    /// `--appendonly yes --appendfsync always`: every acknowledged write is
    /// on disk, so a restart (even after SIGKILL) comes back with it.
    Aof,
}

/// A private `redis-server`, stopped on drop. Its log is printed when the
/// test panics.
#[derive(Debug)]
pub struct TestRedis {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// The port it serves TLS on, when started by [`TestRedis::start_tls`].
    pub tls_port: Option<u16>,
    dir: PathBuf,
    persistence: Persistence,
    /// More `redis-server` arguments (TLS, a password).
    extra: Vec<String>,
    child: Mutex<Option<Child>>,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// How many ports [`TestRedis::start_with`] tries.
const START_ATTEMPTS: usize = 8;

/// A redis-server that exited before it answered.
struct Exited;

/// Whether `redis-server` runs here; checked once per process.
pub fn redis_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

fn assert_not_required() {
    assert!(
        std::env::var("WATCHBUS_REQUIRE_REDIS").as_deref() != Ok("1"),
        "redis-server not found on PATH, and WATCHBUS_REQUIRE_REDIS=1 requires it"
    );
}

/// Prints `SKIPPED: why` past the test harness's output capture, so it
/// shows even for a passing test.
pub fn say_skipped(why: &str) {
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {why}");
}

/// For a test binary whose every test needs Redis: when there is none (and
/// it is not required), says so once and ends the whole binary with
/// success, as there is nothing it can check. With
/// `WATCHBUS_REQUIRE_REDIS=1` it fails instead.
pub fn require_redis_or_skip_binary() {
    if redis_available() {
        return;
    }
    assert_not_required();
    // Once, even when several tests get here at the same time: the others
    // wait in `call_once` until the process exits.
    static SKIP: Once = Once::new();
    SKIP.call_once(|| {
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n\
             ************************************************************\n\
             SKIPPED: redis-server not found on PATH: this test target\n\
             ran NO test against Redis (set WATCHBUS_REQUIRE_REDIS=1 to\n\
             make this a failure)\n\
             ************************************************************"
        );
        std::process::exit(0);
    });
}

impl TestRedis {
    /// Starts one, or says SKIPPED and returns `None` when there is no
    /// `redis-server` and `WATCHBUS_REQUIRE_REDIS=1` is not set.
    pub fn start(persistence: Persistence) -> Option<Self> {
        Self::start_with(persistence, Vec::new())
    }

    /// [`TestRedis::start`] with more `redis-server` arguments.
    pub fn start_with(persistence: Persistence, extra: Vec<String>) -> Option<Self> {
        if !redis_available() {
            assert_not_required();
            say_skipped(
                "redis-server not found on PATH (set WATCHBUS_REQUIRE_REDIS=1 to make this a failure)",
            );
            return None;
        }
        Some(Self::start_on(persistence, extra, false, free_port))
    }

    /// [`TestRedis::start_with`], also serving TLS on a second port
    /// ([`TestRedis::tls_port`]) with the certificates [`make_certs`] wrote
    /// into `certs`; clients need not present one. Both ports are chosen
    /// again when either is taken.
    pub fn start_tls(persistence: Persistence, certs: &Path, extra: Vec<String>) -> Option<Self> {
        if !redis_available() {
            assert_not_required();
            say_skipped(
                "redis-server not found on PATH (set WATCHBUS_REQUIRE_REDIS=1 to make this a failure)",
            );
            return None;
        }
        let mut args = tls_args(certs);
        args.extend(extra);
        Some(Self::start_on(persistence, args, true, free_port))
    }

    /// Starts one on the first of `ports` it can bind (and, with `tls`, on
    /// the next of `ports` for TLS).
    ///
    /// A port free when chosen can be taken before redis-server binds it
    /// (by another test choosing the same one): then it exits at once, and
    /// the next ports are tried.
    fn start_on(
        persistence: Persistence,
        extra: Vec<String>,
        tls: bool,
        mut ports: impl FnMut() -> u16,
    ) -> Self {
        for _ in 0..START_ATTEMPTS {
            let port = ports();
            let tls_port = tls.then(&mut ports);
            let dir = std::env::temp_dir().join(format!(
                "watchbus-test-redis-{}-{}-{}",
                std::process::id(),
                port,
                NEXT_DIR.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let redis = Self {
                port,
                tls_port,
                dir,
                persistence,
                extra: extra.clone(),
                child: Mutex::new(None),
            };
            match redis.spawn(persistence) {
                Ok(()) => return redis,
                Err(Exited) if redis.log().contains("Address already in use") => continue,
                Err(Exited) => redis.exited(),
            }
        }
        panic!("redis-server found no free port in {START_ATTEMPTS} attempts");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts redis-server and waits until it answers, or until it exits
    /// (`Err`: its log says why).
    fn spawn(&self, persistence: Persistence) -> Result<(), Exited> {
        let mut slot = self.child.lock().unwrap();
        assert!(slot.is_none(), "redis on port {} is running", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .unwrap();
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--dir",
            self.dir.to_str().unwrap(),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]);
        match persistence {
            Persistence::None => command.args(["--appendonly", "no"]),
            Persistence::Aof => command.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        if let Some(tls_port) = self.tls_port {
            command.args(["--tls-port", &tls_port.to_string()]);
        }
        command.args(&self.extra);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn redis-server: {e}"));
        *slot = Some(child);
        drop(slot);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            if self.has_exited() {
                return Err(Exited);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer in 10 s; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// True when the redis-server last started has exited (and is reaped).
    fn has_exited(&self) -> bool {
        let mut slot = self.child.lock().unwrap();
        let exited = slot
            .as_mut()
            .is_none_or(|child| child.try_wait().unwrap().is_some());
        if exited {
            *slot = None;
        }
        exited
    }

    /// Fails the test with the log of a redis-server that exited at start.
    fn exited(&self) -> ! {
        panic!(
            "redis-server on port {} exited at start; its log:\n{}",
            self.port,
            self.log()
        )
    }

    /// True when it answers `PING` (with `PONG`, or `-NOAUTH` when it wants
    /// a password: it is up all the same).
    pub fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0_u8; 7];
        stream.read_exact(&mut buf).is_ok() && (&buf == b"+PONG\r\n" || buf.starts_with(b"-NOAUTH"))
    }

    /// Kills it at once (SIGKILL), as a crash would, and waits for it.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it cleanly (SIGTERM) and waits, so a persistent one saves.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and dir: with its data when it
    /// persists ([`Persistence::Aof`]), empty otherwise.
    pub fn restart(&self) {
        if self.spawn(self.persistence).is_err() {
            self.exited();
        }
    }

    /// Starts it again on the same port, empty: its data files removed and
    /// no persistence, as a Redis restarted without persistence.
    pub fn restart_empty(&self) {
        for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|name| name == "redis.log") {
                continue;
            }
            if path.is_dir() {
                let _ = std::fs::remove_dir_all(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        if self.spawn(Persistence::None).is_err() {
            self.exited();
        }
    }

    /// Its log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- redis-server :{} log ----\n{}\n---- end of redis log ----",
                self.port,
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free right now on 127.0.0.1, outside the kernel's ephemeral
/// range.
///
/// A port the kernel chose (`bind` to port 0) is in that range, and so can
/// be taken, between the check and the server's `bind`, as the local port
/// of any connection a parallel test opens. Outside it, only another
/// explicit choice can take it, which a random start makes unlikely.
pub fn free_port() -> u16 {
    let (low, high) = ephemeral_range();
    let mut candidates: Vec<u16> = (10_000..low)
        .chain(high.saturating_add(1)..=u16::MAX)
        .collect();
    if candidates.is_empty() {
        // The range covers every port worth having: let the kernel choose.
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let start = usize::try_from(random() % candidates.len() as u64).unwrap();
    candidates.rotate_left(start);
    candidates
        .into_iter()
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("no free port outside the ephemeral range")
}

/// Writes a CA (`ca.crt`) and a server certificate for `localhost` and
/// 127.0.0.1 (`server.crt`, `server.key`) into `dir`, made with `openssl`,
/// for [`TestRedis::start_tls`]. Returns the CA's PEM; `None` (said as
/// SKIPPED) when there is no `openssl`, a failure with
/// `WATCHBUS_REQUIRE_REDIS=1`.
pub fn make_certs(dir: &Path) -> Option<Vec<u8>> {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    if openssl(&["version"]).is_err() {
        assert!(
            std::env::var("WATCHBUS_REQUIRE_REDIS").as_deref() != Ok("1"),
            "openssl not found on PATH, and WATCHBUS_REQUIRE_REDIS=1 requires the TLS test"
        );
        say_skipped("openssl not found, cannot make certificates for the TLS test");
        return None;
    }
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=watchbus test CA",
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    ];
    for step in &steps {
        assert!(openssl(step).unwrap().success(), "openssl {step:?} failed");
    }
    Some(std::fs::read(dir.join("ca.crt")).unwrap())
}

/// The `redis-server` arguments for TLS with the files [`make_certs`]
/// wrote into `certs`, clients not asked for a certificate; the port apart.
fn tls_args(certs: &Path) -> Vec<String> {
    let file = |name: &str| certs.join(name).to_str().unwrap().to_owned();
    vec![
        "--tls-cert-file".into(),
        file("server.crt"),
        "--tls-key-file".into(),
        file("server.key"),
        "--tls-ca-cert-file".into(),
        file("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}

/// The kernel's ephemeral port range; Linux's default where it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<u16>);
            Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// A random number, different in every call and process.
fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(NEXT_DIR.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_outside_the_ephemeral_range_and_bindable() {
        let (low, high) = ephemeral_range();
        for _ in 0..100 {
            let port = free_port();
            assert!(!(low..=high).contains(&port), "{port} in {low}..={high}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    #[test]
    fn a_taken_port_is_skipped_for_the_next() {
        if !redis_available() {
            assert_not_required();
            return say_skipped("redis-server not found on PATH");
        }
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let mut ports = [taken_port, free_port()].into_iter();
        let redis = TestRedis::start_on(Persistence::None, Vec::new(), false, || {
            ports.next().unwrap()
        });
        assert_ne!(redis.port, taken_port);
        assert!(redis.answers_ping());
        assert!(ports.next().is_none(), "both ports were tried");
    }

    #[test]
    fn a_taken_tls_port_is_skipped_with_its_plain_port() {
        if !redis_available() {
            assert_not_required();
            return say_skipped("redis-server not found on PATH");
        }
        let certs = std::env::temp_dir().join(format!(
            "watchbus-testkit-tls-{}-{}",
            std::process::id(),
            random()
        ));
        std::fs::create_dir_all(&certs).unwrap();
        if make_certs(&certs).is_none() {
            return;
        }
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let (first, plain, tls) = (free_port(), free_port(), free_port());
        let mut ports = [first, taken_port, plain, tls].into_iter();
        let redis = TestRedis::start_on(Persistence::None, tls_args(&certs), true, || {
            ports.next().unwrap()
        });
        assert_eq!((redis.port, redis.tls_port), (plain, Some(tls)));
        assert!(redis.answers_ping());
        TcpStream::connect(("127.0.0.1", tls)).unwrap();
        drop(redis);
        let _ = std::fs::remove_dir_all(&certs);
    }

    #[test]
    fn a_redis_that_cannot_start_fails_at_once_with_its_log() {
        if !redis_available() {
            assert_not_required();
            return say_skipped("redis-server not found on PATH");
        }
        let failure = std::panic::catch_unwind(|| {
            TestRedis::start_with(Persistence::None, vec!["--no-such-option".into()])
        })
        .unwrap_err();
        let message = failure.downcast_ref::<String>().unwrap();
        assert!(message.contains("exited at start"), "{message}");
        assert!(
            message.contains("no-such-option"),
            "the log is in it: {message}"
        );
    }
}
