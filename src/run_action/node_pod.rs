//! Node and Pod actions: CordonNode, UncordonNode, DeletePod.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch};
use kube::api::{DeleteParams, Preconditions};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog::ValidatedAction;
use kubernetes_executor_crds::RollbackInfo;
use serde_json::json;

use super::*;

pub(super) async fn set_unschedulable(
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

pub(super) async fn delete_pod(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
) -> Outcome {
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
