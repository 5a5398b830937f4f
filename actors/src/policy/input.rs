//! The policy input: one typed struct (`PolicyInput`) built purely from
//! the execution, its validated action and objects already fetched. The
//! safety policies see it without `cluster` state beyond the operator's
//! namespace; pre/postconditions see it with live state (`cluster.nodes`,
//! and for Deployments `cluster.target`, `cluster.pods`,
//! `cluster.image_pull_secrets`). docs/policies.md's input reference is
//! generated from this schema and drift-checked by a test
//! (`make docs` rewrites it).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kubernetes_executor_crds::KubernetesExecution;
use schemars::JsonSchema;
use serde::Serialize;

use crate::catalog::ValidatedAction;

/// What every policy and condition sees as `input`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct PolicyInput {
    /// The canonical catalog name of the action (aliases resolved).
    pub action: String,
    /// Validated, defaulted parameters (no action takes a secret value).
    pub parameters: BTreeMap<String, String>,
    /// Every parameter's length in bytes.
    pub parameter_sizes: BTreeMap<String, usize>,
    /// The target.
    pub target_resource: TargetInput,
    /// Whether the execution is a dry run.
    pub dry_run: bool,
    /// The execution and the workflow it belongs to.
    pub metadata: MetadataInput,
    /// Who asked, as the API server recorded it (authorization is already
    /// done; policies may restrict further).
    pub requester: Option<RequesterInput>,
    /// Cluster state.
    pub cluster: ClusterInput,
}

/// The target of the action.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct TargetInput {
    /// Kind (`Deployment`, `Pod`, `ConfigMap`, `Secret`, `Node`).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (null for Nodes).
    pub namespace: Option<String>,
    /// The **live** labels read from the API server at validation (not the
    /// ones the client wrote in the spec).
    pub labels: BTreeMap<String, String>,
}

/// The execution and its workflow.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct MetadataInput {
    /// The execution's name.
    pub execution_name: Option<String>,
    /// The execution's namespace.
    pub execution_namespace: Option<String>,
    /// `spec.workflowExecutionRef.name`.
    pub workflow_execution: Option<String>,
    /// `spec.stepNumber`.
    pub step_number: Option<i32>,
}

/// Who asked.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct RequesterInput {
    /// User name (`system:serviceaccount:<ns>:<name>` for ServiceAccounts).
    pub username: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// Cluster state: the operator's namespace always; live state for
/// conditions only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct ClusterInput {
    /// The operator's namespace.
    pub operator_namespace: String,
    /// Conditions only: every node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeInput>>,
    /// Conditions on Deployments only: the Deployment as the API server returns it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub target: Option<serde_json::Value>,
    /// Conditions on Deployments only: the Deployment's pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<PodInput>>,
    /// Conditions on Deployments only: each imagePullSecret of the pod
    /// template — null: not verified (the operator may not read Secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<BTreeMap<String, Option<bool>>>,
}

/// A node as conditions see it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct NodeInput {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// Allocatable CPU in millicores.
    pub allocatable_cpu_millis: i64,
}

/// A pod as conditions see it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct PodInput {
    /// Name.
    pub name: String,
    /// `status.phase`.
    pub phase: Option<String>,
    /// The node it runs on.
    pub node: Option<String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// Restarts of all its containers.
    pub restarts: i32,
    /// Reasons its containers wait (`CrashLoopBackOff`, `ImagePullBackOff`, ...).
    pub waiting_reasons: Vec<String>,
    /// CPU requested by its containers, in millicores.
    pub cpu_request_millis: i64,
}

/// The input for an execution (secret parameter values redacted), with
/// only the operator's namespace as cluster state.
pub fn policy_input(
    exec: &KubernetesExecution,
    v: &ValidatedAction,
    live_labels: &BTreeMap<String, String>,
    operator_namespace: &str,
) -> PolicyInput {
    let mut parameters = BTreeMap::new();
    let mut parameter_sizes = BTreeMap::new();
    for (k, val) in &v.params {
        let secret = v.action.param(k).is_some_and(|p| p.secret);
        parameters.insert(
            k.clone(),
            if secret {
                "<redacted>".into()
            } else {
                val.clone()
            },
        );
        parameter_sizes.insert(k.clone(), val.len());
    }
    PolicyInput {
        action: v.action.name.to_string(),
        parameters,
        parameter_sizes,
        target_resource: TargetInput {
            kind: v.target.kind.clone(),
            name: v.target.name.clone(),
            namespace: v.target.namespace.clone(),
            labels: live_labels.clone(),
        },
        dry_run: exec.spec.dry_run,
        metadata: MetadataInput {
            execution_name: exec.metadata.name.clone(),
            execution_namespace: exec.metadata.namespace.clone(),
            workflow_execution: exec
                .spec
                .workflow_execution_ref
                .as_ref()
                .and_then(|r| r.name.clone()),
            step_number: exec.spec.step_number,
        },
        requester: exec.spec.requester.as_ref().map(|r| RequesterInput {
            username: r.username.clone(),
            groups: r.groups.clone(),
        }),
        cluster: ClusterInput {
            operator_namespace: operator_namespace.to_string(),
            ..Default::default()
        },
    }
}

/// Millicores of a CPU quantity (`2`, `500m`, `1.5`); 0 when unparsable.
pub fn cpu_millis(q: &str) -> i64 {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().unwrap_or(0);
    }
    q.parse::<f64>()
        .map(|c| (c * 1000.0).round() as i64)
        .unwrap_or(0)
}

fn condition_true(conditions: Option<impl IntoIterator<Item = (String, String)>>) -> bool {
    conditions
        .into_iter()
        .flatten()
        .any(|(t, s)| t == "Ready" && s == "True")
}

/// A node as conditions see it.
pub fn node_input(n: &Node) -> NodeInput {
    let st = n.status.clone().unwrap_or_default();
    NodeInput {
        name: n.name_any(),
        labels: n.labels().clone(),
        unschedulable: n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        ready: condition_true(
            st.conditions
                .map(|cs| cs.into_iter().map(|c| (c.type_, c.status))),
        ),
        allocatable_cpu_millis: st
            .allocatable
            .as_ref()
            .and_then(|a| a.get("cpu"))
            .map(|q| cpu_millis(&q.0))
            .unwrap_or(0),
    }
}

/// A pod as conditions see it.
pub fn pod_input(p: &Pod) -> PodInput {
    let st = p.status.clone().unwrap_or_default();
    let statuses = st.container_statuses.clone().unwrap_or_default();
    PodInput {
        name: p.name_any(),
        phase: st.phase.clone(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
        ready: condition_true(
            st.conditions
                .map(|cs| cs.into_iter().map(|c| (c.type_, c.status))),
        ),
        restarts: statuses.iter().map(|c| c.restart_count).sum(),
        waiting_reasons: statuses
            .iter()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .collect(),
        cpu_request_millis: p
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .filter_map(|c| {
                c.resources
                    .as_ref()?
                    .requests
                    .as_ref()?
                    .get("cpu")
                    .map(|q| cpu_millis(&q.0))
            })
            .sum(),
    }
}

/// Live cluster state for conditions, from fetched objects: every node,
/// and for a Deployment target the Deployment, its pods and which
/// imagePullSecrets it references (each unverified: null).
pub fn cluster_input(
    operator_namespace: &str,
    nodes: Vec<NodeInput>,
    deployment: Option<(&Deployment, &[Pod])>,
) -> ClusterInput {
    let mut c = ClusterInput {
        operator_namespace: operator_namespace.to_string(),
        nodes: Some(nodes),
        ..Default::default()
    };
    if let Some((d, pods)) = deployment {
        c.pods = Some(pods.iter().map(pod_input).collect());
        c.image_pull_secrets = Some(
            d.spec
                .iter()
                .flat_map(|s| s.template.spec.iter())
                .flat_map(|s| s.image_pull_secrets.iter().flatten())
                .map(|r| (r.name.clone(), None))
                .collect(),
        );
        c.target = serde_json::to_value(d).ok();
    }
    c
}

/// The label selector of a Deployment's pods (`k=v,...`; empty: none).
pub fn pod_selector(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The input reference of docs/policies.md: one row per field (path,
/// type, description), generated from [`PolicyInput`]'s schema.
pub fn reference_table() -> String {
    let schema = serde_json::to_value(schemars::schema_for!(PolicyInput)).unwrap_or_default();
    let defs = schema
        .get("$defs")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let mut rows = Vec::new();
    walk(&schema, &defs, "input", &mut rows);
    let mut out = String::from("| field | type | meaning |\n|---|---|---|\n");
    for (path, ty, doc) in rows {
        out.push_str(&format!("| `{path}` | {ty} | {doc} |\n"));
    }
    out
}

fn resolve<'a>(s: &'a serde_json::Value, defs: &'a serde_json::Value) -> &'a serde_json::Value {
    match s.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| defs.get(name))
            .unwrap_or(s),
        None => s,
    }
}

/// The object schema inside `s` (through `$ref`, `anyOf` with null).
fn object<'a>(s: &'a serde_json::Value, defs: &'a serde_json::Value) -> &'a serde_json::Value {
    let s = resolve(s, defs);
    if let Some(any) = s.get("anyOf").and_then(|a| a.as_array())
        && let Some(inner) = any.iter().find(|x| x.get("type") != Some(&"null".into()))
    {
        return resolve(inner, defs);
    }
    s
}

fn type_name(s: &serde_json::Value, defs: &serde_json::Value) -> String {
    let o = object(s, defs);
    let nullable = resolve(s, defs).get("anyOf").is_some()
        || matches!(resolve(s, defs).get("type"), Some(serde_json::Value::Array(t)) if t.iter().any(|x| x == "null"));
    let base = match o.get("type") {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(serde_json::Value::Array(ts)) => ts
            .iter()
            .filter(|t| *t != "null")
            .filter_map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join("|"),
        _ => "any".into(),
    };
    let base = match base.as_str() {
        "array" => format!(
            "array of {}",
            grouped(
                o.get("items")
                    .map(|i| type_name(i, defs))
                    .unwrap_or_else(|| "any".into())
            )
        ),
        "object" if o.get("properties").is_none() => match o.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map of {}", grouped(type_name(v, defs))),
            _ => "object".into(),
        },
        _ => base,
    };
    if nullable {
        format!("{base} or null")
    } else {
        base
    }
}

fn grouped(t: String) -> String {
    if t.contains(" or ") {
        format!("({t})")
    } else {
        t
    }
}

fn walk(
    s: &serde_json::Value,
    defs: &serde_json::Value,
    path: &str,
    rows: &mut Vec<(String, String, String)>,
) {
    let o = object(s, defs);
    let Some(props) = o.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    for (name, p) in props {
        let child = format!("{path}.{name}");
        let doc = p
            .get("description")
            .or_else(|| object(p, defs).get("description"))
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        rows.push((child.clone(), type_name(p, defs), doc));
        let inner = object(p, defs);
        if inner.get("properties").is_some() {
            walk(p, defs, &child, rows);
        } else if let Some(items) = inner.get("items")
            && object(items, defs).get("properties").is_some()
        {
            walk(items, defs, &format!("{child}[]"), rows);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- BEGIN GENERATED: policy input (make docs) -->\n";
    const END: &str = "<!-- END GENERATED -->";

    /// docs/policies.md's input reference matches the struct; `make docs`
    /// (UPDATE_DOCS=1) rewrites it.
    #[test]
    fn the_documented_input_is_the_struct() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policies.md");
        let doc = std::fs::read_to_string(&path).expect("docs/policies.md");
        let (head, rest) = doc.split_once(BEGIN).expect("begin marker");
        let (_, tail) = rest.split_once(END).expect("end marker");
        let want = format!("{head}{BEGIN}{}{END}{tail}", reference_table());
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).expect("write docs");
        } else {
            assert!(
                doc == want,
                "docs/policies.md's input reference is stale: run `make docs`\n{}",
                reference_table()
            );
        }
    }

    #[test]
    fn the_table_names_every_field() {
        let t = reference_table();
        for f in [
            "`input.action`",
            "`input.target_resource.labels`",
            "`input.requester.groups`",
            "`input.cluster.pods[].waiting_reasons`",
            "`input.cluster.nodes[].allocatable_cpu_millis`",
            "`input.cluster.image_pull_secrets`",
        ] {
            assert!(t.contains(f), "{f} missing:\n{t}");
        }
    }

    #[test]
    fn cpu_quantities() {
        for (q, m) in [("2", 2000), ("500m", 500), ("1.5", 1500), ("x", 0)] {
            assert_eq!(cpu_millis(q), m, "{q}");
        }
    }
}
