//! `TestRedis`: a private `redis-server` on a free port, in its own temp
//! dir, killed (and its dir removed) on drop. The same approach as the
//! store's own tests (`crates/watchbus/tests/redis_store.rs`).
//!
//! Without `redis-server` on PATH the redis target says
//! `SKIPPED: redis-server not found` on the real stderr and exits with
//! success before running anything against Redis, unless
//! `WATCHBUS_REQUIRE_REDIS=1`, which makes every test that needs Redis fail.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// How a private Redis keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// `--save "" --appendonly no`: a restart comes back empty.
    None,
    /// `--appendonly yes --appendfsync always`: every acknowledged write
    /// is on disk, so a restart (even after SIGKILL) comes back with it.
    Aof,
}

/// A private `redis-server`.
#[derive(Debug)]
pub(crate) struct TestRedis {
    pub(crate) port: u16,
    dir: PathBuf,
    persistence: Persistence,
    child: Mutex<Option<Child>>,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// Whether `redis-server` runs here; checked once.
fn available() -> bool {
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

/// Ends the whole test binary with success when there is no Redis to test
/// against (and the environment does not require one): every test of the
/// redis target needs it, so there is nothing this binary can check.
pub(crate) fn require_or_skip() {
    if available() {
        return;
    }
    assert!(
        std::env::var("WATCHBUS_REQUIRE_REDIS").as_deref() != Ok("1"),
        "redis-server not found on PATH, and WATCHBUS_REQUIRE_REDIS=1 requires it"
    );
    // Once, even when several tests get here at the same time: the others
    // wait in `call_once` until the process exits.
    static SKIP: Once = Once::new();
    SKIP.call_once(|| {
        // Straight to the process's stderr: the test harness captures
        // `eprintln!` and would drop it when we exit.
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n\
             ************************************************************\n\
             SKIPPED: redis-server not found on PATH: the {} test target\n\
             ran NO test against Redis (set WATCHBUS_REQUIRE_REDIS=1 to\n\
             make this a failure)\n\
             ************************************************************",
            env!("CARGO_CRATE_NAME")
        );
        std::process::exit(0);
    });
}

impl TestRedis {
    /// Starts one (see [`require_or_skip`] when there is no Redis).
    pub(crate) fn start(persistence: Persistence) -> Self {
        require_or_skip();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "watchbus-conformance-redis-{}-{}-{}",
            std::process::id(),
            port,
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let redis = Self {
            port,
            dir,
            persistence,
            child: Mutex::new(None),
        };
        redis.spawn(persistence);
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&self, persistence: Persistence) {
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
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start; see {}",
                self.port,
                self.dir.join("redis.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True when it answers `PING` with `PONG`.
    pub(crate) fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0_u8; 7];
        stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills it at once (SIGKILL), as a crash would, and waits for it.
    pub(crate) fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and dir: with its data when it
    /// persists ([`Persistence::Aof`]), empty otherwise.
    pub(crate) fn restart(&self) {
        self.spawn(self.persistence);
    }

    /// Starts it again on the same port, empty: its data files removed
    /// and no persistence, as a Redis restarted without persistence.
    pub(crate) fn restart_empty(&self) {
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
        self.spawn(Persistence::None);
    }

    /// Its log, for failure messages.
    pub(crate) fn log(&self) -> String {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
