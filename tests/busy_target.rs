//! One bad object must not stall the operator: 300 executions queued on one
//! target that never frees hold no validation permit, make no API request
//! while they wait, and do not delay an unrelated execution elsewhere. Its
//! own test binary (and control plane): the load would disturb other tests.

mod common;

use std::time::Duration;

use common::*;
use kube::api::Api;
use kubernetes_executor_crds::{KubernetesExecution, Phase, reasons};
use kubernetes_executor_testkit::eventually;
use serde_json::json;

/// Requests the operator made about Leases, from its /metrics.
async fn lease_requests(metrics: &str) -> f64 {
    use kubernetes_executor_loadtest::promtext;
    let (_, m) = http_get(metrics, "/metrics").await.expect("metrics");
    promtext::sum(
        &promtext::parse(&m),
        "kubernetes_executor_api_requests_total",
        &[("resource", "leases")],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn executions_waiting_for_a_busy_target_make_no_requests_and_stall_nobody() {
    let env = env();
    let op = start_operator(env, "operator-busy-target", &[]).await;
    let metrics = op.metrics.clone();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "waiters").await;
    // The holder's rollout never finishes: it keeps the target for minutes.
    deployment(&client, &ns, "hot", 1, json!({}), false).await;
    let mut holder = spec(
        "ScaleDeployment",
        "Deployment",
        "hot",
        None,
        &[("replicas", "2")],
    );
    holder.timeout = Some("5m".into());
    create(&client, &ns, "holder", holder).await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    eventually("holder runs", WAIT, || async {
        Ok(phase(&api.get("holder").await?) == Phase::Executing)
    })
    .await
    .expect("holder executing");
    let n = 300;
    let mut creates = Vec::new();
    for i in 0..n {
        let (client, ns) = (client.clone(), ns.clone());
        creates.push(tokio::spawn(async move {
            let mut s = spec(
                "ScaleDeployment",
                "Deployment",
                "hot",
                None,
                &[("replicas", "3")],
            );
            s.timeout = Some("10m".into());
            create(&client, &ns, &format!("waiter-{i}"), s).await;
        }));
    }
    for c in creates {
        c.await.expect("create");
    }
    eventually(
        "all waiting for the target",
        Duration::from_secs(180),
        || async {
            let list = api.list(&Default::default()).await?;
            Ok(list
                .items
                .iter()
                .filter(|e| reason(e) == reasons::WAITING_FOR_TARGET)
                .count()
                == n)
        },
    )
    .await
    .expect("waiting");
    // While they wait, they ask the API server nothing about the lock. (The
    // count is the whole operator's: other tests' executions take and release
    // locks meanwhile. Polling every 0.5 s would be ~30 requests per waiter.)
    let before = lease_requests(&metrics).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = lease_requests(&metrics).await - before;
    assert!(
        during < n as f64,
        "{n} waiters made {during} Lease requests in 5 s (polling the API)"
    );
    // And an unrelated execution elsewhere runs to the end meanwhile.
    let other = namespace(&client, "waiters-other").await;
    deployment(&client, &other, "calm", 1, json!({}), true).await;
    create(
        &client,
        &other,
        "unrelated",
        spec(
            "ScaleDeployment",
            "Deployment",
            "calm",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &other, "unrelated").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
}
