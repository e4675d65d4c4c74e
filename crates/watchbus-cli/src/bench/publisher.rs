//! Publishers: each one a keep-alive connection sending one event at a time,
//! paced to its share of the total rate.
//!
//! A paced publisher that falls behind its schedule (the server answered
//! slowly, or the machine was busy) sends the events it owes late. Their
//! latencies, publish and end to end, count from the time each event was
//! due, not from when it went out; otherwise the wait would go unmeasured
//! ("coordinated omission"). Sends within [`ON_TIME`] of their time count
//! from the actual send, so the timer's own resolution is not measured.

use super::Shared;
use super::args::KeyOrder;
use super::client::RawClient;
use super::http::Target;
use super::payload::{Stamp, build};
use super::stats::Counters;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How late a send may go out and still be on time: tokio's timer fires on
/// millisecond ticks, so a send is routinely up to a millisecond late.
pub(crate) const ON_TIME: Duration = Duration::from_millis(2);

/// What a publisher must know.
#[derive(Debug)]
pub(crate) struct PublishPlan {
    /// Publish path (with query) for each key index.
    pub(crate) paths: Vec<String>,
    pub(crate) target: Target,
    pub(crate) content_type: String,
    pub(crate) publishers: u32,
    /// Total events per second; 0 = unpaced.
    pub(crate) rate: u64,
    pub(crate) key_order: KeyOrder,
    pub(crate) payload: usize,
    pub(crate) start: Instant,
    /// `start` as Unix nanoseconds, to stamp scheduled times.
    pub(crate) start_unix_ns: u64,
    pub(crate) measure_from: Instant,
    pub(crate) end: Instant,
    /// Set on Ctrl-C: the publishers stop as at `end`.
    pub(crate) interrupted: AtomicBool,
    /// Shared round-robin cursor.
    pub(crate) next_key: AtomicU64,
}

impl PublishPlan {
    /// Whether a send due at `due` is past the run's end.
    fn over(&self, due: Instant) -> bool {
        due >= self.end || self.interrupted.load(Ordering::Relaxed)
    }
}

/// What a publisher did.
#[derive(Debug)]
pub(crate) struct PublisherResult {
    /// Events accepted (2xx) per key index.
    pub(crate) accepted: Vec<u64>,
    /// The sequence numbers used per key index: events carry `0..sent`.
    /// Those not accepted and not in `uncertain` were refused (4xx) and
    /// never stored: their number was used again.
    pub(crate) sent: Vec<u64>,
    /// Per key index, the sequence numbers of publishes whose outcome is
    /// unknown (a transport error or a 5xx: the server may have stored the
    /// event): a subscriber may or may not see them, and either is right.
    pub(crate) uncertain: Vec<Vec<u64>>,
    pub(crate) accepted_measured: u64,
    /// Failed publishes by status code, or `"transport"`.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Publish request latency in microseconds (measured window), from the
    /// scheduled time for late sends.
    pub(crate) latency: Histogram<u64>,
    /// Measured sends that went out more than [`ON_TIME`] after their
    /// scheduled time.
    pub(crate) late: u64,
    /// The latest of those, in microseconds.
    pub(crate) max_late_us: u64,
    /// When the last request of the measured window completed.
    pub(crate) finished: Instant,
}

pub(crate) async fn run(
    id: u32,
    shared: Arc<Shared>,
    plan: Arc<PublishPlan>,
    mut latency: Histogram<u64>,
) -> PublisherResult {
    let keys = plan.paths.len().max(1);
    let mut accepted = vec![0u64; keys];
    let mut next_seq = vec![0u64; keys];
    let mut uncertain: Vec<Vec<u64>> = vec![Vec::new(); keys];
    let mut errors = BTreeMap::new();
    let mut accepted_measured = 0;
    let mut client = RawClient::new(plan.target.clone());
    let mut body = Vec::with_capacity(plan.payload + 64);
    let auth = shared.auth_header.clone();
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", plan.content_type.as_str())];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    let mut rng =
        XorShift::new(shared.run ^ (u64::from(id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Each publisher sends every `publishers / rate` seconds, offset by its id.
    let interval = (plan.rate > 0).then(|| {
        std::time::Duration::from_secs_f64(f64::from(plan.publishers.max(1)) / plan.rate as f64)
    });
    let offset = (plan.rate > 0)
        .then(|| std::time::Duration::from_secs_f64(f64::from(id) / plan.rate as f64));
    let mut n: u32 = 0;
    let mut finished = plan.start;
    let (mut late, mut max_late_us) = (0u64, 0u64);
    loop {
        let due = match (interval, offset) {
            (Some(iv), Some(off)) => {
                let due = plan.start + off + iv * n;
                if plan.over(due) {
                    break;
                }
                tokio::time::sleep_until(due).await;
                due
            }
            _ => Instant::now(),
        };
        if plan.over(due) || Instant::now() >= plan.end {
            break;
        }
        n = n.wrapping_add(1);
        let key = match plan.key_order {
            KeyOrder::RoundRobin => plan.next_key.fetch_add(1, Ordering::Relaxed) % keys as u64,
            KeyOrder::Random => rng.next() % keys as u64,
        };
        let key_idx = usize::try_from(key).unwrap_or_default();
        let (Some(seq), Some(path)) = (next_seq.get(key_idx).copied(), plan.paths.get(key_idx))
        else {
            continue;
        };
        let now = Instant::now();
        let warmup = now < plan.measure_from;
        let (sent, sent_ns) = match lateness(interval.is_some(), due, now) {
            Some(behind) => {
                if !warmup {
                    late += 1;
                    max_late_us = max_late_us.max(micros(behind));
                }
                let since_start =
                    u64::try_from(due.saturating_duration_since(plan.start).as_nanos())
                        .unwrap_or(u64::MAX);
                (due, plan.start_unix_ns.saturating_add(since_start))
            }
            None => (now, super::unix_now_ns()),
        };
        let stamp = Stamp {
            run: shared.run,
            sent_ns,
            seq,
            publisher: id,
            key: u32::try_from(key).unwrap_or(u32::MAX),
            warmup,
        };
        build(&mut body, &stamp, plan.payload);
        match client.request("POST", path, &headers, Some(&body)).await {
            Ok(status) if (200..300).contains(&status.0) => {
                if let Some(a) = accepted.get_mut(key_idx) {
                    *a += 1;
                }
                if let Some(next) = next_seq.get_mut(key_idx) {
                    *next += 1;
                }
                Counters::add(&shared.counters.published, 1);
                if !warmup {
                    accepted_measured += 1;
                    let done = Instant::now();
                    latency.saturating_record(micros(done - sent).max(1));
                    finished = done;
                }
            }
            Ok(status) if (400..500).contains(&status.0) => {
                // Refused, so not stored: the next event of this key uses
                // the sequence number again.
                *errors.entry(status.0.to_string()).or_insert(0) += 1;
                Counters::add(&shared.counters.publish_errors, 1);
            }
            failed => {
                // Maybe stored (a 503 after a store timeout, a connection
                // lost after the request was sent): the number is spent,
                // and its event is neither expected nor a duplicate.
                let name = match failed {
                    Ok(status) => status.0.to_string(),
                    Err(_) => "transport".to_owned(),
                };
                *errors.entry(name).or_insert(0) += 1;
                Counters::add(&shared.counters.publish_errors, 1);
                if let (Some(next), Some(unknown)) =
                    (next_seq.get_mut(key_idx), uncertain.get_mut(key_idx))
                {
                    unknown.push(seq);
                    *next += 1;
                }
                // Do not spin on a failing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    PublisherResult {
        accepted,
        sent: next_seq,
        uncertain,
        accepted_measured,
        errors,
        latency,
        late,
        max_late_us,
        finished,
    }
}

/// How late a send going out at `now` is, when it counts as late: paced,
/// and more than [`ON_TIME`] after `due`. Its latencies then count from
/// `due`; otherwise from `now`.
fn lateness(paced: bool, due: Instant, now: Instant) -> Option<Duration> {
    let behind = now.saturating_duration_since(due);
    (paced && behind > ON_TIME).then_some(behind)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// xorshift64*: a fast, good-enough generator for picking keys.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_is_late_only_when_paced_and_past_the_timer_resolution() {
        let due = Instant::now();
        let at = |ms| due + Duration::from_millis(ms);
        // The timer's own resolution is not lateness.
        assert_eq!(lateness(true, due, due), None);
        assert_eq!(lateness(true, due, at(2)), None);
        assert_eq!(lateness(true, due, at(3)), Some(Duration::from_millis(3)));
        assert_eq!(
            lateness(true, due, at(900)),
            Some(Duration::from_millis(900))
        );
        // An early wake is on time.
        assert_eq!(lateness(true, at(5), due), None);
        // Unpaced publishers have no schedule to fall behind.
        assert_eq!(lateness(false, due, at(900)), None);
    }

    #[test]
    fn xorshift_spreads_over_keys() {
        let mut r = XorShift::new(42);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[(r.next() % 10) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }
}
