//! Just-in-time grants (pure): the bindings that let one execution's Job do
//! its action, and nothing else, while it runs. Built here, written by the
//! RbacActor through [`crate::k8s`], swept by its janitor when their
//! execution is gone.
//!
//! - namespaced actions: a RoleBinding in the target namespace binding the
//!   action's ClusterRole to the action's ServiceAccount;
//! - node actions: a ClusterRoleBinding of the same pair (no permanent one);
//! - actions that read from the execution's namespace (PatchSecret's source
//!   Secret): a RoleBinding there to `<service account>-source`.
//!
//! Every binding carries the execution's UID (label) and `namespace/name`
//! (annotation: names can be longer than a label value), so the janitor can
//! tell whether its execution still lives. The admission policy
//! `kubernetes-executor-grants` refuses any other binding the operator's
//! identity tries to make.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kubernetes_executor_crds::labels;
use serde_json::json;

use crate::catalog::{ActionSpec, Scope};

/// Annotation holding `namespace/name` of the execution a grant serves.
pub const EXECUTION_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/execution";

/// A binding made for one execution.
#[derive(Clone, Debug, PartialEq)]
pub enum Grant {
    /// In one namespace.
    Namespaced(RoleBinding),
    /// Cluster-wide (node actions).
    Cluster(ClusterRoleBinding),
}

impl Grant {
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Grant::Namespaced(rb) => &rb.metadata,
            Grant::Cluster(crb) => &crb.metadata,
        }
    }

    /// When the binding was created.
    pub fn created(&self) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
        self.meta().creation_timestamp.as_ref()
    }

    /// Namespace (None for a ClusterRoleBinding).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Grant::Namespaced(rb) => rb.metadata.namespace.as_deref(),
            Grant::Cluster(_) => None,
        }
    }

    /// Name of the binding.
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// `RoleBinding ns/name` or `ClusterRoleBinding name`, for messages.
    pub fn display(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("RoleBinding {ns}/{}", self.name()),
            None => format!("ClusterRoleBinding {}", self.name()),
        }
    }

    /// `namespace/name` of the execution this grant serves (annotation).
    pub fn execution(&self) -> Option<(String, String)> {
        let key = self
            .meta()
            .annotations
            .as_ref()?
            .get(EXECUTION_ANNOTATION)?;
        let (ns, name) = key.split_once('/')?;
        Some((ns.to_string(), name.to_string()))
    }

    /// UID of the execution this grant serves (label).
    pub fn execution_uid(&self) -> Option<&str> {
        self.meta()
            .labels
            .as_ref()?
            .get(labels::EXECUTION_UID)
            .map(String::as_str)
    }
}

/// Name of an execution's main binding (RoleBinding or ClusterRoleBinding).
pub fn binding_name(exec_uid: &str) -> String {
    format!("kubernetes-executor-{exec_uid}")
}

/// Name of an execution's source binding (in the execution's namespace).
pub fn source_binding_name(exec_uid: &str) -> String {
    format!("kubernetes-executor-{exec_uid}-source")
}

/// The execution a grant is for.
#[derive(Clone, Copy, Debug)]
pub struct For<'a> {
    /// Namespace of the execution.
    pub namespace: &'a str,
    /// Name of the execution.
    pub name: &'a str,
    /// UID of the execution.
    pub uid: &'a str,
}

/// Every binding an execution of `action` on a target in `target_ns` needs,
/// for a Job running in `operator_ns`.
pub fn grants_for(
    action: &ActionSpec,
    target_ns: Option<&str>,
    exec: For<'_>,
    operator_ns: &str,
) -> Vec<Grant> {
    let sa = action.service_account();
    let metadata = |name: String, ns: Option<&str>| {
        let mut m = json!({
            "name": name,
            "labels": {
                labels::MANAGED_BY: labels::MANAGER,
                labels::EXECUTION_UID: exec.uid,
                labels::ACTION: action.name,
            },
            "annotations": { EXECUTION_ANNOTATION: format!("{}/{}", exec.namespace, exec.name) },
        });
        if let Some(ns) = ns {
            m["namespace"] = json!(ns);
        }
        m
    };
    let binding = |kind: &str, name: String, ns: Option<&str>, role: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": metadata(name, ns),
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": [{ "kind": "ServiceAccount", "name": sa, "namespace": operator_ns }],
        })
    };
    let mut out = Vec::new();
    match (action.scope, target_ns) {
        (Scope::Namespaced, Some(ns)) => {
            let v = binding("RoleBinding", binding_name(exec.uid), Some(ns), &sa);
            out.extend(serde_json::from_value(v).ok().map(Grant::Namespaced));
        }
        (Scope::Cluster, _) => {
            let v = binding("ClusterRoleBinding", binding_name(exec.uid), None, &sa);
            out.extend(serde_json::from_value(v).ok().map(Grant::Cluster));
        }
        (Scope::Namespaced, None) => {}
    }
    if let Some(role) = action.source_role() {
        let v = binding(
            "RoleBinding",
            source_binding_name(exec.uid),
            Some(exec.namespace),
            &role,
        );
        out.extend(serde_json::from_value(v).ok().map(Grant::Namespaced));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::lookup;

    const EXEC: For<'static> = For {
        namespace: "tenant-a",
        name: "a-very-long-execution-name-that-does-not-fit-in-a-label-value-at-all-x",
        uid: "0b5c7e1a-1111-2222-3333-444455556666",
    };

    #[test]
    fn namespaced_actions_bind_in_the_target_namespace_only() {
        let a = lookup("ScaleDeployment").expect("scale");
        let g = grants_for(a, Some("tenant-b"), EXEC, "ops");
        assert_eq!(g.len(), 1);
        let Grant::Namespaced(rb) = &g[0] else {
            panic!("a RoleBinding")
        };
        assert_eq!(rb.metadata.namespace.as_deref(), Some("tenant-b"));
        assert_eq!(rb.role_ref.name, "kubernetes-executor-scale-deployment");
        assert_eq!(rb.role_ref.kind, "ClusterRole");
        let subjects = rb.subjects.clone().unwrap_or_default();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].name, "kubernetes-executor-scale-deployment");
        assert_eq!(subjects[0].namespace.as_deref(), Some("ops"));
        assert_eq!(g[0].execution_uid(), Some(EXEC.uid));
        assert_eq!(
            g[0].execution(),
            Some((EXEC.namespace.to_string(), EXEC.name.to_string())),
            "long names survive in the annotation"
        );
    }

    #[test]
    fn node_actions_get_a_cluster_binding_per_execution() {
        let a = lookup("DrainNode").expect("drain");
        let g = grants_for(a, None, EXEC, "ops");
        assert_eq!(g.len(), 1);
        assert!(
            matches!(&g[0], Grant::Cluster(c) if c.role_ref.name == "kubernetes-executor-drain-node")
        );
        assert_eq!(g[0].name(), binding_name(EXEC.uid));
        assert_eq!(g[0].namespace(), None);
    }

    #[test]
    fn patch_secret_reads_its_source_in_the_executions_namespace() {
        let a = lookup("PatchSecret").expect("patch secret");
        let g = grants_for(a, Some("tenant-b"), EXEC, "ops");
        let places: Vec<_> = g
            .iter()
            .map(|g| (g.namespace().map(String::from), g.name().to_string()))
            .collect();
        assert_eq!(
            places,
            vec![
                (Some("tenant-b".into()), binding_name(EXEC.uid)),
                (Some("tenant-a".into()), source_binding_name(EXEC.uid)),
            ]
        );
        let Grant::Namespaced(rb) = &g[1] else {
            panic!("a RoleBinding")
        };
        assert_eq!(rb.role_ref.name, "kubernetes-executor-patch-secret-source");
    }
}
