//! `run-action`: the program an action's Job runs, with the pod's
//! ServiceAccount credentials. It reads the target, refuses a target whose
//! UID changed since validation, performs the typed action, and writes an
//! [`ActionOutput`] as JSON to the termination message.
//!
//! Exit codes: 0 success, 1 failure worth a Job retry, 2 permanent failure
//! (the Job's podFailurePolicy fails the Job at once).

// The error side of an action's outcome carries the rollback information
// gathered so far; it is built once per process, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use kube::api::PatchParams;
use kubernetes_executor_actors::catalog::{self, ValidatedAction};
use kubernetes_executor_actors::job::ActionOutput;
use kubernetes_executor_crds::{ExecutionResult, RollbackInfo};
use sha2::{Digest, Sha256};

use crate::config::RunActionArgs;

mod config_map;
mod deployment;
mod drain;
mod node_pod;
mod secret;
use deployment::{restart_deployment, rollout_status, scale_deployment, update_image};
use node_pod::{delete_pod, set_unschedulable};

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ActionError {
    /// Retrying cannot help (bad target, forbidden, not found, changed).
    #[error("{0}")]
    Permanent(String),
    /// Retrying may help (API unavailable, conflict, not ready in time).
    #[error("{0}")]
    Transient(String),
    /// The target changed since validation (recreated, or its
    /// resourceVersion moved): permanent, reported as `TargetChanged`.
    #[error("{0}")]
    TargetChanged(String),
}

impl From<kube::Error> for ActionError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if [400, 403, 404, 422].contains(&s.code) => {
                ActionError::Permanent(s.message.clone())
            }
            _ => ActionError::Transient(e.to_string()),
        }
    }
}

pub(crate) type Outcome = Result<ActionOutput, (ActionError, Option<RollbackInfo>)>;

/// [`main`] inside a `run-action` span continuing the execution's trace
/// (`TRACEPARENT`), exported when the Job's environment names an OTLP
/// endpoint; spans are flushed before the process exits.
pub async fn traced_main(args: RunActionArgs) -> i32 {
    use tracing::Instrument;
    // Logs stay on stderr as before; only spans need the subscriber.
    let telemetry = match crate::telemetry::init("json", None, "kubernetes-executor-action") {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("tracing disabled: {e:#}");
            None
        }
    };
    let span = tracing::info_span!(
        "run-action",
        action = %args.action,
        target = %args.name,
        dry_run = args.dry_run,
        trace_id = tracing::field::Empty
    );
    kubernetes_executor_actors::trace::adopt_parent(
        &span,
        std::env::var(kubernetes_executor_actors::trace::TRACEPARENT_ENV)
            .ok()
            .as_deref(),
    );
    if let Some(id) = kubernetes_executor_actors::trace::trace_id_of(&span) {
        span.record("trace_id", tracing::field::display(id));
    }
    let code = main(args).instrument(span).await;
    if let Some(t) = telemetry {
        // The batch exporter blocks while flushing: off the runtime.
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    code
}

/// Runs the action and returns the process exit code.
pub async fn main(args: RunActionArgs) -> i32 {
    let (code, output) = match execute(&args).await {
        Ok(mut out) if args.dry_run => {
            // Nothing changed: say so, and there is nothing to roll back.
            out.result.output = out
                .result
                .output
                .map(|o| format!("dry run (dryRun=All, nothing changed): {o}"));
            out.result.resources_affected.clear();
            out.rollback = None;
            (0, out)
        }
        Ok(out) => (0, out),
        Err((e, rollback)) => {
            let code = if matches!(e, ActionError::Transient(_)) {
                1
            } else {
                2
            };
            let reason = matches!(e, ActionError::TargetChanged(_))
                .then(|| kubernetes_executor_crds::reasons::TARGET_CHANGED.to_string());
            let out = ActionOutput {
                result: ExecutionResult {
                    succeeded: false,
                    error: Some(e.to_string()),
                    ..Default::default()
                },
                rollback,
                reason,
            };
            (code, out)
        }
    };
    let text = serde_json::to_string(&output).unwrap_or_default();
    eprintln!("{text}");
    if let Err(e) = std::fs::write(&args.termination_log, &text) {
        eprintln!(
            "cannot write termination log {}: {e}",
            args.termination_log.display()
        );
    }
    code
}

fn validated(args: &RunActionArgs) -> Result<ValidatedAction, ActionError> {
    let action = catalog::lookup(&args.action)
        .ok_or_else(|| ActionError::Permanent(format!("unknown action {:?}", args.action)))?;
    let mut given = BTreeMap::new();
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| ActionError::Permanent(format!("malformed --param {p:?}")))?;
        given.insert(k.to_string(), v.to_string());
    }
    let params =
        catalog::validate_params(action, &given).map_err(|r| ActionError::Permanent(r.message))?;
    Ok(ValidatedAction {
        action,
        params,
        target: catalog::ResolvedTarget {
            kind: args.kind.clone(),
            namespace: args.namespace.clone(),
            name: args.name.clone(),
        },
        timeout: Duration::from_secs(args.timeout_seconds),
        max_retries: 0,
    })
}

/// A client without kube's built-in 429/503 retry layer: actions decide
/// themselves how long to retry (an eviction blocked by a PodDisruptionBudget
/// answers 429, and must give up at the drain timeout, not minutes later).
pub(crate) async fn client() -> Result<Client, kube::Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    config.default_retry = false;
    Client::try_from(config)
}

async fn execute(args: &RunActionArgs) -> Outcome {
    let v = validated(args).map_err(|e| (e, None))?;
    let client = client().await.map_err(|e| {
        (
            ActionError::Transient(format!("no Kubernetes client: {e}")),
            None,
        )
    })?;
    // Finish (and report) a little before the Job's activeDeadlineSeconds, so a
    // slow action fails with its own message rather than being killed.
    let margin = (v.timeout / 4).min(Duration::from_secs(5));
    let deadline = tokio::time::Instant::now() + v.timeout.saturating_sub(margin);
    // Exhaustive: a new action does not compile until it is dispatched here.
    use kubernetes_executor_actors::catalog::ActionKind as A;
    match v.action.id {
        A::ScaleDeployment => scale_deployment(client, &v, args, deadline).await,
        A::RolloutStatus => rollout_status(client, &v, args, deadline).await,
        A::CordonNode => set_unschedulable(client, &v, args, true).await,
        A::UncordonNode => set_unschedulable(client, &v, args, false).await,
        A::DeletePod => delete_pod(client, &v, args).await,
        A::RestartDeployment => restart_deployment(client, &v, args, deadline).await,
        A::UpdateImage => update_image(client, &v, args, deadline).await,
        A::PatchConfigMap => config_map::patch_config_map(client, &v, args).await,
        A::PatchSecret => secret::patch_secret(client, &v, args).await,
        A::DrainNode => drain::drain_node(client, &v, args, deadline).await,
    }
}

pub(crate) fn check_uid(
    obj_uid: Option<String>,
    args: &RunActionArgs,
    what: &str,
) -> Result<(), ActionError> {
    if let Some(expected) = &args.expected_uid
        && obj_uid.as_deref() != Some(expected.as_str())
    {
        return Err(ActionError::TargetChanged(format!(
            "{what} was recreated since validation (uid {} ≠ {expected}); refusing to touch it",
            obj_uid.unwrap_or_default()
        )));
    }
    Ok(())
}

pub(crate) fn done(output: String, affected: String, rollback: RollbackInfo) -> Outcome {
    Ok(ActionOutput {
        result: ExecutionResult {
            succeeded: true,
            output: Some(output),
            resources_affected: vec![affected],
            ..Default::default()
        },
        rollback: Some(rollback),
        reason: None,
    })
}

pub(crate) fn patch_params(args: &RunActionArgs) -> PatchParams {
    let pp = PatchParams::default();
    if args.dry_run { pp.dry_run() } else { pp }
}

pub(crate) fn data_digest(data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}
