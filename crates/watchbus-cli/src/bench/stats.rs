//! Latency histograms (hdrhistogram, microseconds) shared by thousands of
//! subscriber tasks, and the live counters the progress bar and the drain
//! wait read.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Highest latency recorded: one hour, in microseconds. Larger values are
/// clamped to it.
const MAX_US: u64 = 3_600_000_000;

pub(crate) fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_US, 3)?)
}

/// Latency histograms split in shards, so tasks on different threads rarely
/// contend for one lock. Tasks record through a [`LocalBatch`].
#[derive(Debug)]
pub(crate) struct ShardedHistogram {
    empty: Histogram<u64>,
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl ShardedHistogram {
    pub(crate) fn new(shards: usize) -> anyhow::Result<Self> {
        let empty = new_histogram()?;
        let shards = (0..shards.max(1))
            .map(|_| Mutex::new(empty.clone()))
            .collect();
        Ok(Self { empty, shards })
    }

    fn record_all(&self, shard: usize, values: &[u64]) {
        let Some(m) = self.shards.get(shard % self.shards.len().max(1)) else {
            return;
        };
        let mut h = match m.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        for &v in values {
            h.saturating_record(v.clamp(1, MAX_US));
        }
    }

    /// All shards merged.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut out = self.empty.clone();
        for m in &self.shards {
            let h = match m.lock() {
                Ok(h) => h,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Same bounds everywhere; values were clamped to them.
            let _ = out.add(&*h);
        }
        out
    }
}

/// A subscriber's small buffer of latencies, flushed to its shard when full
/// or after each read, so the lock is taken once per batch, not per event.
#[derive(Debug)]
pub(crate) struct LocalBatch {
    shard: usize,
    len: usize,
    values: [u64; 64],
}

impl LocalBatch {
    pub(crate) fn new(shard: usize) -> Self {
        Self {
            shard,
            len: 0,
            values: [0; 64],
        }
    }

    pub(crate) fn push(&mut self, hist: &ShardedHistogram, value_us: u64) {
        if let Some(slot) = self.values.get_mut(self.len) {
            *slot = value_us;
            self.len += 1;
        }
        if self.len >= self.values.len() {
            self.flush(hist);
        }
    }

    pub(crate) fn flush(&mut self, hist: &ShardedHistogram) {
        if self.len > 0 {
            hist.record_all(self.shard, self.values.get(..self.len).unwrap_or_default());
            self.len = 0;
        }
    }
}

/// Counters shared by all tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicU64,
    pub(crate) connect_failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// Distinct bench events received, warm-up included.
    pub(crate) delivered: AtomicU64,
    /// Distinct bench events received that were published in the measured window.
    pub(crate) delivered_measured: AtomicU64,
    /// When the last event arrived, as nanoseconds since the bench's epoch.
    pub(crate) last_delivery_ns: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) min: u64,
    pub(crate) mean: f64,
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_uniform_values() {
        let hist = ShardedHistogram::new(4).unwrap();
        let mut batches: Vec<LocalBatch> = (0..4).map(LocalBatch::new).collect();
        for v in 1..=10_000u64 {
            let b = &mut batches[(v % 4) as usize];
            b.push(&hist, v);
        }
        for b in &mut batches {
            b.flush(&hist);
        }
        let p = Percentiles::of(&hist.merged());
        assert_eq!(p.count, 10_000);
        assert_eq!(p.min, 1);
        // 3 significant digits: within 0.1 %.
        let near =
            |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(p.p50, 5_000), "{p:?}");
        assert!(near(p.p90, 9_000), "{p:?}");
        assert!(near(p.p99, 9_900), "{p:?}");
        assert!(near(p.p999, 9_990), "{p:?}");
        assert!(near(p.max, 10_000), "{p:?}");
        assert!((p.mean - 5_000.5).abs() < 10.0, "{p:?}");
    }

    #[test]
    fn empty_and_clamped() {
        assert_eq!(
            Percentiles::of(&new_histogram().unwrap()),
            Percentiles::default()
        );
        let hist = ShardedHistogram::new(1).unwrap();
        let mut b = LocalBatch::new(0);
        b.push(&hist, 0);
        b.push(&hist, u64::MAX);
        b.flush(&hist);
        let p = Percentiles::of(&hist.merged());
        assert_eq!(p.count, 2);
        assert_eq!(p.min, 1);
        assert!(p.max >= MAX_US);
    }

    #[test]
    fn batch_flushes_when_full() {
        let hist = ShardedHistogram::new(2).unwrap();
        let mut b = LocalBatch::new(1);
        for v in 0..64 {
            b.push(&hist, 100 + v);
        }
        assert_eq!(hist.merged().len(), 64);
        b.push(&hist, 5);
        assert_eq!(hist.merged().len(), 64);
        b.flush(&hist);
        assert_eq!(hist.merged().len(), 65);
    }
}
