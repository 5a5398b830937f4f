//! The synthetic workload: a plan of executions (dry runs, policy denials,
//! real PatchConfigMap runs), their targets, the creators, and the watches
//! that timestamp every phase an execution passes through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use kubernetes_executor_crds::{
    KubernetesExecution, KubernetesExecutionSpec, Phase, TargetResource, labels,
};
use serde::Serialize;
use serde_json::json;

/// Label carrying the load run's id on everything the harness creates.
pub const RUN_LABEL: &str = "loadtest.kubernetes-executor.io/run";
/// Label carrying the workload kind of an execution.
pub const KIND_LABEL: &str = "loadtest.kubernetes-executor.io/kind";

/// What a synthetic execution exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `ScaleDeployment` dry run: validation, policy, preconditions, grants
    /// and a Job running the action as a server-side dry run (`dryRun=All`).
    Dry,
    /// `ScaleDeployment` to 0 of a `critical=true` Deployment: denied by policy.
    Deny,
    /// `PatchConfigMap` for real: lock, grant, Job, run-action, cleanup.
    Real,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 3] = [Kind::Dry, Kind::Deny, Kind::Real];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dry => "dry",
            Kind::Deny => "deny",
            Kind::Real => "real",
        }
    }

    /// The terminal phase and reason this kind should end with.
    pub fn expected(self) -> (Phase, &'static str) {
        match self {
            Kind::Dry => (Phase::Completed, "DryRunSucceeded"),
            Kind::Real => (Phase::Completed, "Succeeded"),
            Kind::Deny => (Phase::Failed, "PolicyDenied"),
        }
    }
}

/// Shares of each kind, e.g. `dry=60,deny=20,real=20`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// Weight of dry runs.
    pub dry: u32,
    /// Weight of policy denials.
    pub deny: u32,
    /// Weight of real executions.
    pub real: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            dry: 60,
            deny: 20,
            real: 20,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            dry: 0,
            deny: 0,
            real: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("mix entry {part:?} is not kind=weight"))?;
            let v: u32 = v
                .parse()
                .map_err(|_| format!("mix weight {v:?} of {k} is not a whole number"))?;
            match k {
                "dry" => mix.dry = v,
                "deny" => mix.deny = v,
                "real" => mix.real = v,
                other => return Err(format!("unknown kind {other:?} (dry, deny, real)")),
            }
        }
        if mix.dry + mix.deny + mix.real == 0 {
            return Err(format!("mix {s:?} has no weight"));
        }
        Ok(mix)
    }
}

impl Mix {
    fn weight(&self, k: Kind) -> u32 {
        match k {
            Kind::Dry => self.dry,
            Kind::Deny => self.deny,
            Kind::Real => self.real,
        }
    }
}

/// `n` kinds in the proportions of `mix`, evenly interleaved (the kind
/// furthest behind its share goes next), so any prefix has the mix too.
pub fn plan(n: usize, mix: Mix) -> Vec<Kind> {
    let total = f64::from(mix.dry + mix.deny + mix.real);
    let mut done: HashMap<Kind, usize> = HashMap::new();
    (0..n)
        .map(|i| {
            let k = Kind::ALL
                .into_iter()
                .filter(|k| mix.weight(*k) > 0)
                .max_by(|a, b| {
                    let deficit = |k: &Kind| {
                        (i + 1) as f64 * f64::from(mix.weight(*k)) / total
                            - done.get(k).copied().unwrap_or(0) as f64
                    };
                    deficit(a).total_cmp(&deficit(b)).then(b.cmp(a))
                })
                .unwrap_or(Kind::Dry);
            *done.entry(k).or_default() += 1;
            k
        })
        .collect()
}

/// Everything about one load run's workload.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Run id (label value, name suffix).
    pub run_id: String,
    /// Namespace of the executions and their targets.
    pub namespace: String,
    /// Kind of execution `i`.
    pub plan: Vec<Kind>,
    /// Number of Deployments the dry runs spread over.
    pub deployments: usize,
}

const CRITICAL: &str = "load-critical";

impl Workload {
    /// Name of execution `i`.
    pub fn name(&self, i: usize) -> String {
        format!("load-{i:05}")
    }

    /// The execution `i` of the plan.
    pub fn execution(&self, i: usize) -> KubernetesExecution {
        let ns = Some(self.namespace.as_str());
        let kind = self.plan[i];
        let spec = match kind {
            Kind::Dry => KubernetesExecutionSpec {
                dry_run: true,
                parameters: [("replicas".to_string(), "2".to_string())].into(),
                ..KubernetesExecutionSpec::new(
                    "ScaleDeployment",
                    TargetResource::new(
                        "Deployment",
                        format!("load-d-{}", i % self.deployments.max(1)),
                        ns,
                    ),
                )
            },
            Kind::Deny => KubernetesExecutionSpec {
                parameters: [("replicas".to_string(), "0".to_string())].into(),
                ..KubernetesExecutionSpec::new(
                    "ScaleDeployment",
                    TargetResource::new("Deployment", CRITICAL, ns),
                )
            },
            Kind::Real => KubernetesExecutionSpec {
                parameters: [(
                    "patch".to_string(),
                    json!({ "data": { "execution": self.name(i) } }).to_string(),
                )]
                .into(),
                ..KubernetesExecutionSpec::new(
                    "PatchConfigMap",
                    TargetResource::new("ConfigMap", format!("load-cm-{i:05}"), ns),
                )
            },
        };
        let mut e = KubernetesExecution::new(&self.name(i), spec);
        e.metadata.labels = Some(
            [
                (RUN_LABEL.to_string(), self.run_id.clone()),
                (KIND_LABEL.to_string(), kind.as_str().to_string()),
            ]
            .into(),
        );
        e
    }

    /// Creates the namespace and the targets: `deployments` Deployments with
    /// no replicas (nothing to schedule: works on any cluster), one
    /// `critical=true` Deployment for the denials, one ConfigMap per real
    /// execution (no two real executions contend for a target lock).
    pub async fn prepare(&self, client: &Client) -> Result<()> {
        create_namespace(client, &self.namespace, &self.run_id).await?;
        let deps: Api<Deployment> = Api::namespaced(client.clone(), &self.namespace);
        let mut names: Vec<(String, bool)> = (0..self.deployments.max(1))
            .map(|i| (format!("load-d-{i}"), false))
            .collect();
        names.push((CRITICAL.to_string(), true));
        for (name, critical) in names {
            let mut labels = json!({ "app": name, RUN_LABEL: self.run_id });
            if critical {
                labels["critical"] = json!("true");
            }
            let d: Deployment = serde_json::from_value(json!({
                "metadata": { "name": name, "labels": labels },
                "spec": {
                    "replicas": 0,
                    "selector": { "matchLabels": { "app": name } },
                    "template": {
                        "metadata": { "labels": { "app": name } },
                        "spec": { "containers": [{ "name": "app", "image": "nginx:1.27" }] },
                    },
                },
            }))?;
            deps.create(&PostParams::default(), &d)
                .await
                .with_context(|| format!("create Deployment {name}"))?;
        }
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        for (i, _) in self
            .plan
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == Kind::Real)
        {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": { "name": format!("load-cm-{i:05}"), "labels": { RUN_LABEL: self.run_id } },
                "data": { "execution": "" },
            }))?;
            cms.create(&PostParams::default(), &cm)
                .await
                .with_context(|| format!("create ConfigMap load-cm-{i:05}"))?;
        }
        Ok(())
    }
}

/// Creates a namespace labelled with the run id.
pub async fn create_namespace(client: &Client, name: &str, run_id: &str) -> Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { RUN_LABEL: run_id } },
    }))?;
    nss.create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("create namespace {name}"))?;
    Ok(())
}

/// Deletes a namespace and waits (up to `within`) until it is gone.
/// Removes every finalizer from the executions in `ns` (the floor's: the
/// admission policy gives each the operator's finalizer on create, and no
/// operator runs while the floor does, so nothing else would remove it).
pub async fn release_executions(client: &Client, ns: &str) -> Result<()> {
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), ns);
    let patch = json!({ "metadata": { "finalizers": null } });
    for e in api.list(&Default::default()).await?.items {
        if e.finalizers().is_empty() {
            continue;
        }
        api.patch(
            &e.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .with_context(|| format!("release {ns}/{}", e.name_any()))?;
    }
    Ok(())
}

pub async fn delete_namespace(client: &Client, name: &str, within: Duration) -> Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    match nss.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e).context(format!("delete namespace {name}")),
    }
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if nss.get_opt(name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("namespace {name} still exists after {}s", within.as_secs())
}

/// What the harness observed about one execution (times on its own clock).
#[derive(Clone, Debug)]
pub struct Track {
    /// Workload kind.
    pub kind: Kind,
    /// When the create request was sent.
    pub create_sent: Option<Instant>,
    /// When the create call returned successfully.
    pub created: Option<Instant>,
    /// Why the create call failed.
    pub create_error: Option<String>,
    /// First time the watch showed a non-empty status.
    pub first_status: Option<Instant>,
    /// First time the watch showed each phase (index: `Phase::ALL`).
    pub phases: [Option<Instant>; Phase::ALL.len()],
    /// Terminal phase and reason.
    pub terminal: Option<(Phase, String)>,
    /// When the watch first showed the execution's Job Complete or Failed.
    pub job_done: Option<Instant>,
}

impl Track {
    fn new(kind: Kind) -> Track {
        Track {
            kind,
            create_sent: None,
            created: None,
            create_error: None,
            first_status: None,
            phases: [None; Phase::ALL.len()],
            terminal: None,
            job_done: None,
        }
    }

    /// Done: terminal, or never created.
    pub fn finished(&self) -> bool {
        self.terminal.is_some() || self.create_error.is_some()
    }
}

/// Index of a phase in `Phase::ALL`.
pub fn phase_index(p: Phase) -> usize {
    Phase::ALL.iter().position(|x| *x == p).unwrap_or(0)
}

/// Observations of every execution of a run, by name.
pub type Tracks = Arc<Mutex<HashMap<String, Track>>>;

/// A new tracker for the workload (every execution known, nothing seen).
pub fn tracks(w: &Workload) -> Tracks {
    Arc::new(Mutex::new(
        w.plan
            .iter()
            .enumerate()
            .map(|(i, k)| (w.name(i), Track::new(*k)))
            .collect(),
    ))
}

fn with_track(tracks: &Tracks, name: &str, f: impl FnOnce(&mut Track)) {
    if let Ok(mut m) = tracks.lock()
        && let Some(t) = m.get_mut(name)
    {
        f(t);
    }
}

/// Watches the run's executions and timestamps every status it shows.
/// `relists` counts how often the watch had to list again after its first
/// list (phases passed through meanwhile are not seen); `synced` turns true
/// once the first list is done — create nothing before, or the first
/// executions' early phases fall before the list and are never seen.
pub fn watch_executions(
    client: &Client,
    w: &Workload,
    tracks: Tracks,
    relists: Arc<AtomicUsize>,
    synced: tokio::sync::watch::Sender<bool>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &w.namespace);
    let cfg = watcher::Config::default().labels(&format!("{RUN_LABEL}={}", w.run_id));
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(api, cfg).default_backoff());
        let mut listed = false;
        loop {
            let e = match stream.try_next().await {
                Ok(Some(Event::Apply(e) | Event::InitApply(e))) => e,
                Ok(Some(Event::Init)) => {
                    if listed {
                        relists.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                Ok(Some(Event::InitDone)) => {
                    listed = true;
                    synced.send_replace(true);
                    continue;
                }
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(err) => {
                    eprintln!("loadtest: execution watch: {err}");
                    continue;
                }
            };
            let now = Instant::now();
            let Some(status) = e.status.as_ref() else {
                continue;
            };
            if status.phase.is_none() && status.reason.is_none() {
                continue;
            }
            let phase = e.phase();
            let reason = status.reason.clone().unwrap_or_default();
            with_track(&tracks, &e.name_any(), |t| {
                t.first_status.get_or_insert(now);
                t.phases[phase_index(phase)].get_or_insert(now);
                if phase.is_terminal() && t.terminal.is_none() {
                    t.terminal = Some((phase, reason));
                }
            });
        }
    })
}

/// Watches the Jobs in `ns` that match `selector` and calls `ended(job,
/// succeeded, when)` for every version of one that has ended (Complete or
/// Failed), until `ended` returns false.
pub fn watch_job_ends(
    client: &Client,
    ns: &str,
    selector: &str,
    what: &'static str,
    mut ended: impl FnMut(&Job, bool, Instant) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let cfg = watcher::Config::default().labels(selector);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(api, cfg).default_backoff());
        loop {
            let job = match stream.try_next().await {
                Ok(Some(Event::Apply(j) | Event::InitApply(j))) => j,
                Ok(Some(_)) => continue,
                Ok(None) => return,
                Err(err) => {
                    eprintln!("loadtest: {what} watch: {err}");
                    continue;
                }
            };
            let now = Instant::now();
            let end = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| {
                    cs.iter()
                        .filter(|c| c.status == "True")
                        .find_map(|c| match c.type_.as_str() {
                            "Complete" => Some(true),
                            "Failed" => Some(false),
                            _ => None,
                        })
                });
            if let Some(ok) = end
                && !ended(&job, ok, now)
            {
                return;
            }
        }
    })
}

/// Watches the Jobs the operator runs for the run's executions and records
/// when each finished.
pub fn watch_jobs(
    client: &Client,
    operator_ns: &str,
    w: &Workload,
    tracks: Tracks,
) -> tokio::task::JoinHandle<()> {
    let selector = format!("{}={}", labels::EXECUTION_NAMESPACE, w.namespace);
    watch_job_ends(client, operator_ns, &selector, "job", move |job, _, now| {
        if let Some(exec) = job.labels().get(labels::EXECUTION_NAME) {
            with_track(&tracks, exec, |t| {
                t.job_done.get_or_insert(now);
            });
        }
        true
    })
}

/// How the creators pace themselves.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Executions per second (0: as fast as the creators go).
    pub rate: f64,
    /// Concurrent creators.
    pub concurrency: usize,
}

/// Creates every execution of the plan with `pace`; returns when all create
/// calls returned. Outcomes go to `tracks`.
pub async fn create_all(client: &Client, w: &Workload, pace: Pace, tracks: &Tracks) {
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &w.namespace);
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let workers = (0..pace.concurrency.max(1)).map(|_| {
        let (api, next, w, tracks) = (api.clone(), next.clone(), w.clone(), tracks.clone());
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= w.plan.len() {
                    return;
                }
                if pace.rate > 0.0 {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / pace.rate))
                        .await;
                }
                let exec = w.execution(i);
                let name = w.name(i);
                with_track(&tracks, &name, |t| t.create_sent = Some(Instant::now()));
                let res = api.create(&PostParams::default(), &exec).await;
                let now = Instant::now();
                with_track(&tracks, &name, |t| match res {
                    Ok(_) => t.created = Some(now),
                    Err(e) => t.create_error = Some(create_error_reason(&e)),
                });
            }
        }
    });
    futures::future::join_all(workers).await;
}

fn create_error_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("CreateFailed{}", s.code),
        _ => "CreateFailedTransport".to_string(),
    }
}

/// Waits until every execution finished or `timeout` passed; prints progress
/// to stderr every 5 s. Returns whether all finished.
pub async fn wait_all(tracks: &Tracks, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut last_print = Instant::now();
    loop {
        let (done, total) = tracks
            .lock()
            .map(|m| (m.values().filter(|t| t.finished()).count(), m.len()))
            .unwrap_or((0, 0));
        if done == total {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("loadtest: timed out with {done}/{total} finished");
            return false;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            eprintln!("loadtest: {done}/{total} finished");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_keeps_the_mix_in_every_prefix() {
        let p = plan(100, Mix::default());
        let count = |k: Kind, s: &[Kind]| s.iter().filter(|x| **x == k).count();
        assert_eq!(
            (
                count(Kind::Dry, &p),
                count(Kind::Deny, &p),
                count(Kind::Real, &p)
            ),
            (60, 20, 20)
        );
        let first = &p[..10];
        assert_eq!(
            (
                count(Kind::Dry, first),
                count(Kind::Deny, first),
                count(Kind::Real, first)
            ),
            (6, 2, 2)
        );
        assert!(
            plan(10, "dry=1".parse().expect("mix"))
                .iter()
                .all(|k| *k == Kind::Dry)
        );
    }

    #[test]
    fn mix_parsing_names_the_bad_part() {
        assert_eq!(
            "dry=1,real=3".parse::<Mix>(),
            Ok(Mix {
                dry: 1,
                deny: 0,
                real: 3
            })
        );
        assert!(
            "dry=x"
                .parse::<Mix>()
                .expect_err("invalid")
                .contains("\"x\"")
        );
        assert!(
            "fast=1"
                .parse::<Mix>()
                .expect_err("invalid")
                .contains("\"fast\"")
        );
        assert!(
            "dry=0"
                .parse::<Mix>()
                .expect_err("invalid")
                .contains("no weight")
        );
    }

    #[test]
    fn executions_carry_run_and_kind_labels() {
        let w = Workload {
            run_id: "r1".into(),
            namespace: "ns".into(),
            plan: vec![Kind::Dry, Kind::Deny, Kind::Real],
            deployments: 2,
        };
        let dry = w.execution(0);
        assert!(dry.spec.dry_run);
        assert_eq!(dry.labels()[RUN_LABEL], "r1");
        assert_eq!(dry.labels()[KIND_LABEL], "dry");
        assert_eq!(w.execution(1).spec.parameters["replicas"], "0");
        assert_eq!(w.execution(2).spec.action, "PatchConfigMap");
        assert_eq!(w.execution(2).spec.target_resource.name, "load-cm-00002");
    }
}
