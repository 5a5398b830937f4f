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

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::api::{DeleteParams, Preconditions};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog::{self, ValidatedAction};
use kubernetes_executor_actors::job::ActionOutput;
use kubernetes_executor_crds::{ExecutionResult, RollbackInfo};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::RunActionArgs;

mod config_map;
mod drain;
mod secret;

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

/// Runs the action and returns the process exit code.
pub async fn main(args: RunActionArgs) -> i32 {
    let (code, output) = match execute(&args).await {
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
    match v.action.name {
        "ScaleDeployment" => scale_deployment(client, &v, args, deadline).await,
        "RolloutStatus" => rollout_status(client, &v, args, deadline).await,
        "CordonNode" => set_unschedulable(client, &v, args, true).await,
        "UncordonNode" => set_unschedulable(client, &v, args, false).await,
        "DeletePod" => delete_pod(client, &v, args).await,
        "RestartDeployment" => restart_deployment(client, &v, args, deadline).await,
        "UpdateImage" => update_image(client, &v, args, deadline).await,
        "PatchConfigMap" => config_map::patch_config_map(client, &v, args).await,
        "PatchSecret" => secret::patch_secret(client, &v, args).await,
        "DrainNode" => drain::drain_node(client, &v, args, deadline).await,
        other => Err((
            ActionError::Permanent(format!(
                "action {other} is not implemented by this version of run-action"
            )),
            Some(RollbackInfo {
                restorable: false,
                reason: Some("nothing was changed".into()),
                ..Default::default()
            }),
        )),
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

async fn get_deployment(
    client: &Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
) -> Result<(Api<Deployment>, Deployment), ActionError> {
    let ns = v.target.namespace.clone().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = api.get(&v.target.name).await?;
    check_uid(d.uid(), args, &format!("Deployment {ns}/{}", v.target.name))?;
    Ok((api, d))
}

async fn scale_deployment(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
    deadline: tokio::time::Instant,
) -> Outcome {
    let (api, d) = get_deployment(&client, v, args)
        .await
        .map_err(|e| (e, None))?;
    let previous = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let replicas: i32 = v
        .params
        .get("replicas")
        .and_then(|r| r.parse().ok())
        .unwrap_or(previous);
    let rollback = RollbackInfo {
        restorable: true,
        previous_replicas: Some(previous),
        ..Default::default()
    };
    let key = format!(
        "Deployment/{}/{}",
        v.target.namespace.clone().unwrap_or_default(),
        v.target.name
    );
    if previous != replicas {
        let mut pp = PatchParams::default();
        if args.dry_run {
            pp = pp.dry_run();
        }
        // Guard with the UID so a recreated object is never scaled.
        let patch = json!({ "metadata": { "uid": d.uid() }, "spec": { "replicas": replicas } });
        api.patch_scale(&v.target.name, &pp, &Patch::Merge(patch))
            .await
            .map_err(|e| (e.into(), Some(rollback.clone())))?;
    }
    if !args.dry_run {
        wait_rollout(&api, &v.target.name, deadline)
            .await
            .map_err(|e| (e, Some(rollback.clone())))?;
    }
    let output = if previous == replicas {
        format!("{key} already had {replicas} replicas (no-op)")
    } else {
        format!("scaled {key} from {previous} to {replicas} replicas")
    };
    Ok(ActionOutput {
        result: ExecutionResult {
            succeeded: true,
            output: Some(output),
            error: None,
            resources_affected: vec![key],
        },
        rollback: Some(rollback),
        reason: None,
    })
}

async fn rollout_status(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
    deadline: tokio::time::Instant,
) -> Outcome {
    let (api, _) = get_deployment(&client, v, args)
        .await
        .map_err(|e| (e, None))?;
    let message = wait_rollout(&api, &v.target.name, deadline)
        .await
        .map_err(|e| (e, None))?;
    Ok(ActionOutput {
        result: ExecutionResult {
            succeeded: true,
            output: Some(message),
            ..Default::default()
        },
        rollback: Some(RollbackInfo {
            restorable: false,
            reason: Some("read-only action: nothing to undo".into()),
            ..Default::default()
        }),
        reason: None,
    })
}

/// Waits like `kubectl rollout status`: the controller observed the latest
/// generation and every replica is updated and available.
async fn wait_rollout(
    api: &Api<Deployment>,
    name: &str,
    deadline: tokio::time::Instant,
) -> Result<String, ActionError> {
    loop {
        let d = api.get(name).await?;
        let generation = d.metadata.generation.unwrap_or_default();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        let observed = s.observed_generation.unwrap_or_default() >= generation;
        let updated = s.updated_replicas.unwrap_or(0);
        let available = s.available_replicas.unwrap_or(0);
        let total = s.replicas.unwrap_or(0);
        if observed && updated >= want && available >= want && total <= want {
            return Ok(format!(
                "deployment {name} successfully rolled out ({available}/{want} available)"
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ActionError::Transient(format!(
                "deployment {name} did not finish rolling out in time: {updated}/{want} updated, {available}/{want} available"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) fn done(output: String, affected: String, rollback: RollbackInfo) -> Outcome {
    Ok(ActionOutput {
        result: ExecutionResult {
            succeeded: true,
            output: Some(output),
            error: None,
            resources_affected: vec![affected],
        },
        rollback: Some(rollback),
        reason: None,
    })
}

pub(crate) fn patch_params(args: &RunActionArgs) -> PatchParams {
    let pp = PatchParams::default();
    if args.dry_run { pp.dry_run() } else { pp }
}

async fn set_unschedulable(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
    cordon: bool,
) -> Outcome {
    let api: Api<Node> = Api::all(client);
    let node = api
        .get(&v.target.name)
        .await
        .map_err(|e| (e.into(), None))?;
    check_uid(node.uid(), args, &format!("Node {}", v.target.name)).map_err(|e| (e, None))?;
    let was = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let rollback = RollbackInfo {
        restorable: true,
        was_unschedulable: Some(was),
        ..Default::default()
    };
    let key = format!("Node/{}", v.target.name);
    if was == cordon {
        let state = if cordon {
            "already cordoned"
        } else {
            "already schedulable"
        };
        return done(format!("{key} {state} (no-op)"), key, rollback);
    }
    let patch = json!({ "metadata": { "uid": node.uid() }, "spec": { "unschedulable": cordon } });
    api.patch(&v.target.name, &patch_params(args), &Patch::Merge(patch))
        .await
        .map_err(|e| (e.into(), Some(rollback.clone())))?;
    let verb = if cordon { "cordoned" } else { "uncordoned" };
    done(format!("{verb} {key}"), key, rollback)
}

async fn delete_pod(client: Client, v: &ValidatedAction, args: &RunActionArgs) -> Outcome {
    let ns = v.target.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let key = format!("Pod/{ns}/{}", v.target.name);
    let pod = match api
        .get_opt(&v.target.name)
        .await
        .map_err(|e| (e.into(), None))?
    {
        Some(p) => p,
        None if args.expected_uid.is_some() => {
            // Already gone: the desired state holds.
            let rb = RollbackInfo {
                restorable: false,
                reason: Some("the pod was already deleted".into()),
                ..Default::default()
            };
            return done(format!("{key} was already deleted (no-op)"), key, rb);
        }
        None => return Err((ActionError::Permanent(format!("{key} not found")), None)),
    };
    check_uid(pod.uid(), args, &key).map_err(|e| (e, None))?;
    let grace: u32 = v
        .params
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .unwrap_or(30);
    let dp = DeleteParams {
        grace_period_seconds: Some(grace),
        dry_run: args.dry_run,
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let rollback = RollbackInfo {
        restorable: false,
        reason: Some(
            "a deleted pod cannot be restored; its controller (if any) replaces it".into(),
        ),
        evicted_pods: vec![format!("{ns}/{}", v.target.name)],
        ..Default::default()
    };
    api.delete(&v.target.name, &dp)
        .await
        .map_err(|e| (e.into(), Some(rollback.clone())))?;
    done(format!("deleted {key} (grace {grace}s)"), key, rollback)
}

async fn restart_deployment(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
    deadline: tokio::time::Instant,
) -> Outcome {
    let (api, d) = get_deployment(&client, v, args)
        .await
        .map_err(|e| (e, None))?;
    const ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
    let previous = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(ANNOTATION).cloned());
    let rollback = RollbackInfo {
        restorable: false,
        reason: Some("a restart cannot be undone (pods were replaced)".into()),
        previous_restarted_at: previous,
        ..Default::default()
    };
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({ "metadata": { "uid": d.uid() }, "spec": { "template": { "metadata": { "annotations": { ANNOTATION: now } } } } });
    api.patch(&v.target.name, &patch_params(args), &Patch::Merge(patch))
        .await
        .map_err(|e| (e.into(), Some(rollback.clone())))?;
    let key = format!(
        "Deployment/{}/{}",
        v.target.namespace.clone().unwrap_or_default(),
        v.target.name
    );
    if !args.dry_run {
        wait_rollout(&api, &v.target.name, deadline)
            .await
            .map_err(|e| (e, Some(rollback.clone())))?;
    }
    done(format!("restarted {key}"), key, rollback)
}

async fn update_image(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
    deadline: tokio::time::Instant,
) -> Outcome {
    let (api, d) = get_deployment(&client, v, args)
        .await
        .map_err(|e| (e, None))?;
    let containers = d
        .spec
        .as_ref()
        .map(|s| s.template.spec.clone().unwrap_or_default().containers)
        .unwrap_or_default();
    let previous: BTreeMap<String, String> = containers
        .iter()
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect();
    let name = match (v.params.get("container"), containers.len()) {
        (Some(c), _) if previous.contains_key(c) => c.clone(),
        (Some(c), _) => {
            return Err((
                ActionError::Permanent(format!(
                    "container {c:?} not found; containers: {}",
                    previous.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
                None,
            ));
        }
        (None, 1) => containers[0].name.clone(),
        (None, n) => {
            return Err((
                ActionError::Permanent(format!(
                    "the pod has {n} containers; parameter \"container\" is required ({})",
                    previous.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
                None,
            ));
        }
    };
    let image = v.params.get("image").cloned().unwrap_or_default();
    let rollback = RollbackInfo {
        restorable: true,
        previous_images: Some(previous.clone()),
        ..Default::default()
    };
    let key = format!(
        "Deployment/{}/{}",
        v.target.namespace.clone().unwrap_or_default(),
        v.target.name
    );
    if previous.get(&name) == Some(&image) {
        return done(
            format!("{key} container {name} already runs {image} (no-op)"),
            key,
            rollback,
        );
    }
    let patch = json!({ "metadata": { "uid": d.uid() }, "spec": { "template": { "spec": { "containers": [{ "name": name, "image": image }] } } } });
    api.patch(
        &v.target.name,
        &patch_params(args),
        &Patch::Strategic(patch),
    )
    .await
    .map_err(|e| (e.into(), Some(rollback.clone())))?;
    if !args.dry_run {
        wait_rollout(&api, &v.target.name, deadline)
            .await
            .map_err(|e| (e, Some(rollback.clone())))?;
    }
    done(
        format!("set image of {key} container {name} to {image}"),
        key,
        rollback,
    )
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
