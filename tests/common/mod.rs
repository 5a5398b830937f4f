//! Shared setup of the operator's integration tests: the test control plane
//! with kwok nodes and the job runner, deploy/ installed, and an operator
//! process running as its own ServiceAccount (least privilege).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use kubernetes_executor_crds::{
    KubernetesExecution, KubernetesExecutionSpec, Phase, TargetResource,
};
use kubernetes_executor_testkit::{self as testkit, Env, eventually, proc::Proc};
use serde_json::json;

pub const OPERATOR_NS: &str = "kubernetes-executor-system";
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
        let kubectl = env.bin_dir().join("kubectl");
        for f in [
            "deploy/namespace.yaml",
            "deploy/crds/kubernetesexecutions.yaml",
            "deploy/rbac/actions.yaml",
            "deploy/rbac/operator.yaml",
        ] {
            let out = std::process::Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(env.kubeconfig())
                .args(["apply", "--server-side", "-f"])
                .arg(repo().join(f))
                .output()
                .expect("run kubectl");
            assert!(
                out.status.success(),
                "kubectl apply {f}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(env.kubeconfig())
            .args([
                "wait",
                "--for=condition=Established",
                "crd/kubernetesexecutions.kubernetesexecution.kubernaut.io",
                "--timeout=60s",
            ])
            .output()
            .expect("kubectl wait");
        assert!(
            out.status.success(),
            "CRD established: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    env
}

/// A running operator process.
pub struct Operator {
    pub proc: Proc,
    pub metrics: String,
    pub health: String,
}

/// Starts an operator authenticated as its own ServiceAccount.
pub async fn start_operator(env: &Env, name: &str, extra: &[&str]) -> Operator {
    let client = env.client().await.expect("client");
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client, OPERATOR_NS);
    let tr: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({ "spec": { "expirationSeconds": 7200 } })).expect("tr");
    let token = sas
        .create_token_request("kubernetes-executor", &PostParams::default(), &tr)
        .await
        .expect("operator token")
        .status
        .and_then(|s| s.token)
        .expect("token");
    let kc = env.dir().join(format!("{name}.kubeconfig"));
    env.write_token_kubeconfig(&kc, &token).expect("kubeconfig");
    let (mp, hp) = (
        testkit::controlplane::free_port().expect("port"),
        testkit::controlplane::free_port().expect("port"),
    );
    let mut args: Vec<String> = vec![
        "run".into(),
        "--namespace".into(),
        OPERATOR_NS.into(),
        "--metrics-bind-address".into(),
        format!("127.0.0.1:{mp}"),
        "--health-probe-bind-address".into(),
        format!("127.0.0.1:{hp}"),
        "--image".into(),
        "kubernetes-executor:test".into(),
        "--log-format".into(),
        "text".into(),
    ];
    if !extra.contains(&"--policy-dir") {
        args.extend([
            "--policy-dir".to_string(),
            repo().join("policies").display().to_string(),
        ]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let env_vars = vec![
        ("KUBECONFIG".to_string(), kc.display().to_string()),
        (
            "RUST_LOG".to_string(),
            "info,kubernetes_executor_actors=debug".to_string(),
        ),
    ];
    let proc = Proc::spawn(name, binary(), &args, &env_vars, &env.dir().join("logs"))
        .expect("spawn operator");
    let op = Operator {
        proc,
        metrics: format!("127.0.0.1:{mp}"),
        health: format!("127.0.0.1:{hp}"),
    };
    eventually("operator ready", WAIT, || async {
        Ok(http_get(&op.health, "/readyz").await?.0 == 200)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", op.proc.log_tail(8000)));
    op
}

/// Minimal HTTP GET over loopback: (status, body).
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The operator shared by the tests of one binary (started once); returns
/// its metrics address.
pub async fn shared_operator() -> &'static str {
    static OP: std::sync::OnceLock<Operator> = std::sync::OnceLock::new();
    let env = env();
    // Blocking is fine: get_or_init runs the start on the testkit runtime's thread.
    let op = tokio::task::block_in_place(|| {
        OP.get_or_init(|| {
            testkit::block_on_testkit(
                async move { start_operator(env, "operator", &["--chaos"]).await },
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
