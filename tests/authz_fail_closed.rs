//! Fail closed: with the admission policies removed (or never installed),
//! nobody's identity is recorded, and the operator refuses every new
//! execution with `RequesterUnauthorized` — no Job, no grant, no mutation —
//! and says so in /readyz. Its own test binary: it changes cluster-wide
//! admission state that every other test relies on.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kubernetes_executor_crds::Phase;
use kubernetes_executor_testkit::{self as testkit, eventually};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn without_admission_policies_every_execution_fails_closed() {
    let env = env();
    let op = start_operator(env, "operator-fail-closed", &[]).await;
    let client = env.client().await.expect("client");
    for (kind, name) in [
        (
            "mutatingadmissionpolicybinding",
            "kubernetes-executor-requester",
        ),
        ("mutatingadmissionpolicy", "kubernetes-executor-requester"),
        (
            "validatingadmissionpolicybinding",
            "kubernetes-executor-authorize",
        ),
        ("validatingadmissionpolicy", "kubernetes-executor-authorize"),
    ] {
        testkit::operator::kubectl(env, &["delete", kind, name]).expect("delete policy");
    }
    let ns = namespace(&client, "fail-closed").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    // Wait until the API server no longer records requesters.
    let probe = spec("RolloutStatus", "Deployment", "web", None, &[]);
    let api: Api<kubernetes_executor_crds::KubernetesExecution> =
        Api::namespaced(client.clone(), &ns);
    eventually("mutating policy gone", WAIT, || {
        let (api, probe) = (api.clone(), probe.clone());
        async move {
            let dry = api
                .create(
                    &kube::api::PostParams {
                        dry_run: true,
                        ..Default::default()
                    },
                    &kubernetes_executor_crds::KubernetesExecution::new("probe", probe),
                )
                .await?;
            Ok(dry.spec.requester.is_none())
        }
    })
    .await
    .expect("policies removed");

    for (name, s) in [
        (
            "scale",
            spec(
                "ScaleDeployment",
                "Deployment",
                "web",
                None,
                &[("replicas", "3")],
            ),
        ),
        (
            "image",
            spec(
                "UpdateImage",
                "Deployment",
                "web",
                None,
                &[("image", "nginx:1.28")],
            ),
        ),
        ("dry", {
            let mut s = spec(
                "ScaleDeployment",
                "Deployment",
                "web",
                None,
                &[("replicas", "4")],
            );
            s.dry_run = true;
            s
        }),
    ] {
        let e = create(&client, &ns, name, s).await;
        let done = wait_terminal(&client, &ns, name).await;
        assert_eq!(phase(&done), Phase::Failed, "{name}: {:?}", done.status);
        assert_eq!(reason(&done), "RequesterUnauthorized", "{name}");
        assert!(
            message(&done).contains("spec.requester is not set"),
            "{}",
            message(&done)
        );
        let uid = e.uid().unwrap_or_default();
        let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
        let js = jobs
            .list(&ListParams::default().labels(&format!(
                "kubernetesexecution.kubernaut.io/execution-uid={uid}"
            )))
            .await
            .expect("jobs");
        assert!(js.items.is_empty(), "{name}: no Job");
        let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
        assert!(
            rbs.get_opt(&format!("kubernetes-executor-{uid}"))
                .await
                .expect("rb")
                .is_none(),
            "{name}: no grant"
        );
    }
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .expect("web");
    assert_eq!(
        d.spec.as_ref().and_then(|s| s.replicas),
        Some(1),
        "nothing was scaled"
    );
    let images: Vec<String> = d
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers.into_iter().filter_map(|c| c.image).collect())
        .unwrap_or_default();
    assert_eq!(images, vec!["nginx:1.27".to_string()], "no image changed");
    // The operator tells, and keeps serving (fail closed, not down): its
    // admission check runs at start, so restart it to see the new state now.
    drop(op);
    let op = start_operator(env, "operator-fail-closed-2", &[]).await;
    let body = eventually(
        "readyz names the missing policy",
        Duration::from_secs(30),
        || {
            let health = op.health.clone();
            async move {
                let (code, body) = http_get(&health, "/readyz").await?;
                Ok(code == 200 && body.contains("kubernetes-executor-requester is not installed"))
            }
        },
    )
    .await;
    assert!(body.is_ok(), "readyz: {body:?}");
}
