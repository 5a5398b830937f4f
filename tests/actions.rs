//! Actions run for real by `run-action` under their per-action
//! ServiceAccounts: each changes the cluster, records rollback information,
//! and applying the inverse restores the previous state.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubernetes_executor_crds::{KubernetesExecution, Phase, RollbackInfo};
use kubernetes_executor_testkit::{self as testkit, eventually};
use serde_json::json;

async fn setup(prefix: &str) -> (Client, String) {
    shared_operator().await;
    let client = env().client().await.expect("client");
    let ns = namespace(&client, prefix).await;
    (client, ns)
}

async fn run_to_completion(
    client: &Client,
    ns: &str,
    name: &str,
    s: kubernetes_executor_crds::KubernetesExecutionSpec,
) -> RollbackInfo {
    create(client, ns, name, s).await;
    let done: KubernetesExecution = wait_terminal(client, ns, name).await;
    assert_eq!(phase(&done), Phase::Completed, "{name}: {:?}", done.status);
    done.status
        .and_then(|s| s.rollback_info)
        .expect("rollback info")
}

#[tokio::test(flavor = "multi_thread")]
async fn cordon_and_uncordon_a_node() {
    let (client, ns) = setup("cordon").await;
    let node = testkit::unique_name("spare");
    testkit::controlplane::create_ready_node(&client, &node, true)
        .await
        .expect("node");
    let nodes: Api<Node> = Api::all(client.clone());
    let unschedulable = |n: Node| n.spec.and_then(|s| s.unschedulable).unwrap_or(false);

    let rb = run_to_completion(
        &client,
        &ns,
        "cordon",
        spec("CordonNode", "Node", &node, None, &[]),
    )
    .await;
    assert!(unschedulable(nodes.get(&node).await.expect("node")));
    assert_eq!(rb.was_unschedulable, Some(false));
    assert!(rb.restorable);

    let rb = run_to_completion(
        &client,
        &ns,
        "uncordon",
        spec("UncordonNode", "Node", &node, None, &[]),
    )
    .await;
    assert!(!unschedulable(nodes.get(&node).await.expect("node")));
    assert_eq!(rb.was_unschedulable, Some(true));

    // Idempotent: uncordoning a schedulable node is a successful no-op.
    run_to_completion(
        &client,
        &ns,
        "uncordon-again",
        spec("UncordonNode", "Node", &node, None, &[]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_image_records_previous_images_and_the_inverse_restores_them() {
    let (client, ns) = setup("image").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let rb = run_to_completion(
        &client,
        &ns,
        "image",
        spec(
            "UpdateImage",
            "Deployment",
            "web",
            None,
            &[("image", "nginx:1.28")],
        ),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let image = |d: Deployment| {
        d.spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers[0].image.clone().unwrap_or_default())
    };
    assert_eq!(
        image(deployments.get("web").await.expect("get")).as_deref(),
        Some("nginx:1.28")
    );
    let previous = rb.previous_images.clone().expect("previous images");
    assert_eq!(previous.get("app").map(String::as_str), Some("nginx:1.27"));
    // Apply the inverse through the operator again.
    run_to_completion(
        &client,
        &ns,
        "image-back",
        spec(
            "UpdateImage",
            "Deployment",
            "web",
            None,
            &[("image", &previous["app"]), ("container", "app")],
        ),
    )
    .await;
    assert_eq!(
        image(deployments.get("web").await.expect("get")).as_deref(),
        Some("nginx:1.27")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_deployment_rolls_the_pods() {
    let (client, ns) = setup("restart").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let rb = run_to_completion(
        &client,
        &ns,
        "restart",
        spec("RestartDeployment", "Deployment", "web", None, &[]),
    )
    .await;
    assert!(!rb.restorable && rb.reason.is_some());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = deployments.get("web").await.expect("get");
    let annotations = d
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert!(
        annotations.contains_key("kubectl.kubernetes.io/restartedAt"),
        "{annotations:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_pod_deletes_exactly_that_pod() {
    let (client, ns) = setup("delpod").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    kwok_pod(&client, &ns, "victim").await;
    let rb = run_to_completion(
        &client,
        &ns,
        "delete",
        spec(
            "DeletePod",
            "Pod",
            "victim",
            None,
            // "0" (force deletion) is refused by the default policy.
            &[("gracePeriodSeconds", "1")],
        ),
    )
    .await;
    assert_eq!(rb.evicted_pods, vec![format!("{ns}/victim")]);
    eventually("pod gone", WAIT, || async {
        Ok(pods.get_opt("victim").await?.is_none())
    })
    .await
    .expect("deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_config_map_records_previous_data_and_the_inverse_restores_it() {
    let (client, ns) = setup("patchcm").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "settings" }, "data": { "mode": "slow", "keep": "1" } }),
    )
    .expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create cm");
    let rb = run_to_completion(
        &client,
        &ns,
        "patch",
        spec(
            "PatchConfigMap",
            "ConfigMap",
            "settings",
            None,
            &[("patch", r#"{"data":{"mode":"fast"}}"#)],
        ),
    )
    .await;
    let data = cms
        .get("settings")
        .await
        .expect("get")
        .data
        .unwrap_or_default();
    assert_eq!(data.get("mode").map(String::as_str), Some("fast"));
    assert_eq!(data.get("keep").map(String::as_str), Some("1"));
    let previous = rb.previous_data.expect("previous data");
    // Only the keys the patch touches are recorded (never a whole ConfigMap).
    assert_eq!(
        previous.keys().collect::<Vec<_>>(),
        vec!["mode"],
        "{previous:?}"
    );
    assert!(
        rb.previous_data_digest
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    // The inverse: put the previous data back.
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": previous })),
    )
    .await
    .expect("restore");
    assert_eq!(
        cms.get("settings")
            .await
            .expect("get")
            .data
            .unwrap_or_default()
            .get("mode")
            .map(String::as_str),
        Some("slow")
    );
}

/// A kwok node of its own, with `replicas` pods of a Deployment pinned to it
/// and a DaemonSet pod on it.
async fn node_with_pods(client: &Client, ns: &str, replicas: i32) -> String {
    let node = testkit::unique_name("drain");
    testkit::controlplane::create_ready_node(client, &node, true)
        .await
        .expect("node");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "app", "labels": { "app": "app" } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "app" } },
            "template": {
                "metadata": { "labels": { "app": "app" } },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": node },
                    "tolerations": [{ "key": testkit::KWOK_TAINT_KEY, "operator": "Exists" }],
                    "containers": [{ "name": "app", "image": "nginx:1.27" }],
                },
            },
        },
    }))
    .expect("deployment");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let ds: k8s_openapi::api::apps::v1::DaemonSet = serde_json::from_value(json!({
        "metadata": { "name": "agent" },
        "spec": {
            "selector": { "matchLabels": { "app": "agent" } },
            "template": {
                "metadata": { "labels": { "app": "agent" } },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": node },
                    "tolerations": [{ "operator": "Exists" }],
                    "containers": [{ "name": "agent", "image": "agent:1" }],
                },
            },
        },
    }))
    .expect("daemonset");
    Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ds)
        .await
        .expect("create ds");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let want = replicas as usize + 1;
    eventually("pods running on the node", WAIT, || async {
        let list = pods.list(&Default::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .count()
            == want)
    })
    .await
    .expect("pods scheduled and running");
    node
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_evicts_everything_but_daemonset_pods() {
    let (client, ns) = setup("drain").await;
    let node = node_with_pods(&client, &ns, 2).await;
    let rb = run_to_completion(
        &client,
        &ns,
        "drain",
        spec("DrainNode", "Node", &node, None, &[("timeout", "60")]),
    )
    .await;
    assert_eq!(rb.evicted_pods.len(), 2, "{:?}", rb.evicted_pods);
    assert!(
        rb.evicted_pods
            .iter()
            .all(|p| p.starts_with(&format!("{ns}/app-"))),
        "{:?}",
        rb.evicted_pods
    );
    assert_eq!(rb.was_unschedulable, Some(false));
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(
        nodes
            .get(&node)
            .await
            .expect("node")
            .spec
            .and_then(|s| s.unschedulable),
        Some(true)
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let left: Vec<String> = pods
        .list(&Default::default())
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
        .map(|p| p.metadata.name.unwrap_or_default())
        .collect();
    assert_eq!(left.len(), 1, "only the DaemonSet pod stays: {left:?}");
    assert!(left[0].starts_with("agent-"), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_never_evicts_an_action_jobs_pod() {
    // A pod of an action Job (another execution's) runs on the node being
    // drained; the drain leaves it alone (and its own Job avoids the node).
    let (client, ns) = setup("drainjob").await;
    let node = node_with_pods(&client, &ns, 1).await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "action-pod", "labels": { "app.kubernetes.io/managed-by": "kubernetes-executor" } },
        "spec": {
            "nodeSelector": { "kubernetes.io/hostname": node },
            "tolerations": [{ "key": testkit::KWOK_TAINT_KEY, "operator": "Exists" }],
            "containers": [{ "name": "action", "image": "kubernetes-executor:latest" }],
        },
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("action pod");
    eventually("action pod on the node", WAIT, || async {
        Ok(pods
            .get("action-pod")
            .await?
            .spec
            .and_then(|s| s.node_name)
            .as_deref()
            == Some(node.as_str()))
    })
    .await
    .expect("scheduled");
    let rb = run_to_completion(
        &client,
        &ns,
        "drain",
        spec(
            "DrainNode",
            "Node",
            &node,
            None,
            &[("timeout", "60"), ("force", "true")],
        ),
    )
    .await;
    assert!(
        !rb.evicted_pods.iter().any(|p| p.ends_with("/action-pod")),
        "{:?}",
        rb.evicted_pods
    );
    assert!(
        pods.get_opt("action-pod").await.expect("get").is_some(),
        "still there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_blocked_by_a_pdb_fails_naming_it() {
    let (client, ns) = setup("drainpdb").await;
    let node = node_with_pods(&client, &ns, 2).await;
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": { "name": "app-pdb" },
        "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "app" } } },
    }))
    .expect("pdb");
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), &ns);
    pdbs.create(&PostParams::default(), &pdb)
        .await
        .expect("create pdb");
    eventually("PDB observed", WAIT, || async {
        Ok(pdbs
            .get("app-pdb")
            .await?
            .status
            .is_some_and(|s| s.observed_generation.is_some() && s.current_healthy == Some(2)))
    })
    .await
    .expect("disruption controller computed the PDB");
    let mut s = spec("DrainNode", "Node", &node, None, &[("timeout", "8")]);
    s.timeout = Some("40s".into());
    create(&client, &ns, "drain", s).await;
    let done = wait_terminal(&client, &ns, "drain").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    let err = done
        .status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .and_then(|r| r.error.clone())
        .unwrap_or_default();
    assert!(
        err.contains(&format!("PodDisruptionBudget {ns}/app-pdb")),
        "{err}"
    );
    assert!(
        message(&done).contains("app-pdb"),
        "status message names the PDB: {}",
        message(&done)
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let app_pods = pods
        .list(&kube::api::ListParams::default().labels("app=app"))
        .await
        .expect("pods")
        .items;
    assert_eq!(app_pods.len(), 2, "nothing was evicted");
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_secret_by_reference_never_exposes_values() {
    let (client, ns) = setup("secret").await;
    // The target lives in another namespace; the new value in a Secret of
    // the execution's own namespace.
    let target_ns = namespace(&client, "secret-target").await;
    let put = |ns: &str, name: &str, value: &str| {
        let (client, ns, name, value) = (
            client.clone(),
            ns.to_string(),
            name.to_string(),
            value.to_string(),
        );
        async move {
            let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
                "metadata": { "name": name }, "stringData": { "password": value, "user": "app" }
            }))
            .expect("secret");
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, &ns)
                .create(&PostParams::default(), &s)
                .await
                .expect("create secret");
        }
    };
    put(&target_ns, "db", "old-s3cret-value").await;
    put(&ns, "db-rotated", "new-s3cret-value").await;

    // Inline values are refused, naming the parameter to use instead.
    create(
        &client,
        &ns,
        "inline",
        spec(
            "PatchSecret",
            "Secret",
            "db",
            Some(&target_ns),
            &[(
                "patch",
                r#"{"stringData":{"password":"inline-s3cret-value"}}"#,
            )],
        ),
    )
    .await;
    let refused = wait_terminal(&client, &ns, "inline").await;
    assert_eq!(phase(&refused), Phase::Failed);
    assert_eq!(reason(&refused), "InvalidParameters");
    assert!(
        message(&refused).contains("fromSecret"),
        "{}",
        message(&refused)
    );
    assert!(
        !message(&refused).contains("inline-s3cret"),
        "{}",
        message(&refused)
    );

    let e = create(
        &client,
        &ns,
        "rotate",
        spec(
            "PatchSecret",
            "Secret",
            "db",
            Some(&target_ns),
            &[("fromSecret", "db-rotated")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "rotate").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &target_ns);
    let data = secrets
        .get("db")
        .await
        .expect("get")
        .data
        .unwrap_or_default();
    assert_eq!(
        data.get("password").map(|b| b.0.as_slice()),
        Some(b"new-s3cret-value".as_slice()),
        "the target got the source's value"
    );
    let rb = done
        .status
        .clone()
        .and_then(|s| s.rollback_info)
        .expect("rollback");
    assert_eq!(
        rb.patched_keys,
        vec!["password".to_string(), "user".to_string()]
    );
    let digest = rb.previous_data_digest.clone().unwrap_or_default();
    assert!(digest.starts_with("sha256-salted:"), "{digest}");
    assert!(rb.previous_data.is_none());

    // No value anywhere: the execution object, Events, the Job, the
    // operator's log and the API server's audit log (requests logged with
    // their bodies).
    let whole = serde_json::to_string(
        &Api::<KubernetesExecution>::namespaced(client.clone(), &ns)
            .get("rotate")
            .await
            .expect("get"),
    )
    .expect("json");
    assert!(!whole.contains("s3cret"), "{whole}");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let evs = serde_json::to_string(
        &events
            .list(&Default::default())
            .await
            .expect("events")
            .items,
    )
    .expect("json");
    assert!(!evs.contains("s3cret"));
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    let uid = e.metadata.uid.clone().unwrap_or_default();
    let js = jobs
        .list(&kube::api::ListParams::default().labels(&format!(
            "kubernetesexecution.kubernaut.io/execution-uid={uid}"
        )))
        .await
        .expect("jobs")
        .items;
    assert_eq!(js.len(), 1);
    assert!(
        !serde_json::to_string(&js[0])
            .expect("json")
            .contains("s3cret")
    );
    let log = std::fs::read_to_string(env().dir().join("logs/operator.log")).expect("operator log");
    assert!(log.contains(&uid), "the operator log covers this execution");
    assert!(
        !log.contains("s3cret"),
        "no secret value in the operator's log"
    );
    let audit = std::fs::read_to_string(env().audit_log()).expect("audit log");
    assert!(
        audit.contains("db-rotated"),
        "the audit log records execution requests with bodies"
    );
    assert!(
        !audit.contains("new-s3cret") && !audit.contains("old-s3cret"),
        "no secret value in the audit log"
    );
    // The just-in-time grants (target and source) are gone once it ended.
    let rbs = |ns: String| {
        Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), &ns)
    };
    let (target_rbs, source_rbs) = (rbs(target_ns.clone()), rbs(ns.clone()));
    eventually("grants revoked", WAIT, || async {
        Ok(target_rbs
            .get_opt(&format!("kubernetes-executor-{uid}"))
            .await?
            .is_none()
            && source_rbs
                .get_opt(&format!("kubernetes-executor-{uid}-source"))
                .await?
                .is_none())
    })
    .await
    .expect("grants removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_action_refuses_a_recreated_target() {
    let (client, ns) = setup("stale").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let dir = tempfile::tempdir().expect("tmp");
    let term = dir.path().join("termination-log");
    let out = std::process::Command::new(binary())
        .args([
            "run-action",
            "--action",
            "ScaleDeployment",
            "--kind",
            "Deployment",
            "--name",
            "web",
            "--namespace",
            &ns,
        ])
        .args([
            "--expected-uid",
            "00000000-0000-0000-0000-000000000000",
            "--param",
            "replicas=5",
            "--timeout-seconds",
            "30",
        ])
        .env("KUBECONFIG", env().kubeconfig())
        .env("KE_TERMINATION_LOG", &term)
        .output()
        .expect("run-action");
    assert_eq!(out.status.code(), Some(2), "permanent failure");
    let msg = std::fs::read_to_string(&term).expect("termination log");
    assert!(msg.contains("recreated since validation"), "{msg}");
    assert!(msg.contains("\"reason\":\"TargetChanged\""), "{msg}");
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .expect("get");
    assert_eq!(
        d.spec.and_then(|s| s.replicas),
        Some(1),
        "the target was not touched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_map_changed_since_validation_is_not_patched() {
    let (client, ns) = setup("changed").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm: ConfigMap = serde_json::from_value(
        json!({ "metadata": { "name": "settings" }, "data": { "mode": "slow" } }),
    )
    .expect("cm");
    let created = cms.create(&PostParams::default(), &cm).await.expect("cm");
    let seen = created
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    // Someone changes it after validation saw `seen`.
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": { "mode": "manual" } })),
    )
    .await
    .expect("concurrent change");
    for (patch_type, patch) in [
        ("merge", r#"{"data":{"mode":"fast"}}"#),
        (
            "json",
            r#"[{"op":"replace","path":"/data/mode","value":"fast"}]"#,
        ),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let term = dir.path().join("termination-log");
        let out = std::process::Command::new(binary())
            .args([
                "run-action",
                "--action",
                "PatchConfigMap",
                "--kind",
                "ConfigMap",
            ])
            .args(["--name", "settings", "--namespace", &ns])
            .args(["--expected-resource-version", &seen])
            .args([
                "--param",
                &format!("patch={patch}"),
                "--param",
                &format!("patchType={patch_type}"),
            ])
            .env("KUBECONFIG", env().kubeconfig())
            .env("KE_TERMINATION_LOG", &term)
            .output()
            .expect("run-action");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{patch_type}: permanent failure"
        );
        let msg = std::fs::read_to_string(&term).expect("termination log");
        assert!(
            msg.contains("\"reason\":\"TargetChanged\""),
            "{patch_type}: {msg}"
        );
        assert!(
            msg.contains("changed since validation"),
            "{patch_type}: {msg}"
        );
    }
    let data = cms
        .get("settings")
        .await
        .expect("get")
        .data
        .unwrap_or_default();
    assert_eq!(
        data.get("mode").map(String::as_str),
        Some("manual"),
        "not patched"
    );
}

async fn allowed(
    client: &Client,
    user: &str,
    ns: Option<&str>,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r.to_string(), Some(s.to_string())),
        None => (resource.to_string(), None),
    };
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: ns.map(String::from),
                group: Some(group.to_string()),
                resource: Some(resource),
                subresource: sub,
                verb: Some(verb.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &sar)
        .await
        .expect("SAR")
        .status
        .map(|s| s.allowed)
        .unwrap_or(false)
}

/// Writes that matter, none of which an action may hold unless its rules say so.
const SENSITIVE: &[(&str, &str, &str)] = &[
    ("apps", "deployments", "delete"),
    ("apps", "deployments", "patch"),
    ("apps", "deployments/scale", "update"),
    ("", "pods", "create"),
    ("", "pods", "delete"),
    ("", "pods/eviction", "create"),
    ("", "secrets", "get"),
    ("", "secrets", "patch"),
    ("", "configmaps", "patch"),
    ("", "nodes", "patch"),
    ("", "nodes", "delete"),
    ("rbac.authorization.k8s.io", "rolebindings", "create"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_action_service_account_holds_exactly_its_grant() {
    use kubernetes_executor_actors::catalog::{CATALOG, Scope};
    use kubernetes_executor_actors::grants::{For, Grant, grants_for};
    let (client, ns) = setup("rbac").await;
    let other = namespace(&client, "rbac-other").await;
    for action in CATALOG {
        let sa = format!(
            "system:serviceaccount:{OPERATOR_NS}:{}",
            action.service_account()
        );
        let target_ns = match action.scope {
            Scope::Namespaced => Some(ns.as_str()),
            Scope::Cluster => None,
        };
        // At rest (no execution running) an action's ServiceAccount holds
        // nothing of its rules in this namespace. (Node actions are checked
        // below by their bindings: other tests of this binary run node
        // actions concurrently, whose grants are cluster-wide while they run.)
        for rule in action
            .rules
            .iter()
            .filter(|_| action.scope == Scope::Namespaced)
        {
            for (g, r, v) in rule.api_groups.iter().flat_map(|g| {
                rule.resources
                    .iter()
                    .flat_map(move |r| rule.verbs.iter().map(move |v| (*g, *r, *v)))
            }) {
                let ns_for = if r == "nodes" { None } else { target_ns };
                assert!(
                    !allowed(&client, &sa, ns_for, g, r, v).await,
                    "{}: {v} {g}/{r} must not be held without an execution",
                    action.name
                );
            }
        }
        // The just-in-time grants the RbacActor makes for one execution.
        let uid = format!("test-{}", action.kebab());
        let exec = For {
            namespace: &ns,
            name: "x",
            uid: &uid,
        };
        for g in grants_for(action, target_ns, exec, OPERATOR_NS) {
            match g {
                Grant::Namespaced(rb) => {
                    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(
                        client.clone(),
                        rb.metadata.namespace.as_deref().unwrap_or_default(),
                    )
                    .create(&PostParams::default(), &rb)
                    .await
                    .expect("create JIT binding");
                }
                Grant::Cluster(crb) => {
                    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
                        .create(&PostParams::default(), &crb)
                        .await
                        .expect("create JIT cluster binding");
                }
            }
        }
        let mut granted = Vec::new();
        for rule in action.rules {
            for g in rule.api_groups {
                for r in rule.resources {
                    for v in rule.verbs {
                        granted.push((g.to_string(), r.to_string(), v.to_string()));
                        let ns_for = if *r == "nodes" { None } else { target_ns };
                        let ok = eventually(
                            "grant visible",
                            std::time::Duration::from_secs(10),
                            || async { Ok(allowed(&client, &sa, ns_for, g, r, v).await) },
                        )
                        .await;
                        assert!(ok.is_ok(), "{}: {v} {g}/{r} must be allowed", action.name);
                        if action.scope == Scope::Namespaced {
                            assert!(
                                !allowed(&client, &sa, Some(&other), g, r, v).await,
                                "{}: {v} {g}/{r} must not reach another namespace",
                                action.name
                            );
                        }
                    }
                }
            }
        }
        for (g, r, v) in SENSITIVE {
            if granted
                .iter()
                .any(|(gg, rr, vv)| gg == g && rr == r && vv == v)
            {
                continue;
            }
            let ns_for = if *r == "nodes" {
                None
            } else {
                Some(ns.as_str())
            };
            assert!(
                !allowed(&client, &sa, ns_for, g, r, v).await,
                "{}: {v} {g}/{r} must be forbidden",
                action.name
            );
        }
    }
    // The operator itself can run none of the actions' writes.
    let operator = format!("system:serviceaccount:{OPERATOR_NS}:kubernetes-executor");
    for (g, r, v) in SENSITIVE
        .iter()
        .filter(|(_, r, v)| !matches!((*r, *v), ("rolebindings", "create")))
    {
        let ns_for = if *r == "nodes" {
            None
        } else {
            Some(ns.as_str())
        };
        assert!(
            !allowed(&client, &operator, ns_for, g, r, v).await,
            "operator: {v} {g}/{r} must be forbidden"
        );
    }
    // No permanent binding of any action role: every ClusterRoleBinding of
    // one is a labelled per-execution grant.
    let action_roles: Vec<String> = CATALOG.iter().map(|a| a.service_account()).collect();
    for crb in Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("clusterrolebindings")
        .items
    {
        if action_roles.contains(&crb.role_ref.name) {
            assert!(
                crb.metadata.labels.as_ref().is_some_and(
                    |l| l.contains_key("kubernetesexecution.kubernaut.io/execution-uid")
                ),
                "permanent binding of an action role: {:?}",
                crb.metadata.name
            );
        }
    }
    // Node actions' grants are per execution: remove this test's.
    for action in CATALOG.iter().filter(|a| a.scope == Scope::Cluster) {
        let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
            .delete(
                &kubernetes_executor_actors::grants::binding_name(&format!(
                    "test-{}",
                    action.kebab()
                )),
                &Default::default(),
            )
            .await;
    }
}
