//! `watchbus bench`: a load generator for watchbus or any SSE server.
//!
//! The run: open the subscribers at `--connect-rate`, make sure the server
//! has them all (watchbus `/v1/stats`, else a settle delay), publish for
//! `--warmup` + `--duration`, wait up to `--drain` for in-flight deliveries,
//! stop the subscribers and report. Every event carries its send time, a
//! sequence number per (publisher, key), the publisher id and a run id, so
//! each subscriber measures latency and sees every loss, duplicate and
//! reordering. Warm-up events are checked for loss but not measured.

mod args;
mod client;
#[cfg(test)]
mod e2e_tests;
mod http;
mod payload;
mod proc;
mod publisher;
mod report;
mod sse;
mod stats;
mod sub;
mod tracker;

pub(crate) use args::BenchArgs;

use anyhow::{Context, bail};
use args::Transport;
use client::{RawClient, fetch_active};
use http::Target;
use indicatif::{ProgressBar, ProgressStyle};
use publisher::{PublishPlan, PublisherResult};
use report::Report;
use stats::{Counters, Percentiles, ShardedHistogram, new_histogram};
use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use sub::{Connection, SubState};
use tokio::sync::watch;
use tokio::time::Instant;

/// State shared by every task of a run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) run: u64,
    pub(crate) epoch: std::time::Instant,
    /// `Bearer <token>`.
    pub(crate) auth_header: Option<String>,
    pub(crate) counters: Counters,
    pub(crate) latency: ShardedHistogram,
    /// Why the first failed subscriber could not connect.
    pub(crate) first_connect_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    #[cfg(test)]
    pub(crate) fn for_tests(run: u64) -> Self {
        Self {
            run,
            epoch: std::time::Instant::now(),
            auth_header: None,
            counters: Counters::default(),
            latency: ShardedHistogram::new(2).unwrap(),
            first_connect_error: std::sync::Mutex::default(),
        }
    }
}

/// Unix time in nanoseconds.
pub(crate) fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The URLs of a run, one per key.
#[derive(Debug)]
struct Endpoints {
    sub_template: String,
    pub_template: String,
    /// Subscribe path and query per key (SSE), or full URL (WebSocket).
    sub: Vec<String>,
    sub_target: Option<Target>,
    pub_paths: Vec<String>,
    pub_target: Target,
    /// `/v1/stats` of a watchbus server, when the bench targets one.
    stats_target: Option<Target>,
}

fn key_name(prefix: &str, i: u32) -> String {
    url::form_urlencoded::byte_serialize(format!("{prefix}{i}").as_bytes()).collect()
}

fn path_and_query(url: &str) -> anyhow::Result<String> {
    let u = url::Url::parse(url).with_context(|| format!("invalid URL {url:?}"))?;
    Ok(match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    })
}

impl Endpoints {
    async fn new(a: &BenchArgs) -> anyhow::Result<Self> {
        let server = a.server.trim_end_matches('/');
        let watchbus = a.sub_url.is_none() && a.pub_url.is_none();
        let sub_template = match (&a.sub_url, a.transport) {
            (Some(u), _) => u.clone(),
            (None, Transport::Sse) => format!("{server}/v1/events?key={{key}}"),
            (None, Transport::Ws) => {
                let ws = server
                    .strip_prefix("http://")
                    .map_or_else(|| server.to_owned(), |h| format!("ws://{h}"));
                format!("{ws}/v1/ws?key={{key}}")
            }
        };
        let pub_template = a
            .pub_url
            .clone()
            .unwrap_or_else(|| format!("{server}/v1/events?key={{key}}"));
        if a.keys > 1 {
            for t in [&sub_template, &pub_template] {
                if !t.contains("{key}") {
                    bail!("URL template {t:?} has no {{key}} but --keys is {}", a.keys);
                }
            }
        }
        let keys: Vec<String> = (0..a.keys).map(|i| key_name(&a.key_prefix, i)).collect();
        let first = keys.first().map_or("", String::as_str);
        let pub_target = Target::resolve(&pub_template.replace("{key}", first)).await?;
        let pub_paths = keys
            .iter()
            .map(|k| path_and_query(&pub_template.replace("{key}", k)))
            .collect::<anyhow::Result<_>>()?;
        let needs_subs = !a.publish_only;
        let (sub, sub_target) = if needs_subs {
            let t = Target::resolve(&sub_template.replace("{key}", first)).await?;
            let sub = match a.transport {
                Transport::Sse => {
                    if !sub_template.starts_with("http://") {
                        bail!(
                            "--transport sse needs an http:// subscribe URL, got {sub_template:?}"
                        );
                    }
                    keys.iter()
                        .map(|k| path_and_query(&sub_template.replace("{key}", k)))
                        .collect::<anyhow::Result<_>>()?
                }
                Transport::Ws => {
                    if !sub_template.starts_with("ws://") {
                        bail!("--transport ws needs a ws:// subscribe URL, got {sub_template:?}");
                    }
                    keys.iter()
                        .map(|k| sub_template.replace("{key}", k))
                        .collect()
                }
            };
            (sub, Some(t))
        } else {
            (Vec::new(), None)
        };
        let stats_target = watchbus.then(|| pub_target.with_path("/v1/stats".to_owned()));
        Ok(Self {
            sub_template,
            pub_template,
            sub,
            sub_target,
            pub_paths,
            pub_target,
            stats_target,
        })
    }
}

/// A progress bar on stderr, only when stdout is a terminal and not `--json`.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self { enabled, bar: None }
    }

    /// Starts a new bar (clearing the previous one).
    fn phase(&mut self, len: u64, template: &str, prefix: &'static str) {
        self.finish();
        if !self.enabled {
            return;
        }
        let style = ProgressStyle::with_template(template).map_or_else(
            |_| ProgressStyle::default_bar(),
            |s| s.progress_chars("=> "),
        );
        let bar = ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(prefix);
        self.bar = Some(bar);
    }

    fn update(&self, pos: u64, msg: String) {
        if let Some(pb) = &self.bar {
            pb.set_position(pos);
            pb.set_message(msg);
        }
    }

    fn finish(&mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

const BAR: &str = "{prefix:>10} [{bar:40}] {pos}/{len} {msg}";

fn raise_fd_limit(needed: u64) -> anyhow::Result<()> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .context("cannot read or raise the open-file limit")?;
    if needed > limit {
        bail!(
            "{needed} connections need more file descriptors than the limit of {limit}: \
             lower --subscribers or raise the hard limit (ulimit -Hn)"
        );
    }
    Ok(())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Runs the bench and prints its report.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (json, fail_on_loss) = (args.json, args.fail_on_loss);
    check(&args).map_err(|err| anyhow::Error::new(crate::exit::UsageError(err)))?;
    let report = measure(args).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    if fail_on_loss && !report.ok {
        bail!(
            "the bench saw loss, duplicates, reordering, failed connections or failed \
             publishes, or published nothing"
        );
    }
    Ok(())
}

/// Refuses options that would measure nothing.
fn check(args: &BenchArgs) -> anyhow::Result<()> {
    if args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if args.connect_rate == 0 {
        bail!("--connect-rate must be at least 1");
    }
    if !args.idle && args.publishers == 0 {
        bail!("--publishers must be at least 1");
    }
    if !args.publish_only && args.subscribers == 0 {
        bail!("--subscribers must be at least 1 (or use --publish-only)");
    }
    if !args.idle && args.duration.is_zero() {
        bail!("--duration must be above zero");
    }
    // Past this, a deadline overflows the clock; and a bench longer than a
    // year is a typo.
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    for (flag, value) in [
        ("--duration", args.duration),
        ("--warmup", args.warmup),
        ("--drain", args.drain),
        ("--settle", args.settle),
    ] {
        if value > YEAR {
            bail!("{flag} must be at most a year");
        }
    }
    Ok(())
}

/// Runs the bench: what it measured and saw.
async fn measure(args: BenchArgs) -> anyhow::Result<Report> {
    if args.idle && args.pid.is_none() {
        eprintln!("note: --idle without --pid cannot measure the server's memory per connection");
    }
    let n_subs = if args.publish_only {
        0
    } else {
        args.subscribers
    };
    let n_pubs = if args.idle { 0 } else { args.publishers };
    raise_fd_limit(u64::from(n_subs) + u64::from(n_pubs) + 64)?;

    let ep = Endpoints::new(&args).await?;
    let run_id = unix_now_ns() ^ u64::from(std::process::id()).rotate_left(32);
    let shared = Arc::new(Shared {
        run: run_id,
        epoch: std::time::Instant::now(),
        auth_header: args.token.as_ref().map(|t| format!("Bearer {t}")),
        counters: Counters::default(),
        latency: ShardedHistogram::new(64)?,
        first_connect_error: std::sync::Mutex::default(),
    });
    let mut progress = Progress::new(std::io::stdout().is_terminal() && !args.json);
    let auth = shared.auth_header.clone();
    let auth_headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();

    // Server readings before anything is connected.
    let rss_before = match args.pid {
        Some(pid) => Some(proc::sample(pid)?.rss_bytes),
        None => None,
    };
    let watcher = args
        .pid
        .map(|pid| proc::RssWatcher::start(pid, Duration::from_millis(100)));
    let mut stats_client = ep.stats_target.clone().map(RawClient::new);
    let baseline_active = match stats_client.as_mut() {
        Some(c) if n_subs > 0 => fetch_active(c, &auth_headers).await.ok(),
        _ => None,
    };

    // Subscribers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut subs = Vec::with_capacity(usize::try_from(n_subs).unwrap_or_default());
    let connect_started = Instant::now();
    if n_subs > 0 {
        progress.phase(u64::from(n_subs), BAR, "connecting");
        let interval = Duration::from_secs_f64(1.0 / args.connect_rate as f64);
        let target = ep.sub_target.clone().context("no subscribe target")?;
        for i in 0..n_subs {
            tokio::time::sleep_until(connect_started + interval.mul_f64(f64::from(i))).await;
            let key = i % args.keys;
            let state = SubState::new(i, key, n_pubs);
            let at = ep
                .sub
                .get(usize::try_from(key).unwrap_or_default())
                .cloned()
                .unwrap_or_default();
            let sh = Arc::clone(&shared);
            let stop = stop_rx.clone();
            let handle = match args.transport {
                Transport::Sse => tokio::spawn(sub::run_sse(sh, target.with_path(at), state, stop)),
                Transport::Ws => tokio::spawn(sub::run_ws(sh, target.clone(), at, state, stop)),
            };
            subs.push((key, handle));
            if i % 64 == 0 {
                progress.update(Counters::get(&shared.counters.connected), String::new());
            }
        }
        // Wait for every connection to succeed or fail.
        let deadline = Instant::now() + Duration::from_secs(35);
        loop {
            let c = &shared.counters;
            let (ok, failed) = (
                Counters::get(&c.connected),
                Counters::get(&c.connect_failed),
            );
            progress.update(
                ok,
                if failed > 0 {
                    format!("{failed} failed")
                } else {
                    String::new()
                },
            );
            if ok + failed >= u64::from(n_subs) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        progress.finish();
    }
    let connect_seconds = connect_started.elapsed();
    let connected = Counters::get(&shared.counters.connected);
    if n_subs > 0 && connected == 0 {
        let why = match shared.first_connect_error.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        bail!(
            "no subscriber could connect to {}: {}",
            ep.sub_template,
            why.unwrap_or_else(|| "timed out".to_owned())
        );
    }

    // Readiness: the server must have registered every subscriber before the
    // first event is published, or that subscriber would miss it.
    let mut readiness = "none needed".to_owned();
    if n_subs > 0 {
        let mut confirmed = false;
        if let (Some(c), Some(base)) = (stats_client.as_mut(), baseline_active) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match fetch_active(c, &auth_headers).await {
                    Ok(active) if active >= base + connected => {
                        confirmed = true;
                        break;
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(_) => break,
                }
            }
        }
        if confirmed {
            readiness = "confirmed by /v1/stats".to_owned();
        } else {
            tokio::time::sleep(args.settle).await;
            readiness = format!("settle delay {}", humantime::format_duration(args.settle));
        }
    }
    let rss_idle = match args.pid {
        Some(pid) => {
            let s = proc::sample(pid)?;
            if let Some(w) = &watcher {
                w.offer(s.rss_bytes);
            }
            Some(s.rss_bytes)
        }
        None => None,
    };

    let mut publisher_results: Vec<PublisherResult> = Vec::new();
    let mut cpu_window: Option<(f64, f64)> = None;
    let mut drained = true;
    let mut measure_from_ns = 0u64;
    let mut measure_window = args.duration;
    // How long the publishing ran when Ctrl-C stopped it.
    let mut interrupted: Option<Duration> = None;
    if args.idle {
        // Hold the connections; the server's memory is what is measured.
        progress.phase(
            args.duration.as_millis().try_into().unwrap_or(u64::MAX),
            BAR,
            "holding",
        );
        let start = Instant::now();
        while start.elapsed() < args.duration {
            progress.update(
                start.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
                format!("{} connected", Counters::get(&shared.counters.connected)),
            );
            tokio::time::sleep(
                Duration::from_millis(200).min(args.duration.saturating_sub(start.elapsed())),
            )
            .await;
        }
        progress.finish();
    } else {
        let start = Instant::now() + Duration::from_millis(10);
        let measure_from = start + args.warmup;
        let end = measure_from + args.duration;
        measure_from_ns = u64::try_from(
            measure_from
                .into_std()
                .saturating_duration_since(shared.epoch)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        let plan = Arc::new(PublishPlan {
            paths: ep.pub_paths.clone(),
            target: ep.pub_target.clone(),
            content_type: args.pub_content_type.clone(),
            publishers: n_pubs,
            rate: args.rate,
            key_order: args.key_order,
            payload: args.payload,
            start,
            start_unix_ns: unix_now_ns().saturating_add(
                u64::try_from(start.saturating_duration_since(Instant::now()).as_nanos())
                    .unwrap_or(0),
            ),
            measure_from,
            end,
            interrupted: AtomicBool::new(false),
            next_key: AtomicU64::new(0),
        });
        let mut pubs = Vec::new();
        for id in 0..n_pubs {
            pubs.push(tokio::spawn(publisher::run(
                id,
                Arc::clone(&shared),
                Arc::clone(&plan),
                new_histogram()?,
            )));
        }
        let total_ms = u64::try_from((end - start).as_millis()).unwrap_or(u64::MAX);
        progress.phase(
            total_ms,
            "{prefix:>10} [{bar:40}] {elapsed} {msg}",
            "publishing",
        );
        let mut cpu_start = None;
        // Ctrl-C ends the publishing early; what ran is drained and
        // reported as a run of that length.
        let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
        loop {
            let now = Instant::now();
            if cpu_start.is_none() && now >= measure_from {
                cpu_start = args
                    .pid
                    .and_then(|p| proc::sample(p).ok())
                    .map(|s| s.cpu_seconds);
            }
            if now >= end {
                break;
            }
            let c = &shared.counters;
            progress.update(
                u64::try_from((now - start).as_millis()).unwrap_or(0),
                format!(
                    "published {} delivered {}{}",
                    Counters::get(&c.published),
                    Counters::get(&c.delivered),
                    match Counters::get(&c.publish_errors) {
                        0 => String::new(),
                        e => format!(" errors {e}"),
                    }
                ),
            );
            let next = (now + Duration::from_millis(200)).min(end);
            let next = if cpu_start.is_none() && args.pid.is_some() {
                next.min(measure_from)
            } else {
                next
            };
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = &mut ctrl_c => {
                    plan.interrupted.store(true, Ordering::Relaxed);
                    interrupted = Some(now.saturating_duration_since(start));
                    progress.finish();
                    eprintln!(
                        "interrupted: stopping the publishers and draining, then the report \
                         (Ctrl-C again to quit at once)"
                    );
                    break;
                }
            }
        }
        // From here on (drain, report), Ctrl-C quits at once, as it did
        // before the publishing: the handler above stays installed.
        tokio::spawn(async {
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
        for p in pubs {
            publisher_results.push(p.await.context("publisher task failed")?);
        }
        progress.finish();
        if let Some(last) = publisher_results.iter().map(|r| r.finished).max() {
            if last > measure_from {
                measure_window = last - measure_from;
            } else if interrupted.is_some() {
                // Stopped within the warm-up: nothing was measured.
                measure_window = Duration::ZERO;
            }
        }

        // Drain: wait for the deliveries still in flight.
        if n_subs > 0 {
            let mut subs_per_key = vec![0u64; usize::try_from(args.keys).unwrap_or_default()];
            for (key, _) in &subs {
                if let Some(n) = subs_per_key.get_mut(usize::try_from(*key).unwrap_or_default()) {
                    *n += 1;
                }
            }
            let failed = Counters::get(&shared.counters.connect_failed);
            let expected: u64 = publisher_results
                .iter()
                .flat_map(|r| r.accepted.iter().zip(&subs_per_key).map(|(a, s)| a * s))
                .sum();
            // With failed connections the exact target is unknown here; the
            // drain then simply runs to its limit or until nothing arrives.
            let deadline = Instant::now() + args.drain;
            progress.phase(expected, BAR, "draining");
            let mut last_seen = (Counters::get(&shared.counters.delivered), Instant::now());
            drained = loop {
                let got = Counters::get(&shared.counters.delivered);
                progress.update(got, String::new());
                if failed == 0 && got >= expected {
                    break true;
                }
                if failed > 0
                    && got == last_seen.0
                    && last_seen.1.elapsed() >= Duration::from_millis(500)
                {
                    break true;
                }
                if got != last_seen.0 {
                    last_seen = (got, Instant::now());
                }
                if Instant::now() >= deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            progress.finish();
        }
        let cpu_end = args
            .pid
            .and_then(|p| proc::sample(p).ok())
            .map(|s| s.cpu_seconds);
        if let (Some(a), Some(b)) = (cpu_start, cpu_end) {
            cpu_window = Some((a, b));
        }
    }

    // Stop the subscribers and gather their accounts.
    let rss_end = args
        .pid
        .and_then(|p| proc::sample(p).ok())
        .map(|s| s.rss_bytes);
    let _ = stop_tx.send(true);
    let mut connect_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut dropped = 0u64;
    let (mut expected, mut delivered, mut lost, mut dups, mut reorders) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut stale, mut foreign, mut other) = (0u64, 0u64, 0u64);
    for (key, h) in subs {
        let (state, conn) = h.await.context("subscriber task failed")?;
        match conn {
            Connection::Failed(why) => {
                *connect_errors.entry(why).or_insert(0) += 1;
                continue;
            }
            Connection::Dropped(_) => dropped += 1,
            Connection::Held => {}
        }
        let k = usize::try_from(key).unwrap_or_default();
        for (r, t) in publisher_results.iter().zip(&state.trackers) {
            let published = r.accepted.get(k).copied().unwrap_or_default();
            let sent = r.sent.get(k).copied().unwrap_or_default();
            let uncertain = r.uncertain.get(k).map(Vec::as_slice).unwrap_or_default();
            expected += published;
            delivered += t.unique_certain(uncertain);
            lost += t.lost_of(sent, uncertain);
            dups += t.duplicates();
            reorders += t.reordered();
        }
        stale += state.stale;
        foreign += state.foreign;
        other += state.other;
    }

    // Publish totals.
    let mut pub_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut pub_latency = new_histogram()?;
    let (mut accepted, mut accepted_measured) = (0u64, 0u64);
    let (mut late, mut max_late_us) = (0u64, 0u64);
    for r in &publisher_results {
        accepted += r.accepted.iter().sum::<u64>();
        accepted_measured += r.accepted_measured;
        late += r.late;
        max_late_us = max_late_us.max(r.max_late_us);
        for (k, v) in &r.errors {
            *pub_errors.entry(k.clone()).or_insert(0) += v;
        }
        let _ = pub_latency.add(&r.latency);
    }

    let delivered_measured = Counters::get(&shared.counters.delivered_measured);
    let last_delivery_ns = Counters::get(&shared.counters.last_delivery_ns);
    let delivery_window = Duration::from_nanos(last_delivery_ns.saturating_sub(measure_from_ns));
    let deliveries = (!args.idle && n_subs > 0).then(|| report::Deliveries {
        expected,
        delivered,
        lost,
        duplicates: dups,
        reordered: reorders,
        measured: delivered_measured,
        per_sec: if delivery_window.is_zero() {
            0.0
        } else {
            round1(delivered_measured as f64 / delivery_window.as_secs_f64())
        },
        window_s: secs(delivery_window),
        stale,
        foreign,
        other,
        drained,
    });
    let latency = (deliveries.is_some()).then(|| Percentiles::of(&shared.latency.merged()));
    let server = args.pid.map(|pid| {
        let cpu = cpu_window.map(|(a, b)| (b - a).max(0.0));
        let per = |n: u64| cpu.filter(|_| n > 0).map(|c| c * 1e6 / n as f64);
        report::Server {
            pid,
            rss_before_bytes: rss_before,
            rss_idle_bytes: rss_idle,
            rss_peak_bytes: watcher
                .as_ref()
                .map_or(0, proc::RssWatcher::peak)
                .max(rss_end.unwrap_or(0)),
            rss_end_bytes: rss_end,
            // Idle mode: after holding the connections; else once they were open.
            rss_per_connection_bytes: match (rss_before, if args.idle { rss_end } else { rss_idle })
            {
                (Some(b), Some(i)) if connected > 0 => {
                    Some((i as f64 - b as f64) / connected as f64)
                }
                _ => None,
            },
            cpu_seconds: cpu,
            cpu_us_per_delivery: if n_subs > 0 {
                per(delivered_measured)
            } else {
                None
            },
            cpu_us_per_publish: per(accepted_measured),
        }
    });
    // A run whose publishes all failed saw no loss, and proved nothing.
    let published = args.idle || (accepted > 0 && pub_errors.is_empty());
    let ok = published
        && connect_errors.is_empty()
        && dropped == 0
        && lost == 0
        && dups == 0
        && reorders == 0;
    let report = Report {
        config: report::Config {
            mode: if args.idle {
                "idle"
            } else if args.publish_only {
                "publish-only"
            } else {
                "fan-out"
            },
            sub_url: (n_subs > 0).then(|| ep.sub_template.clone()),
            pub_url: ep.pub_template.clone(),
            transport: args.transport,
            subscribers: n_subs,
            keys: args.keys,
            key_order: args.key_order,
            rate: args.rate,
            publishers: n_pubs,
            duration_s: secs(args.duration),
            warmup_s: secs(args.warmup),
            payload_bytes: args.payload,
            connect_rate: args.connect_rate,
            run_id,
            interrupted_after_s: interrupted.map(secs),
        },
        subscribers: report::Subscribers {
            requested: n_subs,
            connected,
            connect_errors,
            dropped,
            connect_seconds: secs(connect_seconds),
            readiness,
        },
        publish: report::Publish {
            accepted,
            accepted_measured,
            errors: pub_errors,
            requests_per_sec: if measure_window.is_zero() {
                0.0
            } else {
                round1(accepted_measured as f64 / measure_window.as_secs_f64())
            },
            latency_us: Percentiles::of(&pub_latency),
            late,
            max_late_us,
        },
        deliveries,
        latency_us: latency,
        server,
        ok,
    };
    Ok(report)
}
