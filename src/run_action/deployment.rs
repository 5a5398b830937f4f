//! Deployment actions: ScaleDeployment, RolloutStatus, RestartDeployment,
//! UpdateImage (each checks the target's UID, records what undoes it, and
//! waits for the rollout like `kubectl rollout status`).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog::ValidatedAction;
use kubernetes_executor_crds::RollbackInfo;
use serde_json::json;

use super::*;

pub(super) async fn get_deployment(
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

pub(super) async fn scale_deployment(
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
            resources_affected: vec![key],
            ..Default::default()
        },
        rollback: Some(rollback),
        reason: None,
    })
}

pub(super) async fn rollout_status(
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
pub(super) async fn wait_rollout(
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

pub(super) async fn restart_deployment(
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

pub(super) async fn update_image(
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
