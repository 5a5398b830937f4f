//! Who may ask (pure): the access an execution's requester must hold, in the
//! target's scope, for the operator to act on their behalf. The
//! ExecutionActor asks the API server about each check with a
//! SubjectAccessReview for the recorded requester before anything is locked,
//! granted or run; the `kubernetes-executor-authorize`
//! ValidatingAdmissionPolicy (deploy/admission/) makes the first check at
//! create time with the CEL authorizer.

use kubernetes_executor_crds::{GROUP, Requester, reasons};

use crate::catalog::{FROM_SECRET, Rejection, Scope, ValidatedAction};

/// The custom RBAC verb that lets a subject ask for an action.
pub const EXECUTE_VERB: &str = "execute";
/// The (virtual) resource the `execute` verb applies to; the resource name
/// is the action's canonical name.
pub const ACTIONS_RESOURCE: &str = "actions";

/// One access the requester must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessCheck {
    /// RBAC verb.
    pub verb: &'static str,
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resource.
    pub resource: &'static str,
    /// Resource name.
    pub name: String,
    /// Namespace; `None` means cluster scope.
    pub namespace: Option<String>,
}

impl AccessCheck {
    /// `execute` on `actions/<action>` in the target's scope.
    pub fn execute(action: &str, namespace: Option<String>) -> Self {
        AccessCheck {
            verb: EXECUTE_VERB,
            group: GROUP,
            resource: ACTIONS_RESOURCE,
            name: action.to_string(),
            namespace,
        }
    }

    /// The sentence a denial states, naming who lacks what, e.g.
    /// `system:serviceaccount:tenant-a:bot may not execute ScaleDeployment in namespace tenant-b`.
    pub fn denied(&self, user: &str) -> String {
        let scope = match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "cluster-wide".to_string(),
        };
        if self.verb == EXECUTE_VERB {
            format!("{user} may not execute {} {scope}", self.name)
        } else {
            let res = if self.group.is_empty() {
                self.resource.to_string()
            } else {
                format!("{}.{}", self.resource, self.group)
            };
            format!("{user} may not {} {res} {:?} {scope}", self.verb, self.name)
        }
    }
}

/// Everything the requester of `v` (an execution in `exec_ns`) must be
/// allowed: `execute` on the action in the target's namespace (cluster scope
/// for node actions) and, for PatchSecret, `get` on the source Secret — the
/// operator must not copy a Secret its requester could not read.
pub fn required_checks(v: &ValidatedAction, exec_ns: &str) -> Vec<AccessCheck> {
    let scope = match v.action.scope {
        Scope::Namespaced => v.target.namespace.clone(),
        Scope::Cluster => None,
    };
    let mut checks = vec![AccessCheck::execute(v.action.name, scope)];
    if let Some(source) = v.params.get(FROM_SECRET) {
        checks.push(AccessCheck {
            verb: "get",
            group: "",
            resource: "secrets",
            name: source.clone(),
            namespace: Some(exec_ns.to_string()),
        });
    }
    checks
}

/// The requester recorded by the API server, or the refusal when it is
/// missing (the admission policies are not installed or not enforcing).
pub fn requester(r: Option<&Requester>) -> Result<&Requester, Rejection> {
    r.filter(|r| !r.username.is_empty()).ok_or_else(|| {
        Rejection::new(
            reasons::REQUESTER_UNAUTHORIZED,
            "spec.requester is not set: the admission policy kubernetes-executor-requester \
             is not installed or not enforcing, so nobody can be held to account for this \
             execution; refusing to act (install deploy/admission/)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::validate;
    use kubernetes_executor_crds::{KubernetesExecutionSpec, TargetResource};

    fn spec(
        action: &str,
        kind: &str,
        ns: Option<&str>,
        params: &[(&str, &str)],
    ) -> KubernetesExecutionSpec {
        let mut s = KubernetesExecutionSpec::new(action, TargetResource::new(kind, "t", ns));
        s.parameters = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    #[test]
    fn execute_is_checked_in_the_target_namespace_not_the_executions() {
        let v = validate(
            &spec(
                "scale_deployment",
                "Deployment",
                Some("tenant-b"),
                &[("replicas", "2")],
            ),
            "tenant-a",
        )
        .expect("valid");
        let checks = required_checks(&v, "tenant-a");
        assert_eq!(
            checks,
            vec![AccessCheck::execute(
                "ScaleDeployment",
                Some("tenant-b".into())
            )],
            "alias resolved, target's namespace"
        );
        assert_eq!(
            checks[0].denied("system:serviceaccount:tenant-a:bot"),
            "system:serviceaccount:tenant-a:bot may not execute ScaleDeployment in namespace tenant-b"
        );
        let v = validate(
            &spec("ScaleDeployment", "Deployment", None, &[("replicas", "2")]),
            "tenant-a",
        )
        .expect("valid");
        assert_eq!(
            required_checks(&v, "tenant-a")[0].namespace.as_deref(),
            Some("tenant-a")
        );
    }

    #[test]
    fn node_actions_need_a_cluster_scoped_grant() {
        for a in ["CordonNode", "DrainNode", "UncordonNode"] {
            let v = validate(&spec(a, "Node", None, &[]), "tenant-a").expect("valid");
            let checks = required_checks(&v, "tenant-a");
            assert_eq!(checks, vec![AccessCheck::execute(a, None)]);
            assert!(checks[0].denied("bob").ends_with("cluster-wide"));
        }
    }

    #[test]
    fn patch_secret_also_needs_read_access_to_its_source() {
        let v = validate(
            &spec(
                "PatchSecret",
                "Secret",
                Some("tenant-b"),
                &[("fromSecret", "new-creds")],
            ),
            "tenant-a",
        )
        .expect("valid");
        let checks = required_checks(&v, "tenant-a");
        assert_eq!(checks.len(), 2);
        assert_eq!(
            checks[1].denied("bob"),
            "bob may not get secrets \"new-creds\" in namespace tenant-a"
        );
    }

    #[test]
    fn a_missing_requester_is_refused() {
        assert_eq!(
            requester(None).expect_err("missing").reason,
            reasons::REQUESTER_UNAUTHORIZED
        );
        let empty = Requester::default();
        assert!(requester(Some(&empty)).is_err());
        let bob = Requester {
            username: "bob".into(),
            ..Default::default()
        };
        assert_eq!(requester(Some(&bob)).expect("present").username, "bob");
    }
}
