//! Generates the manifests derived from the catalog, committed under
//! deploy/ and drift-checked by the tests below:
//! - deploy/rbac/actions.yaml: per action a ServiceAccount and a ClusterRole
//!   (same name, `kubernetes-executor-<action-kebab>`; `-source` for what the
//!   Job reads in the execution's namespace), never bound permanently — the
//!   RbacActor binds them just in time; and the requester-side ClusterRoles
//!   that grant the custom verb `execute` on `actions/<Action>`;
//! - deploy/admission/policies.yaml: the admission policies that record the
//!   requester, authorize it in the target's scope, and limit the bindings
//!   the operator's own identity may make.

use kubernetes_executor_actors::authz::{ACTIONS_RESOURCE, EXECUTE_VERB};
use kubernetes_executor_actors::catalog::{CATALOG, Scope};
use kubernetes_executor_actors::k8s::admission::{
    AUTHORIZE_POLICY, GRANTS_POLICY, HISTORY_POLICY, REQUESTER_POLICY,
};
use kubernetes_executor_crds::{GROUP, labels};
use serde_json::{Value, json};

/// ClusterRole granting `execute` on every namespaced action (bind it with a
/// RoleBinding in the namespaces a requester may act in).
pub const EXECUTE_NAMESPACED_ROLE: &str = "kubernetes-executor-execute-namespaced";
/// ClusterRole to create and watch executions (bind it per namespace).
pub const EDIT_ROLE: &str = "kubernetes-executor-edit";
/// ClusterRole of a workflow engine: what [`EDIT_ROLE`] and
/// [`EXECUTE_NAMESPACED_ROLE`] grant together, so one RoleBinding per
/// namespace lets an engine run namespaced steps there (node steps also
/// need the node actions' execute roles, cluster-wide).
pub const WORKFLOW_ENGINE_ROLE: &str = "kubernetes-executor-workflow-engine";

fn yaml_docs(header: &str, docs: &[Value]) -> anyhow::Result<String> {
    let mut out = String::from(header);
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(doc)?);
    }
    Ok(out)
}

fn edit_rule() -> Value {
    json!({ "apiGroups": [GROUP], "resources": ["kubernetesexecutions"], "verbs": ["get", "list", "watch", "create", "delete"] })
}

fn execute_rule(names: Vec<&str>) -> Value {
    json!({ "apiGroups": [GROUP], "resources": [ACTIONS_RESOURCE], "verbs": [EXECUTE_VERB], "resourceNames": names })
}

/// The manifests as a multi-document YAML string.
pub fn rbac_yaml(namespace: &str) -> anyhow::Result<String> {
    let mut docs = Vec::new();
    let rules = |rules: &[kubernetes_executor_actors::catalog::RbacRule]| -> Vec<Value> {
        rules
            .iter()
            .map(|r| json!({ "apiGroups": r.api_groups, "resources": r.resources, "verbs": r.verbs }))
            .collect()
    };
    for a in CATALOG {
        let name = a.service_account();
        let labels =
            json!({ "app.kubernetes.io/name": "kubernetes-executor", labels::ACTION: a.name });
        docs.push(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": name, "namespace": namespace, "labels": labels },
        }));
        docs.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": name, "labels": labels, "annotations": { "kubernetesexecution.kubernaut.io/description": a.description } },
            "rules": rules(a.rules),
        }));
        if let Some(source) = a.source_role() {
            docs.push(json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": { "name": source, "labels": labels, "annotations": {
                    "kubernetesexecution.kubernaut.io/description": format!("What {} reads in the execution's namespace", a.name) } },
                "rules": rules(a.source_rules),
            }));
        }
        let scope = match a.scope {
            Scope::Namespaced => "bind with a RoleBinding in the target namespace",
            Scope::Cluster => "bind with a ClusterRoleBinding (node actions are cluster-scoped)",
        };
        docs.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": a.execute_role(), "labels": labels, "annotations": {
                "kubernetesexecution.kubernaut.io/description": format!("May ask kubernetes-executor to run {} ({scope})", a.name) } },
            "rules": [execute_rule(vec![a.name])],
        }));
    }
    let namespaced: Vec<&str> = CATALOG
        .iter()
        .filter(|a| a.scope == Scope::Namespaced)
        .map(|a| a.name)
        .collect();
    let common = json!({ "app.kubernetes.io/name": "kubernetes-executor" });
    docs.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": EXECUTE_NAMESPACED_ROLE, "labels": common, "annotations": {
            "kubernetesexecution.kubernaut.io/description": "May ask kubernetes-executor to run every namespaced action (bind with a RoleBinding in the target namespace)" } },
        "rules": [execute_rule(namespaced.clone())],
    }));
    docs.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": EDIT_ROLE, "labels": common, "annotations": {
            "kubernetesexecution.kubernaut.io/description": "May create, watch and delete KubernetesExecutions (bind with a RoleBinding in the requester's namespace; acting also needs an execute role in the target's scope)" } },
        "rules": [edit_rule()],
    }));
    docs.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": { "name": WORKFLOW_ENGINE_ROLE, "labels": common, "annotations": {
            "kubernetesexecution.kubernaut.io/description": "What a workflow engine needs: create (also by server-side apply), watch and delete KubernetesExecutions and execute every namespaced action (bind with a RoleBinding in each namespace the engine runs workflows in; node actions also need their execute roles in a ClusterRoleBinding)" } },
        "rules": [
            // patch: server-side apply (the Go API's apply configurations).
            // It cannot move an execution past what it was authorized for:
            // the requester and (after Pending) the spec are immutable, and
            // the operator re-checks the requester before acting.
            json!({ "apiGroups": [GROUP], "resources": ["kubernetesexecutions"], "verbs": ["get", "list", "watch", "create", "patch", "delete"] }),
            execute_rule(namespaced),
        ],
    }));
    yaml_docs(
        "# Generated by `kubernetes-executor rbac`; do not edit. Per-action least-privilege RBAC\n\
         # (bound just in time by the operator) and the requester-side execute roles.\n",
        &docs,
    )
}

/// CEL: JSONPatch operations adding the workflow and step labels (from
/// `spec.workflowExecutionRef.name` and `spec.stepNumber`).
/// Adds the operator's finalizer to a new execution (unless present), but
/// not to a dry run: it changes nothing, so its deletion need not wait
/// (docs/api.md, "Deletion").
fn finalizer_expression() -> String {
    let f = kubernetes_executor_crds::FINALIZER;
    format!(
        "has(object.spec.dryRun) && object.spec.dryRun ? [] \
         : !has(object.metadata.finalizers) \
         ? [JSONPatch{{op: 'add', path: '/metadata/finalizers', value: ['{f}']}}] \
         : ('{f}' in object.metadata.finalizers ? [] \
         : [JSONPatch{{op: 'add', path: '/metadata/finalizers/-', value: '{f}'}}])"
    )
}

fn workflow_labels_expression() -> String {
    let wf = format!(
        "jsonpatch.escapeKey('{}')",
        kubernetes_executor_crds::labels::WORKFLOW
    );
    let step = format!(
        "jsonpatch.escapeKey('{}')",
        kubernetes_executor_crds::labels::STEP
    );
    let has_wf = "has(object.spec.workflowExecutionRef) && has(object.spec.workflowExecutionRef.name) \
        && object.spec.workflowExecutionRef.name.size() <= 63 \
        && object.spec.workflowExecutionRef.name.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')";
    let has_step = "has(object.spec.stepNumber)";
    let labels = format!(
        "(({has_wf}) || {has_step}) && !has(object.metadata.labels) \
         ? [JSONPatch{{op: 'add', path: '/metadata/labels', value: {{}}}}] : []"
    );
    let workflow = format!(
        "({has_wf}) ? [JSONPatch{{op: 'add', path: '/metadata/labels/' + {wf}, \
         value: object.spec.workflowExecutionRef.name}}] : []"
    );
    let step_label = format!(
        "{has_step} ? [JSONPatch{{op: 'add', path: '/metadata/labels/' + {step}, \
         value: string(object.spec.stepNumber)}}] : []"
    );
    format!("({labels}) + ({workflow}) + ({step_label})")
}

/// The binding that makes a ValidatingAdmissionPolicy deny what it refuses.
fn deny_binding(policy: &str, labels: &serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": policy, "labels": labels },
        "spec": { "policyName": policy, "validationActions": ["Deny"] },
    })
}

/// The admission policies and their bindings, as YAML.
pub fn admission_yaml(namespace: &str) -> anyhow::Result<String> {
    let common = json!({ "app.kubernetes.io/name": "kubernetes-executor" });
    let executions = json!([{
        "apiGroups": [GROUP], "apiVersions": ["*"], "resources": ["kubernetesexecutions"],
        "operations": ["CREATE", "UPDATE"],
    }]);
    let mut aliases = serde_json::Map::new();
    for a in CATALOG {
        aliases.insert(a.name.into(), json!(a.name));
        for alias in a.aliases {
            aliases.insert((*alias).into(), json!(a.name));
        }
    }
    let cluster_actions: Vec<&str> = CATALOG
        .iter()
        .filter(|a| a.scope == Scope::Cluster)
        .map(|a| a.name)
        .collect();
    let operator = format!("system:serviceaccount:{namespace}:kubernetes-executor");
    let mut bindable: Vec<String> = Vec::new();
    for a in CATALOG {
        bindable.push(a.service_account());
        bindable.extend(a.source_role());
    }
    let cluster_bindable: Vec<String> = CATALOG
        .iter()
        .filter(|a| a.scope == Scope::Cluster)
        .map(|a| a.service_account())
        .collect();
    let authorizer = format!("authorizer.group('{GROUP}').resource('{ACTIONS_RESOURCE}')");
    let docs = vec![
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy",
            "metadata": { "name": REQUESTER_POLICY, "labels": common },
            "spec": {
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": [GROUP], "apiVersions": ["*"], "resources": ["kubernetesexecutions"],
                    "operations": ["CREATE"],
                }]},
                "mutations": [{
                    "patchType": "JSONPatch",
                    "jsonPatch": { "expression": "[JSONPatch{op: \"add\", path: \"/spec/requester\", value: Object.spec.requester{username: request.userInfo.username, uid: has(request.userInfo.uid) ? request.userInfo.uid : \"\", groups: has(request.userInfo.groups) ? request.userInfo.groups : []}}]" },
                }, {
                    // The workflow and step as labels of the execution
                    // itself, so `kubectl get kexec -l` finds a workflow's
                    // steps (a name that is not a valid label value is
                    // left out rather than failing the create).
                    "patchType": "JSONPatch",
                    "jsonPatch": { "expression": workflow_labels_expression() },
                }, {
                    // The operator's finalizer from birth: the operator
                    // need not add it (one request less per execution that
                    // runs a Job); it removes it when the execution
                    // finishes. Without this policy the operator adds it
                    // before the execution's first Job, as before.
                    "patchType": "JSONPatch",
                    "jsonPatch": { "expression": finalizer_expression() },
                }],
            },
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding",
            "metadata": { "name": REQUESTER_POLICY, "labels": common },
            "spec": { "policyName": REQUESTER_POLICY },
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": AUTHORIZE_POLICY, "labels": common },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": executions },
                "variables": [
                    { "name": "aliases", "expression": serde_json::to_string(&aliases)? },
                    { "name": "action", "expression": "object.spec.action in variables.aliases ? variables.aliases[object.spec.action] : ''" },
                    { "name": "clusterScoped", "expression": format!("variables.action in {}", serde_json::to_string(&cluster_actions)?) },
                    { "name": "targetNamespace", "expression": "has(object.spec.targetResource.namespace) && object.spec.targetResource.namespace != '' ? object.spec.targetResource.namespace : request.namespace" },
                    { "name": "unchanged", "expression": "request.operation == 'UPDATE' && object.spec == oldObject.spec" },
                    { "name": "source", "expression": "variables.action == 'PatchSecret' && has(object.spec.parameters) && 'fromSecret' in object.spec.parameters ? object.spec.parameters['fromSecret'] : ''" },
                ],
                "validations": [
                    {
                        "expression": format!(
                            "variables.unchanged || variables.action == '' || (variables.clusterScoped ? {authorizer}.name(variables.action).check('execute').allowed() : {authorizer}.namespace(variables.targetNamespace).name(variables.action).check('execute').allowed())"
                        ),
                        "messageExpression": "request.userInfo.username + ' may not execute ' + variables.action + (variables.clusterScoped ? ' cluster-wide' : ' in namespace ' + variables.targetNamespace)",
                        "reason": "Forbidden",
                    },
                    {
                        "expression": "variables.unchanged || variables.source == '' || authorizer.group('').resource('secrets').namespace(request.namespace).name(variables.source).check('get').allowed()",
                        "messageExpression": "request.userInfo.username + ' may not get secrets ' + variables.source + ' in namespace ' + request.namespace + ' (the source of PatchSecret)'",
                        "reason": "Forbidden",
                    },
                ],
            },
        }),
        deny_binding(AUTHORIZE_POLICY, &common),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": GRANTS_POLICY, "labels": common },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["*"],
                    "resources": ["rolebindings", "clusterrolebindings"],
                    "operations": ["CREATE", "UPDATE", "DELETE"],
                }]},
                "matchConditions": [{ "name": "made-by-the-operator", "expression": format!("request.userInfo.username == '{operator}'") }],
                "variables": [
                    { "name": "b", "expression": "request.operation == 'DELETE' ? oldObject : object" },
                    { "name": "roles", "expression": serde_json::to_string(&bindable)? },
                    { "name": "clusterRoles", "expression": serde_json::to_string(&cluster_bindable)? },
                ],
                "validations": [
                    {
                        "expression": "variables.b.roleRef.kind == 'ClusterRole' && variables.b.roleRef.name in variables.roles && (request.resource.resource == 'rolebindings' || variables.b.roleRef.name in variables.clusterRoles)",
                        "messageExpression": format!("'{operator} may bind only the action ClusterRoles (cluster-wide only the node actions), not ' + variables.b.roleRef.kind + ' ' + variables.b.roleRef.name"),
                        "reason": "Forbidden",
                    },
                    {
                        "expression": format!("has(variables.b.subjects) && size(variables.b.subjects) == 1 && variables.b.subjects[0].kind == 'ServiceAccount' && variables.b.subjects[0].namespace == '{namespace}' && (variables.b.subjects[0].name == variables.b.roleRef.name || variables.b.subjects[0].name + '-source' == variables.b.roleRef.name)"),
                        "message": format!("{operator} may bind an action ClusterRole only to that action's own ServiceAccount in {namespace}"),
                        "reason": "Forbidden",
                    },
                    {
                        "expression": format!("has(variables.b.metadata.labels) && variables.b.metadata.labels['{}'] == '{}' && '{}' in variables.b.metadata.labels", labels::MANAGED_BY, labels::MANAGER, labels::EXECUTION_UID),
                        "message": format!("{operator} may only make (and remove) bindings labelled for one execution"),
                        "reason": "Forbidden",
                    },
                ],
            },
        }),
        deny_binding(GRANTS_POLICY, &common),
        // The operator deletes executions only as history clean-up: only
        // finished ones (its RBAC `delete` alone would allow any).
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": HISTORY_POLICY, "labels": common },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": [GROUP], "apiVersions": ["*"], "resources": ["kubernetesexecutions"],
                    "operations": ["DELETE"],
                }]},
                "matchConditions": [{ "name": "made-by-the-operator", "expression": format!("request.userInfo.username == '{operator}'") }],
                "validations": [{
                    "expression": "has(oldObject.status) && has(oldObject.status.phase) && oldObject.status.phase in ['Completed', 'Failed']",
                    "messageExpression": format!("'{operator} may delete only finished executions, not one in phase ' + (has(oldObject.status) && has(oldObject.status.phase) ? oldObject.status.phase : 'Pending')"),
                    "reason": "Forbidden",
                }],
            },
        }),
        deny_binding(HISTORY_POLICY, &common),
    ];
    yaml_docs(
        "# Generated by `kubernetes-executor admission`; do not edit. Who may ask: the API server\n\
         # records the requester, admits an execution only if the requester may `execute` the\n\
         # action in the target's scope, and limits the bindings the operator itself may make.\n",
        &docs,
    )
}

/// The policies ConfigMap (`kubernetes-executor-policies`) holding every
/// non-test `.rego` file of `dir`, as YAML (committed as
/// deploy/policies-configmap.yaml; the Deployment mounts it at /etc/policies).
pub fn policies_configmap_yaml(dir: &std::path::Path, namespace: &str) -> anyhow::Result<String> {
    let sources = kubernetes_executor_actors::policy::read_dir(dir, false)?;
    anyhow::ensure!(!sources.is_empty(), "no .rego files in {}", dir.display());
    let data: serde_json::Map<String, serde_json::Value> = sources
        .into_iter()
        .map(|(name, src)| (name, serde_json::Value::String(src)))
        .collect();
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": kubernetes_executor_actors::policy::POLICY_CONFIGMAP,
            "namespace": namespace,
            "labels": { "app.kubernetes.io/name": "kubernetes-executor" },
        },
        "data": data,
    });
    Ok(format!(
        "# Generated by `kubernetes-executor policies-configmap` from policies/; do not edit.\n{}",
        serde_yaml::to_string(&cm)?
    ))
}

#[cfg(test)]
mod tests {
    /// The operator may `bind` exactly the action ClusterRoles (and their
    /// `-source` roles): the hand-written list in operator.yaml follows the
    /// catalog.
    #[test]
    fn the_operator_may_bind_exactly_the_action_roles() {
        use kubernetes_executor_actors::catalog::CATALOG;
        let committed = include_str!("../deploy/rbac/operator.yaml");
        let mut listed: Vec<&str> = committed
            .lines()
            .skip_while(|l| !l.contains("verbs: [\"bind\"]"))
            .skip(2) // the verbs line and `resourceNames:`
            .map_while(|l| l.trim().strip_prefix("- kubernetes-executor-"))
            .collect();
        listed.sort();
        let mut want: Vec<String> = CATALOG
            .iter()
            .flat_map(|a| {
                let sa = a.service_account();
                let mut v = vec![sa.clone()];
                if !a.source_rules.is_empty() {
                    v.push(format!("{sa}-source"));
                }
                v
            })
            .map(|n| n.trim_start_matches("kubernetes-executor-").to_string())
            .collect();
        want.sort();
        assert_eq!(listed, want, "deploy/rbac/operator.yaml's bind list");
    }

    #[test]
    fn committed_rbac_manifests_match_the_catalog() {
        let generated = super::rbac_yaml("kubernetes-executor-system").expect("yaml");
        let committed = include_str!("../deploy/rbac/actions.yaml");
        assert!(
            generated == committed,
            "deploy/rbac/actions.yaml is stale: run `make manifests`"
        );
    }

    #[test]
    fn committed_admission_policies_match_the_catalog() {
        let generated = super::admission_yaml("kubernetes-executor-system").expect("yaml");
        let committed = include_str!("../deploy/admission/policies.yaml");
        assert!(
            generated == committed,
            "deploy/admission/policies.yaml is stale: run `make manifests`"
        );
    }

    #[test]
    fn committed_policies_configmap_matches_policies_dir() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let generated =
            super::policies_configmap_yaml(&dir, "kubernetes-executor-system").expect("yaml");
        let committed = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policies-configmap.yaml"),
        )
        .unwrap_or_default();
        assert!(
            generated == committed,
            "deploy/policies-configmap.yaml is stale: run `make manifests`"
        );
    }

    #[test]
    fn committed_crd_matches_the_types() {
        let committed = include_str!("../deploy/crds/kubernetesexecutions.yaml");
        assert!(
            kubernetes_executor_crds::crd_yaml() == committed,
            "deploy/crds/ is stale: run `make crds`"
        );
    }
}
