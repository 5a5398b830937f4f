//! `run`: wires the operator — tracing, the Kubernetes client, metrics, the
//! HTTP servers, the actor tree — and shuts it all down on SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kubernetes_executor_actors::context::{ActorInfo, ActorRegistry, Context, Settings};
use kubernetes_executor_actors::health::Health;
use kubernetes_executor_actors::job::JobConfig;
use kubernetes_executor_actors::job_watcher::{JobWatcherActor, JobWatcherArgs};
use kubernetes_executor_actors::kill_switch::KillSwitch;
use kubernetes_executor_actors::kube_api::KubeApi;
use kubernetes_executor_actors::metrics::Metrics;
use kubernetes_executor_actors::policy::{PolicyActor, PolicyArgs};
use kubernetes_executor_actors::rbac::RbacActor;
use kubernetes_executor_actors::supervisor::SupervisorActor;
use ractor::Actor;
use tokio::sync::watch;

use crate::config::{RunArgs, parse_bind};
use crate::http::{AppState, health_router, metrics_router};

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

/// Name of the leader Lease in the operator namespace.
pub const LEADER_LEASE: &str = "kubernetes-executor-leader";
/// Leader lease duration: a standby takes over at most this long after the
/// leader died without releasing.
const LEASE_SECONDS: i32 = 15;
/// How often the leader renews.
const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// How often a standby tries to take the lease.
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::init(&args.log_format, args.otlp_endpoint.as_deref())?;
    // Our actors retry transient errors themselves (bounded, with backoff);
    // kube's default retry layer could hold an actor for minutes on a 429.
    let mut config = kube::Config::infer()
        .await
        .context("cannot load Kubernetes configuration")?;
    config.default_retry = false;
    // One service stack; per-execution clients stamp the execution UID in the User-Agent.
    let metrics = Arc::new(Metrics::new()?);
    let clients = kubernetes_executor_actors::request_context::Clients::new(config)
        .context("cannot build a Kubernetes client")?
        .with_request_metrics(metrics.api_requests.clone())
        .with_execution_limit(args.max_concurrent_requests);
    let client = clients.operator();
    let health = Arc::new(Health::default());
    let registry = Arc::new(ActorRegistry::default());
    let app = AppState {
        metrics: metrics.clone(),
        health: health.clone(),
        registry: registry.clone(),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let serve = |addr: String, router: axum::Router, mut stop: watch::Receiver<bool>| async move {
        let listener = tokio::net::TcpListener::bind(parse_bind(&addr)?)
            .await
            .with_context(|| format!("bind {addr}"))?;
        tracing::info!(address = %listener.local_addr()?, "serving HTTP");
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await?;
        anyhow::Ok(())
    };
    let metrics_srv = tokio::spawn(serve(
        args.metrics_bind_address.clone(),
        metrics_router(app.clone()),
        stop_rx.clone(),
    ));
    let health_srv = tokio::spawn(serve(
        args.health_probe_bind_address.clone(),
        health_router(app),
        stop_rx.clone(),
    ));

    let api = KubeApi::with_clients(clients, &args.namespace, args.pod_name.clone());
    let (policy, _) = Actor::spawn(
        Some("policy".into()),
        PolicyActor,
        PolicyArgs {
            dir: args.policy_dir.clone(),
            reload_interval: Duration::from_secs(args.policy_reload_seconds.max(1)),
            metrics: metrics.clone(),
            health: health.clone(),
            events: Some(api.clone()),
        },
    )
    .await?;
    registry.insert(ActorInfo::new("policy", "policy".into(), None, 0));
    let (rbac, _) = Actor::spawn(Some("rbac".into()), RbacActor, api.clone()).await?;
    registry.insert(ActorInfo::new("rbac", "rbac".into(), None, 0));

    // Leader election: a standby serves probes (ready once its policies load)
    // and waits; only the leader runs the watches and the execution actors.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let identity = args
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("kubernetes-executor-{}", std::process::id()));
    if args.leader_elect {
        tracing::info!(identity = %identity, lease = LEADER_LEASE, "waiting to lead");
        let mut observer = kubernetes_executor_actors::leader::LeaseObserver::default();
        loop {
            match api
                .try_lead(LEADER_LEASE, &identity, LEASE_SECONDS, &mut observer)
                .await
            {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: cannot read the lease"),
            }
            tokio::select! {
                _ = &mut shutdown => {
                    rbac.stop(None);
                    policy.stop(None);
                    let _ = stop_tx.send(true);
                    return Ok(());
                }
                _ = tokio::time::sleep(RETRY_PERIOD) => {}
            }
        }
        tracing::info!(identity = %identity, "became the leader");
    }
    health.set_leader(true);
    // Who may ask: report whether the admission policies that record and
    // authorize requesters are in place (at start, then every minute).
    let admission_check = {
        let (api, health) = (api.clone(), health.clone());
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
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        })
    };
    let _ = rbac.cast(kubernetes_executor_actors::rbac::RbacMsg::StartJanitor);
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let renew = args.leader_elect.then(|| {
        let (api, identity) = (api.clone(), identity.clone());
        tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            let mut observer = kubernetes_executor_actors::leader::LeaseObserver::default();
            loop {
                tokio::time::sleep(RENEW_PERIOD).await;
                match api
                    .try_lead(LEADER_LEASE, &identity, LEASE_SECONDS, &mut observer)
                    .await
                {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew the leader lease");
                        if last_ok.elapsed()
                            >= Duration::from_secs(LEASE_SECONDS as u64) - RENEW_PERIOD
                        {
                            let _ = lost_tx.send(true);
                            return;
                        }
                    }
                }
            }
        })
    });

    let (job_watcher, _) = Actor::spawn(
        Some("job-watcher".into()),
        JobWatcherActor,
        JobWatcherArgs {
            client: client.clone(),
            namespace: args.namespace.clone(),
        },
    )
    .await?;
    registry.insert(ActorInfo::new("job-watcher", "job-watcher".into(), None, 0));
    let ctx_api = api.clone();
    // The leader answers the kill switch from watches (no reads per execution).
    let kill_switch = KillSwitch::start(client.clone(), &args.namespace);
    // Executions waiting for a busy target look at watched locks, not the API.
    let lock_watch =
        kubernetes_executor_actors::lock_watch::LockWatch::start(client.clone(), &args.namespace);
    let ctx = Arc::new(Context {
        api: api.with_kill_switch(kill_switch.clone()),
        policy: policy.clone(),
        rbac: rbac.clone(),
        settings: Settings {
            job: JobConfig {
                namespace: args.namespace.clone(),
                image: args.image.clone(),
                ttl_seconds: args.job_ttl_seconds,
            },
            timeout_grace: Duration::from_secs(30),
            chaos: args.chaos,
            inline_conditions: args.allow_inline_conditions.clone(),
        },
        metrics: metrics.clone(),
        health: health.clone(),
        registry: registry.clone(),
        admission: Arc::new(tokio::sync::Semaphore::new(args.max_validating.max(1))),
        locks: Some(lock_watch.clone()),
    });
    let (supervisor, supervisor_handle) =
        Actor::spawn(Some("supervisor".into()), SupervisorActor, ctx).await?;
    health.set_actors_up(true);
    tracing::info!(namespace = %args.namespace, policy_dir = %args.policy_dir.display(), "operator started");

    let mut lost = false;
    tokio::select! {
        _ = &mut shutdown => tracing::info!("shutting down"),
        _ = supervisor_handle => tracing::error!("supervisor stopped unexpectedly"),
        Ok(_) = lost_rx.wait_for(|l| *l) => {
            tracing::error!("lost the leader lease; stopping");
            lost = true;
        }
    }
    health.set_actors_up(false);
    let _ = supervisor
        .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
        .await;
    job_watcher.stop(None);
    admission_check.abort();
    kill_switch.stop();
    lock_watch.stop();
    rbac.stop(None);
    policy.stop(None);
    if let Some(renew) = renew {
        renew.abort();
        if !lost {
            // Hand over at once instead of letting the standby wait for expiry.
            if let Err(e) = ctx_api.release_lead(LEADER_LEASE, &identity).await {
                tracing::warn!(error = %e, "failed to release the leader lease");
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = metrics_srv.await;
        let _ = health_srv.await;
    })
    .await;
    telemetry.shutdown();
    if lost {
        anyhow::bail!("lost the leader lease");
    }
    Ok(())
}
