//! The test job runner: plays the kubelet for one node of the test control
//! plane. Pods bound to that node are marked Running; a pod whose container
//! runs `run-action` (the operator's Job pods) is executed for real — the
//! operator binary runs as a subprocess with the container's arguments and a
//! TokenRequest token of the pod's ServiceAccount, so the action's real RBAC
//! applies — and the pod is then reported terminated with the exit code and
//! termination message, so the real Job controller completes or fails the Job.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::oneshot;

use crate::controlplane::{create_ready_node, write_token_kubeconfig};

/// Where the runner writes a pod's termination message; `run-action` reads
/// the path from this variable (default `/dev/termination-log`).
pub const TERMINATION_LOG_ENV: &str = "KE_TERMINATION_LOG";

/// Settings of a [`JobRunner`].
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Name of the node the runner registers and serves.
    pub node: String,
    /// The `kubernetes-executor` binary to run for `run-action` pods.
    pub binary: PathBuf,
    /// API server URL.
    pub server: String,
    /// CA file of the API server.
    pub ca_cert: PathBuf,
    /// Scratch directory (kubeconfigs, termination logs).
    pub work_dir: PathBuf,
}

/// A running job runner; stops when dropped.
pub struct JobRunner {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Running = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

impl JobRunner {
    /// Registers the node and starts serving its pods on the current runtime.
    pub async fn start(client: Client, cfg: RunnerConfig) -> Result<JobRunner> {
        std::fs::create_dir_all(&cfg.work_dir)?;
        create_ready_node(&client, &cfg.node, false).await?;
        mark_node_ready(&client, &cfg.node).await?;
        let cfg = Arc::new(cfg);
        let task = tokio::spawn(run(client, cfg));
        Ok(JobRunner { task })
    }
}

async fn mark_node_ready(client: &Client, node: &str) -> Result<()> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let now = Timestamp::now().to_string();
    let status = json!({ "status": {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubernetes-executor test job runner",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
        "allocatable": { "cpu": "64", "memory": "256Gi", "pods": "1000" },
        "capacity": { "cpu": "64", "memory": "256Gi", "pods": "1000" },
    }});
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

async fn run(client: Client, cfg: Arc<RunnerConfig>) {
    let running: Running = Arc::default();
    let pods: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node));
    let mut stream = watcher::watcher(pods, wc).default_backoff().boxed();
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                eprintln!("job runner: watch error: {e}");
                continue;
            }
        };
        let pod = match ev {
            Event::Apply(p) | Event::InitApply(p) => p,
            _ => continue,
        };
        let uid = pod.uid().unwrap_or_default();
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(stop) = running.lock().ok().and_then(|mut m| m.remove(&uid)) {
                let _ = stop.send(());
            }
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            let _ = api
                .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await;
            continue;
        }
        let started = running.lock().map(|m| m.contains_key(&uid)).unwrap_or(true);
        if started || phase == "Succeeded" || phase == "Failed" || phase == "Running" {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = running.lock() {
            m.insert(uid.clone(), tx);
        }
        let client = client.clone();
        let cfg = cfg.clone();
        let running = running.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_pod(&client, &cfg, &pod, rx).await {
                eprintln!(
                    "job runner: pod {}/{}: {e:#}",
                    pod.namespace().unwrap_or_default(),
                    pod.name_any()
                );
            }
            let _ = running.lock().map(|mut m| m.remove(&uid));
        });
    }
}

fn container_state_running(pod: &Pod, now: &str) -> serde_json::Value {
    let statuses: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "ready": true, "started": true, "restartCount": 0,
                "state": { "running": { "startedAt": now } },
            })
        })
        .collect();
    json!({ "status": {
        "phase": "Running", "startTime": now, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "conditions": [
            { "type": "Initialized", "status": "True", "lastTransitionTime": now },
            { "type": "Ready", "status": "True", "lastTransitionTime": now },
            { "type": "ContainersReady", "status": "True", "lastTransitionTime": now },
        ],
        "containerStatuses": statuses,
    }})
}

async fn serve_pod(
    client: &Client,
    cfg: &RunnerConfig,
    pod: &Pod,
    stop: oneshot::Receiver<()>,
) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = Timestamp::now().to_string();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(container_state_running(pod, &now)),
    )
    .await
    .context("mark pod Running")?;

    let spec = pod.spec.clone().unwrap_or_default();
    let Some(container) = spec.containers.first() else {
        return Ok(());
    };
    let args = container.args.clone().unwrap_or_default();
    if args.first().map(String::as_str) != Some("run-action") {
        // Not an operator Job pod: keep it running, like kwok does.
        return Ok(());
    }

    let sa = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let token = request_token(client, &ns, &sa, pod).await?;
    let dir = cfg.work_dir.join(pod.uid().unwrap_or_else(|| name.clone()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    write_token_kubeconfig(&kubeconfig, &cfg.server, &cfg.ca_cert, &token)?;
    let term_log = dir.join("termination-log");
    let _ = std::fs::remove_file(&term_log);

    let mut cmd = tokio::process::Command::new(&cfg.binary);
    cmd.args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KUBECONFIG", &kubeconfig)
        .env(TERMINATION_LOG_ENV, &term_log)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout.log"))?)
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .kill_on_drop(true);
    for e in container.env.iter().flatten() {
        if let Some(v) = &e.value {
            cmd.env(&e.name, v);
        } else if let Some(r) = e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            // As the kubelet does: read the referenced Secret key.
            let secrets: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(client.clone(), &ns);
            let secret = secrets
                .get(&r.name)
                .await
                .with_context(|| format!("secret {} for env {}", r.name, e.name))?;
            let value = secret
                .data
                .and_then(|d| d.get(&r.key).cloned())
                .map(|b| String::from_utf8_lossy(&b.0).to_string())
                .with_context(|| format!("key {} of secret {}", r.key, r.name))?;
            cmd.env(&e.name, value);
        } else if let Some(f) = e.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) {
            let v = match f.field_path.as_str() {
                "metadata.name" => name.clone(),
                "metadata.namespace" => ns.clone(),
                "spec.nodeName" => cfg.node.clone(),
                "spec.serviceAccountName" => sa.clone(),
                _ => String::new(),
            };
            cmd.env(&e.name, v);
        }
    }
    let mut child = cmd.spawn().context("spawn run-action")?;
    let code = tokio::select! {
        status = child.wait() => status?.code().unwrap_or(137),
        _ = stop => {
            let _ = child.kill().await;
            return Ok(());
        }
    };
    let mut message = std::fs::read_to_string(&term_log).unwrap_or_default();
    if message.len() > 4096 {
        let mut cut = 4096;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let end = Timestamp::now().to_string();
    let status = json!({ "status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [
            { "type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": end },
            { "type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": end },
        ],
        "containerStatuses": [{
            "name": container.name, "image": container.image.clone().unwrap_or_default(), "imageID": "",
            "ready": false, "started": false, "restartCount": 0,
            "state": { "terminated": {
                "exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "message": message,
                "startedAt": now, "finishedAt": end,
            }},
        }],
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .context("mark pod terminated")?;
    Ok(())
}

async fn request_token(client: &Client, ns: &str, sa: &str, pod: &Pod) -> Result<String> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        }),
        ..Default::default()
    };
    let resp: TokenRequest = sas
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .with_context(|| format!("TokenRequest for {ns}/{sa}"))?;
    resp.status
        .and_then(|s| s.token)
        .context("TokenRequest returned no token")
}

/// Waits until `f` holds, polling every 100 ms, or fails after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what} {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
