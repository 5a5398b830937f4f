//! The floors: a plain client doing the least work an execution needs, at
//! the same concurrency as the load. The operator's throughput is reported
//! as a share of each.
//!
//! - The **API floor** ([`JobMode::Suspended`]): create the resource, write
//!   its status once, and for a dry run or a real execution create one
//!   *suspended* Job. API work only: nothing runs.
//! - The **Job floor** ([`JobMode::Run`]): the same, but the Job is the one
//!   the operator would create (`job::build_job`: the action's
//!   ServiceAccount, `run-action` with the same arguments, `--dry-run` for a
//!   dry run) and runs; the outcome is written once the Job has finished,
//!   as an operator must. Since a dry run runs its Job (the implementation
//!   plan's server-side dry run), this is the least work a dry run can be:
//!   the Job controller, the scheduler, the pod, its token and `run-action`'s
//!   own requests are counted in, as they are for the operator. Cheaper than
//!   any operator in one way: the action's ServiceAccount is bound once per
//!   target namespace for the whole floor, not per execution.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog;
use kubernetes_executor_actors::job::{JobConfig, build_job};
use kubernetes_executor_crds::KubernetesExecution;
use serde::Serialize;
use serde_json::json;

use crate::stats::Summary;
use crate::workload::{Kind, RUN_LABEL, Workload};

/// Label on the Job floor's Jobs and pods: the run id.
pub const FLOOR_LABEL: &str = "loadtest.kubernetes-executor.io/floor";
/// Label on a Job floor Job: the execution it runs for.
const FLOOR_EXECUTION_LABEL: &str = "loadtest.kubernetes-executor.io/execution";

/// What a floor does with the Job of a dry run or a real execution.
#[derive(Clone, Debug)]
pub enum JobMode {
    /// Create it suspended: API work only.
    Suspended,
    /// Create the operator's Job and wait for it to finish.
    Run(RunJobs),
}

impl JobMode {
    /// `api` (Jobs suspended) or `jobs` (Jobs run): the floor's name in
    /// reports and in its namespace.
    pub fn tag(&self) -> &'static str {
        match self {
            JobMode::Suspended => "api",
            JobMode::Run(_) => "jobs",
        }
    }
}

/// Where the Job floor's Jobs run and what they act on.
#[derive(Clone, Debug)]
pub struct RunJobs {
    /// Namespace of the Jobs (the operator's, where the action
    /// ServiceAccounts live).
    pub operator_namespace: String,
    /// Namespace of the targets (the load's: its Deployments and
    /// ConfigMaps exist there; the floor's executions live elsewhere).
    pub target_namespace: String,
    /// Give up waiting for the Jobs after this long.
    pub timeout: Duration,
}

/// What a floor run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Floor {
    /// `api` (Jobs suspended) or `jobs` (Jobs run).
    pub mode: &'static str,
    /// Executions attempted.
    pub executions: usize,
    /// API requests made by the floor's client (the Jobs' own — the Job
    /// controller's, the pod's, `run-action`'s — are not counted here).
    pub requests: usize,
    /// Failed requests.
    pub errors: usize,
    /// Jobs that ran to success (Job floor only).
    pub jobs_succeeded: usize,
    /// Jobs that failed or were not seen finishing in time (Job floor only).
    pub jobs_failed: usize,
    /// Wall time, seconds: first create to last outcome written.
    pub wall_s: f64,
    /// Executions per second.
    pub throughput: f64,
    /// Per-execution time from its create to its outcome written, ms.
    pub latency_ms: Summary,
    /// The API server's latency while this floor ran (set by the run).
    pub api_server: Option<crate::report::ApiServerLatency>,
}

fn suspended_job(name: &str, run_id: &str) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([(RUN_LABEL.to_string(), run_id.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            suspend: Some(true),
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "action".into(),
                        image: Some("kubernetes-executor:floor".into()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
                ..PodTemplateSpec::default()
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// The Job the operator would run for `created` (its target moved to
/// `jobs.target_namespace`), labelled as the floor's so that no operator
/// or other watch takes it for its own.
fn operator_job(created: &KubernetesExecution, run_id: &str, jobs: &RunJobs) -> Result<Job> {
    let mut spec = created.spec.clone();
    spec.target_resource.namespace = Some(jobs.target_namespace.clone());
    let v = catalog::validate(&spec, &jobs.target_namespace)
        .map_err(|r| anyhow::anyhow!("{}: {}", r.reason, r.message))?;
    let cfg = JobConfig {
        namespace: jobs.operator_namespace.clone(),
        image: "kubernetes-executor:floor".into(),
        ttl_seconds: kubernetes_executor_actors::job::DEFAULT_TTL_SECONDS,
        telemetry_env: Vec::new(),
    };
    let mut exec = created.clone();
    exec.spec = spec;
    let mut job = build_job(&exec, &v, None, &cfg);
    let labels: BTreeMap<String, String> = [
        (RUN_LABEL.to_string(), run_id.to_string()),
        (FLOOR_LABEL.to_string(), run_id.to_string()),
        (FLOOR_EXECUTION_LABEL.to_string(), created.name_any()),
    ]
    .into();
    job.metadata.labels = Some(labels.clone());
    if let Some(s) = job.spec.as_mut() {
        s.template
            .metadata
            .get_or_insert_with(Default::default)
            .labels = Some(labels);
    }
    Ok(job)
}

/// The action of each Job-running kind (what the floor binds).
fn actions(plan: &[Kind]) -> Vec<&'static catalog::ActionSpec> {
    let mut names: Vec<&str> = plan
        .iter()
        .filter_map(|k| match k {
            Kind::Dry => Some("ScaleDeployment"),
            Kind::Real => Some("PatchConfigMap"),
            Kind::Deny => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().filter_map(catalog::lookup).collect()
}

fn binding(action: &catalog::ActionSpec, run_id: &str, jobs: &RunJobs) -> RoleBinding {
    let sa = action.service_account();
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("ke-floor-{}", action.kebab())),
            namespace: Some(jobs.target_namespace.clone()),
            labels: Some([(FLOOR_LABEL.to_string(), run_id.to_string())].into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: sa.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa,
            namespace: Some(jobs.operator_namespace.clone()),
            ..Subject::default()
        }]),
    }
}

#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    errors: AtomicUsize,
}

impl Counts {
    fn request(&self, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs a floor for `w`'s plan in `w.namespace` (which must exist and must
/// not be watched by an operator) with `concurrency` clients.
pub async fn run(client: &Client, w: &Workload, concurrency: usize, mode: &JobMode) -> Floor {
    let execs: Api<KubernetesExecution> = Api::namespaced(client.clone(), &w.namespace);
    let counts = Arc::new(Counts::default());
    let run_jobs = match mode {
        JobMode::Run(j) => Some(j.clone()),
        JobMode::Suspended => None,
    };
    if let Some(j) = &run_jobs {
        let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &j.target_namespace);
        for a in actions(&w.plan) {
            if let Err(e) = rbs
                .create(&PostParams::default(), &binding(a, &w.run_id, j))
                .await
            {
                eprintln!("loadtest: job floor: bind {}: {e}", a.name);
            }
        }
    }
    // Outcomes of Jobs, as the Job watch sees them end.
    let (ended_tx, ended_rx) = futures::channel::mpsc::unbounded::<(String, bool)>();
    let job_watch = run_jobs
        .as_ref()
        .map(|j| watch_floor_jobs(client, j, &w.run_id, ended_tx));
    let created_at: Arc<std::sync::Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let jobs_api: Api<Job> = Api::namespaced(
        client.clone(),
        run_jobs
            .as_ref()
            .map_or(w.namespace.as_str(), |j| j.operator_namespace.as_str()),
    );
    let status_of = |kind: Kind, ok: bool| {
        let (phase, reason) = if ok {
            kind.expected()
        } else {
            (kubernetes_executor_crds::Phase::Failed, "JobFailed")
        };
        json!({ "status": { "phase": phase.as_str(), "reason": reason, "message": "floor" } })
    };
    let workers = (0..concurrency.max(1)).map(|_| {
        let (execs, jobs_api, next, w, counts, run_jobs, created_at) = (
            execs.clone(),
            jobs_api.clone(),
            next.clone(),
            w.clone(),
            counts.clone(),
            run_jobs.clone(),
            created_at.clone(),
        );
        async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= w.plan.len() {
                    return lat;
                }
                let t0 = Instant::now();
                let name = w.name(i);
                let kind = w.plan[i];
                let created = execs.create(&PostParams::default(), &w.execution(i)).await;
                counts.request(created.is_ok());
                let Ok(created) = created else { continue };
                let runs_job = matches!(kind, Kind::Real | Kind::Dry);
                match (&run_jobs, runs_job) {
                    (Some(j), true) => {
                        // The outcome is written when the Job ends (below).
                        if let Ok(mut m) = created_at.lock() {
                            m.insert(name.clone(), t0);
                        }
                        let ok = match operator_job(&created, &w.run_id, j) {
                            Ok(job) => jobs_api.create(&PostParams::default(), &job).await.is_ok(),
                            Err(e) => {
                                eprintln!("loadtest: job floor: {name}: {e:#}");
                                false
                            }
                        };
                        counts.request(ok);
                        continue;
                    }
                    (None, true) => {
                        let job = suspended_job(&format!("floor-{name}"), &w.run_id);
                        let ok = jobs_api.create(&PostParams::default(), &job).await.is_ok();
                        counts.request(ok);
                    }
                    _ => {}
                }
                let ok = execs
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&status_of(kind, true)),
                    )
                    .await
                    .is_ok();
                counts.request(ok);
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        }
    });
    let mut lat: Vec<f64> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let (mut succeeded, mut failed) = (0, 0);
    if let Some(j) = &run_jobs {
        let expected = created_at.lock().map(|m| m.len()).unwrap_or(0);
        let kinds: BTreeMap<String, Kind> =
            (0..w.plan.len()).map(|i| (w.name(i), w.plan[i])).collect();
        let writes = ended_rx
            .take(expected)
            .map(|(name, ok)| {
                let (execs, counts, created_at) =
                    (execs.clone(), counts.clone(), created_at.clone());
                let kind = kinds.get(&name).copied().unwrap_or(Kind::Dry);
                let status = status_of(kind, ok);
                async move {
                    let res = execs
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                    counts.request(res.is_ok());
                    let t0 = created_at.lock().ok().and_then(|m| m.get(&name).copied());
                    (ok, t0.map(|t| t.elapsed().as_secs_f64() * 1000.0))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<_>>();
        match tokio::time::timeout(j.timeout, writes).await {
            Ok(done) => {
                for (ok, l) in done {
                    if ok {
                        succeeded += 1
                    } else {
                        failed += 1
                    }
                    lat.extend(l);
                }
                failed += expected.saturating_sub(succeeded + failed);
            }
            Err(_) => {
                eprintln!(
                    "loadtest: job floor: Jobs still running after {:?}",
                    j.timeout
                );
                failed = expected;
            }
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    if let Some(t) = job_watch {
        t.abort();
    }
    if let Some(j) = &run_jobs
        && let Err(e) = clean_up(client, j, &w.run_id).await
    {
        eprintln!("loadtest: job floor: clean-up: {e:#}");
    }
    Floor {
        mode: mode.tag(),
        executions: w.plan.len(),
        requests: counts.requests.load(Ordering::Relaxed),
        errors: counts.errors.load(Ordering::Relaxed),
        jobs_succeeded: succeeded,
        jobs_failed: failed,
        wall_s,
        throughput: if wall_s > 0.0 {
            w.plan.len() as f64 / wall_s
        } else {
            0.0
        },
        latency_ms: Summary::of(lat),
        api_server: None,
    }
}

/// Watches the floor's Jobs; sends each one's execution and outcome once.
fn watch_floor_jobs(
    client: &Client,
    j: &RunJobs,
    run_id: &str,
    ended: futures::channel::mpsc::UnboundedSender<(String, bool)>,
) -> tokio::task::JoinHandle<()> {
    let mut seen = HashSet::new();
    let selector = format!("{FLOOR_LABEL}={run_id}");
    crate::workload::watch_job_ends(
        client,
        &j.operator_namespace,
        &selector,
        "job floor",
        move |job, ok, _| match job.labels().get(FLOOR_EXECUTION_LABEL) {
            Some(exec) if seen.insert(exec.clone()) => {
                ended.unbounded_send((exec.clone(), ok)).is_ok()
            }
            _ => true,
        },
    )
}

/// Deletes the Job floor's Jobs, pods and bindings, and waits (≤ 5 min)
/// for its pods to be gone, so that nothing of it competes with the
/// operator's run.
async fn clean_up(client: &Client, j: &RunJobs, run_id: &str) -> Result<()> {
    let sel = ListParams::default().labels(&format!("{FLOOR_LABEL}={run_id}"));
    let jobs: Api<Job> = Api::namespaced(client.clone(), &j.operator_namespace);
    jobs.delete_collection(&DeleteParams::background(), &sel)
        .await
        .context("delete the floor's Jobs")?;
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &j.target_namespace);
    rbs.delete_collection(&DeleteParams::default(), &sel)
        .await
        .context("delete the floor's bindings")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &j.operator_namespace);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = pods.list_metadata(&sel).await?.items.len()
            + jobs.list_metadata(&sel).await?.items.len();
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} Jobs and pods of the floor still there after 5 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
