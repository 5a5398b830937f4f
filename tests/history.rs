//! History clean-up: finished executions are deleted after their TTL or
//! beyond the per-namespace history limit; running ones and ones owned by
//! a workflow never are. (Its own test binary: its operator deletes
//! finished executions, which other binaries' tests inspect.)

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kubernetes_executor_crds::{KubernetesExecution, Phase};
use kubernetes_executor_testkit::eventually;
use serde_json::json;

fn dry(ttl: Option<i32>) -> kubernetes_executor_crds::KubernetesExecutionSpec {
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    s.dry_run = true;
    s.ttl_seconds_after_finished = ttl;
    s
}

async fn names(api: &Api<KubernetesExecution>) -> Vec<String> {
    let mut n: Vec<String> = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|e| e.name_any())
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_executions_go_after_their_ttl_or_beyond_the_limit_and_live_or_owned_ones_stay() {
    let env = env();
    let client = env.client().await.expect("client");
    let op = start_operator(
        env,
        "operator-history",
        &["--finished-ttl", "1h", "--finished-history-limit", "2"],
    )
    .await;

    // An own TTL deletes a finished execution; a running one stays, even
    // with a TTL of 0.
    let ns = namespace(&client, "hist-ttl").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    deployment(&client, &ns, "stuck", 1, json!({}), false).await;
    let mut running = spec(
        "ScaleDeployment",
        "Deployment",
        "stuck",
        None,
        &[("replicas", "2")],
    );
    running.timeout = Some("10m".into());
    running.ttl_seconds_after_finished = Some(0);
    create(&client, &ns, "running", running).await;
    let short = create(&client, &ns, "short", dry(Some(2))).await;
    let done = wait_terminal(&client, &ns, "short").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    let gone = eventually("short deleted after its TTL", WAIT, || async {
        Ok(api.get_opt("short").await?.is_none())
    })
    .await;
    assert!(
        gone.is_ok(),
        "a finished execution past its own TTL is deleted:\n{}",
        op.proc.log_tail(6000)
    );
    let uid = short.uid().expect("uid");
    wait_jobs_gone(&client, &uid, "the deleted execution's Job is deleted").await;
    let live = api
        .get("running")
        .await
        .expect("the running execution stays");
    assert!(
        !live.phase().is_terminal(),
        "still running: {:?}",
        live.status
    );

    // What the operator's `delete` cannot do: delete an execution that has
    // not finished (admission policy kubernetes-executor-history).
    let as_operator: Api<KubernetesExecution> =
        Api::namespaced(token_client(OPERATOR_NS, "kubernetes-executor").await, &ns);
    match as_operator.delete("running", &Default::default()).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(
                e.message.contains("may delete only finished executions"),
                "{}",
                e.message
            );
        }
        other => panic!("the operator's identity deleted a running execution: {other:?}"),
    }
    assert!(api.get_opt("running").await.expect("get").is_some());

    // The history limit (2 per namespace): the oldest finished go first.
    let ns2 = namespace(&client, "hist-limit").await;
    deployment(&client, &ns2, "web", 1, json!({}), true).await;
    let api2: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns2);
    for name in ["d1", "d2", "d3", "d4"] {
        create(&client, &ns2, name, dry(None)).await;
        wait_terminal(&client, &ns2, name).await;
        // Completion times are whole seconds: keep them apart.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let limited = eventually("only the two newest remain", WAIT, || async {
        Ok(names(&api2).await == ["d3", "d4"])
    })
    .await;
    assert!(limited.is_ok(), "left: {:?}", names(&api2).await);

    // Owned by a workflow (here a ConfigMap stands in): left to the owner.
    let ns3 = namespace(&client, "hist-owned").await;
    deployment(&client, &ns3, "web", 1, json!({}), true).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns3);
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "workflow" } })).expect("cm"),
        )
        .await
        .expect("owner");
    let api3: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns3);
    for name in ["o1", "o2", "o3"] {
        let mut e = KubernetesExecution::new(name, dry(None));
        e.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "name": "workflow",
                "uid": owner.uid().expect("uid"),
            }))
            .expect("owner reference"),
        ]);
        api3.create(&PostParams::default(), &e)
            .await
            .expect("create");
        wait_terminal(&client, &ns3, name).await;
    }
    // Several sweeps pass (every 5 s); the limit of 2 does not apply.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(names(&api3).await, ["o1", "o2", "o3"]);
    assert_eq!(
        names(&api2).await,
        ["d3", "d4"],
        "the namespace under the limit is left alone"
    );
}
