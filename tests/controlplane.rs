//! Acceptance tests of the test control plane itself (issue: a real local
//! Kubernetes control plane): real Job and garbage-collector controllers on
//! kwok nodes, real RBAC, real CRD schema enforcement, isolated instances.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use kubernetes_executor_testkit::{self as testkit, Options, eventually};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

async fn setup() -> (Client, String) {
    let env = testkit::shared(None);
    let client = env.client().await.expect("client");
    let ns = testkit::unique_name("cp");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": ns } })).expect("namespace"),
    )
    .await
    .expect("create namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    eventually("default ServiceAccount", WAIT, || async {
        Ok(sas.get_opt("default").await?.is_some())
    })
    .await
    .expect("serviceaccount controller");
    (client, ns)
}

#[tokio::test(flavor = "multi_thread")]
async fn job_runs_on_a_kwok_node_completes_and_its_pod_is_garbage_collected() {
    let (client, ns) = setup().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "hello" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "nodeSelector": { "type": "kwok" },
                "tolerations": [{ "key": testkit::KWOK_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule" }],
                "containers": [{ "name": "main", "image": "busybox", "command": ["true"] }],
            }},
        },
    }))
    .expect("job");
    jobs.create(&PostParams::default(), &job)
        .await
        .expect("create job");

    eventually("job Complete", WAIT, || async {
        let j = jobs.get("hello").await?;
        Ok(j.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True"))
    })
    .await
    .expect("the Job controller completes the Job");

    let list = pods
        .list(&ListParams::default().labels("job-name=hello"))
        .await
        .expect("list pods");
    assert_eq!(list.items.len(), 1, "exactly one pod for the job");
    let node = list.items[0]
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    assert!(
        node.starts_with("kwok-node-"),
        "scheduled onto a kwok node, got {node:?}"
    );
    assert_eq!(
        list.items[0]
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );

    jobs.delete("hello", &DeleteParams::background())
        .await
        .expect("delete job");
    eventually("pod garbage-collected", WAIT, || async {
        Ok(pods
            .list(&ListParams::default().labels("job-name=hello"))
            .await?
            .items
            .is_empty())
    })
    .await
    .expect("the garbage collector deletes the Job's pod");
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_is_enforced_for_service_account_tokens() {
    let (client, ns) = setup().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "reader" } })).expect("sa"),
    )
    .await
    .expect("create sa");
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "pod-reader" },
                "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"] }],
            }))
            .expect("role"),
        )
        .await
        .expect("create role");
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    rbs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": { "name": "reader" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
            "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": ns }],
        }))
        .expect("rolebinding"),
    )
    .await
    .expect("create rolebinding");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": { "name": "victim" },
            "spec": {
                "nodeSelector": { "type": "kwok" },
                "tolerations": [{ "key": testkit::KWOK_TAINT_KEY, "operator": "Exists" }],
                "containers": [{ "name": "main", "image": "busybox" }],
            },
        }))
        .expect("pod"),
    )
    .await
    .expect("create pod");

    let user = format!("system:serviceaccount:{ns}:reader");
    let sar = |verb: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.clone()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.clone()),
                verb: Some(verb.to_string()),
                resource: Some("pods".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let allowed = |r: SubjectAccessReview| r.status.map(|s| s.allowed).unwrap_or(false);
    let get = reviews
        .create(&PostParams::default(), &sar("get"))
        .await
        .expect("SAR get");
    assert!(allowed(get), "get pods is allowed by the Role");
    let del = reviews
        .create(&PostParams::default(), &sar("delete"))
        .await
        .expect("SAR delete");
    assert!(!allowed(del), "delete pods is not granted");

    // Act with a real TokenRequest token of the ServiceAccount.
    let env = testkit::shared(None);
    let tr: k8s_openapi::api::authentication::v1::TokenRequest = serde_json::from_value(json!({
        "spec": { "expirationSeconds": 600 }
    }))
    .expect("token request");
    let token = sas
        .create_token_request("reader", &PostParams::default(), &tr)
        .await
        .expect("TokenRequest")
        .status
        .and_then(|s| s.token)
        .expect("token");
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = dir.path().join("kubeconfig");
    env.write_token_kubeconfig(&kc, &token).expect("kubeconfig");
    let sa_client = testkit::client_from_kubeconfig(&kc)
        .await
        .expect("sa client");
    let sa_pods: Api<Pod> = Api::namespaced(sa_client, &ns);
    let got = sa_pods.get("victim").await.expect("the SA can get the pod");
    assert_eq!(got.name_any(), "victim");
    match sa_pods.delete("victim", &DeleteParams::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "delete is forbidden: {e:?}"),
        other => panic!("delete must be forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crd_installs_and_its_structural_schema_is_enforced() {
    let (client, ns) = setup().await;
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(include_str!("../deploy/crds/kubernetesexecutions.yaml"))
            .expect("crd yaml");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("install CRD: {e}"),
    }
    eventually("CRD Established", WAIT, || async {
        let c = crds.get(&crd.name_any()).await?;
        Ok(c.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"))
    })
    .await
    .expect("CRD established");

    let gvk = GroupVersionKind::gvk(
        "kubernetesexecution.kubernaut.io",
        "v1alpha1",
        "KubernetesExecution",
    );
    let ar = ApiResource::from_gvk_with_plural(&gvk, "kubernetesexecutions");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let obj = |name: &str, spec: serde_json::Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "kubernetesexecution.kubernaut.io/v1alpha1",
            "kind": "KubernetesExecution",
            "metadata": { "name": name },
            "spec": spec,
        }))
        .expect("object")
    };
    let valid = obj(
        "valid",
        json!({ "action": "ScaleDeployment", "parameters": { "replicas": "3" },
                "targetResource": { "kind": "Deployment", "name": "web" } }),
    );
    api.create(&PostParams::default(), &valid)
        .await
        .expect("a valid object is accepted");
    // status.phase only moves forward: a stale writer (a deposed leader)
    // cannot move an execution back.
    let set_phase = |phase: &str| {
        let api = api.clone();
        let patch = json!({ "status": { "phase": phase } });
        async move {
            api.patch_status(
                "valid",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
        }
    };
    set_phase("Executing").await.expect("forward is fine");
    match set_phase("Validating").await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert!(e.message.contains("only moves forward"), "{}", e.message);
        }
        other => panic!("a backwards phase must be refused, got {other:?}"),
    }
    set_phase("Verifying").await.expect("forward is fine");

    for (name, spec, needle) in [
        (
            "no-target",
            json!({ "action": "ScaleDeployment" }),
            "targetResource",
        ),
        (
            "bad-retries",
            json!({ "action": "ScaleDeployment", "maxRetries": 9,
                    "targetResource": { "kind": "Deployment", "name": "web" } }),
            "maxRetries",
        ),
        (
            "bad-params",
            json!({ "action": "ScaleDeployment", "parameters": { "replicas": 3 },
                    "targetResource": { "kind": "Deployment", "name": "web" } }),
            "parameters",
        ),
        // Oversized values are refused at the door, in one request.
        (
            "huge-kind",
            json!({ "action": "ScaleDeployment",
                    "targetResource": { "kind": "D".repeat(500_000), "name": "web" } }),
            "kind",
        ),
        (
            "huge-namespace",
            json!({ "action": "ScaleDeployment",
                    "targetResource": { "kind": "Deployment", "name": "web", "namespace": "n".repeat(500_000) } }),
            "namespace",
        ),
        (
            "huge-param",
            json!({ "action": "PatchConfigMap", "parameters": { "patch": "x".repeat(500_000) },
                    "targetResource": { "kind": "ConfigMap", "name": "web" } }),
            "parameters",
        ),
        (
            "huge-timeout",
            json!({ "action": "ScaleDeployment", "timeout": format!("{}s", "9".repeat(500_000)),
                    "targetResource": { "kind": "Deployment", "name": "web" } }),
            "timeout",
        ),
    ] {
        match api.create(&PostParams::default(), &obj(name, spec)).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(
                    e.code,
                    422,
                    "{name}: {}",
                    &e.message[..e.message.len().min(300)]
                );
                assert!(
                    e.message.len() < 4096,
                    "{name}: the refusal does not repeat the value ({} bytes)",
                    e.message.len()
                );
                assert!(
                    e.message.contains(needle),
                    "{name}: message names {needle}: {}",
                    e.message
                );
            }
            other => panic!("{name} must be rejected by the schema, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_control_planes_run_side_by_side() {
    let env = testkit::shared(None);
    let other = testkit::start_env(
        Options {
            controller_manager: false,
            scheduler: false,
            kwok_nodes: 0,
            state_dir: None,
            real_node: None,
        },
        None,
    )
    .expect("second control plane");
    assert_ne!(env.server(), other.server(), "distinct ports");
    assert_ne!(env.dir(), other.dir(), "distinct state directories");

    let a = env.client().await.expect("client a");
    let b = other.client().await.expect("client b");
    let name = testkit::unique_name("only-in-b");
    let nss_b: Api<Namespace> = Api::all(b);
    nss_b
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": name } })).expect("ns"),
        )
        .await
        .expect("create in b");
    let nss_a: Api<Namespace> = Api::all(a);
    assert!(
        nss_a.get_opt(&name).await.expect("get in a").is_none(),
        "instances share no state"
    );
    let dir = other.dir().to_path_buf();
    drop(other);
    assert!(
        !dir.exists(),
        "the second instance's temp dir is removed on drop"
    );
}
