//! Shared setup of the operator's integration tests: the test control plane
//! with kwok nodes and the job runner, deploy/ installed, and an operator
//! process running as its own ServiceAccount (least privilege).
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use kubernetes_executor_crds::{
    KubernetesExecution, KubernetesExecutionSpec, Phase, TargetResource,
};
use kubernetes_executor_testkit::{self as testkit, Env, eventually};
use serde_json::json;

pub use testkit::operator::OPERATOR_NS;
pub const WAIT: Duration = Duration::from_secs(90);

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kubernetes-executor"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared control plane with deploy/ applied.
pub fn env() -> &'static Env {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let env = testkit::shared(Some(binary()));
    INSTALLED.get_or_init(|| {
        testkit::operator::install(env, &repo())
            .unwrap_or_else(|e| panic!("install deploy/: {e:#}"))
    });
    env
}

/// A running operator process.
pub type Operator = testkit::operator::OperatorProc;

/// Starts an operator authenticated as its own ServiceAccount.
pub async fn start_operator(env: &Env, name: &str, extra: &[&str]) -> Operator {
    start_operator_with_env(env, name, extra, &[]).await
}

/// [`start_operator`] with extra environment variables.
pub async fn start_operator_with_env(
    env: &Env,
    name: &str,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> Operator {
    let opts = testkit::operator::OperatorOptions {
        env: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        binary: binary().to_path_buf(),
        repo: repo(),
        name: name.to_string(),
        extra: extra.iter().map(|s| s.to_string()).collect(),
        log_filter: "info,kubernetes_executor_actors=debug".to_string(),
    };
    testkit::operator::spawn_operator(env, &opts, WAIT)
        .await
        .unwrap_or_else(|e| panic!("start operator {name}: {e:#}"))
}

pub use testkit::operator::{http_get, http_post};

/// The operator shared by the tests of one binary (started once); returns
/// its metrics address.
pub async fn shared_operator() -> &'static str {
    static OP: std::sync::OnceLock<Operator> = std::sync::OnceLock::new();
    let env = env();
    // Blocking is fine: get_or_init runs the start on the testkit runtime's thread.
    let op = tokio::task::block_in_place(|| {
        OP.get_or_init(|| {
            testkit::block_on_testkit(
                // Inline conditions only where a test opts in by namespace prefix.
                async move {
                    start_operator(
                        env,
                        "operator",
                        &["--chaos", "--allow-inline-conditions=inline-ok-*"],
                    )
                    .await
                },
            )
        })
    });
    &op.metrics
}

pub async fn namespace(client: &Client, prefix: &str) -> String {
    let ns = testkit::unique_name(prefix);
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": ns } })).expect("ns"),
    )
    .await
    .expect("create namespace");
    ns
}

/// A Deployment whose pods run on kwok nodes (ready at once); with
/// `schedulable = false` its pods never schedule (rollouts never finish).
pub async fn deployment(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
    labels: serde_json::Value,
    schedulable: bool,
) -> Deployment {
    let selector = if schedulable {
        json!({ "type": "kwok" })
    } else {
        // A real but cordoned node: the nodeSelector matches (preconditions
        // pass) yet no pod can ever be scheduled, so rollouts never finish.
        let node = "ke-cordoned-node";
        testkit::controlplane::create_ready_node(client, node, true)
            .await
            .expect("cordoned node");
        Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
            .patch(
                node,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "spec": { "unschedulable": true } })),
            )
            .await
            .expect("cordon");
        json!({ "kubernetes.io/hostname": node })
    };
    let mut meta_labels = json!({ "app": name });
    if let (Some(m), Some(extra)) = (meta_labels.as_object_mut(), labels.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": meta_labels },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "nodeSelector": selector,
                    "tolerations": [{ "key": testkit::KWOK_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule" }],
                    "containers": [{ "name": "app", "image": "nginx:1.27" }],
                },
            },
        },
    }))
    .expect("deployment");
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &d)
        .await
        .expect("create deployment")
}

pub fn spec(
    action: &str,
    kind: &str,
    name: &str,
    ns: Option<&str>,
    params: &[(&str, &str)],
) -> KubernetesExecutionSpec {
    KubernetesExecutionSpec {
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..KubernetesExecutionSpec::new(action, TargetResource::new(kind, name, ns))
    }
}

/// `s` as a dry run.
pub fn dry_run(mut s: KubernetesExecutionSpec) -> KubernetesExecutionSpec {
    s.dry_run = true;
    s
}

pub async fn create(
    client: &Client,
    ns: &str,
    name: &str,
    spec: KubernetesExecutionSpec,
) -> KubernetesExecution {
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &KubernetesExecution::new(name, spec),
    )
    .await
    .expect("create execution")
}

/// Pauses (or resumes) new executions whose execution or target namespace
/// is `ns` (the kill switch's namespace annotation).
pub async fn set_paused(client: &Client, ns: &str, paused: bool) {
    let value = if paused {
        json!("true")
    } else {
        serde_json::Value::Null
    };
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({ "metadata": { "annotations": { "kubernetesexecution.kubernaut.io/paused": value } } }),
            ),
        )
        .await
        .expect("set the namespace's pause annotation");
}

/// Creates an execution carrying one annotation (the operator's chaos knobs).
pub async fn create_annotated(
    client: &Client,
    ns: &str,
    name: &str,
    spec: KubernetesExecutionSpec,
    annotation: (&str, &str),
) -> KubernetesExecution {
    let mut e = KubernetesExecution::new(name, spec);
    e.metadata.annotations = Some([(annotation.0.to_string(), annotation.1.to_string())].into());
    Api::<KubernetesExecution>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &e)
        .await
        .expect("create execution")
}

/// A bare pod on the kwok nodes (running at once).
pub async fn kwok_pod(client: &Client, ns: &str, name: &str) -> k8s_openapi::api::core::v1::Pod {
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "nodeSelector": { "type": "kwok" },
            "tolerations": [{ "key": testkit::KWOK_TAINT_KEY, "operator": "Exists" }],
            "containers": [{ "name": "main", "image": "busybox" }],
        },
    }))
    .expect("pod");
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

/// A client authenticated with a fresh token of ServiceAccount `ns/name`.
pub async fn token_client(ns: &str, name: &str) -> Client {
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(env().client().await.expect("client"), ns);
    let tr = serde_json::from_value(json!({ "spec": { "expirationSeconds": 3600 } })).expect("tr");
    let token = sas
        .create_token_request(name, &PostParams::default(), &tr)
        .await
        .expect("token request")
        .status
        .and_then(|s| s.token)
        .expect("token");
    let kc = env().dir().join(format!("{ns}-{name}.kubeconfig"));
    env()
        .write_token_kubeconfig(&kc, &token)
        .expect("kubeconfig");
    testkit::client_from_kubeconfig(&kc).await.expect("client")
}

/// Waits for a terminal phase and returns the execution.
pub async fn wait_terminal(client: &Client, ns: &str, name: &str) -> KubernetesExecution {
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{ns}/{name} terminal"), WAIT, || async {
        Ok(api.get(name).await?.phase().is_terminal())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    api.get(name).await.expect("get")
}

pub fn phase(e: &KubernetesExecution) -> Phase {
    e.phase()
}

pub fn reason(e: &KubernetesExecution) -> String {
    e.status
        .as_ref()
        .and_then(|s| s.reason.clone())
        .unwrap_or_default()
}

pub fn message(e: &KubernetesExecution) -> String {
    e.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

/// How many times an Event with `reason` was recorded about execution `name`
/// (counting event series).
pub fn event_count(
    events: &[k8s_openapi::api::events::v1::Event],
    name: &str,
    reason: &str,
) -> i32 {
    events
        .iter()
        .filter(|ev| {
            ev.regarding.as_ref().and_then(|x| x.name.as_deref()) == Some(name)
                && ev.reason.as_deref() == Some(reason)
        })
        .map(|ev| ev.series.as_ref().map(|s| s.count).unwrap_or(1))
        .sum()
}

/// Serializes tests of one binary that start their own operators (two
/// operators at once would both act: there is no leader election yet).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Waits until no Job of the execution with `uid` is left (the operator's
/// cleanup or the garbage collector removed them).
pub async fn wait_jobs_gone(client: &Client, uid: &str, what: &str) {
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    let selector = format!("{}={uid}", kubernetes_executor_crds::labels::EXECUTION_UID);
    eventually(what, WAIT, || async {
        Ok(jobs
            .list(&kube::api::ListParams::default().labels(&selector))
            .await?
            .items
            .is_empty())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
