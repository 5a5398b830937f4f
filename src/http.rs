//! HTTP endpoints: `/metrics` and `/actors` on the metrics address,
//! `/healthz` and `/readyz` on the health address. Handlers only read shared
//! snapshots; they never message (or wait on) the actors they report on.

use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kubernetes_executor_actors::health::Health;
use kubernetes_executor_actors::metrics::Metrics;
use kubernetes_executor_actors::peers::Singleton;
use kubernetes_executor_actors::registry::ActorRegistry;
use kubernetes_executor_actors::tree::{TreeMsg, TreeRef};
use tokio::sync::watch;

use crate::config::{RunArgs, parse_bind};

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Readiness flags.
    pub health: Arc<Health>,
    /// Live actors.
    pub registry: Arc<ActorRegistry>,
    /// The root of the tree, when the chaos test hooks are on (`--chaos`).
    pub chaos: Option<TreeRef>,
}

/// Serves both addresses until `stop` turns true.
pub fn serve_all(
    args: &RunArgs,
    app: AppState,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let serve = |addr: String, router: Router, mut stop: watch::Receiver<bool>| async move {
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
    let metrics = tokio::spawn(serve(
        args.metrics_bind_address.clone(),
        metrics_router(app.clone()),
        stop.clone(),
    ));
    let health = tokio::spawn(serve(
        args.health_probe_bind_address.clone(),
        health_router(app),
        stop,
    ));
    Ok(tokio::spawn(async move {
        for (what, task) in [("metrics", metrics), ("health", health)] {
            match task.await {
                Ok(Err(e)) => tracing::error!(server = what, error = %e, "HTTP server failed"),
                Err(e) => tracing::error!(server = what, error = %e, "HTTP server panicked"),
                Ok(Ok(())) => {}
            }
        }
    }))
}

/// Routes of the metrics address.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/actors", get(actors))
        .route("/actors/{namespace}/{name}", get(actor))
        .route("/debug/chaos/{kind}", post(chaos))
        .with_state(state)
}

/// Routes of the health address.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    match s.health.liveness() {
        Ok(()) => "ok".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("actor tree failed: {why}"),
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Times {
    times: Option<u32>,
}

/// Test hook (`--chaos` only): make a shared actor panic now and on its
/// next `times - 1` starts.
async fn chaos(
    State(s): State<AppState>,
    Path(kind): Path<String>,
    Query(q): Query<Times>,
) -> Response {
    let Some(root) = &s.chaos else {
        return (StatusCode::NOT_FOUND, "chaos hooks are off\n").into_response();
    };
    let Some(which) = Singleton::from_kind(&kind) else {
        return (StatusCode::BAD_REQUEST, format!("no shared actor {kind}\n")).into_response();
    };
    let times = q.times.unwrap_or(1).max(1);
    kubernetes_executor_actors::registry::post(&s.registry, root, TreeMsg::Chaos { which, times });
    (
        StatusCode::ACCEPTED,
        format!("{kind} will fail {times} time(s)\n"),
    )
        .into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    // Missing admission policies do not make the operator unready (it keeps
    // working, failing closed: every execution without a recorded requester
    // is refused), but /readyz says so on every probe.
    let warnings: String = s
        .health
        .admission_problems()
        .iter()
        .map(|p| format!("\nwarning: {p}; executions without a recorded requester are refused"))
        .collect();
    match s.health.readiness() {
        Ok(()) => (StatusCode::OK, format!("ok{warnings}")).into_response(),
        Err(missing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}{warnings}", missing.join("\n")),
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Format {
    format: Option<String>,
}

async fn actors(State(s): State<AppState>, Query(q): Query<Format>) -> Response {
    let snap = s.registry.snapshot();
    if q.format.as_deref() == Some("table") {
        let mut out = format!(
            "{:<14} {:<48} {:<14} {:<11} {:>9} {:>8} {:>8} {:>7}\n",
            "KIND", "NAME", "PARENT", "PHASE", "AGE(s)", "RESTARTS", "MSGS", "MAILBOX"
        );
        for a in &snap {
            out.push_str(&format!(
                "{:<14} {:<48} {:<14} {:<11} {:>9.1} {:>8} {:>8} {:>7}\n",
                a.kind,
                a.name,
                a.parent.as_deref().unwrap_or("-"),
                a.phase.as_deref().unwrap_or("-"),
                a.age_seconds,
                a.restarts,
                a.messages,
                a.mailbox_depth
            ));
        }
        return ([(header::CONTENT_TYPE, "text/plain")], out).into_response();
    }
    Json(snap).into_response()
}

async fn actor(
    State(s): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let key = format!("{namespace}/{name}");
    match s
        .registry
        .snapshot()
        .into_iter()
        .find(|a| a.execution.as_deref() == Some(key.as_str()))
    {
        Some(a) => Json(a).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no live actor for execution {key}\n"),
        )
            .into_response(),
    }
}
