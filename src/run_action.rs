//! `run-action`: the program an action's Job runs, with the pod's
//! ServiceAccount credentials. It reads the target, refuses a target whose
//! UID changed since validation, performs the typed action, and writes an
//! [`ActionOutput`] as JSON to the termination message.
//!
//! Exit codes: 0 success, 1 failure worth a Job retry, 2 permanent failure
//! (the Job's podFailurePolicy fails the Job at once).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog::{self, ValidatedAction};
use kubernetes_executor_actors::job::ActionOutput;
use kubernetes_executor_crds::{ExecutionResult, RollbackInfo};
use serde_json::json;

use crate::config::RunActionArgs;

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
enum ActionError {
    /// Retrying cannot help (bad target, forbidden, not found, changed).
    #[error("{0}")]
    Permanent(String),
    /// Retrying may help (API unavailable, conflict, not ready in time).
    #[error("{0}")]
    Transient(String),
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

type Outcome = Result<ActionOutput, (ActionError, Option<RollbackInfo>)>;

/// Runs the action and returns the process exit code.
pub async fn main(args: RunActionArgs) -> i32 {
    let (code, output) = match execute(&args).await {
        Ok(out) => (0, out),
        Err((e, rollback)) => {
            let code = if matches!(e, ActionError::Permanent(_)) {
                2
            } else {
                1
            };
            let out = ActionOutput {
                result: ExecutionResult {
                    succeeded: false,
                    error: Some(e.to_string()),
                    ..Default::default()
                },
                rollback,
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

async fn execute(args: &RunActionArgs) -> Outcome {
    let v = validated(args).map_err(|e| (e, None))?;
    let client = Client::try_default().await.map_err(|e| {
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

fn check_uid(obj_uid: Option<String>, args: &RunActionArgs, what: &str) -> Result<(), ActionError> {
    if let Some(expected) = &args.expected_uid
        && obj_uid.as_deref() != Some(expected.as_str())
    {
        return Err(ActionError::Permanent(format!(
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
