//! Leader election: two operators, one active. Killing the leader lets the
//! standby take over within the lease duration and finish the in-flight
//! executions without duplicates; SIGTERM releases the lease at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kubernetes_executor_crds::{Phase, labels};
use kubernetes_executor_testkit::eventually;
use serde_json::json;

fn holder(l: &Lease) -> Option<String> {
    l.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn standby_takes_over_when_the_leader_dies() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "leader").await;
    for i in 0..4 {
        deployment(&client, &ns, &format!("web-{i}"), 1, json!({}), true).await;
    }
    let mut a = start_operator(env, "operator-a", &["--leader-elect", "--pod-name", "op-a"]).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
    eventually("a leads", WAIT, || async {
        Ok(leases
            .get_opt("kubernetes-executor-leader")
            .await?
            .and_then(|l| holder(&l))
            .as_deref()
            == Some("op-a"))
    })
    .await
    .expect("a leads");
    let mut b = start_operator(env, "operator-b", &["--leader-elect", "--pod-name", "op-b"]).await;
    // The standby is ready (policies loaded) but idle.
    let (_, actors) = http_get(&b.metrics, "/actors").await.expect("actors");
    assert!(
        !actors.contains("supervisor"),
        "standby runs no actor tree: {actors}"
    );

    for i in 0..4 {
        create(
            &client,
            &ns,
            &format!("e-{i}"),
            spec(
                "ScaleDeployment",
                "Deployment",
                &format!("web-{i}"),
                None,
                &[("replicas", "2")],
            ),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.proc.signal("KILL").expect("kill leader");
    let killed = Instant::now();
    eventually("b leads", Duration::from_secs(40), || async {
        Ok(leases
            .get_opt("kubernetes-executor-leader")
            .await?
            .and_then(|l| holder(&l))
            .as_deref()
            == Some("op-b"))
    })
    .await
    .expect("standby takes over");
    let takeover = killed.elapsed();
    // Expiry is observed time: the standby (polling every 2 s) must see the
    // lease unchanged for a whole 15 s lease, so at most 15 + 2 × 2 s (+1 s
    // slack) after the kill.
    assert!(
        takeover <= Duration::from_secs(15 + 2 * 2 + 1),
        "took over after {takeover:?}"
    );

    let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    for i in 0..4 {
        let done = wait_terminal(&client, &ns, &format!("e-{i}")).await;
        assert_eq!(phase(&done), Phase::Completed, "e-{i}: {:?}", done.status);
        let uid = done.metadata.uid.clone().unwrap_or_default();
        let js = jobs
            .list(&ListParams::default().labels(&format!("{}={uid}", labels::EXECUTION_UID)))
            .await
            .expect("jobs");
        assert_eq!(js.items.len(), 1, "e-{i}: exactly one Job");
    }

    // SIGTERM releases the lease at once.
    b.proc.signal("TERM").expect("term");
    let l = leases
        .get("kubernetes-executor-leader")
        .await
        .expect("lease");
    assert_eq!(holder(&l), None, "released on SIGTERM");
}
