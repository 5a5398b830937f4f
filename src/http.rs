//! HTTP endpoints: `/metrics` and `/actors` on the metrics address,
//! `/healthz` and `/readyz` on the health address. Handlers only read shared
//! snapshots; they never message (or wait on) the actors they report on.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kubernetes_executor_actors::context::ActorRegistry;
use kubernetes_executor_actors::health::Health;
use kubernetes_executor_actors::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Readiness flags.
    pub health: Arc<Health>,
    /// Live actors.
    pub registry: Arc<ActorRegistry>,
}

/// Routes of the metrics address.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/actors", get(actors))
        .route("/actors/{namespace}/{name}", get(actor))
        .with_state(state)
}

/// Routes of the health address.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
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
            "{:<12} {:<48} {:<11} {:>9} {:>8} {:>8}\n",
            "KIND", "NAME", "PHASE", "AGE(s)", "RESTARTS", "MSGS"
        );
        for a in &snap {
            out.push_str(&format!(
                "{:<12} {:<48} {:<11} {:>9.1} {:>8} {:>8}\n",
                a.kind,
                a.name,
                a.phase.as_deref().unwrap_or("-"),
                a.age_seconds,
                a.restarts,
                a.messages
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
