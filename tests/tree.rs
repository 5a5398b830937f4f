//! One supervised actor tree: each shared actor, panicked inside a running
//! operator (the `--chaos` test hook), is restarted by the root; executions
//! in flight still finish (checked on the cluster, not only in status);
//! `/actors` shows the tree with the restart counts. A shared actor that
//! keeps failing makes `/readyz` and `/healthz` fail, so the kubelet would
//! replace the pod.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kubernetes_executor_crds::Phase;
use kubernetes_executor_testkit::eventually;
use serde_json::{Value, json};

async fn actors(metrics: &str) -> Vec<Value> {
    let (code, body) = http_get(metrics, "/actors").await.expect("/actors");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("actors json")
}

fn entry<'a>(actors: &'a [Value], name: &str) -> Option<&'a Value> {
    actors.iter().find(|a| a["name"] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_actors_are_restarted_and_a_failing_tree_is_not_healthy() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "tree").await;
    let op = start_operator(env, "operator-tree", &["--chaos"]).await;

    // The tree as /actors shows it.
    let tree = actors(&op.metrics).await;
    let root = entry(&tree, "root").expect("root");
    for kind in ["policy", "rbac", "job-watcher", "kill-switch", "supervisor"] {
        let a = entry(&tree, kind).unwrap_or_else(|| panic!("{kind} in {tree:?}"));
        assert_eq!(a["parent"], "root", "{a}");
        assert_eq!(a["restarts"], 0, "{a}");
        assert!(
            root["children"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == kind)),
            "{root}"
        );
    }

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    for (i, kind) in ["policy", "rbac", "job-watcher", "kill-switch", "supervisor"]
        .into_iter()
        .enumerate()
    {
        let name = format!("web-{i}");
        deployment(&client, &ns, &name, 1, json!({}), true).await;
        // A real execution in flight, then the shared actor panics.
        let mut s = spec(
            "ScaleDeployment",
            "Deployment",
            &name,
            None,
            &[("replicas", "2")],
        );
        s.timeout = Some("2m".into());
        let exec = format!("during-{kind}");
        create(&client, &ns, &exec, s).await;
        let (code, body) = http_post(&op.metrics, &format!("/debug/chaos/{kind}"))
            .await
            .expect("chaos");
        assert_eq!(code, 202, "{body}");

        eventually(&format!("{kind} restarted"), WAIT, || async {
            let tree = actors(&op.metrics).await;
            Ok(entry(&tree, kind).is_some_and(|a| {
                a["restarts"] == 1
                    && a["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("chaos"))
            }))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", op.proc.log_tail(4000)));

        let done = wait_terminal(&client, &ns, &exec).await;
        assert_eq!(
            phase(&done),
            Phase::Completed,
            "{kind}: {:?}\n{}",
            done.status,
            op.proc.log_tail(4000)
        );
        // On the cluster, not only in status.
        let replicas = deployments
            .get(&name)
            .await
            .expect("deployment")
            .spec
            .and_then(|s| s.replicas);
        assert_eq!(replicas, Some(2), "{kind}");
    }
    let (_, m) = http_get(&op.metrics, "/metrics").await.expect("metrics");
    for kind in ["policy", "rbac", "job-watcher", "kill-switch", "supervisor"] {
        assert!(
            m.contains(&format!(
                "kubernetes_executor_actor_restarts_total{{kind=\"{kind}\"}} 1"
            )),
            "{kind}: {m}"
        );
        assert!(
            m.contains(&format!(
                "kubernetes_executor_live_actors{{kind=\"{kind}\"}} 1"
            )),
            "{kind}: {m}"
        );
    }
    let (code, _) = http_get(&op.health, "/readyz").await.expect("readyz");
    assert_eq!(code, 200, "recovered: ready again");

    // The postcondition verifier is a supervised child of its execution:
    // its first life panics, its successor verifies, the execution succeeds.
    deployment(&client, &ns, "web-v", 1, json!({}), true).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web-v",
        None,
        &[("replicas", "2")],
    );
    s.timeout = Some("2m".into());
    create_annotated(
        &client,
        &ns,
        "verifier-panics",
        s,
        ("kubernetesexecution.kubernaut.io/chaos-panic-verifier", "1"),
    )
    .await;
    let done = wait_terminal(&client, &ns, "verifier-panics").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    let post = done
        .status
        .as_ref()
        .and_then(|s| s.validation_results.as_ref())
        .map(|v| {
            v.conditions
                .iter()
                .filter(|c| c.phase == kubernetes_executor_crds::ConditionPhase::Post)
                .count()
        });
    assert_eq!(
        post,
        Some(2),
        "both postconditions recorded: {:?}",
        done.status
    );
    let (_, m) = http_get(&op.metrics, "/metrics").await.expect("metrics");
    assert!(
        m.contains("kubernetes_executor_actor_restarts_total{kind=\"postconditions\"} 1"),
        "{m}"
    );

    // A shared actor that fails on every start: the root gives up and the
    // probes say so.
    let (code, body) = http_post(&op.metrics, "/debug/chaos/job-watcher?times=20")
        .await
        .expect("chaos");
    assert_eq!(code, 202, "{body}");
    eventually("readyz fails", WAIT, || async {
        let (code, body) = http_get(&op.health, "/readyz").await?;
        Ok(code == 503 && body.contains("actor tree failed: job-watcher failed"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", op.proc.log_tail(4000)));
    let (code, body) = http_get(&op.health, "/healthz").await.expect("healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("job-watcher failed"), "{body}");
    let tree = actors(&op.metrics).await;
    assert!(
        entry(&tree, "job-watcher").is_none(),
        "not restarted: {tree:?}"
    );
}
