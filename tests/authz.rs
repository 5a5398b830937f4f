//! Who may ask: requester identity recorded by the API server, authorization
//! in the target's scope at admission and again in the operator, the kill
//! switch by target namespace, and the security matrix of docs/security.md
//! checked row by row — all against the real control plane, as an attacker
//! would try it.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_crds::{KubernetesExecution, KubernetesExecutionSpec, Phase};
use kubernetes_executor_testkit::{self as testkit, eventually};
use serde_json::json;

async fn setup(prefix: &str) -> (Client, String) {
    shared_operator().await;
    let client = env().client().await.expect("client");
    let ns = namespace(&client, prefix).await;
    (client, ns)
}

/// A ServiceAccount `name` in `ns` and a client authenticated with its token.
async fn service_account(admin: &Client, ns: &str, name: &str) -> (Client, ServiceAccount) {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let sa = sas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": name } })).expect("sa"),
        )
        .await
        .expect("create service account");
    let client = token_client(ns, name).await;
    (client, sa)
}

/// Binds ClusterRole `role` to ServiceAccount `sa_ns/sa`: a RoleBinding in
/// `ns`, or a ClusterRoleBinding when `ns` is None.
async fn bind(admin: &Client, ns: Option<&str>, role: &str, sa_ns: &str, sa: &str) {
    let name = format!("{sa_ns}-{sa}-{role}");
    let body = json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": [{ "kind": "ServiceAccount", "name": sa, "namespace": sa_ns }],
    });
    match ns {
        Some(ns) => {
            Api::<RoleBinding>::namespaced(admin.clone(), ns)
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(body).expect("rb"),
                )
                .await
                .expect("create rolebinding");
        }
        None => {
            Api::<ClusterRoleBinding>::all(admin.clone())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(body).expect("crb"),
                )
                .await
                .expect("create clusterrolebinding");
        }
    }
}

async fn try_create(
    client: &Client,
    ns: &str,
    name: &str,
    spec: KubernetesExecutionSpec,
) -> Result<KubernetesExecution, kube::Error> {
    Api::<KubernetesExecution>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &KubernetesExecution::new(name, spec),
        )
        .await
}

/// Creates an execution, retrying while RBAC bindings made just before
/// propagate (a fresh binding can take a moment to be seen by the authorizer).
async fn create_as(
    client: &Client,
    ns: &str,
    name: &str,
    spec: KubernetesExecutionSpec,
) -> KubernetesExecution {
    let mut last = None;
    for _ in 0..40 {
        match try_create(client, ns, name, spec.clone()).await {
            Ok(e) => return e,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("create {ns}/{name}: {last:?}")
}

async fn replicas(client: &Client, ns: &str, name: &str) -> i32 {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or_default()
}

fn forbidden_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403, "refused as Forbidden: {s:?}");
            s.message
        }
        other => panic!("expected a 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_requester_is_recorded_by_the_api_server_and_cannot_be_forged() {
    let (admin, ns) = setup("requester").await;
    // Paused: the executions stay Pending (spec still mutable) while we try
    // to change who asked.
    set_paused(&admin, &ns, true).await;
    // 1. A user through `kubectl --as`, forging another requester.
    let rb = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "alice", "namespace": ns },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubernetes-executor-edit" },
        "subjects": [{ "kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io" }],
    });
    let rb2 = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "alice-execute", "namespace": ns },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubernetes-executor-execute-rollout-status" },
        "subjects": [{ "kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io" }],
    });
    for (i, doc) in [rb, rb2].iter().enumerate() {
        let f = env().dir().join(format!("{ns}-alice-{i}.json"));
        std::fs::write(&f, doc.to_string()).expect("write");
        testkit::operator::kubectl(env(), &["apply", "-f", &f.display().to_string()])
            .expect("bind alice");
    }
    let manifest = env().dir().join(format!("{ns}-forged.yaml"));
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: kubernetesexecution.kubernaut.io/v1alpha1\nkind: KubernetesExecution\n\
             metadata: {{name: by-alice, namespace: {ns}}}\n\
             spec:\n  action: rollout_status\n  targetResource: {{kind: Deployment, name: web}}\n\
             \x20 requester: {{username: system:admin, groups: [system:masters]}}\n"
        ),
    )
    .expect("manifest");
    let mut created = None;
    for _ in 0..40 {
        match testkit::operator::kubectl(
            env(),
            &[
                "--as",
                "alice",
                "--as-group",
                "ke-testers",
                "create",
                "-f",
                &manifest.display().to_string(),
            ],
        ) {
            Ok(_) => {
                created = Some(());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    created.expect("alice may create an execution in her namespace");
    let api: Api<KubernetesExecution> = Api::namespaced(admin.clone(), &ns);
    let by_alice = api.get("by-alice").await.expect("get");
    let r = by_alice.spec.requester.clone().expect("requester recorded");
    assert_eq!(r.username, "alice", "the forged requester is overwritten");
    assert!(r.groups.contains(&"ke-testers".to_string()), "{r:?}");
    assert!(!r.groups.contains(&"system:masters".to_string()), "{r:?}");
    let wide = testkit::operator::kubectl(
        env(),
        &["-n", &ns, "get", "kexec", "by-alice", "-o", "wide"],
    )
    .expect("get -o wide");
    assert!(
        wide.contains("REQUESTER") && wide.contains("alice"),
        "{wide}"
    );

    // 2. A ServiceAccount token.
    let (bot, sa) = service_account(&admin, &ns, "bot").await;
    bind(&admin, Some(&ns), "kubernetes-executor-edit", &ns, "bot").await;
    bind(
        &admin,
        Some(&ns),
        "kubernetes-executor-execute-namespaced",
        &ns,
        "bot",
    )
    .await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    s.requester = Some(kubernetes_executor_crds::Requester {
        username: "system:serviceaccount:kube-system:admin".into(),
        uid: Some("forged".into()),
        groups: vec!["system:masters".into()],
    });
    let by_bot = create_as(&bot, &ns, "by-bot", s).await;
    let r = by_bot.spec.requester.clone().expect("requester recorded");
    assert_eq!(r.username, format!("system:serviceaccount:{ns}:bot"));
    assert_eq!(r.uid, sa.metadata.uid, "the token's UID is recorded");
    assert!(
        r.groups.contains(&format!("system:serviceaccounts:{ns}")),
        "{r:?}"
    );

    // 3. Changing it afterwards is refused, even for an admin.
    let change = api
        .patch(
            "by-bot",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "requester": { "username": "someone-else" } } })),
        )
        .await
        .expect_err("the requester is immutable");
    match change {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert!(s.message.contains("spec.requester"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    let removed = api
        .patch(
            "by-bot",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{ "op": "remove", "path": "/spec/requester" }]))
                    .expect("patch"),
            ),
        )
        .await;
    assert!(removed.is_err(), "the requester cannot be removed either");
    assert_eq!(
        phase(&api.get("by-bot").await.expect("get")),
        Phase::Pending,
        "still paused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_acts_in_its_own_namespace_only() {
    let (admin, tenant_a) = setup("tenant-a").await;
    let tenant_b = namespace(&admin, "tenant-b").await;
    deployment(&admin, &tenant_a, "web", 1, json!({}), true).await;
    deployment(&admin, &tenant_b, "web", 1, json!({}), true).await;
    let (bot, _) = service_account(&admin, &tenant_a, "bot").await;
    bind(
        &admin,
        Some(&tenant_a),
        "kubernetes-executor-edit",
        &tenant_a,
        "bot",
    )
    .await;
    bind(
        &admin,
        Some(&tenant_a),
        "kubernetes-executor-execute-scale-deployment",
        &tenant_a,
        "bot",
    )
    .await;

    // Its own namespace: runs, and the cluster shows it.
    create_as(
        &bot,
        &tenant_a,
        "scale-own",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let done = wait_terminal(&admin, &tenant_a, "scale-own").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(replicas(&admin, &tenant_a, "web").await, 2);
    // Events say who asked.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(admin.clone(), &tenant_a);
    let notes: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("scale-own"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        !notes.is_empty()
            && notes.iter().all(|n| n.contains(&format!(
                "requested by system:serviceaccount:{tenant_a}:bot"
            ))),
        "{notes:?}"
    );

    // Another tenant's namespace: refused at admission, naming what is missing.
    let err = try_create(
        &bot,
        &tenant_a,
        "scale-other",
        spec(
            "UpdateImage",
            "Deployment",
            "web",
            Some(&tenant_b),
            &[("image", "evil:1")],
        ),
    )
    .await
    .expect_err("cross-namespace UpdateImage is refused");
    assert!(forbidden_message(err).contains(&format!(
        "system:serviceaccount:{tenant_a}:bot may not execute UpdateImage in namespace {tenant_b}"
    )));
    let err = try_create(
        &bot,
        &tenant_a,
        "scale-other",
        spec(
            "scale_deployment",
            "Deployment",
            "web",
            Some(&tenant_b),
            &[("replicas", "5")],
        ),
    )
    .await
    .expect_err("cross-namespace scale is refused (alias resolved)");
    assert!(
        forbidden_message(err).contains(&format!(
            "system:serviceaccount:{tenant_a}:bot may not execute ScaleDeployment in namespace {tenant_b}"
        ))
    );
    let api: Api<KubernetesExecution> = Api::namespaced(bot.clone(), &tenant_a);
    assert!(api.get_opt("scale-other").await.expect("get").is_none());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replicas(&admin, &tenant_b, "web").await,
        1,
        "tenant-b untouched"
    );
    let images: Vec<String> = Api::<Deployment>::namespaced(admin.clone(), &tenant_b)
        .get("web")
        .await
        .expect("web")
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers.into_iter().filter_map(|c| c.image).collect())
        .unwrap_or_default();
    assert_eq!(images, vec!["nginx:1.27".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn node_actions_need_a_cluster_scoped_grant() {
    let (admin, ns) = setup("nodes").await;
    let node = testkit::unique_name("ke-authz-node");
    testkit::controlplane::create_ready_node(&admin, &node, true)
        .await
        .expect("node");
    let (bot, _) = service_account(&admin, &ns, "bot").await;
    bind(&admin, Some(&ns), "kubernetes-executor-edit", &ns, "bot").await;
    // A namespaced grant of a node action does not count.
    bind(
        &admin,
        Some(&ns),
        "kubernetes-executor-execute-cordon-node",
        &ns,
        "bot",
    )
    .await;
    bind(
        &admin,
        Some(&ns),
        "kubernetes-executor-execute-namespaced",
        &ns,
        "bot",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for action in ["CordonNode", "DrainNode"] {
        let err = try_create(&bot, &ns, "node", spec(action, "Node", &node, None, &[]))
            .await
            .expect_err("refused without a cluster-scoped grant");
        assert!(forbidden_message(err).contains(&format!(
            "system:serviceaccount:{ns}:bot may not execute {action} cluster-wide"
        )));
    }
    let unschedulable = |admin: Client, node: String| async move {
        Api::<Node>::all(admin)
            .get(&node)
            .await
            .expect("node")
            .spec
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
    };
    assert!(!unschedulable(admin.clone(), node.clone()).await);
    // With a ClusterRoleBinding of the cordon role: cordon works, drain still not.
    bind(
        &admin,
        None,
        "kubernetes-executor-execute-cordon-node",
        &ns,
        "bot",
    )
    .await;
    create_as(
        &bot,
        &ns,
        "cordon",
        spec("CordonNode", "Node", &node, None, &[]),
    )
    .await;
    let done = wait_terminal(&admin, &ns, "cordon").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert!(
        unschedulable(admin.clone(), node.clone()).await,
        "the node is cordoned"
    );
    let err = try_create(
        &bot,
        &ns,
        "drain",
        spec("DrainNode", "Node", &node, None, &[]),
    )
    .await
    .expect_err("drain still refused");
    assert!(forbidden_message(err).contains("may not execute DrainNode cluster-wide"));
    // The cordon's cluster-wide grant was per execution: gone.
    let uid = done.uid().unwrap_or_default();
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    eventually("node grant revoked", WAIT, || async {
        Ok(crbs
            .get_opt(&format!("kubernetes-executor-{uid}"))
            .await?
            .is_none())
    })
    .await
    .expect("revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_namespace_is_protected_from_executions_created_elsewhere() {
    let (admin, ns) = setup("pause-src").await;
    let paused = namespace(&admin, "pause-dst").await;
    deployment(&admin, &paused, "web", 1, json!({}), true).await;
    set_paused(&admin, &paused, true).await;
    // The kill switch answers from a watch: give it a moment to see the pause.
    tokio::time::sleep(Duration::from_secs(2)).await;
    create(
        &admin,
        &ns,
        "into-paused",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            Some(&paused),
            &[("replicas", "3")],
        ),
    )
    .await;
    let api: Api<KubernetesExecution> = Api::namespaced(admin.clone(), &ns);
    eventually("held as Paused", WAIT, || async {
        let e = api.get("into-paused").await?;
        Ok(phase(&e) == Phase::Pending && reason(&e) == "Paused")
    })
    .await
    .expect("held");
    let e = api.get("into-paused").await.expect("get");
    assert!(
        message(&e).contains(&paused),
        "names the paused namespace: {}",
        message(&e)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        phase(&api.get("into-paused").await.expect("get")),
        Phase::Pending
    );
    assert_eq!(
        replicas(&admin, &paused, "web").await,
        1,
        "untouched while paused"
    );
    set_paused(&admin, &paused, false).await;
    let done = wait_terminal(&admin, &ns, "into-paused").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(replicas(&admin, &paused, "web").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_conditions_are_refused_by_default() {
    let (admin, ns) = setup("inline").await;
    deployment(&admin, &ns, "web", 1, json!({}), true).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    s.preconditions = vec![kubernetes_executor_crds::ActionCondition {
        name: "peek".into(),
        policy:
            "package custom.peek\n\ndeny contains sprintf(\"%v\", [input.cluster]) if { true }\n"
                .into(),
        required: true,
        timeout: None,
    }];
    create(&admin, &ns, "peek", s).await;
    let done = wait_terminal(&admin, &ns, "peek").await;
    assert_eq!(phase(&done), Phase::Failed);
    assert_eq!(reason(&done), "InvalidParameters");
    assert!(
        message(&done).contains("\"peek\" is inline Rego"),
        "{}",
        message(&done)
    );
    assert!(
        message(&done).contains("--allow-inline-conditions"),
        "{}",
        message(&done)
    );
    assert_eq!(replicas(&admin, &ns, "web").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_cannot_grant_anything_but_action_roles() {
    let (admin, ns) = setup("grants").await;
    // The operator's own token, as a compromised operator would use it.
    let operator = token_client(OPERATOR_NS, "kubernetes-executor").await;
    let labels = json!({ "app.kubernetes.io/managed-by": "kubernetes-executor", "kubernetesexecution.kubernaut.io/execution-uid": "x" });
    let binding = |name: &str, role: &str, sa_ns: &str, sa: &str| {
        json!({
            "metadata": { "name": name, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
            "subjects": [{ "kind": "ServiceAccount", "name": sa, "namespace": sa_ns }],
        })
    };
    let rbs: Api<RoleBinding> = Api::namespaced(operator.clone(), &ns);
    let crbs: Api<ClusterRoleBinding> = Api::all(operator.clone());
    let attempt_rb = |doc: serde_json::Value| {
        let rbs = rbs.clone();
        async move {
            rbs.create(
                &PostParams::default(),
                &serde_json::from_value(doc).expect("rb"),
            )
            .await
        }
    };
    // An action role to a tenant's ServiceAccount (RBAC alone would allow it).
    let e = attempt_rb(binding(
        "a",
        "kubernetes-executor-scale-deployment",
        &ns,
        "default",
    ))
    .await
    .expect_err("subject must be the action's own SA");
    assert!(forbidden_message(e).contains("only to that action's own ServiceAccount"));
    // A role that is not an action role.
    let e = attempt_rb(binding(
        "b",
        "cluster-admin",
        OPERATOR_NS,
        "kubernetes-executor-scale-deployment",
    ))
    .await
    .expect_err("not an action role");
    // RBAC's escalation check refuses it first (no `bind` on cluster-admin);
    // the grants policy would as well.
    let m = forbidden_message(e);
    assert!(
        m.contains("attempting to grant RBAC permissions not currently held")
            || m.contains("cluster-admin"),
        "{m}"
    );
    // A namespaced action bound cluster-wide.
    let e = crbs
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding(
                &testkit::unique_name("ke-attack"),
                "kubernetes-executor-scale-deployment",
                OPERATOR_NS,
                "kubernetes-executor-scale-deployment",
            ))
            .expect("crb"),
        )
        .await
        .expect_err("no cluster-wide scale grant");
    assert!(forbidden_message(e).contains("cluster-wide only the node actions"));
    // Unlabelled.
    let mut unlabelled = binding(
        "c",
        "kubernetes-executor-scale-deployment",
        OPERATOR_NS,
        "kubernetes-executor-scale-deployment",
    );
    unlabelled["metadata"]["labels"] = json!({});
    let e = attempt_rb(unlabelled).await.expect_err("unlabelled");
    assert!(forbidden_message(e).contains("labelled for one execution"));
    // Deleting somebody else's binding.
    bind(&admin, Some(&ns), "view", &ns, "default").await;
    let e = rbs
        .delete(&format!("{ns}-default-view"), &Default::default())
        .await
        .expect_err("cannot delete a tenant's binding");
    forbidden_message(e);
    // What it may do: the action's role to the action's SA, labelled.
    attempt_rb(binding(
        "ok",
        "kubernetes-executor-scale-deployment",
        OPERATOR_NS,
        "kubernetes-executor-scale-deployment",
    ))
    .await
    .expect("a proper just-in-time grant is admitted");
    rbs.delete("ok", &Default::default())
        .await
        .expect("and removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_janitor_removes_grants_of_gone_executions() {
    let (admin, ns) = setup("janitor").await;
    // A grant as the operator makes them, for an execution that does not
    // exist (its operator crashed, and the execution was deleted meanwhile),
    // created long enough ago to be swept.
    let action = kubernetes_executor_actors::catalog::lookup("ScaleDeployment").expect("scale");
    let grants = kubernetes_executor_actors::grants::grants_for(
        action,
        Some(&ns),
        kubernetes_executor_actors::grants::For {
            namespace: &ns,
            name: "gone",
            uid: "00000000-dead-beef-0000-000000000000",
        },
        OPERATOR_NS,
    );
    let kubernetes_executor_actors::grants::Grant::Namespaced(rb) = grants[0].clone() else {
        panic!("a RoleBinding")
    };
    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), &ns);
    rbs.create(&PostParams::default(), &rb)
        .await
        .expect("leftover grant");
    // The janitor sweeps every minute and skips grants younger than 30 s.
    eventually("leftover grant swept", Duration::from_secs(150), || async {
        Ok(rbs.get_opt(&rb.name_any()).await?.is_none())
    })
    .await
    .expect("the janitor removed it");
}

/// One row of the matrix in docs/security.md.
struct Row {
    identity: String,
    verb: String,
    group: String,
    resource: String,
    name: String,
    namespace: String,
    allowed: bool,
}

fn matrix() -> Vec<Row> {
    let doc = std::fs::read_to_string(repo().join("docs/security.md")).expect("docs/security.md");
    let table = doc.split("## The matrix").nth(1).expect("a matrix section");
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| identity") && !l.starts_with("|---"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            assert_eq!(cells.len(), 7, "row {l:?}");
            Row {
                identity: cells[0].clone(),
                verb: cells[1].clone(),
                group: if cells[2] == "core" {
                    String::new()
                } else {
                    cells[2].clone()
                },
                resource: cells[3].clone(),
                name: cells[4].clone(),
                namespace: cells[5].clone(),
                allowed: match cells[6].as_str() {
                    "yes" => true,
                    "no" => false,
                    other => panic!("allowed must be yes or no, got {other:?}"),
                },
            }
        })
        .take_while(|r| !r.identity.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_security_matrix_holds() {
    let (admin, tenant) = setup("matrix").await;
    let other = namespace(&admin, "matrix-other").await;
    service_account(&admin, &tenant, "bot").await;
    bind(
        &admin,
        Some(&tenant),
        "kubernetes-executor-edit",
        &tenant,
        "bot",
    )
    .await;
    bind(
        &admin,
        Some(&tenant),
        "kubernetes-executor-execute-namespaced",
        &tenant,
        "bot",
    )
    .await;
    let rows = matrix();
    assert!(rows.len() >= 30, "the matrix has its rows: {}", rows.len());
    let sa = |ns: &str, name: &str| {
        (
            format!("system:serviceaccount:{ns}:{name}"),
            vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".to_string(),
            ],
        )
    };
    let reviews: Api<SubjectAccessReview> = Api::all(admin.clone());
    let mut wrong = Vec::new();
    for row in &rows {
        let (user, groups) = match row.identity.as_str() {
            "operator" => sa(OPERATOR_NS, "kubernetes-executor"),
            "requester" => sa(&tenant, "bot"),
            a => {
                let kebab = a
                    .strip_prefix("action:")
                    .unwrap_or_else(|| panic!("unknown identity {a}"));
                sa(OPERATOR_NS, &format!("kubernetes-executor-{kebab}"))
            }
        };
        let namespace = match row.namespace.as_str() {
            "(cluster)" => None,
            "<tenant>" => Some(tenant.clone()),
            "<other>" => Some(other.clone()),
            ns => Some(ns.to_string()),
        };
        let (resource, subresource) = match row.resource.split_once('/') {
            Some((r, s)) => (r.to_string(), Some(s.to_string())),
            None => (row.resource.clone(), None),
        };
        let review: SubjectAccessReview = serde_json::from_value(json!({
            "spec": {
                "user": user, "groups": groups,
                "resourceAttributes": {
                    "verb": row.verb, "group": row.group, "resource": resource,
                    "subresource": subresource, "name": row.name, "namespace": namespace,
                },
            }
        }))
        .expect("review");
        // "yes" rows may need a moment for fresh bindings to propagate.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let answer = loop {
            let a = reviews
                .create(&PostParams::default(), &review)
                .await
                .expect("SubjectAccessReview")
                .status
                .map(|s| s.allowed)
                .unwrap_or(false);
            if a == row.allowed || !row.allowed || std::time::Instant::now() > deadline {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        if answer != row.allowed {
            wrong.push(format!(
                "{} {} {}/{} {} in {:?}: docs say {}, the API server says {}",
                row.identity,
                row.verb,
                row.group,
                row.resource,
                row.name,
                namespace,
                row.allowed,
                answer
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "rows of docs/security.md that do not hold:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_rechecks_the_requester_before_acting() {
    // Admitted while the requester held the grant; the grant is withdrawn
    // before the operator acts (the namespace was paused). The operator's own
    // SubjectAccessReview refuses: RequesterUnauthorized, nothing changed.
    let (admin, ns) = setup("recheck").await;
    deployment(&admin, &ns, "web", 1, json!({}), true).await;
    set_paused(&admin, &ns, true).await;
    let (bot, _) = service_account(&admin, &ns, "bot").await;
    bind(&admin, Some(&ns), "kubernetes-executor-edit", &ns, "bot").await;
    bind(
        &admin,
        Some(&ns),
        "kubernetes-executor-execute-scale-deployment",
        &ns,
        "bot",
    )
    .await;
    create_as(
        &bot,
        &ns,
        "late",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "4")],
        ),
    )
    .await;
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .delete(
            &format!("{ns}-bot-kubernetes-executor-execute-scale-deployment"),
            &Default::default(),
        )
        .await
        .expect("withdraw the grant");
    tokio::time::sleep(Duration::from_secs(1)).await;
    set_paused(&admin, &ns, false).await;
    let done = wait_terminal(&admin, &ns, "late").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    assert_eq!(reason(&done), "RequesterUnauthorized");
    assert!(
        message(&done).contains(&format!(
            "system:serviceaccount:{ns}:bot may not execute ScaleDeployment in namespace {ns}"
        )),
        "{}",
        message(&done)
    );
    assert_eq!(replicas(&admin, &ns, "web").await, 1, "nothing was scaled");
    assert!(
        done.status
            .as_ref()
            .and_then(|s| s.job_name.clone())
            .is_none(),
        "no Job"
    );
}
