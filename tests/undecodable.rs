//! One bad object must not stall the operator: an execution this version
//! cannot decode (here: a CRD loosened by another version lets `stepNumber`
//! exceed int32) is reported on itself and skipped, and the watch keeps
//! serving every other execution. Its own test binary: it changes the CRD.

mod common;

use common::*;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kubernetes_executor_crds::{KubernetesExecution, Phase};
use kubernetes_executor_testkit::eventually;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_execution_is_reported_and_the_others_run() {
    let env = env();
    let _op = start_operator(env, "operator-undecodable", &[]).await;
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "undecodable").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    // Another version of the CRD, without the int32 bound.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        "kubernetesexecutions.kubernetesexecution.kubernaut.io",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{
                "op": "remove",
                "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/stepNumber/format",
            }]))
            .expect("patch"),
        ),
    )
    .await
    .expect("loosen the CRD");
    let ar = ApiResource::erase::<KubernetesExecution>(&());
    let raw: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubernetesexecution.kubernaut.io/v1alpha1",
        "kind": "KubernetesExecution",
        "metadata": { "name": "too-big", "namespace": ns },
        "spec": {
            "action": "ScaleDeployment",
            "parameters": { "replicas": "3" },
            "targetResource": { "kind": "Deployment", "name": "web" },
            "stepNumber": 3_000_000_000u64,
        },
    }))
    .expect("object");
    eventually("the loosened CRD accepts it", WAIT, || async {
        Ok(raw.create(&PostParams::default(), &bad).await.is_ok())
    })
    .await
    .expect("created");
    // Another execution still runs to the end.
    create(
        &client,
        &ns,
        "fine",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "fine").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    // The bad one is reported on itself, and nothing acted on it.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eventually("a warning about too-big", WAIT, || async {
        Ok(events
            .list(&Default::default())
            .await?
            .items
            .iter()
            .any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("too-big")
                    && e.type_.as_deref() == Some("Warning")
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("cannot read this execution"))
            }))
    })
    .await
    .expect("reported");
    let d = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .expect("web");
    assert_eq!(
        d.spec.and_then(|s| s.replicas),
        Some(2),
        "only `fine` scaled it"
    );
    // Every new execution carries the operator's finalizer (the admission
    // policy adds it); one the operator cannot read still deletes.
    let held = raw.get("too-big").await.expect("too-big");
    assert!(
        held.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == kubernetes_executor_crds::FINALIZER),
        "the finalizer from birth: {:?}",
        held.metadata.finalizers
    );
    raw.delete("too-big", &Default::default())
        .await
        .expect("delete too-big");
    eventually("too-big deleted", WAIT, || async {
        Ok(raw.get_opt("too-big").await?.is_none())
    })
    .await
    .expect("an undecodable execution is not kept by the finalizer");
}
