//! [`TestBrowser`]: a headless Chromium showing one page, for the tests
//! of what a browser does with the server (EventSource's reconnects,
//! CORS, WebSocket frames).
//!
//! Without Chromium, browser tests are skipped with a loud `SKIPPED` line,
//! unless `WATCHBUS_REQUIRE_BROWSER=1`, which makes them fail (CI sets it
//! and installs Debian's `chromium`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::say_skipped;

/// The Chromium binaries looked for on PATH, in this order, unless
/// `WATCHBUS_CHROMIUM` names one.
const CANDIDATES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

static NEXT_PROFILE: AtomicU64 = AtomicU64::new(0);

/// The Chromium to run, found once per process.
pub fn chromium() -> Option<&'static str> {
    static FOUND: OnceLock<Option<String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let candidates: Vec<String> = match std::env::var("WATCHBUS_CHROMIUM") {
                Ok(named) => vec![named],
                Err(_) => CANDIDATES.iter().map(|name| (*name).to_owned()).collect(),
            };
            candidates.into_iter().find(|binary| {
                Command::new(binary)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            })
        })
        .as_deref()
}

/// A headless Chromium with a profile of its own, showing one page; it and
/// every process it started are killed on drop, and the profile removed.
#[derive(Debug)]
pub struct TestBrowser {
    child: Child,
    profile: PathBuf,
}

impl TestBrowser {
    /// Opens `url`, or says SKIPPED and returns `None` when there is no
    /// Chromium and `WATCHBUS_REQUIRE_BROWSER=1` is not set.
    pub fn open(url: &str) -> Option<Self> {
        let Some(binary) = chromium() else {
            assert!(
                std::env::var("WATCHBUS_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "no Chromium runs here (WATCHBUS_CHROMIUM, or on PATH {}), and WATCHBUS_REQUIRE_BROWSER=1 requires one",
                CANDIDATES.join(", ")
            );
            say_skipped(
                "no Chromium runs here: this browser test ran nothing (set WATCHBUS_REQUIRE_BROWSER=1 to make this a failure)",
            );
            return None;
        };
        let profile = std::env::temp_dir().join(format!(
            "watchbus-chromium-{}-{}",
            std::process::id(),
            NEXT_PROFILE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&profile).expect("a profile dir for Chromium");
        let log = std::fs::File::create(profile.join("chromium.log")).expect("Chromium's log");
        let mut command = Command::new(binary);
        command
            .arg("--headless=new")
            // A container's root has no user namespaces for the sandbox.
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .arg("--no-first-run")
            .arg("--no-default-browser-check")
            .arg("--disable-background-networking")
            .arg("--disable-component-update")
            .arg("--disable-extensions")
            .arg("--disable-sync")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("Chromium's log"))
            .stderr(log);
        // Its own process group, so that drop ends its helpers too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {binary}: {err}"));
        Some(Self { child, profile })
    }

    /// What Chromium printed, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for TestBrowser {
    fn drop(&mut self) {
        // `-s KILL -- -PGID`: procps-ng 4.0.2 reads `kill -KILL -PGID` as
        // a signal to a group it mis-parses, which can be every process.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- chromium log ----\n{}\n---- end of chromium log ----",
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
