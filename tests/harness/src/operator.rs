//! Installing the operator's manifests into a test control plane and running
//! the operator as a process authenticated as its own ServiceAccount (least
//! privilege, as in a cluster). Used by the integration tests and the load
//! harness.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::controlplane::{ControlPlane, free_port};
use crate::proc::Proc;
use crate::runner::eventually;

/// Namespace the operator runs in.
pub const OPERATOR_NS: &str = "kubernetes-executor-system";

/// The manifests of `deploy/` the operator needs, in apply order.
pub const MANIFESTS: [&str; 5] = [
    "deploy/namespace.yaml",
    "deploy/crds/kubernetesexecutions.yaml",
    "deploy/rbac/actions.yaml",
    "deploy/rbac/operator.yaml",
    "deploy/admission/policies.yaml",
];

/// A user that may create executions in `default` but execute nothing; the
/// install probe uses it to see the authorization policy deny.
const PROBE_USER: &str = "system:serviceaccount:default:ke-admission-probe";

/// Runs kubectl against the control plane; fails with its stderr.
pub fn kubectl(cp: &ControlPlane, args: &[&str]) -> Result<String> {
    kubectl_with_input(cp, args, "")
}

/// [`kubectl`] with `input` on its standard input (`-f -`).
pub fn kubectl_with_input(cp: &ControlPlane, args: &[&str], input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(cp.bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run kubectl")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).context("kubectl stdin")?;
    }
    let out = child.wait_with_output().context("run kubectl")?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Applies the namespace, CRD and RBAC from `repo/deploy` and waits until
/// the CRD is established.
pub fn install(cp: &ControlPlane, repo: &Path) -> Result<()> {
    for f in MANIFESTS {
        let path = repo.join(f);
        kubectl(
            cp,
            &["apply", "--server-side", "-f", &path.display().to_string()],
        )?;
    }
    kubectl(
        cp,
        &[
            "wait",
            "--for=condition=Established",
            "crd/kubernetesexecutions.kubernetesexecution.kubernaut.io",
            "--timeout=60s",
        ],
    )?;
    wait_admission_enforcing(cp)
}

/// Admission policies take effect a moment after they are created: waits
/// until a server-side dry run shows the requester recorded and a create
/// without an `execute` grant refused.
pub fn wait_admission_enforcing(cp: &ControlPlane) -> Result<()> {
    let probe = cp.dir().join("admission-probe.yaml");
    std::fs::write(
        &probe,
        "apiVersion: kubernetesexecution.kubernaut.io/v1alpha1\nkind: KubernetesExecution\n\
         metadata: {name: admission-probe, namespace: default}\n\
         spec: {action: RolloutStatus, targetResource: {kind: Deployment, name: x, namespace: kube-system},\n\
         \x20 requester: {username: forged}}\n",
    )?;
    let rb = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "ke-admission-probe", "namespace": "default" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubernetes-executor-edit" },
        "subjects": [{ "kind": "ServiceAccount", "name": "ke-admission-probe", "namespace": "default" }],
    });
    let rb_file = cp.dir().join("admission-probe-rbac.json");
    std::fs::write(&rb_file, rb.to_string())?;
    kubectl(cp, &["apply", "-f", &rb_file.display().to_string()])?;
    let path = probe.display().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let recorded = kubectl(
            cp,
            &[
                "create",
                "--dry-run=server",
                "-o",
                "jsonpath={.spec.requester.username}",
                "-f",
                &path,
            ],
        )
        .map(|u| u != "forged" && !u.is_empty())
        .unwrap_or(false);
        let denied = match kubectl(
            cp,
            &[
                "--as",
                PROBE_USER,
                "create",
                "--dry-run=server",
                "-f",
                &path,
            ],
        ) {
            Ok(_) => false,
            Err(e) => e
                .to_string()
                .contains("may not execute RolloutStatus in namespace kube-system"),
        };
        if recorded && denied {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "admission policies not enforcing after 60s (requester recorded: {recorded}, cross-namespace create denied: {denied})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A running operator process.
pub struct OperatorProc {
    /// The supervised process.
    pub proc: Proc,
    /// `host:port` of /metrics and /actors.
    pub metrics: String,
    /// `host:port` of /healthz and /readyz.
    pub health: String,
}

/// How to start an operator.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// The `kubernetes-executor` binary.
    pub binary: PathBuf,
    /// Repository root (for `policies/` unless `extra` names `--policy-dir`).
    pub repo: PathBuf,
    /// Process name (log file `<dir>/logs/<name>.log`).
    pub name: String,
    /// Extra `run` flags.
    pub extra: Vec<String>,
    /// `RUST_LOG` of the operator.
    pub log_filter: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// Starts an operator authenticated as the `kubernetes-executor`
/// ServiceAccount and waits until /readyz answers 200 (up to `ready_within`).
pub async fn spawn_operator(
    cp: &ControlPlane,
    opts: &OperatorOptions,
    ready_within: Duration,
) -> Result<OperatorProc> {
    let sas: Api<ServiceAccount> = Api::namespaced(cp.client().await?, OPERATOR_NS);
    let tr: TokenRequest =
        serde_json::from_value(json!({ "spec": { "expirationSeconds": 7200 } }))?;
    let token = sas
        .create_token_request("kubernetes-executor", &PostParams::default(), &tr)
        .await
        .context("operator token")?
        .status
        .and_then(|s| s.token)
        .context("token request returned no token")?;
    let kc = cp.dir().join(format!("{}.kubeconfig", opts.name));
    cp.write_token_kubeconfig(&kc, &token)?;
    let (mp, hp) = (free_port()?, free_port()?);
    let mut args: Vec<String> = [
        "run",
        "--namespace",
        OPERATOR_NS,
        "--metrics-bind-address",
        &format!("127.0.0.1:{mp}"),
        "--health-probe-bind-address",
        &format!("127.0.0.1:{hp}"),
        "--log-format",
        "text",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // With --pod-name the operator reads its Jobs' image from that pod (as
    // in a cluster), unless the test names one.
    if !opts
        .extra
        .iter()
        .any(|a| a == "--image" || a == "--pod-name")
    {
        args.push("--image".into());
        args.push("kubernetes-executor:test".into());
    }
    if !opts.extra.iter().any(|a| a == "--policy-dir") {
        args.push("--policy-dir".into());
        args.push(opts.repo.join("policies").display().to_string());
    }
    args.extend(opts.extra.iter().cloned());
    let mut env = vec![
        ("KUBECONFIG".to_string(), kc.display().to_string()),
        ("RUST_LOG".to_string(), opts.log_filter.clone()),
    ];
    env.extend(opts.env.iter().cloned());
    let proc = Proc::spawn(
        &opts.name,
        &opts.binary,
        &args,
        &env,
        &cp.dir().join("logs"),
    )?;
    let op = OperatorProc {
        proc,
        metrics: format!("127.0.0.1:{mp}"),
        health: format!("127.0.0.1:{hp}"),
    };
    if let Err(e) = eventually("operator ready", ready_within, || async {
        Ok(http_get(&op.health, "/readyz").await?.0 == 200)
    })
    .await
    {
        anyhow::bail!("{e}\n{}", op.proc.log_tail(8000));
    }
    Ok(op)
}

/// Minimal HTTP GET over loopback: (status, body).
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    http_request(addr, "GET", path).await
}

/// Minimal HTTP POST (empty body) over loopback: (status, body).
pub async fn http_post(addr: &str, path: &str) -> Result<(u16, String)> {
    http_request(addr, "POST", path).await
}

async fn http_request(addr: &str, method: &str, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
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
