//! [`TestBrowser`]: a headless browser showing one page, for the tests of
//! what a browser does with the server (EventSource's reconnects, CORS,
//! WebSocket frames), in each [`Engine`]: Chromium and Firefox implement
//! EventSource separately, and a page must work in both.
//!
//! Without an engine's browser, its tests are skipped with a loud
//! `SKIPPED` line, unless `WATCHBUS_REQUIRE_BROWSER=1`, which makes them
//! fail (CI sets it and installs Debian's `chromium` and `firefox-esr`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::say_skipped;

static NEXT_PROFILE: AtomicU64 = AtomicU64::new(0);

/// A browser engine, with the binaries that run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Blink: Chromium, Chrome.
    Chromium,
    /// Gecko: Firefox.
    Firefox,
}

/// Firefox's settings for a test profile: no first-run pages, no
/// background traffic, nothing that would wait for a person.
const FIREFOX_PREFS: &str = r#"
user_pref("app.update.disabledForTesting", true);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("extensions.update.enabled", false);
"#;

impl Engine {
    /// `chromium` or `firefox`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Chromium => "chromium",
            Self::Firefox => "firefox",
        }
    }

    /// The variable that names this engine's binary.
    fn variable(self) -> &'static str {
        match self {
            Self::Chromium => "WATCHBUS_CHROMIUM",
            Self::Firefox => "WATCHBUS_FIREFOX",
        }
    }

    /// The binaries looked for on PATH, in this order, unless
    /// [`Self::variable`] names one.
    fn candidates(self) -> &'static [&'static str] {
        match self {
            Self::Chromium => &["chromium", "chromium-browser", "google-chrome"],
            Self::Firefox => &["firefox-esr", "firefox"],
        }
    }

    /// The binary that runs this engine here, found once per process.
    pub fn binary(self) -> Option<&'static str> {
        static FOUND: [OnceLock<Option<String>>; 2] = [OnceLock::new(), OnceLock::new()];
        let slot = match self {
            Self::Chromium => &FOUND[0],
            Self::Firefox => &FOUND[1],
        };
        slot.get_or_init(|| {
            let candidates: Vec<String> = match std::env::var(self.variable()) {
                Ok(named) => vec![named],
                Err(_) => self.candidates().iter().map(|&b| b.to_owned()).collect(),
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

    /// The command that shows `url` headless with the profile in `profile`.
    fn command(self, binary: &str, profile: &Path, url: &str) -> Command {
        let mut command = Command::new(binary);
        match self {
            Self::Chromium => {
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
                    .arg(format!("--user-data-dir={}", profile.display()));
            }
            Self::Firefox => {
                std::fs::write(profile.join("user.js"), FIREFOX_PREFS)
                    .expect("Firefox's test settings");
                command
                    .arg("--headless")
                    .arg("--no-remote")
                    .arg("--profile")
                    .arg(profile)
                    .env("MOZ_CRASHREPORTER_DISABLE", "1");
            }
        }
        command.arg(url);
        command
    }
}

/// A headless browser with a profile of its own, showing one page; it and
/// every process it started are killed on drop, and the profile removed.
#[derive(Debug)]
pub struct TestBrowser {
    engine: Engine,
    child: Child,
    profile: PathBuf,
}

impl TestBrowser {
    /// Opens `url` in `engine`, or says SKIPPED and returns `None` when
    /// that engine does not run here and `WATCHBUS_REQUIRE_BROWSER=1` is not
    /// set.
    pub fn open(engine: Engine, url: &str) -> Option<Self> {
        let Some(binary) = engine.binary() else {
            assert!(
                std::env::var("WATCHBUS_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "no {} runs here ({}, or on PATH {}), and WATCHBUS_REQUIRE_BROWSER=1 requires one",
                engine.name(),
                engine.variable(),
                engine.candidates().join(", ")
            );
            say_skipped(&format!(
                "no {} runs here: this browser test ran nothing (set WATCHBUS_REQUIRE_BROWSER=1 to make this a failure)",
                engine.name()
            ));
            return None;
        };
        let profile = std::env::temp_dir().join(format!(
            "watchbus-{}-{}-{}",
            engine.name(),
            std::process::id(),
            NEXT_PROFILE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&profile).expect("a profile dir for the browser");
        let log = std::fs::File::create(profile.join("browser.log")).expect("the browser's log");
        let mut command = engine.command(binary, &profile, url);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the browser's log"))
            .stderr(log);
        // Its own process group, so that drop ends its helpers too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {binary}: {err}"));
        Some(Self {
            engine,
            child,
            profile,
        })
    }

    /// What the browser printed, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.join("browser.log")).unwrap_or_default()
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
                "---- {} log ----\n{}\n---- end of {0} log ----",
                self.engine.name(),
                self.log()
            );
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
