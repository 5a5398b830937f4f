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
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "victim" },
        "spec": {
            "nodeSelector": { "type": "kwok" },
            "tolerations": [{ "key": testkit::KWOK_TAINT_KEY, "operator": "Exists" }],
            "containers": [{ "name": "main", "image": "busybox" }],
        },
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let rb = run_to_completion(
        &client,
        &ns,
        "delete",
        spec(
            "DeletePod",
            "Pod",
            "victim",
            None,
            &[("gracePeriodSeconds", "0")],
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
