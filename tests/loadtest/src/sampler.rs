//! Samples the operator's footprint while the load runs: resident memory,
//! CPU seconds and live execution actors. Live actors come from its
//! /metrics; memory and CPU from /proc when the operator is a local process
//! (CPU in clock ticks), else from its `process_*` metrics (CPU in whole
//! seconds), so it works for an operator anywhere the harness can reach.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubernetes_executor_testkit::operator::http_get;
use serde::Serialize;

use crate::promtext;

/// One scrape.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Seconds since the sampler started.
    pub t: f64,
    /// `process_resident_memory_bytes`.
    pub rss_bytes: f64,
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
    /// `kubernetes_executor_live_actors{kind="execution"}`.
    pub live_actors: f64,
    /// `kubernetes_executor_heap_bytes{state="allocated"}` (0 when the
    /// operator's allocator does not report it).
    pub heap_allocated_bytes: f64,
}

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux).
const USER_HZ: f64 = 100.0;

/// (resident bytes, CPU seconds) of a local process from /proc.
pub fn proc_footprint(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    // Fields after the command name: utime and stime are the 12th and 13th.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((rss_kib * 1024.0, ticks / USER_HZ))
}

/// Scrapes `addr`/metrics every `every` until dropped.
pub struct Sampler {
    /// When sampling started (the time origin of [`Point::t`]).
    pub start: Instant,
    points: Arc<Mutex<Vec<Point>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One scrape of the operator's metrics text.
pub async fn scrape(addr: &str) -> anyhow::Result<Vec<promtext::Sample>> {
    let (code, body) = http_get(addr, "/metrics").await?;
    anyhow::ensure!(code == 200, "GET {addr}/metrics answered {code}");
    Ok(promtext::parse(&body))
}

fn point(t: f64, s: &[promtext::Sample], pid: Option<u32>) -> Point {
    let local = pid.and_then(proc_footprint);
    Point {
        t,
        rss_bytes: local
            .map(|l| l.0)
            .unwrap_or_else(|| promtext::sum(s, "process_resident_memory_bytes", &[])),
        cpu_seconds: local
            .map(|l| l.1)
            .unwrap_or_else(|| promtext::sum(s, "process_cpu_seconds_total", &[])),
        live_actors: promtext::sum(
            s,
            "kubernetes_executor_live_actors",
            &[("kind", "execution")],
        ),
        heap_allocated_bytes: promtext::sum(
            s,
            "kubernetes_executor_heap_bytes",
            &[("state", "allocated")],
        ),
    }
}

impl Sampler {
    /// Starts sampling.
    pub fn start(addr: String, pid: Option<u32>, every: Duration) -> Sampler {
        let start = Instant::now();
        let points: Arc<Mutex<Vec<Point>>> = Arc::default();
        let out = points.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if let Ok(s) = scrape(&addr).await {
                    let p = point(start.elapsed().as_secs_f64(), &s, pid);
                    if let Ok(mut v) = out.lock() {
                        v.push(p);
                    }
                }
            }
        });
        Sampler {
            start,
            points,
            task,
        }
    }

    /// Every point so far.
    pub fn points(&self) -> Vec<Point> {
        self.points.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Peak and average of the footprint over a window of points.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Footprint {
    /// Resident memory when the window started, MiB.
    pub rss_start_mib: f64,
    /// Peak resident memory, MiB.
    pub rss_peak_mib: f64,
    /// Resident memory at the end of the window, MiB.
    pub rss_end_mib: f64,
    /// Average CPU over the window, in cores.
    pub cpu_avg_cores: f64,
    /// Highest CPU over any ~1 s stretch, in cores.
    pub cpu_peak_cores: f64,
    /// Most live execution actors seen.
    pub live_actors_peak: f64,
    /// Live execution actors at the end of the window.
    pub live_actors_end: f64,
    /// Heap in live objects at the end of the window, MiB (the allocator's
    /// count; 0 when not reported): RSS minus this is the binary, stacks
    /// and pages freed but not returned.
    pub heap_allocated_end_mib: f64,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Summarizes the points (in time order).
pub fn footprint(points: &[Point]) -> Footprint {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Footprint::default();
    };
    let span = last.t - first.t;
    let mut cpu_peak: f64 = 0.0;
    let mut j = 0;
    for (i, p) in points.iter().enumerate() {
        while j < i && p.t - points[j + 1].t >= 1.0 {
            j += 1;
        }
        let dt = p.t - points[j].t;
        if dt >= 0.5 {
            cpu_peak = cpu_peak.max((p.cpu_seconds - points[j].cpu_seconds) / dt);
        }
    }
    Footprint {
        rss_start_mib: first.rss_bytes / MIB,
        rss_peak_mib: points.iter().map(|p| p.rss_bytes).fold(0.0, f64::max) / MIB,
        rss_end_mib: last.rss_bytes / MIB,
        cpu_avg_cores: if span > 0.0 {
            (last.cpu_seconds - first.cpu_seconds) / span
        } else {
            0.0
        },
        cpu_peak_cores: cpu_peak,
        live_actors_peak: points.iter().map(|p| p.live_actors).fold(0.0, f64::max),
        live_actors_end: last.live_actors,
        heap_allocated_end_mib: last.heap_allocated_bytes / MIB,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_footprint_from_proc() {
        let (rss, cpu) = proc_footprint(std::process::id()).expect("/proc of this process");
        assert!(rss > 1024.0 * 1024.0, "rss {rss}");
        assert!(cpu >= 0.0);
        assert!(proc_footprint(u32::MAX).is_none());
    }

    #[test]
    fn footprint_peaks_and_averages() {
        let pts: Vec<Point> = (0..=20)
            .map(|i| {
                let t = f64::from(i) * 0.25;
                Point {
                    t,
                    rss_bytes: if i == 10 { 64.0 * MIB } else { 32.0 * MIB },
                    // 0.5 core, except 2 cores between t=2 and t=3.
                    cpu_seconds: 0.5 * t
                        + if t > 2.0 {
                            1.5 * (t.min(3.0) - 2.0)
                        } else {
                            0.0
                        },
                    live_actors: f64::from(i.min(20 - i)),
                    heap_allocated_bytes: 8.0 * MIB,
                }
            })
            .collect();
        let f = footprint(&pts);
        assert_eq!(
            (f.rss_start_mib, f.rss_peak_mib, f.rss_end_mib),
            (32.0, 64.0, 32.0)
        );
        assert!((f.cpu_avg_cores - 0.8).abs() < 1e-9, "{}", f.cpu_avg_cores);
        assert!(
            (f.cpu_peak_cores - 2.0).abs() < 1e-9,
            "{}",
            f.cpu_peak_cores
        );
        assert_eq!((f.live_actors_peak, f.live_actors_end), (10.0, 0.0));
        assert_eq!(f.heap_allocated_end_mib, 8.0);
    }
}
