//! [`TestBrowser`]: a headless browser showing one page, for the tests of
//! what a browser does with the server (EventSource's reconnects, CORS,
//! WebSocket frames), in each [`Engine`]: Chromium, Firefox and WebKit
//! (Safari's engine) implement EventSource separately, and a page must
//! work in all three.
//!
//! Without an engine's browser, its tests are skipped with a loud
//! `SKIPPED` line, unless `WATCHBUS_REQUIRE_BROWSER=1`, which makes them
//! fail (CI sets it and installs Debian's `chromium`, `firefox-esr`,
//! `libwebkit2gtk-4.1-0` and `xvfb`).

use std::io::{BufRead, BufReader};
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
    /// WebKit: Safari's engine, run as WebKitGTK's `MiniBrowser` on a
    /// private Xvfb display (it has no headless mode).
    WebKit,
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
            Self::WebKit => "webkit",
        }
    }

    /// The variable that names this engine's binary.
    fn variable(self) -> &'static str {
        match self {
            Self::Chromium => "WATCHBUS_CHROMIUM",
            Self::Firefox => "WATCHBUS_FIREFOX",
            Self::WebKit => "WATCHBUS_WEBKIT",
        }
    }

    /// The binaries looked for, in this order, unless [`Self::variable`]
    /// names one: on PATH, or for WebKit where distributions install
    /// WebKitGTK's `MiniBrowser` (it is not on PATH).
    fn candidates(self) -> Vec<String> {
        match self {
            Self::Chromium => ["chromium", "chromium-browser", "google-chrome"]
                .map(str::to_owned)
                .to_vec(),
            Self::Firefox => ["firefox-esr", "firefox"].map(str::to_owned).to_vec(),
            Self::WebKit => {
                // Debian and Ubuntu: /usr/lib/<multiarch triplet>/; Fedora:
                // /usr/libexec/.
                let multiarch = std::fs::read_dir("/usr/lib")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|dir| dir.path().join("webkit2gtk-4.1/MiniBrowser"));
                multiarch
                    .chain([PathBuf::from("/usr/libexec/webkit2gtk-4.1/MiniBrowser")])
                    .filter(|path| path.exists())
                    .map(|path| path.display().to_string())
                    .collect()
            }
        }
    }

    /// Where [`Self::candidates`] looks, for messages.
    fn looked_for(self) -> &'static str {
        match self {
            Self::Chromium => "chromium, chromium-browser or google-chrome on PATH",
            Self::Firefox => "firefox-esr or firefox on PATH",
            Self::WebKit => {
                "/usr/lib/*/webkit2gtk-4.1/MiniBrowser or /usr/libexec/webkit2gtk-4.1/MiniBrowser, with Xvfb on PATH"
            }
        }
    }

    /// Whether `binary` runs this engine here.
    fn runs(self, binary: &str) -> bool {
        match self {
            // MiniBrowser cannot even print its version without a display:
            // it runs where it and Xvfb are installed.
            Self::WebKit => is_executable(Path::new(binary)) && on_path("Xvfb"),
            Self::Chromium | Self::Firefox => Command::new(binary)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success()),
        }
    }

    /// The binary that runs this engine here, found once per process.
    pub fn binary(self) -> Option<&'static str> {
        static FOUND: [OnceLock<Option<String>>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let slot = match self {
            Self::Chromium => &FOUND[0],
            Self::Firefox => &FOUND[1],
            Self::WebKit => &FOUND[2],
        };
        slot.get_or_init(|| {
            let candidates = match std::env::var(self.variable()) {
                Ok(named) => vec![named],
                Err(_) => self.candidates(),
            };
            candidates.into_iter().find(|binary| self.runs(binary))
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
            Self::WebKit => {
                // Its cache, cookies and settings go to the profile.
                for (variable, dir) in [
                    ("HOME", ""),
                    ("XDG_CONFIG_HOME", "config"),
                    ("XDG_CACHE_HOME", "cache"),
                    ("XDG_DATA_HOME", "data"),
                ] {
                    command.env(variable, profile.join(dir));
                }
                command
                    // No accessibility bus to wait for, no GPU to look for.
                    .env("NO_AT_BRIDGE", "1")
                    .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
                    .arg("--enable-write-console-messages-to-stdout=true");
            }
        }
        command.arg(url);
        command
    }
}

/// Whether `path` is a file this user may run.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    })
}

/// A private X server for a browser that needs one: Xvfb on the first free
/// display, which it names once it is ready.
#[derive(Debug)]
struct Display {
    xvfb: Child,
    number: u32,
}

impl Display {
    /// Starts Xvfb in a process group of its own, logging to `log`.
    fn start(log: &Path) -> Self {
        let file = std::fs::File::options()
            .append(true)
            .open(log)
            .expect("the browser's log");
        let mut command = Command::new("Xvfb");
        command
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut xvfb = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start Xvfb: {err}"));
        let mut line = String::new();
        if let Some(out) = xvfb.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let Ok(number) = line.trim().parse() else {
            let _ = xvfb.kill();
            let _ = xvfb.wait();
            panic!(
                "Xvfb named no display (it printed {line:?}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        Self { xvfb, number }
    }

    /// The process group the browser joins, so that one kill ends both.
    fn group(&self) -> u32 {
        self.xvfb.id()
    }
}

/// A headless browser with a profile of its own, showing one page; it and
/// every process it started are killed on drop, and the profile removed.
#[derive(Debug)]
pub struct TestBrowser {
    engine: Engine,
    child: Child,
    /// The X server of an engine that needs one; in the browser's group.
    display: Option<Display>,
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
                "no {} runs here ({}, or else {}), and WATCHBUS_REQUIRE_BROWSER=1 requires one",
                engine.name(),
                engine.variable(),
                engine.looked_for()
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
        let display =
            (engine == Engine::WebKit).then(|| Display::start(&profile.join("browser.log")));
        let mut command = engine.command(binary, &profile, url);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the browser's log"))
            .stderr(log);
        // One process group for the browser, its helpers and its display,
        // so that drop ends them all.
        let group = display.as_ref().map_or(0, Display::group);
        if let Some(display) = &display {
            command.env("DISPLAY", format!(":{}", display.number));
        }
        let group = i32::try_from(group).expect("a process id fits an i32");
        std::os::unix::process::CommandExt::process_group(&mut command, group);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {binary}: {err}"));
        Some(Self {
            engine,
            child,
            display,
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
        let group = self
            .display
            .as_ref()
            .map_or(self.child.id(), Display::group);
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{group}")])
            .status();
        let _ = self.child.wait();
        if let Some(Display { mut xvfb, number }) = self.display.take() {
            let _ = xvfb.wait();
            // Killed, Xvfb leaves its lock and socket behind.
            let _ = std::fs::remove_file(format!("/tmp/.X{number}-lock"));
            let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{number}"));
        }
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
