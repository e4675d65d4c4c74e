//! The bench report: one struct, printed as a human table or as JSON.

use super::args::{KeyOrder, Transport};
use super::stats::Percentiles;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) config: Config,
    pub(crate) subscribers: Subscribers,
    pub(crate) publish: Publish,
    /// Absent in `--publish-only` and `--idle` runs.
    pub(crate) deliveries: Option<Deliveries>,
    /// End-to-end latency (publisher send to subscriber receive), µs,
    /// measured window; from the scheduled time for late sends.
    pub(crate) latency_us: Option<Percentiles>,
    pub(crate) server: Option<Server>,
    /// No loss, duplicate, reorder, failed or dropped connection.
    pub(crate) ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Config {
    pub(crate) mode: &'static str,
    pub(crate) sub_url: Option<String>,
    pub(crate) pub_url: String,
    pub(crate) transport: Transport,
    pub(crate) subscribers: u32,
    pub(crate) keys: u32,
    pub(crate) key_order: KeyOrder,
    /// Events per second asked for; 0 = as fast as possible.
    pub(crate) rate: u64,
    pub(crate) publishers: u32,
    pub(crate) duration_s: f64,
    pub(crate) warmup_s: f64,
    pub(crate) payload_bytes: usize,
    pub(crate) connect_rate: u64,
    pub(crate) run_id: u64,
    /// Seconds the publishing ran when Ctrl-C stopped it; `None` for a
    /// run that went its whole `--duration`.
    pub(crate) interrupted_after_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Subscribers {
    pub(crate) requested: u32,
    pub(crate) connected: u64,
    /// Failed connections by reason.
    pub(crate) connect_errors: BTreeMap<String, u64>,
    /// Connected, then disconnected by the server before the end.
    pub(crate) dropped: u64,
    pub(crate) connect_seconds: f64,
    /// How readiness before publishing was established.
    pub(crate) readiness: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Publish {
    /// Events the server accepted (2xx), warm-up included.
    pub(crate) accepted: u64,
    pub(crate) accepted_measured: u64,
    /// Failed publishes by HTTP status, or `transport`.
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) requests_per_sec: f64,
    /// From the scheduled send time for late sends (see `late`).
    pub(crate) latency_us: Percentiles,
    /// Paced sends of the measured window that went out more than 2 ms
    /// after their scheduled time; their latencies, publish and end to
    /// end, count from the scheduled time.
    pub(crate) late: u64,
    /// The latest of those, µs.
    pub(crate) max_late_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Deliveries {
    /// Events accepted for a key times the connected subscribers of that key.
    pub(crate) expected: u64,
    /// Distinct events received.
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
    pub(crate) measured: u64,
    pub(crate) per_sec: f64,
    /// From the start of the measured window to the last delivery.
    pub(crate) window_s: f64,
    /// Events of another bench run (a server replaying its buffer).
    pub(crate) stale: u64,
    /// Bench events for another key, or from an unknown publisher.
    pub(crate) foreign: u64,
    /// Events without a bench stamp.
    pub(crate) other: u64,
    /// Whether every expected delivery arrived before the drain timed out.
    pub(crate) drained: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Server {
    pub(crate) pid: u32,
    pub(crate) rss_before_bytes: Option<u64>,
    /// After all subscribers connected, before publishing.
    pub(crate) rss_idle_bytes: Option<u64>,
    pub(crate) rss_peak_bytes: u64,
    pub(crate) rss_end_bytes: Option<u64>,
    /// (idle RSS − RSS before connecting) / connected subscribers.
    pub(crate) rss_per_connection_bytes: Option<f64>,
    /// Server CPU (user + system) from the start of the measured window to the end of the drain.
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) cpu_us_per_delivery: Option<f64>,
    pub(crate) cpu_us_per_publish: Option<f64>,
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn lat_line(out: &mut String, label: &str, p: &Percentiles) {
    if p.count == 0 {
        let _ = writeln!(out, "  {label:<22} no samples");
        return;
    }
    let _ = writeln!(
        out,
        "  {label:<22} p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (n={})",
        us(p.p50),
        us(p.p90),
        us(p.p99),
        us(p.p999),
        us(p.max),
        p.count
    );
}

fn us(v: u64) -> String {
    if v >= 10_000_000 {
        format!("{:.1}s", v as f64 / 1e6)
    } else if v >= 10_000 {
        format!("{:.1}ms", v as f64 / 1e3)
    } else {
        format!("{v}µs")
    }
}

fn map_line(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    pub(crate) fn human(&self) -> String {
        let mut o = String::new();
        let c = &self.config;
        let transport = match c.transport {
            Transport::Sse => "SSE",
            Transport::Ws => "WebSocket",
        };
        let rate = if c.rate == 0 {
            "max".to_owned()
        } else {
            format!("{}/s", c.rate)
        };
        let _ = match c.mode {
            "idle" => writeln!(
                o,
                "watchbus bench (idle): {} {transport} connection(s) over {} key(s), held {:.1}s",
                c.subscribers, c.keys, c.duration_s
            ),
            "publish-only" => writeln!(
                o,
                "watchbus bench (publish-only): rate {rate}, {} publisher(s), {:.1}s, {} B payload",
                c.publishers, c.duration_s, c.payload_bytes
            ),
            _ => writeln!(
                o,
                "watchbus bench: {} {transport} subscriber(s) over {} key(s), rate {rate}, {} publisher(s), {:.1}s, {} B payload",
                c.subscribers, c.keys, c.publishers, c.duration_s, c.payload_bytes
            ),
        };
        if let Some(after) = c.interrupted_after_s {
            let _ = writeln!(
                o,
                "  interrupted            by Ctrl-C after {after:.1}s of publishing (warm-up included): the figures cover that"
            );
        }
        let s = &self.subscribers;
        if s.requested > 0 {
            let _ = writeln!(
                o,
                "  subscribers            {}/{} connected in {:.2}s ({}){}",
                s.connected,
                s.requested,
                s.connect_seconds,
                s.readiness,
                if s.dropped > 0 {
                    format!(", {} dropped", s.dropped)
                } else {
                    String::new()
                }
            );
            if !s.connect_errors.is_empty() {
                let _ = writeln!(
                    o,
                    "  connect errors         {}",
                    map_line(&s.connect_errors)
                );
            }
        }
        let p = &self.publish;
        if c.mode != "idle" {
            let _ = writeln!(
                o,
                "  published              {} accepted ({} measured), {:.0} req/s{}",
                p.accepted,
                p.accepted_measured,
                p.requests_per_sec,
                if p.errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors {}", map_line(&p.errors))
                }
            );
            lat_line(&mut o, "publish latency", &p.latency_us);
            if p.late > 0 {
                let _ = writeln!(
                    o,
                    "  behind schedule        {} sends over {} ms late (latest {}): their latencies count from when they were due",
                    p.late,
                    super::publisher::ON_TIME.as_millis(),
                    us(p.max_late_us)
                );
            }
            // Failed publishes lower the accepted rate too: then they are
            // the news, not the pace.
            if !p.errors.is_empty() {
                let _ = writeln!(
                    o,
                    "  note                   {} publishes failed ({}): the server refused them or could not be reached",
                    p.errors.values().sum::<u64>(),
                    map_line(&p.errors)
                );
            } else if c.rate > 0 && p.requests_per_sec < 0.95 * c.rate as f64 {
                let _ = writeln!(
                    o,
                    "  note                   publishers fell behind the asked rate (more --publishers?)"
                );
            }
        }
        if let Some(d) = &self.deliveries {
            let _ = writeln!(
                o,
                "  deliveries             {}/{} delivered, {:.0}/s over {:.2}s{}",
                d.delivered,
                d.expected,
                d.per_sec,
                d.window_s,
                if d.drained { "" } else { " (drain timed out)" }
            );
            let _ = writeln!(
                o,
                "  loss / dup / reorder   {} / {} / {}",
                d.lost, d.duplicates, d.reordered
            );
            if d.stale + d.foreign + d.other > 0 {
                let _ = writeln!(
                    o,
                    "  ignored                {} from other runs, {} misrouted, {} unstamped",
                    d.stale, d.foreign, d.other
                );
            }
        }
        if let Some(l) = &self.latency_us {
            lat_line(&mut o, "delivery latency", l);
        }
        if let Some(sv) = &self.server {
            let mut parts = vec![format!("peak RSS {}", mib(sv.rss_peak_bytes))];
            if let Some(b) = sv.rss_idle_bytes {
                parts.push(format!("idle RSS {}", mib(b)));
            }
            if let Some(b) = sv.rss_per_connection_bytes {
                parts.push(format!("{:.2} KiB/connection", b / 1024.0));
            }
            if let Some(cpu) = sv.cpu_seconds {
                parts.push(format!("CPU {cpu:.2}s"));
            }
            if let Some(u) = sv.cpu_us_per_delivery {
                parts.push(format!("{u:.2} µs CPU/delivery"));
            }
            if let Some(u) = sv.cpu_us_per_publish {
                parts.push(format!("{u:.2} µs CPU/publish"));
            }
            let _ = writeln!(
                o,
                "  server                 pid {}: {}",
                sv.pid,
                parts.join(", ")
            );
        }
        let _ = writeln!(
            o,
            "  result                 {}",
            if self.ok {
                "OK"
            } else {
                "PROBLEMS (see above)"
            }
        );
        o
    }
}
