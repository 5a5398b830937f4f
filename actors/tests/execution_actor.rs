//! The ExecutionActor on its own: stub Policy and Rbac actors, a mock API
//! server (a tower service answering the requests the actor makes), no
//! control plane. Checks what the actor writes (every status it applies,
//! in order), which requests it makes, and that it stops when done.

#![allow(clippy::disallowed_types)] // the mock API server is a kube::Client

mod mock_api;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubernetes_executor_actors::context::{Context, Settings};
use kubernetes_executor_actors::execution::{ExecutionActor, ExecutionArgs, ExecutionMsg};
use kubernetes_executor_actors::health::Health;
use kubernetes_executor_actors::job::JobConfig;
use kubernetes_executor_actors::k8s::KubeApi;
use kubernetes_executor_actors::metrics::Metrics;
use kubernetes_executor_actors::peers::{Peers, Singleton};
use kubernetes_executor_actors::policy::{ConditionOutcome, PolicyMsg, Verdict};
use kubernetes_executor_actors::rbac::RbacMsg;
use kubernetes_executor_actors::registry::ActorRegistry;
use kubernetes_executor_crds::{
    KubernetesExecution, KubernetesExecutionSpec, Phase, Requester, TargetResource, reasons,
};
use mock_api::Req;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};

/// What the mock API server saw: `METHOD path` and, for status writes,
/// the status applied.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    statuses: Vec<Value>,
    jobs: Vec<Value>,
    /// What the RbacActor was asked: `grant` / `revoke`.
    rbac: Vec<&'static str>,
    /// How long the target read and the Job create take (a loaded API
    /// server).
    slow: Duration,
    /// Once the Job runs: the execution is deleted (no finalizer) instead
    /// of the Job completing.
    deleted_while_running: bool,
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "dep-uid", "resourceVersion": "7",
                     "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}
    })
}

/// A mock API server for one execution `shop/scale-web`.
fn api_server(exec: KubernetesExecution, seen: Arc<Mutex<Seen>>) -> kube::Client {
    let slow = seen.lock().unwrap_or_else(|e| e.into_inner()).slow;
    let delay = move |method: &str, path: &str| match (method, path) {
        ("GET", "/apis/apps/v1/namespaces/shop/deployments/web")
        | ("POST", "/apis/batch/v1/namespaces/kubernetes-executor-system/jobs") => slow,
        _ => Duration::ZERO,
    };
    mock_api::slow_client(
        move |r: Req| {
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            s.requests.push(format!("{} {}", r.method, r.path));
            match (r.method.as_str(), r.path.as_str()) {
                ("PATCH", p) if p.ends_with("/kubernetesexecutions/scale-web/status") => {
                    s.statuses.push(r.body["status"].clone());
                    let mut obj = serde_json::to_value(&exec).unwrap_or_default();
                    obj["status"] = r.body["status"].clone();
                    (200, obj)
                }
                ("PATCH", p) if p.ends_with("/kubernetesexecutions/scale-web") => {
                    // The finalizer (merge patch of metadata).
                    let mut obj = serde_json::to_value(&exec).unwrap_or_default();
                    obj["metadata"]["finalizers"] = r.body["metadata"]["finalizers"].clone();
                    (200, obj)
                }
                ("POST", "/apis/batch/v1/namespaces/kubernetes-executor-system/jobs") => {
                    s.jobs.push(r.body.clone());
                    (201, r.body)
                }
                ("GET", "/api/v1/namespaces/kubernetes-executor-system/pods") => (
                    200,
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
                ),
                ("GET", "/apis/apps/v1/namespaces/shop/deployments/web") => (200, deployment()),
                ("GET", "/api/v1/nodes") => (
                    200,
                    json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [
                    {"metadata": {"name": "n1", "labels": {}},
                     "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                "allocatable": {"cpu": "4"}}}]}),
                ),
                ("GET", "/api/v1/namespaces/shop/pods") => (
                    200,
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
                ),
                ("GET", "/api/v1/namespaces/shop") => (
                    200,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
                ),
                ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews") => {
                    let mut review = r.body.clone();
                    review["status"] = json!({"allowed": true});
                    (201, review)
                }
                ("POST", p) if p.ends_with("/events") => (201, r.body),
                ("DELETE", p)
                    if p.starts_with(
                        "/apis/batch/v1/namespaces/kubernetes-executor-system/jobs/",
                    ) =>
                {
                    (
                        200,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                    )
                }
                _ => mock_api::failure(404, "NotFound"),
            }
        },
        delay,
    )
}

/// A PolicyActor stand-in that answers every decision with `violations`
/// and every condition with "holds".
struct StubPolicy;

impl Actor for StubPolicy {
    type Msg = PolicyMsg;
    type State = Vec<String>;
    type Arguments = Vec<String>;

    async fn pre_start(
        &self,
        _: ActorRef<PolicyMsg>,
        violations: Vec<String>,
    ) -> Result<Vec<String>, ActorProcessingErr> {
        Ok(violations)
    }

    async fn handle(
        &self,
        _: ActorRef<PolicyMsg>,
        msg: PolicyMsg,
        violations: &mut Vec<String>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PolicyMsg::Evaluate { reply, .. } => {
                let _ = reply.send(Verdict {
                    violations: violations.clone(),
                    digest: "sha256:stub".into(),
                    error: None,
                });
            }
            PolicyMsg::Condition { reply, .. } => {
                let _ = reply.send(Ok(ConditionOutcome::Holds));
            }
            _ => {}
        }
        Ok(())
    }
}

/// An RbacActor stand-in: every grant and revocation succeeds (and is
/// recorded in `Seen::rbac`).
struct StubRbac;

impl Actor for StubRbac {
    type Msg = RbacMsg;
    type State = Arc<Mutex<Seen>>;
    type Arguments = Arc<Mutex<Seen>>;

    async fn pre_start(
        &self,
        _: ActorRef<RbacMsg>,
        seen: Arc<Mutex<Seen>>,
    ) -> Result<Arc<Mutex<Seen>>, ActorProcessingErr> {
        Ok(seen)
    }

    async fn handle(
        &self,
        _: ActorRef<RbacMsg>,
        msg: RbacMsg,
        seen: &mut Arc<Mutex<Seen>>,
    ) -> Result<(), ActorProcessingErr> {
        let (what, reply) = match msg {
            RbacMsg::Grant { reply, .. } => ("grant", reply),
            RbacMsg::Revoke { reply, .. } => ("revoke", reply),
            _ => return Ok(()),
        };
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .rbac
            .push(what);
        let _ = reply.send(Ok(()));
        Ok(())
    }
}

fn execution() -> KubernetesExecution {
    let spec = KubernetesExecutionSpec {
        dry_run: true,
        parameters: [("replicas".to_string(), "3".to_string())].into(),
        requester: Some(Requester {
            username: "alice".into(),
            uid: None,
            groups: vec!["team".into()],
        }),
        ..KubernetesExecutionSpec::new(
            "ScaleDeployment",
            TargetResource::new("Deployment", "web", None),
        )
    };
    let mut e = KubernetesExecution::new("scale-web", spec);
    e.metadata.namespace = Some("shop".into());
    e.metadata.uid = Some("exec-uid".into());
    e.metadata.resource_version = Some("1".into());
    e.metadata.generation = Some(1);
    e
}

/// Runs one execution actor to its end against the mock; what it wrote.
async fn run(prefix: &str, violations: Vec<String>) -> (Seen, Arc<ActorRegistry>) {
    run_exec(prefix, violations, execution(), false).await
}

/// [`run`] with a given execution.
async fn run_exec(
    prefix: &str,
    violations: Vec<String>,
    exec: KubernetesExecution,
    listed: bool,
) -> (Seen, Arc<ActorRegistry>) {
    run_with(Arc::default(), prefix, violations, exec, listed).await
}

/// Runs the actor against a mock set up as `seen` says.
async fn run_with(
    seen: Arc<Mutex<Seen>>,
    prefix: &str,
    violations: Vec<String>,
    exec: KubernetesExecution,
    listed: bool,
) -> (Seen, Arc<ActorRegistry>) {
    let client = api_server(exec.clone(), seen.clone());
    let peers = Peers::with_prefix(prefix);
    let (policy, _) = Actor::spawn(Some(peers.name(Singleton::Policy)), StubPolicy, violations)
        .await
        .expect("stub policy");
    let (rbac, _) = Actor::spawn(Some(peers.name(Singleton::Rbac)), StubRbac, seen.clone())
        .await
        .expect("stub rbac");
    let registry = Arc::new(ActorRegistry::default());
    let ctx = Arc::new(Context {
        api: KubeApi::new(client, "kubernetes-executor-system", None),
        peers: peers.clone(),
        settings: Arc::new(Settings {
            job: JobConfig {
                namespace: "kubernetes-executor-system".into(),
                image: "img".into(),
                ttl_seconds: 60,
                telemetry_env: Vec::new(),
            },
            timeout_grace: Duration::from_secs(30),
            chaos: false,
            inline_conditions: vec![],
            history: Default::default(),
            max_live_executions: 1000,
        }),
        metrics: Arc::new(Metrics::new().expect("metrics")),
        health: Arc::new(Health::default()),
        registry: registry.clone(),
        admission: Arc::new(tokio::sync::Semaphore::new(4)),
        views: None,
        access: Default::default(),
    });
    let (actor, handle) = Actor::spawn(
        Some(peers.execution("exec-uid")),
        ExecutionActor,
        ExecutionArgs {
            exec,
            ctx,
            restarts: 0,
            listed,
        },
    )
    .await
    .expect("spawn");
    // The Job controller's part: once the actor created its Job and
    // recorded Executing, the Job completes (as the JobWatcher would say).
    let job_completes = async {
        loop {
            let job = {
                let s = seen.lock().unwrap_or_else(|e| e.into_inner());
                let executing = s.statuses.iter().any(|st| st["phase"] == "Executing");
                s.jobs.first().cloned().filter(|_| executing)
            };
            let gone = seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .deleted_while_running;
            if job.is_some() && gone {
                let _ = actor.cast(ExecutionMsg::Gone);
                return;
            }
            if let Some(mut job) = job {
                job["status"] = json!({"succeeded": 1,
                    "conditions": [{"type": "Complete", "status": "True"}]});
                let job = serde_json::from_value(job).expect("job");
                let _ = actor.cast(ExecutionMsg::JobChanged(Box::new(job)));
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::pin!(handle);
    let finished = async {
        tokio::select! {
            _ = &mut handle => {}
            _ = job_completes => { let _ = (&mut handle).await; }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), finished)
        .await
        .expect("the actor stops by itself when the execution ends");
    drop(actor);
    policy.stop(None);
    rbac.stop(None);
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    (seen, registry)
}

fn phases(seen: &Seen) -> Vec<(String, String)> {
    seen.statuses
        .iter()
        .map(|s| {
            (
                s["phase"].as_str().unwrap_or_default().to_string(),
                s["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_validates_then_runs_its_job_as_a_server_side_dry_run() {
    let (seen, registry) = run("allow-", vec![]).await;
    let ph: Vec<String> = phases(&seen).into_iter().map(|(p, _)| p).collect();
    // Validating and Preparing pass in milliseconds: not written on their
    // own; the Executing write carries what they recorded (the decision).
    assert_eq!(ph, ["Executing", "Completed"], "{:#?}", seen.requests);
    let executing = &seen.statuses[0];
    assert_eq!(
        executing["validationResults"]["policyDecision"]["allowed"], true,
        "{executing}"
    );
    let last = seen.statuses.last().expect("a status");
    assert_eq!(last["reason"], reasons::DRY_RUN_SUCCEEDED, "{last}");
    let decision = &last["validationResults"]["policyDecision"];
    assert_eq!(decision["allowed"], true, "{last}");
    assert_eq!(decision["policySetDigest"], "sha256:stub");
    assert!(
        last["validationStartTime"].is_string() && last["executionCompleteTime"].is_string(),
        "{last}"
    );
    // Who asked was checked; one Job, a server-side dry run under the
    // action's ServiceAccount; the actor unregistered.
    assert!(
        seen.requests
            .iter()
            .any(|r| r == "POST /apis/authorization.k8s.io/v1/subjectaccessreviews"),
        "{:#?}",
        seen.requests
    );
    assert_eq!(seen.jobs.len(), 1);
    let pod = &seen.jobs[0]["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        "kubernetes-executor-scale-deployment"
    );
    let args = pod["containers"][0]["args"].as_array().expect("args");
    assert!(args.iter().any(|a| a == "--dry-run"), "{args:?}");
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--param" && w[1] == "replicas=3"),
        "{args:?}"
    );
    assert_eq!(registry.executions(), 0);
    // Its grants were made and taken back (what the denial below must not
    // spend requests on).
    assert_eq!(seen.rbac, ["grant", "revoke"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_load_one_progress_write_before_the_job_runs() {
    // A loaded API server: validation (the target read) and preparation
    // (the Job create) each outlast the passing-phase window. Validating
    // is written (the execution was picked up); Preparing is recorded
    // with Executing, not written on its own.
    let seen = Arc::new(Mutex::new(Seen {
        slow: Duration::from_millis(800),
        ..Seen::default()
    }));
    let (seen, _) = run_with(seen, "slow-", vec![], execution(), false).await;
    let ph: Vec<String> = phases(&seen).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        ph,
        ["Validating", "Executing", "Completed"],
        "{:#?}",
        seen.requests
    );
    let executing = &seen.statuses[1];
    assert!(
        executing["validationCompleteTime"].is_string()
            && executing["validationResults"]["policyDecision"]["allowed"] == true,
        "Executing carries what validation and preparation recorded: {executing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_deleted_while_its_job_runs_takes_its_job_and_grants_along() {
    // A dry run holds no finalizer: deleted while its Job runs, the object
    // is gone at once, and the supervisor tells the actor (`Gone`).
    let seen = Arc::new(Mutex::new(Seen {
        deleted_while_running: true,
        ..Seen::default()
    }));
    let (seen, registry) = run_with(seen, "gone-", vec![], execution(), false).await;
    assert!(
        !seen
            .requests
            .iter()
            .any(|r| r.starts_with("PATCH") && r.ends_with("/kubernetesexecutions/scale-web")),
        "no finalizer added or removed: {:#?}",
        seen.requests
    );
    assert!(
        seen.requests.iter().any(|r| r.starts_with(
            "DELETE /apis/batch/v1/namespaces/kubernetes-executor-system/jobs/ke-exec-uid-1"
        )),
        "its Job deleted: {:#?}",
        seen.requests
    );
    assert_eq!(seen.rbac, ["grant", "revoke"], "its grants revoked");
    assert_eq!(
        phases(&seen).last().map(|(p, _)| p.as_str()),
        Some("Executing"),
        "nothing written after it was gone"
    );
    assert_eq!(registry.executions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denial_fails_the_execution_with_the_decision_recorded() {
    let (seen, _) = run("deny-", vec!["scale-to-3 is forbidden".into()]).await;
    let p = phases(&seen);
    assert_eq!(
        p.last(),
        Some(&(
            Phase::Failed.to_string(),
            reasons::POLICY_DENIED.to_string()
        )),
        "{p:?}"
    );
    let last = seen.statuses.last().expect("a status");
    assert_eq!(
        last["validationResults"]["policyDecision"]["allowed"],
        false
    );
    assert_eq!(
        last["validationResults"]["policyDecision"]["violations"],
        json!(["scale-to-3 is forbidden"])
    );
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("scale-to-3 is forbidden")),
        "{last}"
    );
    // Denied before any lock or grant was taken: nothing to release, and
    // no request spent on releasing it.
    assert!(seen.rbac.is_empty(), "{:?}", seen.rbac);
    assert!(
        !seen.requests.iter().any(|r| r.contains("/leases")),
        "{:#?}",
        seen.requests
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_an_earlier_operator_may_have_started_is_cleaned_up_even_when_denied() {
    // First seen in a full list (at start or after a leader change): an
    // earlier operator may have got to its grants (status is written
    // late), so a denial still revokes them.
    let (seen, _) = run_exec(
        "old-",
        vec!["scale-to-3 is forbidden".into()],
        execution(),
        true,
    )
    .await;
    assert_eq!(
        phases(&seen).last().map(|(_, r)| r.as_str()),
        Some(reasons::POLICY_DENIED)
    );
    assert_eq!(seen.rbac, ["revoke"]);
}
