//! `run`: wiring only — configuration → telemetry → clients → HTTP →
//! leader election → the actor tree → shutdown. What the tree is and how
//! it recovers lives in `actors::tree`; leader election in `leader`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kubernetes_executor_actors::context::Settings;
use kubernetes_executor_actors::health::Health;
use kubernetes_executor_actors::job::JobConfig;
use kubernetes_executor_actors::k8s::KubeApi;
use kubernetes_executor_actors::k8s::clients::Clients;
use kubernetes_executor_actors::metrics::Metrics;
use kubernetes_executor_actors::peers::Peers;
use kubernetes_executor_actors::registry::ActorRegistry;
use kubernetes_executor_actors::tree::{self, TreeArgs, TreeMsg};
use kubernetes_executor_actors::tunables::{ADMISSION_CHECK_INTERVAL, TIMEOUT_GRACE};
use tokio::sync::watch;

use crate::config::RunArgs;
use crate::http::{AppState, serve_all};

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The Kubernetes clients: one service stack; per-execution clients stamp
/// the execution UID in the User-Agent.
async fn clients(args: &RunArgs, metrics: &Metrics) -> anyhow::Result<Clients> {
    // Our actors retry transient errors themselves (bounded, with backoff);
    // kube's default retry layer could hold an actor for minutes on a 429.
    let mut config = kube::Config::infer()
        .await
        .context("cannot load Kubernetes configuration")?;
    config.default_retry = false;
    Ok(Clients::new(config)
        .context("cannot build a Kubernetes client")?
        .with_request_metrics(metrics.api_requests.clone())
        .with_execution_limit(args.max_concurrent_requests))
}

/// Name of the operator's container in its pod (deploy/operator).
const OPERATOR_CONTAINER: &str = "operator";
/// The Jobs' image outside a pod, without `--image`.
const DEFAULT_IMAGE: &str = "kubernetes-executor:latest";

/// The image the action Jobs run: `--image`/`KE_IMAGE`, else this pod's own
/// operator container image.
async fn job_image(args: &RunArgs, api: &KubeApi) -> String {
    if let Some(image) = &args.image {
        return image.clone();
    }
    let Some(pod) = &args.pod_name else {
        return DEFAULT_IMAGE.to_string();
    };
    match api.pod_image(pod, OPERATOR_CONTAINER).await {
        Ok(Some(image)) => {
            tracing::info!(%image, "action Jobs run this pod's own image");
            image
        }
        other => {
            tracing::warn!(result = ?other, pod, "cannot read this pod's image; action Jobs run {DEFAULT_IMAGE}");
            DEFAULT_IMAGE.to_string()
        }
    }
}

/// Reports whether the admission policies that record and authorize
/// requesters are in place (at start, then every minute) in `/readyz`.
fn watch_admission(api: KubeApi, health: Arc<Health>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<Vec<String>> = None;
        loop {
            let state = api.admission_state().await;
            if last.as_ref() != Some(&state.problems) {
                if state.enforcing() {
                    tracing::info!(
                        "admission policies installed and enforcing: requesters are recorded and authorized at create"
                    );
                } else {
                    tracing::warn!(problems = ?state.problems, "admission policies are not all enforcing; executions without a recorded requester are refused");
                }
                last = Some(state.problems.clone());
            }
            health.set_admission_problems(state.problems);
            tokio::time::sleep(ADMISSION_CHECK_INTERVAL).await;
        }
    })
}

/// Runs the operator until SIGTERM or SIGINT (or until it loses the lead).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::init(
        &args.log_format,
        args.otlp_endpoint.as_deref(),
        "kubernetes-executor",
    )?;
    let metrics = Arc::new(Metrics::new()?);
    let api = KubeApi::with_clients(
        clients(&args, &metrics).await?,
        &args.namespace,
        args.pod_name.clone(),
    );
    let health = Arc::new(Health::default());
    let registry = Arc::new(ActorRegistry::default());
    let trimmer = crate::memory::spawn(metrics.clone());

    let (root, root_handle) = tree::start(TreeArgs {
        api: api.clone(),
        settings: Settings {
            job: JobConfig {
                namespace: args.namespace.clone(),
                image: job_image(&args, &api).await,
                ttl_seconds: args.job_ttl_seconds,
                telemetry_env: crate::telemetry::job_env(args.otlp_endpoint.as_deref()),
            },
            timeout_grace: TIMEOUT_GRACE,
            chaos: args.chaos,
            inline_conditions: args.allow_inline_conditions.clone(),
            max_live_executions: args.max_live_executions as usize,
            history: kubernetes_executor_actors::history::HistoryPolicy {
                ttl: (!args.finished_ttl.is_zero()).then_some(args.finished_ttl),
                limit: (args.finished_history_limit > 0).then_some(args.finished_history_limit),
            },
        },
        metrics: metrics.clone(),
        health: health.clone(),
        registry: registry.clone(),
        peers: Peers::default(),
        policy_dir: args.policy_dir.clone(),
        policy_reload: Duration::from_secs(args.policy_reload_seconds.max(1)),
        max_validating: args.max_validating,
    })
    .await
    .map_err(anyhow::Error::msg)?;

    let (stop_http, stop_rx) = watch::channel(false);
    let app = AppState {
        metrics: metrics.clone(),
        health: health.clone(),
        registry: registry.clone(),
        chaos: args.chaos.then(|| root.clone()),
    };
    let http = serve_all(&args, app, stop_rx)?;

    // A standby serves probes (ready once its policies load) and waits;
    // only the leader runs the rest of the tree.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("kubernetes-executor-{}", std::process::id()));
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let mut renew = None;
    let leading =
        !args.leader_elect || crate::leader::wait_to_lead(&api, &identity, &mut shutdown).await;
    let mut lost = false;
    if leading {
        if args.leader_elect {
            renew = Some(crate::leader::keep_leading(
                api.clone(),
                identity.clone(),
                lost_tx,
            ));
        }
        health.set_leader(true);
        metrics.is_leader.set(1);
        let admission = watch_admission(api.clone(), health.clone());
        kubernetes_executor_actors::registry::post(&registry, &root, TreeMsg::Lead);
        tracing::info!(namespace = %args.namespace, policy_dir = %args.policy_dir.display(), "operator started");
        tokio::pin!(root_handle);
        tokio::select! {
            _ = &mut shutdown => tracing::info!("shutting down"),
            _ = &mut root_handle => tracing::error!("the actor tree stopped unexpectedly"),
            Ok(_) = lost_rx.wait_for(|l| *l) => {
                tracing::error!("lost the leader lease; stopping");
                lost = true;
            }
        }
        admission.abort();
    }
    if let Some(t) = trimmer {
        t.abort();
    }
    metrics.is_leader.set(0);
    if let Err(e) = root
        .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(15)))
        .await
    {
        tracing::warn!(error = %e, "the actor tree did not stop in time");
    }
    tracing::info!("actor tree stopped");
    if let Some(renew) = renew {
        renew.abort();
        if !lost {
            // Hand over at once instead of letting the standby wait for expiry.
            crate::leader::release(&api, &identity).await;
        }
    }
    let _ = stop_http.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    // Flushing spans blocks (the exporter's own thread and HTTP client):
    // off the runtime's workers, and bounded.
    let flush = tokio::task::spawn_blocking(move || telemetry.shutdown());
    if tokio::time::timeout(Duration::from_secs(10), flush)
        .await
        .is_err()
    {
        tracing::warn!("span export did not flush within 10s");
    }
    tracing::info!("stopped");
    if lost {
        anyhow::bail!("lost the leader lease");
    }
    Ok(())
}
