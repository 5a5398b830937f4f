//! One load run, start to finish: targets, the floor, the executions, the
//! measurements, the report, the cleanup.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kube::Client;

use crate::report::{self, Inputs, Machine, Report, RunInfo};
use crate::sampler::{self, Sampler};
use crate::workload::{self, Mix, Pace, Workload};

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Number of executions.
    pub executions: usize,
    /// Creation rate per second (0: as fast as the creators go).
    pub rate: f64,
    /// Concurrent creators (and floor clients).
    pub concurrency: usize,
    /// Shares of dry runs, denials and real executions.
    pub mix: Mix,
    /// Deployments the dry runs spread over.
    pub deployments: usize,
    /// Namespace the operator creates Jobs in.
    pub operator_namespace: String,
    /// Give up waiting for the executions after this long.
    pub timeout: Duration,
    /// Measure the floors first (the API floor, and the Job floor when
    /// the plan has dry runs or real executions).
    pub floor: bool,
    /// Create every execution before the operator starts (all in flight at once).
    pub backlog: bool,
    /// Keep watching the operator this long after the last execution finished.
    pub settle: Duration,
    /// Delete the run's namespaces at the end.
    pub cleanup: bool,
    /// Run id (names and labels).
    pub run_id: String,
    /// After the run, start a fresh operator over its finished executions.
    pub restart: bool,
}

/// The operator under test, as far as the harness controls it.
pub trait OperatorControl {
    /// Makes sure the operator runs (a no-op for an external operator).
    fn start(&mut self) -> impl Future<Output = Result<()>> + Send;
    /// `host:port` of its /metrics, when reachable.
    fn metrics(&self) -> Option<String>;
    /// Its process id, when it is a local process.
    fn pid(&self) -> Option<u32> {
        None
    }
    /// What the report calls it.
    fn describe(&self) -> String;
    /// Stops the operator and starts a fresh one over what the run left
    /// (`finished` finished executions), measuring its start; `None` where
    /// the harness does not own the operator.
    fn restart(
        &mut self,
        finished: usize,
    ) -> impl Future<Output = Result<Option<crate::report::Restart>>> + Send {
        let _ = finished;
        async { Ok(None) }
    }
}

/// What a restarted operator looked like: `started` is when its process
/// was started, the call comes once it is ready; samples it for `window`.
pub async fn restarted(
    finished: usize,
    started: Instant,
    metrics: String,
    pid: Option<u32>,
    window: Duration,
) -> report::Restart {
    let ready_seconds = started.elapsed().as_secs_f64();
    let sampler = Sampler::start(metrics, pid, Duration::from_millis(250));
    tokio::time::sleep(window).await;
    let after_ready = sampler::footprint(&sampler.points());
    report::Restart {
        finished_present: finished,
        ready_seconds,
        after_ready,
        window_seconds: window.as_secs_f64(),
    }
}

/// The API server's own metrics (the harness's identity may read /metrics
/// on the local control plane; on a real cluster it may not: then none).
async fn server_metrics(client: &Client) -> Option<Vec<crate::promtext::Sample>> {
    let req = http::Request::get("/metrics").body(Vec::new()).ok()?;
    match client.request_text(req).await {
        Ok(text) => Some(crate::promtext::parse(&text)),
        Err(e) => {
            eprintln!(
                "loadtest: cannot read the API server's /metrics ({e}); its latency is not reported"
            );
            None
        }
    }
}

async fn scrape(op: &impl OperatorControl) -> Option<Vec<crate::promtext::Sample>> {
    sampler::scrape(&op.metrics()?).await.ok()
}

/// Runs the load and returns the report.
pub async fn run(client: &Client, cfg: &Config, op: &mut impl OperatorControl) -> Result<Report> {
    let w = Workload {
        run_id: cfg.run_id.clone(),
        namespace: format!("ke-load-{}", cfg.run_id),
        plan: workload::plan(cfg.executions, cfg.mix),
        deployments: cfg.deployments,
    };
    eprintln!(
        "loadtest {}: preparing targets in {}",
        cfg.run_id, w.namespace
    );
    w.prepare(client).await?;
    // Both floors, each in a namespace of its own that is gone before the
    // next step starts, so that nothing of it competes.
    let (mut floor, mut job_floor) = (None, None);
    if cfg.floor {
        let runs_jobs = w
            .plan
            .iter()
            .any(|k| matches!(k, workload::Kind::Dry | workload::Kind::Real));
        let mut modes = vec![crate::floor::JobMode::Suspended];
        if runs_jobs {
            modes.push(crate::floor::JobMode::Run(crate::floor::RunJobs {
                operator_namespace: cfg.operator_namespace.clone(),
                target_namespace: w.namespace.clone(),
                timeout: cfg.timeout,
            }));
        }
        for mode in modes {
            let tag = mode.tag();
            let fw = Workload {
                namespace: format!("ke-floor-{tag}-{}", cfg.run_id),
                ..w.clone()
            };
            workload::create_namespace(client, &fw.namespace, &cfg.run_id).await?;
            eprintln!(
                "loadtest {}: {tag} floor ({} executions, concurrency {})",
                cfg.run_id, cfg.executions, cfg.concurrency
            );
            let server_before = server_metrics(client).await;
            let mut f = crate::floor::run(client, &fw, cfg.concurrency, &mode).await;
            if let (Some(b), Some(a)) = (server_before, server_metrics(client).await) {
                f.api_server = Some(report::api_server_latency(&b, &a));
            }
            workload::release_executions(client, &fw.namespace)
                .await
                .context("release the floor's executions")?;
            workload::delete_namespace(client, &fw.namespace, Duration::from_secs(300))
                .await
                .context("clean up the floor namespace")?;
            match mode {
                crate::floor::JobMode::Suspended => floor = Some(f),
                crate::floor::JobMode::Run(_) => job_floor = Some(f),
            }
        }
    }
    let tracks = workload::tracks(&w);
    let pace = Pace {
        rate: cfg.rate,
        concurrency: cfg.concurrency,
    };
    let relists = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (synced_tx, mut synced) = tokio::sync::watch::channel(false);
    let watches = [
        workload::watch_executions(client, &w, tracks.clone(), relists.clone(), synced_tx),
        workload::watch_jobs(client, &cfg.operator_namespace, &w, tracks.clone()),
    ];
    // The execution watch must have listed before anything is created.
    tokio::time::timeout(Duration::from_secs(60), synced.wait_for(|s| *s))
        .await
        .context("the execution watch did not list within 60 s")?
        .context("the execution watch stopped")?;
    // The Job watch has no signal: give it a moment too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server_before = server_metrics(client).await;
    let (metrics_before, sampler);
    if cfg.backlog {
        eprintln!(
            "loadtest {}: creating {} executions before the operator starts",
            cfg.run_id, cfg.executions
        );
        workload::create_all(client, &w, pace, &tracks).await;
        metrics_before = Some(Vec::new());
        op.start().await?;
        sampler = op
            .metrics()
            .map(|m| Sampler::start(m, op.pid(), Duration::from_millis(250)));
    } else {
        op.start().await?;
        metrics_before = scrape(op).await;
        sampler = op
            .metrics()
            .map(|m| Sampler::start(m, op.pid(), Duration::from_millis(250)));
        eprintln!(
            "loadtest {}: creating {} executions",
            cfg.run_id, cfg.executions
        );
        workload::create_all(client, &w, pace, &tracks).await;
    }
    let all = workload::wait_all(&tracks, cfg.timeout).await;
    let finished_at = Instant::now();
    tokio::time::sleep(cfg.settle).await;
    let metrics_after = scrape(op).await;
    let api_server = match (server_before, server_metrics(client).await) {
        (Some(b), Some(a)) => Some(report::api_server_latency(&b, &a)),
        _ => None,
    };
    for wt in watches {
        wt.abort();
    }
    let (samples, sampler_start) = match &sampler {
        Some(s) => (s.points(), Some(s.start)),
        None => (Vec::new(), None),
    };
    drop(sampler);
    let restart = if cfg.restart {
        eprintln!(
            "loadtest {}: restarting the operator over {} finished executions",
            cfg.run_id, cfg.executions
        );
        op.restart(cfg.executions).await?
    } else {
        None
    };
    let snapshot: BTreeMap<String, workload::Track> = tracks
        .lock()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut by_kind = BTreeMap::new();
    for k in &w.plan {
        *by_kind.entry(k.as_str().to_string()).or_insert(0) += 1;
    }
    let report = report::build(
        &snapshot,
        Inputs {
            run: RunInfo {
                run_id: cfg.run_id.clone(),
                mode: if cfg.backlog { "backlog" } else { "rate" }.into(),
                executions: cfg.executions,
                by_kind,
                rate: cfg.rate,
                concurrency: cfg.concurrency,
                settle_s: cfg.settle.as_secs_f64(),
                operator: op.describe(),
                machine: Machine::detect(),
            },
            floor,
            job_floor,
            metrics_before,
            metrics_after,
            samples,
            sampler_start,
            finished_at,
            watch_relists: relists.load(std::sync::atomic::Ordering::Relaxed),
            api_server,
            restart,
        },
    );
    if !all {
        eprintln!(
            "loadtest {}: not every execution finished within {}s",
            cfg.run_id,
            cfg.timeout.as_secs()
        );
    }
    if cfg.cleanup {
        eprintln!(
            "loadtest {}: deleting namespace {}",
            cfg.run_id, w.namespace
        );
        workload::delete_namespace(client, &w.namespace, Duration::from_secs(300)).await?;
    }
    Ok(report)
}
