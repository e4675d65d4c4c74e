//! Resident memory and CPU time of another process, read from
//! `/proc/PID/status` and `/proc/PID/stat` (Linux).
//!
//! A multi-process server (nginx: a master and its workers) is measured as
//! its whole process tree: CPU time summed over the processes, and memory as
//! the sum of their proportional set sizes (`Pss` in
//! `/proc/PID/smaps_rollup`), so pages the processes share (the binary, a
//! shared memory zone) are counted once. A single process keeps `VmRSS`.

use anyhow::{Context, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Clock ticks per second of the times in `/proc/PID/stat` (`USER_HZ`). The
/// kernel reports them in `USER_HZ`, which is 100 on every Linux
/// architecture in use (it is part of the user-space ABI).
const USER_HZ: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcSample {
    pub(crate) rss_bytes: u64,
    /// Peak resident set over the life of the process (`VmHWM`).
    pub(crate) hwm_bytes: u64,
    /// User plus system CPU time, all threads, in seconds.
    pub(crate) cpu_seconds: f64,
}

/// Samples `pid` together with its descendants (see the module docs).
pub(crate) fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let mut total = sample_one(pid)?;
    let descendants = descendants(pid);
    if descendants.is_empty() {
        return Ok(total);
    }
    // Several processes: proportional set sizes, so shared pages count once.
    total.rss_bytes = pss(pid).unwrap_or(total.rss_bytes);
    total.hwm_bytes = total.hwm_bytes.max(total.rss_bytes);
    for child in descendants {
        // A process may exit between listing and reading.
        let Ok(s) = sample_one(child) else { continue };
        total.rss_bytes += pss(child).unwrap_or(s.rss_bytes);
        total.hwm_bytes += s.hwm_bytes;
        total.cpu_seconds += s.cpu_seconds;
    }
    Ok(total)
}

/// Every descendant of `pid`, from `/proc/PID/task/TID/children`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            let Ok(list) = std::fs::read_to_string(path) else {
                continue;
            };
            for c in list.split_ascii_whitespace().filter_map(|c| c.parse().ok()) {
                if c != pid && !out.contains(&c) && out.len() < 1024 {
                    out.push(c);
                    todo.push(c);
                }
            }
        }
    }
    out
}

/// `Pss` of `/proc/PID/smaps_rollup`, in bytes.
fn pss(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| parse_kb(v).ok())
}

fn sample_one(pid: u32) -> anyhow::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (is the server's pid right?)"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let (rss_bytes, hwm_bytes) = parse_status(&status)?;
    Ok(ProcSample {
        rss_bytes,
        hwm_bytes,
        cpu_seconds: parse_stat_cpu(&stat)?,
    })
}

/// `VmRSS` and `VmHWM` in bytes.
fn parse_status(status: &str) -> anyhow::Result<(u64, u64)> {
    let mut rss = None;
    let mut hwm = None;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            rss = Some(parse_kb(v)?);
        } else if let Some(v) = line.strip_prefix("VmHWM:") {
            hwm = Some(parse_kb(v)?);
        }
    }
    let rss = rss.context("no VmRSS in /proc/PID/status (a kernel thread or a zombie?)")?;
    Ok((rss, hwm.unwrap_or(rss)))
}

fn parse_kb(v: &str) -> anyhow::Result<u64> {
    let v = v.trim();
    let n = v.strip_suffix("kB").unwrap_or(v).trim();
    Ok(n.parse::<u64>()
        .with_context(|| format!("bad size {v:?}"))?
        * 1024)
}

/// utime + stime (fields 14 and 15) in seconds.
fn parse_stat_cpu(stat: &str) -> anyhow::Result<f64> {
    // The command name is in parentheses and may hold spaces or parentheses.
    let Some(close) = stat.rfind(')') else {
        bail!("malformed /proc/PID/stat")
    };
    let rest = stat.get(close + 1..).unwrap_or_default();
    // `rest` starts at field 3 (state).
    let mut fields = rest.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields
        .next()
        .context("no utime in /proc/PID/stat")?
        .parse()?;
    let stime: u64 = fields
        .next()
        .context("no stime in /proc/PID/stat")?
        .parse()?;
    Ok((utime + stime) as f64 / USER_HZ)
}

/// Samples a process's RSS in the background and keeps its peak.
#[derive(Debug)]
pub(crate) struct RssWatcher {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatcher {
    pub(crate) fn start(pid: u32, every: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let p = Arc::clone(&peak);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if let Ok(s) = sample(pid) {
                    p.fetch_max(s.rss_bytes, Ordering::Relaxed);
                }
            }
        });
        Self { peak, task }
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Lets a reading just taken elsewhere count toward the peak.
    pub(crate) fn offer(&self, rss: u64) {
        self.peak.fetch_max(rss, Ordering::Relaxed);
    }
}

impl Drop for RssWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\twatchbus\nVmPeak:\t  900 kB\nVmHWM:\t    5000 kB\nVmRSS:\t    4096 kB\nThreads:\t3\n";
        assert_eq!(parse_status(status).unwrap(), (4096 * 1024, 5000 * 1024));
        let stat = "1234 (watch bus) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 100";
        assert!((parse_stat_cpu(stat).unwrap() - 3.0).abs() < 1e-9);
        assert!(parse_stat_cpu("garbage").is_err());
        assert!(parse_status("Name: x\n").is_err());
    }

    #[test]
    fn samples_a_process_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        assert!(descendants(me).contains(&child.id()));
        let s = sample(me).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(pss(me).is_some());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.hwm_bytes >= s.rss_bytes);
        assert!(s.cpu_seconds >= 0.0);
    }
}
