//! Building the Job that runs an action (pure), and the termination-message
//! contract between `run-action` and the operator.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use kubernetes_executor_crds::{
    ExecutionResult, KubernetesExecution, RollbackInfo, TargetSnapshot, labels,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::catalog::ValidatedAction;

/// Seconds a finished Job (and its pods) are kept for inspection.
pub const DEFAULT_TTL_SECONDS: i32 = 3600;

/// How Jobs are made: where, with which image.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Namespace the Jobs run in (the operator's).
    pub namespace: String,
    /// Image holding the `kubernetes-executor` binary.
    pub image: String,
    /// `ttlSecondsAfterFinished`.
    pub ttl_seconds: i32,
    /// Environment for `run-action`'s span export (the operator's OTLP
    /// endpoint and a service name), empty when the operator exports none.
    pub telemetry_env: Vec<(String, String)>,
}

/// The deterministic Job name of an execution: `ke-<uid>-<attempt>`. A
/// restarted actor finds the Job it (maybe) created instead of making another.
pub fn job_name(uid: &str, attempt: u32) -> String {
    format!("ke-{uid}-{attempt}")
}

/// What `run-action` writes to its termination message (JSON, < 4 KiB).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionOutput {
    /// The outcome.
    pub result: ExecutionResult,
    /// How to undo it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackInfo>,
    /// A status reason the action determined (`TargetChanged`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The labels linking a Job (or RoleBinding) to its execution.
pub fn owner_labels(exec: &KubernetesExecution, action: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
    l.insert(
        labels::EXECUTION_NAMESPACE.into(),
        exec.metadata.namespace.clone().unwrap_or_default(),
    );
    l.insert(
        labels::EXECUTION_NAME.into(),
        truncate_label(exec.metadata.name.as_deref().unwrap_or_default()),
    );
    l.insert(
        labels::EXECUTION_UID.into(),
        exec.metadata.uid.clone().unwrap_or_default(),
    );
    l.insert(labels::ACTION.into(), action.to_string());
    // The plan's label names too, for clients written against it.
    l.insert(
        labels::PLAN_EXECUTION.into(),
        truncate_label(exec.metadata.name.as_deref().unwrap_or_default()),
    );
    l.insert(labels::PLAN_ACTION.into(), action.to_string());
    if let Some(w) = exec
        .spec
        .workflow_execution_ref
        .as_ref()
        .and_then(|r| r.name.as_deref())
    {
        l.insert(labels::WORKFLOW.into(), truncate_label(w));
    }
    if let Some(step) = exec.spec.step_number {
        l.insert(labels::STEP.into(), step.to_string());
    }
    l
}

fn truncate_label(s: &str) -> String {
    let mut s: String = s.chars().take(63).collect();
    while s.ends_with(['-', '.', '_']) {
        s.pop();
    }
    s
}

/// `run-action` arguments for a validated action of an execution in
/// `exec_namespace`. No parameter is a secret value (secrets travel by
/// reference: PatchSecret names a Secret that the Job reads itself).
pub fn run_action_args(
    v: &ValidatedAction,
    expected: Option<&TargetSnapshot>,
    dry_run: bool,
    exec_namespace: &str,
) -> Vec<String> {
    let mut args = vec![
        "run-action".to_string(),
        "--action".into(),
        v.action.name.into(),
        "--kind".into(),
        v.target.kind.clone(),
        "--name".into(),
        v.target.name.clone(),
    ];
    if let Some(ns) = &v.target.namespace {
        args.extend(["--namespace".into(), ns.clone()]);
    }
    if let Some(t) = expected.filter(|t| !t.uid.is_empty()) {
        args.extend(["--expected-uid".into(), t.uid.clone()]);
    }
    // Patches apply only to the version validation saw (a ConfigMap changed
    // since is `TargetChanged`). Not for workloads: their controllers change
    // their resourceVersion all the time.
    if v.action.name == "PatchConfigMap"
        && let Some(rv) = expected.and_then(|t| t.resource_version.as_deref())
    {
        args.extend(["--expected-resource-version".into(), rv.to_string()]);
    }
    args.extend(["--timeout-seconds".into(), v.timeout.as_secs().to_string()]);
    if !v.action.source_rules.is_empty() {
        args.extend(["--source-namespace".into(), exec_namespace.to_string()]);
    }
    for (k, val) in &v.params {
        args.extend(["--param".into(), format!("{k}={val}")]);
    }
    if dry_run {
        args.push("--dry-run".into());
    }
    args
}

/// A DrainNode Job must not run on the node it drains (it would evict
/// itself); other Jobs may run anywhere.
fn avoid_drained_node(v: &ValidatedAction) -> serde_json::Value {
    if v.action.name != "DrainNode" {
        return serde_json::Value::Null;
    }
    json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{ "matchExpressions": [{
            "key": "kubernetes.io/hostname", "operator": "NotIn", "values": [v.target.name],
        }]}],
    }}})
}

/// Builds the Job for `exec`: per-action ServiceAccount, deadline from the
/// timeout, backoff from maxRetries, TTL, restricted security context.
pub fn build_job(
    exec: &KubernetesExecution,
    v: &ValidatedAction,
    expected: Option<&TargetSnapshot>,
    cfg: &JobConfig,
) -> Job {
    let uid = exec.metadata.uid.clone().unwrap_or_default();
    let name = job_name(&uid, 1);
    let labels = owner_labels(exec, v.action.name);
    let mut env = vec![json!({ "name": "RUST_LOG", "value": "info" })];
    env.extend(
        cfg.telemetry_env
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v })),
    );
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cfg.namespace,
            "labels": labels,
            "annotations": {
                "kubernetesexecution.kubernaut.io/target": v.target.display(),
            },
        },
        "spec": {
            "backoffLimit": v.max_retries,
            "activeDeadlineSeconds": v.timeout.as_secs(),
            "ttlSecondsAfterFinished": cfg.ttl_seconds,
            "podFailurePolicy": {
                "rules": [
                    // Exit code 2 means "permanent failure" (bad target, forbidden, ...): do not retry.
                    { "action": "FailJob", "onExitCodes": { "containerName": "action", "operator": "In", "values": [2] } },
                ],
            },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "affinity": avoid_drained_node(v),
                    "serviceAccountName": v.action.service_account(),
                    "automountServiceAccountToken": true,
                    "restartPolicy": "Never",
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": "action",
                        "image": cfg.image,
                        "args": run_action_args(v, expected, exec.spec.dry_run, exec.metadata.namespace.as_deref().unwrap_or_default()),
                        "env": env,
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "resources": {
                            "requests": { "cpu": "10m", "memory": "32Mi" },
                            "limits": { "cpu": "200m", "memory": "128Mi" },
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "runAsNonRoot": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                    }],
                },
            },
        },
    });
    serde_json::from_value(job).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::validate;
    use kubernetes_executor_crds::{KubernetesExecutionSpec, TargetResource};

    fn exec() -> KubernetesExecution {
        let mut e = KubernetesExecution::new(
            "scale-web",
            KubernetesExecutionSpec {
                parameters: [("replicas".to_string(), "3".to_string())].into(),
                timeout: Some("2m".into()),
                max_retries: Some(2),
                step_number: Some(4),
                ..KubernetesExecutionSpec::new(
                    "scale_deployment",
                    TargetResource::new("Deployment", "web", Some("shop")),
                )
            },
        );
        e.metadata.namespace = Some("shop".into());
        e.metadata.uid = Some("0b5c7e1a-1111-2222-3333-444455556666".into());
        e
    }

    #[test]
    fn job_has_the_contracted_shape() {
        let e = exec();
        let v = validate(&e.spec, "shop").expect("valid");
        let cfg = JobConfig {
            namespace: "kubernetes-executor-system".into(),
            image: "img:1".into(),
            ttl_seconds: 600,
            telemetry_env: Vec::new(),
        };
        let snapshot = TargetSnapshot {
            uid: "target-uid".into(),
            resource_version: Some("42".into()),
        };
        let job = build_job(&e, &v, Some(&snapshot), &cfg);
        let j = serde_json::to_value(&job).expect("json");
        assert_eq!(
            j["metadata"]["name"],
            "ke-0b5c7e1a-1111-2222-3333-444455556666-1"
        );
        assert_eq!(j["metadata"]["namespace"], "kubernetes-executor-system");
        assert_eq!(
            j["metadata"]["labels"][labels::EXECUTION_UID],
            "0b5c7e1a-1111-2222-3333-444455556666"
        );
        assert_eq!(j["metadata"]["labels"][labels::ACTION], "ScaleDeployment");
        assert_eq!(j["metadata"]["labels"][labels::STEP], "4");
        assert_eq!(j["spec"]["backoffLimit"], 2);
        assert_eq!(j["spec"]["activeDeadlineSeconds"], 120);
        assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 600);
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(
            pod["serviceAccountName"],
            "kubernetes-executor-scale-deployment"
        );
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        let args: Vec<String> = serde_json::from_value(c["args"].clone()).expect("args");
        assert_eq!(&args[..3], &["run-action", "--action", "ScaleDeployment"]);
        assert!(args.windows(2).any(|w| w == ["--param", "replicas=3"]));
        assert!(
            args.windows(2)
                .any(|w| w == ["--expected-uid", "target-uid"])
        );
    }

    #[test]
    fn patch_secret_job_names_its_source_never_a_value() {
        let mut e = exec();
        e.spec.action = "PatchSecret".into();
        e.spec.target_resource.kind = "Secret".into();
        e.spec.parameters = [("fromSecret".to_string(), "new-creds".to_string())].into();
        let v = validate(&e.spec, "shop").expect("valid");
        let args = run_action_args(&v, None, false, "shop");
        assert!(args.windows(2).any(|w| w == ["--source-namespace", "shop"]));
        assert!(
            args.windows(2)
                .any(|w| w == ["--param", "fromSecret=new-creds"])
        );
        let cfg = JobConfig {
            namespace: "ops".into(),
            image: "img".into(),
            ttl_seconds: 60,
            telemetry_env: Vec::new(),
        };
        let job = serde_json::to_value(build_job(&e, &v, None, &cfg)).expect("json");
        let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
        assert_eq!(
            env.as_array().map(Vec::len),
            Some(1),
            "no secret reaches the Job's environment: {env}"
        );
    }

    #[test]
    fn only_config_map_patches_carry_the_validated_resource_version() {
        let snapshot = TargetSnapshot {
            uid: "u".into(),
            resource_version: Some("42".into()),
        };
        let mut e = exec();
        let scale = validate(&e.spec, "shop").expect("valid");
        let args = run_action_args(&scale, Some(&snapshot), false, "shop");
        assert!(!args.contains(&"--expected-resource-version".to_string()));
        e.spec.action = "PatchConfigMap".into();
        e.spec.target_resource =
            kubernetes_executor_crds::TargetResource::new("ConfigMap", "c", None);
        e.spec.parameters = [("patch".to_string(), r#"{"data":{"a":"b"}}"#.to_string())].into();
        let patch = validate(&e.spec, "shop").expect("valid");
        let args = run_action_args(&patch, Some(&snapshot), false, "shop");
        assert!(
            args.windows(2)
                .any(|w| w == ["--expected-resource-version", "42"])
        );
    }

    #[test]
    fn a_drain_job_avoids_the_node_it_drains() {
        let mut e = exec();
        e.spec.action = "DrainNode".into();
        e.spec.target_resource =
            kubernetes_executor_crds::TargetResource::new("Node", "worker-1", None);
        e.spec.parameters = Default::default();
        let v = validate(&e.spec, "shop").expect("valid");
        let cfg = JobConfig {
            namespace: "ops".into(),
            image: "img".into(),
            ttl_seconds: 60,
            telemetry_env: Vec::new(),
        };
        let job = serde_json::to_value(build_job(&e, &v, None, &cfg)).expect("json");
        let term = &job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0];
        assert_eq!(term["key"], "kubernetes.io/hostname");
        assert_eq!(term["operator"], "NotIn");
        assert_eq!(term["values"][0], "worker-1");
    }
}
