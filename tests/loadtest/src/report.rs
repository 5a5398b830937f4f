//! The load report: computed from the harness's observations, the
//! operator's metrics and the floor run; rendered as a table, JSON and an
//! SVG chart of latency over time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use kubernetes_executor_crds::Phase;
use serde::Serialize;

use crate::floor::Floor;
use crate::promtext::{self, Sample};
use crate::sampler::{Footprint, Point};
use crate::stats::Summary;
use crate::workload::{Kind, Track, phase_index};

/// The machine the run was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads /proc (Linux); unknown fields stay empty.
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        // The machine's cores, not this process's share (`--pin` narrows it).
        let cores = read("/proc/cpuinfo")
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        Machine {
            cpu,
            cores: if cores > 0 {
                cores
            } else {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0)
            },
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        }
    }
}

/// How the run was set up.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// Run id.
    pub run_id: String,
    /// `rate` (created while the operator runs) or `backlog` (created
    /// before the operator starts: everything in flight at once).
    pub mode: String,
    /// Executions.
    pub executions: usize,
    /// Executions by kind.
    pub by_kind: BTreeMap<String, usize>,
    /// Target creation rate (0: as fast as possible).
    pub rate: f64,
    /// Concurrent creators (and floor clients).
    pub concurrency: usize,
    /// Seconds the operator was watched after the last execution finished.
    pub settle_s: f64,
    /// Which operator: local binary path or external.
    pub operator: String,
    /// Machine.
    pub machine: Machine,
}

/// Count of executions that ended one way.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Workload kind.
    pub kind: Kind,
    /// Terminal phase (or `NotFinished` / `NotCreated`).
    pub phase: String,
    /// Status reason.
    pub reason: String,
    /// How many.
    pub count: usize,
    /// Whether this is the outcome the kind should have.
    pub expected: bool,
}

/// Latencies, milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Create call round trip.
    pub create: Summary,
    /// Create returned → first status written by the operator (as watched).
    pub pickup: Summary,
    /// Create returned → terminal status, all and by kind.
    pub end_to_end: BTreeMap<String, Summary>,
    /// Time spent in each phase (first seen → next phase first seen).
    pub phases: BTreeMap<String, Summary>,
    /// Job seen finished → execution seen leaving Executing.
    pub completion_detection: Summary,
}

/// Throughput of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Throughput {
    /// First create sent → last terminal status seen, seconds.
    pub wall_s: f64,
    /// Executions created per second.
    pub created_per_s: f64,
    /// Executions finished per second over the wall time.
    pub finished_per_s: f64,
}

/// API requests the operator made during the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApiUse {
    /// Requests in total.
    pub requests: f64,
    /// Requests per execution.
    pub per_execution: f64,
    /// Breakdown by verb/resource/outcome, largest first.
    pub by_request: Vec<ApiLine>,
}

/// One line of the API breakdown.
#[derive(Clone, Debug, Serialize)]
pub struct ApiLine {
    /// `verb resource (outcome)`.
    pub request: String,
    /// Requests.
    pub count: f64,
    /// Per execution.
    pub per_execution: f64,
}

/// One of the issue's targets, as measured.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is measured.
    pub name: String,
    /// The target.
    pub target: String,
    /// The measured value, formatted.
    pub measured: String,
    /// Met, missed, or `None` when this run's setup cannot tell.
    pub met: Option<bool>,
    /// Why `met` is `None`, or a caveat.
    pub note: String,
}

/// One execution on the chart.
#[derive(Clone, Debug, Serialize)]
pub struct TimelinePoint {
    /// Seconds from the first create to this create.
    pub t: f64,
    /// Kind.
    pub kind: Kind,
    /// End-to-end latency, ms.
    pub end_to_end_ms: Option<f64>,
    /// Pickup latency, ms.
    pub pickup_ms: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Setup.
    pub run: RunInfo,
    /// Terminal outcomes.
    pub outcomes: Vec<Outcome>,
    /// Unexpected outcomes by reason.
    pub failures: BTreeMap<String, usize>,
    /// Latencies.
    pub latency_ms: Latency,
    /// Throughput.
    pub throughput: Throughput,
    /// The API floor at the same concurrency (Jobs created suspended).
    pub floor: Option<Floor>,
    /// Operator throughput ÷ API floor throughput.
    pub floor_ratio: Option<f64>,
    /// The Job floor at the same concurrency (the operator's Jobs run).
    pub job_floor: Option<Floor>,
    /// Operator throughput ÷ Job floor throughput.
    pub job_floor_ratio: Option<f64>,
    /// API requests of the operator.
    pub api: Option<ApiUse>,
    /// Phase transitions the operator made during the run (`from→to`),
    /// from its metrics. The passing phases (Validating, Preparing,
    /// Verifying) are written only when they last, so the harness's watch
    /// sees fewer; the terminal ones it must see all of.
    pub transitions: BTreeMap<String, f64>,
    /// Operator footprint while the executions ran.
    pub operator: Option<Footprint>,
    /// Operator footprint once everything finished and settled.
    pub operator_after: Option<Footprint>,
    /// Upper bound of the p99 policy decision time (histogram bucket), ms.
    pub policy_eval_p99_ms: Option<f64>,
    /// The API server's own request latency during the run (from its
    /// /metrics), to tell operator cost from server cost.
    pub api_server: Option<ApiServerLatency>,
    /// A fresh operator started over the run's finished executions
    /// (`--restart`): how a cluster with history starts.
    pub restart: Option<Restart>,
    /// The issue's targets.
    pub targets: Vec<TargetCheck>,
    /// How often the harness's execution watch had to list again (phases
    /// passed through meanwhile are not seen; pickup then reads high).
    pub watch_relists: usize,
    /// Per-execution points of the chart.
    pub timeline: Vec<TimelinePoint>,
    /// Footprint samples, t in seconds from the first create.
    pub samples: Vec<Point>,
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// Signed seconds from `origin` to `t`.
pub fn offset_s(origin: Instant, t: Instant) -> f64 {
    if t >= origin {
        (t - origin).as_secs_f64()
    } else {
        -(origin - t).as_secs_f64()
    }
}

/// The API server's request latency over the run
/// (`apiserver_request_duration_seconds`, all clients, WATCH and CONNECT
/// excluded; quantiles are histogram bucket bounds).
#[derive(Clone, Debug, Serialize)]
pub struct ApiServerLatency {
    /// Requests served during the run.
    pub requests: f64,
    /// p50 upper bound, ms.
    pub p50_ms: Option<f64>,
    /// p99 upper bound, ms.
    pub p99_ms: Option<f64>,
    /// p99 upper bound of writes (POST, PUT, PATCH, DELETE), ms.
    pub write_p99_ms: Option<f64>,
    /// Time requests waited in the server's priority-and-fairness queues,
    /// by priority level (`apiserver_flowcontrol_request_wait_duration_seconds`):
    /// the operator's ServiceAccount is in `workload-low`, the harness's
    /// admin identity `exempt`, the controllers `workload-high`.
    pub queue_wait: BTreeMap<String, QueueWait>,
    /// Where the server's time went: the request kinds (`VERB
    /// resource[/subresource]`) with the most total latency, most first.
    pub by_kind: Vec<ServerTime>,
}

/// Requests of one kind and the total time the server took for them.
#[derive(Clone, Debug, Serialize)]
pub struct ServerTime {
    /// `VERB resource[/subresource]`.
    pub kind: String,
    /// Requests served.
    pub requests: f64,
    /// Total latency, seconds.
    pub seconds: f64,
}

/// Requests of one priority level and their mean queue wait.
#[derive(Clone, Debug, Serialize)]
pub struct QueueWait {
    /// Requests dispatched.
    pub requests: f64,
    /// Mean wait before dispatch, ms.
    pub mean_ms: f64,
}

/// `level N req, M ms; …` of the priority levels' mean queue waits.
fn queue_waits(s: &ApiServerLatency) -> String {
    let levels: Vec<String> = s
        .queue_wait
        .iter()
        .map(|(l, q)| format!("{l} {:.0} req, {:.1} ms", q.requests, q.mean_ms))
        .collect();
    levels.join("; ")
}

fn server_time_rows(o: &mut String, rows: &[ServerTime]) {
    use std::fmt::Write as _;
    for r in rows.iter().take(8) {
        let _ = writeln!(
            o,
            "    {:<44} {:>7.0} requests {:>8.1} s total, {:>6.1} ms mean",
            r.kind,
            r.requests,
            r.seconds,
            r.seconds * 1000.0 / r.requests
        );
    }
}

/// The API server's latency between two scrapes of its /metrics.
pub fn api_server_latency(before: &[Sample], after: &[Sample]) -> ApiServerLatency {
    const NAME: &str = "apiserver_request_duration_seconds";
    let served = |l: &BTreeMap<String, String>| {
        !matches!(l.get("verb").map(String::as_str), Some("WATCH" | "CONNECT"))
    };
    let d = promtext::delta(before, after, NAME, served);
    let writes = promtext::delta(before, after, NAME, |l| {
        matches!(
            l.get("verb").map(String::as_str),
            Some("POST" | "PUT" | "PATCH" | "DELETE")
        )
    });
    let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
    ApiServerLatency {
        requests: promtext::sum(&d, &format!("{NAME}_count"), &[]),
        p50_ms: ms(promtext::histogram_quantile(&d, NAME, 0.5)),
        p99_ms: ms(promtext::histogram_quantile(&d, NAME, 0.99)),
        write_p99_ms: ms(promtext::histogram_quantile(&writes, NAME, 0.99)),
        queue_wait: queue_wait(before, after),
        by_kind: server_time(&d, NAME),
    }
}

fn server_time(d: &[Sample], name: &str) -> Vec<ServerTime> {
    let by = promtext::count_and_sum_by(d, name, |s| {
        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        let sub = l("subresource");
        Some(if sub.is_empty() {
            format!("{} {}", l("verb"), l("resource"))
        } else {
            format!("{} {}/{sub}", l("verb"), l("resource"))
        })
    });
    let mut v: Vec<ServerTime> = by
        .into_iter()
        .filter(|(_, (n, _))| *n > 0.0)
        .map(|(kind, (requests, seconds))| ServerTime {
            kind,
            requests,
            seconds,
        })
        .collect();
    v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    v.truncate(12);
    v
}

fn queue_wait(before: &[Sample], after: &[Sample]) -> BTreeMap<String, QueueWait> {
    const WAIT: &str = "apiserver_flowcontrol_request_wait_duration_seconds";
    let d = promtext::delta(before, after, WAIT, |_| true);
    promtext::count_and_sum_by(&d, WAIT, |s| s.labels.get("priority_level").cloned())
        .into_iter()
        .filter(|(_, (n, _))| *n > 0.0)
        .map(|(level, (requests, seconds))| {
            let mean_ms = seconds * 1000.0 / requests;
            (level, QueueWait { requests, mean_ms })
        })
        .collect()
}

/// Inputs of [`build`] besides the tracks.
pub struct Inputs {
    /// Setup.
    pub run: RunInfo,
    /// API floor result.
    pub floor: Option<Floor>,
    /// Job floor result.
    pub job_floor: Option<Floor>,
    /// Operator metrics before the executions were created.
    pub metrics_before: Option<Vec<Sample>>,
    /// Operator metrics once everything finished.
    pub metrics_after: Option<Vec<Sample>>,
    /// Footprint samples while running (t from the sampler's start).
    pub samples: Vec<Point>,
    /// When the sampler started.
    pub sampler_start: Option<Instant>,
    /// When every execution had finished (the end of "while running").
    pub finished_at: Instant,
    /// How often the harness's execution watch re-listed.
    pub watch_relists: usize,
    /// The API server's latency during the run.
    pub api_server: Option<ApiServerLatency>,
    /// The restart over the finished executions, when asked for.
    pub restart: Option<Restart>,
}

/// A fresh operator started over finished executions.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Restart {
    /// Finished executions present when it started.
    pub finished_present: usize,
    /// Process start → `/readyz` answering 200, seconds.
    pub ready_seconds: f64,
    /// Footprint over the window after it was ready.
    pub after_ready: Footprint,
    /// Length of that window, seconds.
    pub window_seconds: f64,
}

/// Computes the report.
pub fn build(tracks: &BTreeMap<String, Track>, inp: Inputs) -> Report {
    let n = tracks.len();
    let origin = tracks
        .values()
        .filter_map(|t| t.create_sent)
        .min()
        .unwrap_or(inp.finished_at);
    // Outcomes.
    let mut outcomes: BTreeMap<(Kind, String, String), usize> = BTreeMap::new();
    for t in tracks.values() {
        let (phase, reason) = match (&t.terminal, &t.create_error) {
            (_, Some(e)) => ("NotCreated".to_string(), e.clone()),
            (Some((p, r)), _) => (p.as_str().to_string(), r.clone()),
            (None, None) => ("NotFinished".to_string(), "Timeout".to_string()),
        };
        *outcomes.entry((t.kind, phase, reason)).or_default() += 1;
    }
    let mut failures = BTreeMap::new();
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .map(|((kind, phase, reason), count)| {
            let (ep, er) = kind.expected();
            let expected = phase == ep.as_str() && reason == er;
            if !expected {
                *failures.entry(format!("{phase}/{reason}")).or_default() += count;
            }
            Outcome {
                kind,
                phase,
                reason,
                count,
                expected,
            }
        })
        .collect();
    // Latencies.
    let mut lat = Latency::default();
    let terminal_at = |t: &Track| {
        t.terminal
            .as_ref()
            .and_then(|(p, _)| t.phases[phase_index(*p)])
    };
    lat.create = Summary::of(
        tracks
            .values()
            .filter_map(|t| Some(ms(t.create_sent?, t.created?))),
    );
    lat.pickup = Summary::of(
        tracks
            .values()
            .filter_map(|t| Some(ms(t.created?, t.first_status?))),
    );
    let e2e = |k: Option<Kind>| {
        Summary::of(
            tracks
                .values()
                .filter(|t| k.is_none_or(|k| t.kind == k))
                .filter_map(|t| Some(ms(t.created?, terminal_at(t)?))),
        )
    };
    lat.end_to_end.insert("all".into(), e2e(None));
    for k in Kind::ALL {
        let s = e2e(Some(k));
        if s.count > 0 {
            lat.end_to_end.insert(k.as_str().into(), s);
        }
    }
    let mut per_phase: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for t in tracks.values() {
        let Some(created) = t.created else { continue };
        let mut seq: Vec<(Phase, Instant)> = vec![(Phase::Pending, created)];
        let mut seen: Vec<(Phase, Instant)> = Phase::ALL
            .iter()
            .filter(|p| **p != Phase::Pending)
            .filter_map(|p| Some((*p, t.phases[phase_index(*p)]?)))
            .collect();
        seen.sort_by_key(|(_, at)| *at);
        seq.extend(seen);
        for w in seq.windows(2) {
            per_phase
                .entry(w[0].0.as_str())
                .or_default()
                .push(ms(w[0].1, w[1].1));
        }
    }
    lat.phases = per_phase
        .into_iter()
        .map(|(p, v)| (p.to_string(), Summary::of(v)))
        .collect();
    lat.completion_detection = Summary::of(tracks.values().filter_map(|t| {
        let done = t.job_done?;
        let after = [Phase::Verifying, Phase::Completed, Phase::Failed]
            .iter()
            .filter_map(|p| t.phases[phase_index(*p)])
            .min()?;
        Some(ms(done, after))
    }));
    // Throughput.
    let last_terminal = tracks.values().filter_map(terminal_at).max();
    let last_created = tracks.values().filter_map(|t| t.created).max();
    let finished = tracks.values().filter(|t| t.terminal.is_some()).count();
    let created = tracks.values().filter(|t| t.created.is_some()).count();
    let wall_s = last_terminal.map(|l| ms(origin, l) / 1000.0).unwrap_or(0.0);
    let create_s = last_created.map(|l| ms(origin, l) / 1000.0).unwrap_or(0.0);
    let throughput = Throughput {
        wall_s,
        created_per_s: if create_s > 0.0 {
            created as f64 / create_s
        } else {
            0.0
        },
        finished_per_s: if wall_s > 0.0 {
            finished as f64 / wall_s
        } else {
            0.0
        },
    };
    let ratio = |f: &Option<Floor>| {
        f.as_ref()
            .filter(|f| f.throughput > 0.0)
            .map(|f| throughput.finished_per_s / f.throughput)
    };
    let (floor_ratio, job_floor_ratio) = (ratio(&inp.floor), ratio(&inp.job_floor));
    // API use and policy timing from the operator's metrics.
    let api = match (&inp.metrics_before, &inp.metrics_after) {
        (Some(b), Some(a)) => Some(api_use(b, a, n)),
        _ => None,
    };
    let transitions = match (&inp.metrics_before, &inp.metrics_after) {
        (Some(b), Some(a)) => transitions(b, a),
        _ => BTreeMap::new(),
    };
    let policy_eval_p99_ms = inp
        .metrics_after
        .as_ref()
        .and_then(|a| promtext::histogram_quantile(a, "policy_evaluation_duration_seconds", 0.99))
        .map(|s| s * 1000.0);
    // Footprint: while running, and after.
    let shift = inp
        .sampler_start
        .map(|s| offset_s(origin, s))
        .unwrap_or(0.0);
    let samples: Vec<Point> = inp
        .samples
        .iter()
        .map(|p| Point {
            t: p.t + shift,
            ..p.clone()
        })
        .collect();
    let end = offset_s(origin, inp.finished_at);
    let during: Vec<Point> = samples.iter().filter(|p| p.t <= end).cloned().collect();
    let after: Vec<Point> = samples.iter().filter(|p| p.t > end).cloned().collect();
    let operator = (!during.is_empty()).then(|| crate::sampler::footprint(&during));
    let operator_after = (!after.is_empty()).then(|| crate::sampler::footprint(&after));
    let timeline = tracks
        .values()
        .filter_map(|t| {
            let created = t.created?;
            Some(TimelinePoint {
                t: offset_s(origin, created),
                kind: t.kind,
                end_to_end_ms: terminal_at(t).map(|e| ms(created, e)),
                pickup_ms: t.first_status.map(|f| ms(created, f)),
            })
        })
        .collect();
    let mut report = Report {
        run: inp.run,
        outcomes,
        failures,
        latency_ms: lat,
        throughput,
        floor: inp.floor,
        floor_ratio,
        job_floor: inp.job_floor,
        job_floor_ratio,
        api,
        transitions,
        api_server: inp.api_server,
        restart: inp.restart,
        operator,
        operator_after,
        policy_eval_p99_ms,
        targets: Vec::new(),
        watch_relists: inp.watch_relists,
        timeline,
        samples,
    };
    report.targets = targets(&report);
    report
}

/// Growth of counter `name` between two scrapes, by `key` of the labels;
/// only keys that grew.
fn counter_delta(
    before: &[Sample],
    after: &[Sample],
    name: &str,
    key: impl Fn(&dyn Fn(&str) -> String) -> String,
) -> BTreeMap<String, f64> {
    let key_of = |s: &Sample| key(&|k: &str| s.labels.get(k).cloned().unwrap_or_default());
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for s in after.iter().filter(|s| s.name == name) {
        *out.entry(key_of(s)).or_default() += s.value;
    }
    for s in before.iter().filter(|s| s.name == name) {
        *out.entry(key_of(s)).or_default() -= s.value;
    }
    out.retain(|_, v| *v > 0.0);
    out
}

fn transitions(before: &[Sample], after: &[Sample]) -> BTreeMap<String, f64> {
    counter_delta(
        before,
        after,
        "kubernetes_execution_phase_transitions_total",
        |l| format!("{}→{}", l("from_phase"), l("to_phase")),
    )
}

fn api_use(before: &[Sample], after: &[Sample], n: usize) -> ApiUse {
    let lines = counter_delta(
        before,
        after,
        "kubernetes_executor_api_requests_total",
        |l| format!("{} {} ({})", l("verb"), l("resource"), l("outcome")),
    );
    let per = |c: f64| if n > 0 { c / n as f64 } else { 0.0 };
    let mut by_request: Vec<ApiLine> = lines
        .into_iter()
        .map(|(request, count)| ApiLine {
            request,
            count,
            per_execution: per(count),
        })
        .collect();
    by_request.sort_by(|a, b| b.count.total_cmp(&a.count));
    let requests = by_request.iter().map(|l| l.count).sum();
    ApiUse {
        requests,
        per_execution: per(requests),
        by_request,
    }
}

fn targets(r: &Report) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    let rate_mode = r.run.mode == "rate";
    let p = &r.latency_ms.pickup;
    out.push(TargetCheck {
        name: "pickup latency p99".into(),
        target: "< 100 ms at 100 executions/s".into(),
        measured: format!("{:.1} ms (p50 {:.1}, max {:.1})", p.p99, p.p50, p.max),
        met: (rate_mode && p.count > 0).then_some(p.p99 < 100.0),
        note: if !rate_mode {
            "backlog mode: pickup includes the wait for the operator to start".into()
        } else if (r.run.rate - 100.0).abs() > f64::EPSILON {
            format!("measured at {} executions/s", r.run.rate)
        } else {
            String::new()
        },
    });
    let c = &r.latency_ms.completion_detection;
    out.push(TargetCheck {
        name: "completion detection p99".into(),
        target: "< 1 s after the Job completes".into(),
        measured: format!(
            "{:.1} ms (p50 {:.1}, max {:.1}, n={})",
            c.p99, c.p50, c.max, c.count
        ),
        met: (c.count > 0).then_some(c.p99 < 1000.0),
        note: if c.count == 0 {
            "no real executions in the mix".into()
        } else {
            String::new()
        },
    });
    // In backlog mode every execution is in flight (created, unfinished)
    // when the operator starts, whether it has an actor yet or waits for
    // one (--max-live-executions); otherwise count the live actors.
    let in_flight = if r.run.mode == "backlog" {
        r.run.executions as f64
    } else {
        r.operator
            .as_ref()
            .map(|f| f.live_actors_peak)
            .unwrap_or(0.0)
    };
    out.push(TargetCheck {
        name: "operator RSS, peak".into(),
        target: "< 128 MiB with 5,000 executions in flight".into(),
        measured: r
            .operator
            .as_ref()
            .map(|f| {
                format!(
                    "{:.1} MiB with {in_flight} in flight, {} actors live at peak",
                    f.rss_peak_mib, f.live_actors_peak
                )
            })
            .unwrap_or_else(|| "n/a (no operator metrics)".into()),
        met: r
            .operator
            .as_ref()
            .filter(|_| in_flight >= 5000.0)
            .map(|f| f.rss_peak_mib < 128.0),
        note: if in_flight < 5000.0 {
            "fewer than 5,000 executions were in flight at once (use --backlog with -n 5000)".into()
        } else {
            String::new()
        },
    });
    out.push(TargetCheck {
        name: "no growth after the executions finished".into(),
        target: "0 live execution actors; RSS back near its level before".into(),
        measured: r
            .operator_after
            .as_ref()
            .map(|f| format!("{} actors, {:.1} MiB", f.live_actors_end, f.rss_end_mib))
            .unwrap_or_else(|| "n/a".into()),
        met: r.operator_after.as_ref().map(|f| f.live_actors_end == 0.0),
        note: "memory freed by the allocator is not always returned to the OS; the actor count is the hard check".into(),
    });
    let settled = r.operator_after.as_ref().filter(|_| r.run.settle_s >= 60.0);
    out.push(TargetCheck {
        name: "RSS a minute after they finished".into(),
        target: "< 64 MiB".into(),
        measured: r
            .operator_after
            .as_ref()
            .map(|f| {
                format!(
                    "{:.1} MiB after {:.0} s{}",
                    f.rss_end_mib,
                    r.run.settle_s,
                    heap_note(f.heap_allocated_end_mib)
                )
            })
            .unwrap_or_else(|| "n/a".into()),
        met: settled.map(|f| f.rss_end_mib < 64.0),
        note: if r.run.settle_s < 60.0 {
            "needs --settle 60 or more".into()
        } else {
            String::new()
        },
    });
    let dry_only = r.run.by_kind.keys().all(|k| k == "dry");
    let comparable = dry_only && r.run.rate == 0.0;
    let vs = |ratio: Option<f64>, f: &Option<Floor>| match (ratio, f) {
        (Some(x), Some(f)) => format!(
            "{:.0}% ({:.1}/s vs floor {:.1}/s)",
            x * 100.0,
            r.throughput.finished_per_s,
            f.throughput
        ),
        _ => "n/a (no floor run)".into(),
    };
    let not_comparable =
        "comparable only for a dry-run-only mix created at full speed (--mix dry=1 --rate 0)";
    out.push(TargetCheck {
        name: "throughput vs Job floor".into(),
        target: ">= 70% of the floor for dry runs".into(),
        measured: vs(r.job_floor_ratio, &r.job_floor),
        met: r
            .job_floor_ratio
            .filter(|_| comparable)
            .map(|x| x >= 0.7),
        note: if comparable {
            "the floor runs the same Jobs (a dry run runs its Job since the implementation plan's contract)".into()
        } else {
            not_comparable.into()
        },
    });
    out.push(TargetCheck {
        name: "throughput vs API floor".into(),
        target: "(for comparison)".into(),
        measured: vs(r.floor_ratio, &r.floor),
        met: None,
        note: if comparable {
            "API work only: the floor's Jobs are suspended, the operator's run; not the same work"
                .into()
        } else {
            not_comparable.into()
        },
    });
    out.push(TargetCheck {
        name: "policy evaluation p99".into(),
        target: "< 1 ms".into(),
        measured: r
            .policy_eval_p99_ms
            .map(|x| format!("<= {x:.2} ms (histogram bucket bound)"))
            .unwrap_or_else(|| "n/a".into()),
        met: r.policy_eval_p99_ms.map(|x| x <= 1.0),
        note: "exact p99 from the criterion bench in docs/performance.md".into(),
    });
    out
}

fn summary_row(out: &mut String, name: &str, s: &Summary) {
    let _ = writeln!(
        out,
        "  {name:<26} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        s.count, s.p50, s.p90, s.p99, s.max
    );
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "n/a",
    }
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut o = String::new();
        let r = &self.run;
        let _ = writeln!(
            o,
            "kubernetes-executor load test {} — {} executions ({}), mode {}, rate {}/s, concurrency {}",
            r.run_id,
            r.executions,
            r.by_kind
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            r.mode,
            if r.rate > 0.0 {
                r.rate.to_string()
            } else {
                "max".into()
            },
            r.concurrency
        );
        let _ = writeln!(
            o,
            "machine: {} ({} cores, {} GiB, kernel {}); operator: {}",
            r.machine.cpu, r.machine.cores, r.machine.memory_gib, r.machine.kernel, r.operator
        );
        let _ = writeln!(o, "\noutcomes");
        for x in &self.outcomes {
            let _ = writeln!(
                o,
                "  {:<5} {:<11} {:<28} {:>6}{}",
                x.kind.as_str(),
                x.phase,
                x.reason,
                x.count,
                if x.expected { "" } else { "  (unexpected)" }
            );
        }
        let _ = writeln!(
            o,
            "\nlatency (ms)                    count       p50       p90       p99       max"
        );
        let l = &self.latency_ms;
        summary_row(&mut o, "create call", &l.create);
        summary_row(&mut o, "pickup", &l.pickup);
        for (k, s) in &l.end_to_end {
            summary_row(&mut o, &format!("end-to-end {k}"), s);
        }
        for p in Phase::ALL.iter().filter(|p| !p.is_terminal()) {
            if let Some(s) = l.phases.get(p.as_str()) {
                summary_row(&mut o, &format!("in {}", p.as_str()), s);
            }
        }
        summary_row(&mut o, "completion detection", &l.completion_detection);
        let t = &self.throughput;
        let _ = writeln!(
            o,
            "\nthroughput: {:.1} created/s, {:.1} finished/s over {:.1} s",
            t.created_per_s, t.finished_per_s, t.wall_s
        );
        for (what, f, ratio) in [
            ("API floor (Jobs suspended)", &self.floor, self.floor_ratio),
            (
                "Job floor (Jobs run)",
                &self.job_floor,
                self.job_floor_ratio,
            ),
        ] {
            let Some(f) = f else { continue };
            let jobs = if f.mode == "jobs" {
                format!(
                    ", {} Jobs succeeded, {} failed",
                    f.jobs_succeeded, f.jobs_failed
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "{what}: {:.1} executions/s ({} requests, {} errors{jobs}, {:.1} s; per execution p50 {:.1} ms, p99 {:.1} ms) → operator at {:.0}% of it",
                f.throughput,
                f.requests,
                f.errors,
                f.wall_s,
                f.latency_ms.p50,
                f.latency_ms.p99,
                ratio.unwrap_or(0.0) * 100.0
            );
            if let Some(s) = &f.api_server {
                let _ = writeln!(
                    o,
                    "  API server meanwhile: {:.0} requests, p50 {}, p99 {}; queue wait {}",
                    s.requests,
                    s.p50_ms.map_or("n/a".into(), |v| format!("≤ {v:.0} ms")),
                    s.p99_ms.map_or("n/a".into(), |v| format!("≤ {v:.0} ms")),
                    queue_waits(s)
                );
                server_time_rows(&mut o, &s.by_kind);
            }
        }
        if let Some(s) = &self.api_server {
            let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("≤ {v:.0} ms"));
            let _ = writeln!(
                o,
                "\nAPI server (its /metrics, all clients, WATCH excluded): {:.0} requests; latency p50 {}, p99 {}; writes p99 {}",
                s.requests,
                f(s.p50_ms),
                f(s.p99_ms),
                f(s.write_p99_ms)
            );
            if !s.queue_wait.is_empty() {
                let _ = writeln!(
                    o,
                    "  queue wait by priority level (mean): {}",
                    queue_waits(s)
                );
            }
            server_time_rows(&mut o, &s.by_kind);
        }
        if let Some(a) = &self.api {
            let _ = writeln!(
                o,
                "\nAPI requests by the operator: {:.0} ({:.2} per execution)",
                a.requests, a.per_execution
            );
            for line in a.by_request.iter().take(14) {
                let _ = writeln!(
                    o,
                    "  {:<44} {:>8.0} {:>7.2}/exec",
                    line.request, line.count, line.per_execution
                );
            }
        }
        if self.watch_relists > 0 {
            let _ = writeln!(
                o,
                "\nnote: the harness's watch re-listed {} times; an execution whose earlier statuses fell in a gap counts its pickup at the next status it was seen in.",
                self.watch_relists
            );
        }
        if !self.transitions.is_empty() {
            let _ = writeln!(
                o,
                "\ntransitions made by the operator (passing phases written only when they last): {}",
                self.transitions
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(f) = &self.operator {
            let _ = writeln!(
                o,
                "\noperator while running: RSS {:.1} → peak {:.1} MiB; CPU avg {:.2} cores, peak {:.2}; live actors peak {}",
                f.rss_start_mib,
                f.rss_peak_mib,
                f.cpu_avg_cores,
                f.cpu_peak_cores,
                f.live_actors_peak
            );
        }
        if let Some(f) = &self.operator_after {
            let _ = writeln!(
                o,
                "operator after:         RSS {:.1} MiB{}; CPU avg {:.2} cores; live actors {}",
                f.rss_end_mib,
                heap_note(f.heap_allocated_end_mib),
                f.cpu_avg_cores,
                f.live_actors_end
            );
        }
        if let Some(r) = &self.restart {
            let f = &r.after_ready;
            let _ = writeln!(
                o,
                "restart over {} finished executions: ready in {:.2} s; first {:.0} s: RSS peak {:.1} MiB, end {:.1} MiB{}; live execution actors peak {}",
                r.finished_present,
                r.ready_seconds,
                r.window_seconds,
                f.rss_peak_mib,
                f.rss_end_mib,
                heap_note(f.heap_allocated_end_mib),
                f.live_actors_peak
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(o, "\nunexpected outcomes");
            for (k, v) in &self.failures {
                let _ = writeln!(o, "  {k:<40} {v:>6}");
            }
        }
        let _ = writeln!(o, "\ntargets");
        for c in &self.targets {
            let _ = writeln!(
                o,
                "  [{:<6}] {:<40} {:<44} {}{}",
                mark(c.met),
                c.name,
                c.target,
                c.measured,
                if c.note.is_empty() {
                    String::new()
                } else {
                    format!("  — {}", c.note)
                }
            );
        }
        o
    }

    /// An SVG chart: end-to-end and pickup latency of every execution by
    /// creation time (log scale), and the operator's RSS and live actors.
    pub fn svg(&self) -> String {
        const W: f64 = 960.0;
        const PL: f64 = 70.0;
        const PR: f64 = 70.0;
        let pw = W - PL - PR;
        let (top_y, top_h, bot_y, bot_h) = (40.0, 300.0, 400.0, 180.0);
        let t_max = self
            .timeline
            .iter()
            .map(|p| p.t + p.end_to_end_ms.unwrap_or(0.0) / 1000.0)
            .chain(self.samples.iter().map(|p| p.t))
            .fold(1.0, f64::max);
        let t_min = self.samples.iter().map(|p| p.t).fold(0.0, f64::min);
        let x = |t: f64| PL + (t - t_min) / (t_max - t_min) * pw;
        let lat_max = self
            .timeline
            .iter()
            .filter_map(|p| p.end_to_end_ms)
            .fold(10.0, f64::max);
        let (lo, hi) = (0.0_f64, lat_max.log10().ceil());
        let y_lat = |ms: f64| top_y + top_h - (ms.max(1.0).log10() - lo) / (hi - lo) * top_h;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="620" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{PL}" y="22" font-size="14">kubernetes-executor load test {}: {} executions, {} mode</text>"#,
            self.run.run_id, self.run.executions, self.run.mode
        );
        // Latency panel.
        let _ = writeln!(
            s,
            r##"<rect x="{PL}" y="{top_y}" width="{pw}" height="{top_h}" fill="none" stroke="#999"/>"##
        );
        for d in 0..=(hi as i32) {
            let v = 10f64.powi(d);
            let y = y_lat(v);
            let _ = writeln!(
                s,
                r##"<line x1="{PL}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{} ms</text>"##,
                PL + pw,
                PL - 4.0,
                y + 4.0,
                v
            );
        }
        let colors = |k: Kind| match k {
            Kind::Dry => "#4C78A8",
            Kind::Deny => "#F58518",
            Kind::Real => "#54A24B",
        };
        for p in &self.timeline {
            if let Some(pk) = p.pickup_ms {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="1.2" fill="#bbb"/>"##,
                    x(p.t),
                    y_lat(pk)
                );
            }
        }
        for p in &self.timeline {
            if let Some(e) = p.end_to_end_ms {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{}"/>"#,
                    x(p.t),
                    y_lat(e),
                    colors(p.kind)
                );
            }
        }
        let mut lx = PL + 10.0;
        for (label, color) in [
            ("end-to-end dry run", colors(Kind::Dry)),
            ("end-to-end denial", colors(Kind::Deny)),
            ("end-to-end real", colors(Kind::Real)),
            ("pickup (all)", "#bbb"),
        ] {
            let _ = writeln!(
                s,
                r#"<circle cx="{lx}" cy="{}" r="4" fill="{color}"/><text x="{}" y="{}">{label}</text>"#,
                top_y + 12.0,
                lx + 7.0,
                top_y + 16.0
            );
            lx += 150.0;
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">creation time (s since the first create)</text>"#,
            PL + pw / 2.0,
            top_y + top_h + 30.0
        );
        // Footprint panel.
        let _ = writeln!(
            s,
            r##"<rect x="{PL}" y="{bot_y}" width="{pw}" height="{bot_h}" fill="none" stroke="#999"/>"##
        );
        let rss_max = self
            .samples
            .iter()
            .map(|p| p.rss_bytes / 1048576.0)
            .fold(16.0, f64::max)
            * 1.1;
        let act_max = self
            .samples
            .iter()
            .map(|p| p.live_actors)
            .fold(10.0, f64::max)
            * 1.1;
        let poly = |f: &dyn Fn(&Point) -> f64, max: f64| {
            self.samples
                .iter()
                .map(|p| format!("{:.1},{:.1}", x(p.t), bot_y + bot_h - f(p) / max * bot_h))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="#B279A2" stroke-width="1.5" points="{}"/>"##,
            poly(&|p| p.rss_bytes / 1048576.0, rss_max)
        );
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="#72B7B2" stroke-width="1.5" points="{}"/>"##,
            poly(&|p| p.live_actors, act_max)
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#B279A2">{:.0} MiB</text><text x="{}" y="{}" fill="#72B7B2">{:.0} actors</text>"##,
            PL - 4.0,
            bot_y + 10.0,
            rss_max,
            PL + pw + 4.0,
            bot_y + 10.0,
            act_max
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" fill="#B279A2">operator RSS</text><text x="{}" y="{}" fill="#72B7B2">live execution actors</text>"##,
            PL + 10.0,
            bot_y + 16.0,
            PL + 160.0,
            bot_y + 16.0
        );
        let step = ((t_max - t_min) / 10.0).max(1.0).ceil();
        let mut t = (t_min / step).ceil() * step;
        while t <= t_max {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{t}</text><text x="{:.1}" y="{}" text-anchor="middle">{t}</text>"#,
                x(t),
                top_y + top_h + 14.0,
                x(t),
                bot_y + bot_h + 14.0
            );
            t += step;
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">time (s since the first create)</text>"#,
            PL + pw / 2.0,
            bot_y + bot_h + 30.0
        );
        s.push_str("</svg>\n");
        s
    }
}

/// " (heap in live objects N MiB)" when the operator reports its heap
/// (jemalloc builds); nothing for an allocator without the metric.
fn heap_note(mib: f64) -> String {
    if mib > 0.0 {
        format!(" (heap in live objects {mib:.1} MiB)")
    } else {
        String::new()
    }
}
