//! DrainNode with `kubectl drain` semantics: cordon, then evict every pod
//! through the Eviction API (PodDisruptionBudgets apply), skipping mirror pods
//! and — with `ignoreDaemonSets` — DaemonSet pods; refusing pods with
//! emptyDir data or without a controller unless allowed; retrying 429s with
//! backoff until the timeout; naming the PDB that blocks.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch};
use kube::{Client, ResourceExt};
use kubernetes_executor_actors::catalog::ValidatedAction;
use kubernetes_executor_actors::duration::parse_seconds_or_duration;
use kubernetes_executor_crds::RollbackInfo;
use serde_json::json;

use super::{ActionError, Outcome, check_uid, done, patch_params};
use crate::config::RunActionArgs;

/// What drain does with one pod.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Skip(&'static str),
    Evict,
    Refuse(String),
}

fn flag(v: &ValidatedAction, name: &str) -> bool {
    v.params.get(name).is_some_and(|b| b == "true")
}

/// Decides, like kubectl drain, what happens to `pod` (pure).
fn plan(pod: &Pod, v: &ValidatedAction) -> Plan {
    let annotations = pod.annotations();
    if annotations.contains_key("kubernetes.io/config.mirror") {
        return Plan::Skip("mirror pod");
    }
    // Never evict an action Job's pod (this drain's own, or another
    // execution's): the Job would die mid-action and could leave the node
    // cordoned with nobody to report it. Drain Jobs avoid the drained node.
    if pod
        .labels()
        .get(kubernetes_executor_crds::labels::MANAGED_BY)
        .is_some_and(|m| m == kubernetes_executor_crds::labels::MANAGER)
    {
        return Plan::Skip("kubernetes-executor action pod");
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Plan::Evict;
    }
    let controller = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true));
    if controller.is_some_and(|o| o.kind == "DaemonSet") {
        return if flag(v, "ignoreDaemonSets") {
            Plan::Skip("DaemonSet pod")
        } else {
            Plan::Refuse(format!(
                "{} is managed by a DaemonSet (set ignoreDaemonSets=true)",
                pod.name_any()
            ))
        };
    }
    if controller.is_none() && !flag(v, "force") {
        return Plan::Refuse(format!(
            "{} has no controller and would not come back (set force=true)",
            pod.name_any()
        ));
    }
    let empty_dir = pod.spec.as_ref().is_some_and(|s| {
        s.volumes
            .iter()
            .flatten()
            .any(|vol| vol.empty_dir.is_some())
    });
    if empty_dir && !flag(v, "deleteEmptyDirData") {
        return Plan::Refuse(format!(
            "{} uses emptyDir data that would be lost (set deleteEmptyDirData=true)",
            pod.name_any()
        ));
    }
    Plan::Evict
}

fn selector_matches(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let labels = pod.labels();
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let val = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => val.is_some_and(|v| values.contains(v)),
            "NotIn" => val.is_none_or(|v| !values.contains(v)),
            "Exists" => val.is_some(),
            "DoesNotExist" => val.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// `ns/name` of the PDBs that select `pod`.
async fn blocking_pdbs(client: &Client, pod: &Pod) -> Vec<String> {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    match api.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .filter(|p| selector_matches(p, pod))
            .map(|p| format!("{ns}/{}", p.name_any()))
            .collect(),
        Err(_) => vec![],
    }
}

pub(super) async fn drain_node(
    client: Client,
    v: &ValidatedAction,
    args: &RunActionArgs,
    deadline: tokio::time::Instant,
) -> Outcome {
    let nodes: Api<Node> = Api::all(client.clone());
    let node_name = v.target.name.clone();
    let key = format!("Node/{node_name}");
    let node = nodes.get(&node_name).await.map_err(|e| (e.into(), None))?;
    check_uid(node.uid(), args, &key).map_err(|e| (e, None))?;
    let was = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let mut rollback = RollbackInfo {
        restorable: false,
        reason: Some(
            "evicted pods cannot be put back; UncordonNode restores schedulability".into(),
        ),
        was_unschedulable: Some(was),
        ..Default::default()
    };
    let drain_timeout = v
        .params
        .get("timeout")
        .and_then(|t| parse_seconds_or_duration(t).ok())
        .unwrap_or(Duration::from_secs(300));
    let deadline = deadline.min(tokio::time::Instant::now() + drain_timeout);

    // 1. Cordon.
    if !was {
        let patch = json!({ "metadata": { "uid": node.uid() }, "spec": { "unschedulable": true } });
        nodes
            .patch(&node_name, &patch_params(args), &Patch::Merge(patch))
            .await
            .map_err(|e| (e.into(), Some(rollback.clone())))?;
    }

    // 2. Decide for every pod on the node.
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
        .await
        .map_err(|e| (e.into(), Some(rollback.clone())))?
        .items;
    let mut to_evict = Vec::new();
    let mut refused = Vec::new();
    let mut skipped = 0;
    for pod in on_node {
        match plan(&pod, v) {
            Plan::Evict => to_evict.push(pod),
            Plan::Skip(_) => skipped += 1,
            Plan::Refuse(why) => refused.push(why),
        }
    }
    if !refused.is_empty() {
        return Err((
            ActionError::Permanent(format!("cannot drain {key}: {}", refused.join("; "))),
            Some(rollback),
        ));
    }
    if args.dry_run {
        let names: Vec<_> = to_evict
            .iter()
            .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
            .collect();
        return done(
            format!(
                "dry run: would evict {} pods from {key}: {}",
                names.len(),
                names.join(", ")
            ),
            key,
            rollback,
        );
    }

    // 3. Evict, retrying 429 (PDB) with backoff until the deadline.
    let grace: Option<u32> = v
        .params
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok());
    let mut pending = to_evict;
    let mut delay = Duration::from_millis(250);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for pod in pending {
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let ep = EvictParams {
                delete_options: Some(DeleteParams {
                    grace_period_seconds: grace,
                    ..Default::default()
                }),
                ..Default::default()
            };
            match api.evict(&pod.name_any(), &ep).await {
                Ok(_) => rollback
                    .evicted_pods
                    .push(format!("{ns}/{}", pod.name_any())),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(kube::Error::Api(s)) if s.code == 429 => still.push(pod),
                Err(e) => return Err((e.into(), Some(rollback))),
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if tokio::time::Instant::now() + delay >= deadline {
            let mut blocked = Vec::new();
            for pod in &pending {
                let pdbs = blocking_pdbs(&client, pod).await;
                blocked.push(format!(
                    "{}/{} (PodDisruptionBudget {})",
                    pod.namespace().unwrap_or_default(),
                    pod.name_any(),
                    if pdbs.is_empty() {
                        "unknown".to_string()
                    } else {
                        pdbs.join(", ")
                    }
                ));
            }
            return Err((
                ActionError::Transient(format!(
                    "timed out draining {key}: evictions blocked by disruption budgets: {}",
                    blocked.join("; ")
                )),
                Some(rollback),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }

    // 4. Wait until the evicted pods are gone.
    loop {
        let left = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
            .await
            .map_err(|e| (e.into(), Some(rollback.clone())))?
            .items
            .into_iter()
            .filter(|p| {
                rollback.evicted_pods.contains(&format!(
                    "{}/{}",
                    p.namespace().unwrap_or_default(),
                    p.name_any()
                ))
            })
            .count();
        if left == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err((
                ActionError::Transient(format!(
                    "timed out waiting for {left} evicted pods to leave {key}"
                )),
                Some(rollback),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let n = rollback.evicted_pods.len();
    done(
        format!("drained {key}: evicted {n} pods, skipped {skipped}"),
        key,
        rollback,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubernetes_executor_actors::catalog::{lookup, validate_params};

    fn v(params: &[(&str, &str)]) -> ValidatedAction {
        let action = lookup("DrainNode").expect("drain");
        let given = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ValidatedAction {
            action,
            params: validate_params(action, &given).expect("params"),
            target: kubernetes_executor_actors::catalog::ResolvedTarget {
                kind: "Node".into(),
                namespace: None,
                name: "n".into(),
            },
            timeout: Duration::from_secs(60),
            max_retries: 0,
        }
    }

    fn pod(owner: Option<&str>, empty_dir: bool, mirror: bool) -> Pod {
        let mut p = json!({ "metadata": { "name": "p", "namespace": "ns" }, "spec": { "containers": [{ "name": "c" }] } });
        if let Some(kind) = owner {
            p["metadata"]["ownerReferences"] = json!([{ "apiVersion": "apps/v1", "kind": kind, "name": "o", "uid": "u", "controller": true }]);
        }
        if empty_dir {
            p["spec"]["volumes"] = json!([{ "name": "scratch", "emptyDir": {} }]);
        }
        if mirror {
            p["metadata"]["annotations"] = json!({ "kubernetes.io/config.mirror": "x" });
        }
        serde_json::from_value(p).expect("pod")
    }

    #[test]
    fn drain_never_evicts_an_action_jobs_pod() {
        let mut p = pod(Some("Job"), false, false);
        p.metadata.labels = Some(
            [(
                "app.kubernetes.io/managed-by".to_string(),
                "kubernetes-executor".to_string(),
            )]
            .into(),
        );
        assert_eq!(
            plan(&p, &v(&[("force", "true")])),
            Plan::Skip("kubernetes-executor action pod")
        );
    }

    #[test]
    fn drain_plan_follows_kubectl_semantics() {
        let defaults = v(&[]);
        assert_eq!(
            plan(&pod(Some("ReplicaSet"), false, false), &defaults),
            Plan::Evict
        );
        assert_eq!(
            plan(&pod(Some("DaemonSet"), false, false), &defaults),
            Plan::Skip("DaemonSet pod")
        );
        assert_eq!(
            plan(&pod(None, false, true), &defaults),
            Plan::Skip("mirror pod")
        );
        assert!(
            matches!(plan(&pod(None, false, false), &defaults), Plan::Refuse(m) if m.contains("force"))
        );
        assert!(
            matches!(plan(&pod(Some("ReplicaSet"), true, false), &defaults), Plan::Refuse(m) if m.contains("emptyDir"))
        );
        assert!(matches!(
            plan(
                &pod(Some("DaemonSet"), false, false),
                &v(&[("ignoreDaemonSets", "false")])
            ),
            Plan::Refuse(_)
        ));
        assert_eq!(
            plan(&pod(None, false, false), &v(&[("force", "true")])),
            Plan::Evict
        );
        assert_eq!(
            plan(
                &pod(Some("ReplicaSet"), true, false),
                &v(&[("deleteEmptyDirData", "true")])
            ),
            Plan::Evict
        );
    }
}
