//! Policy loading against the real control plane: hot reload keeps the last
//! good set when a broken one arrives (with an Event and a metric), an empty
//! policy directory denies everything, and an operator whose policies do not
//! compile refuses to become ready, naming file and line.

mod common;

use std::time::Duration;

use common::*;
use kube::api::{Api, ListParams};
use kubernetes_executor_crds::{Phase, reasons};
use kubernetes_executor_testkit::{self as testkit, eventually};
use serde_json::json;

fn dry(replicas: &str, target: &str) -> kubernetes_executor_crds::KubernetesExecutionSpec {
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        target,
        None,
        &[("replicas", replicas)],
    );
    s.dry_run = true;
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_the_last_good_set_and_an_empty_set_denies_everything() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "reload").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    deployment(
        &client,
        &ns,
        "payments",
        1,
        json!({ "critical": "true" }),
        true,
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    for entry in std::fs::read_dir(repo().join("policies")).expect("policies") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            std::fs::copy(&path, dir.path().join(&name)).expect("copy");
        }
    }
    let dir_arg = dir.path().display().to_string();
    let op = start_operator(
        env,
        "operator-reload",
        &["--policy-dir", &dir_arg, "--policy-reload-seconds", "1"],
    )
    .await;

    create(&client, &ns, "deny-1", dry("0", "payments")).await;
    assert_eq!(
        reason(&wait_terminal(&client, &ns, "deny-1").await),
        reasons::POLICY_DENIED
    );
    let good = wait_terminal(&client, &ns, "deny-1").await;
    let digest = good
        .status
        .and_then(|s| s.validation_results)
        .and_then(|v| v.policy_decision)
        .expect("decision")
        .policy_set_digest;

    // A broken file arrives: rejected, counted, reported; the old set stays.
    std::fs::write(
        dir.path().join("broken.rego"),
        "package kubernetes_executor.safety\n\ndeny contains msg if {\n  msg :=\n}\n",
    )
    .expect("write");
    eventually("reload error counted", WAIT, || async {
        let (_, m) = http_get(&op.metrics, "/metrics").await?;
        Ok(m.lines()
            .any(|l| l.starts_with("policy_reload_errors_total ") && !l.ends_with(" 0")))
    })
    .await
    .expect("policy_reload_errors_total incremented");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), OPERATOR_NS);
    eventually("PolicyRejected event", WAIT, || async {
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("PolicyRejected")
                    && e.note.as_deref().is_some_and(|n| n.contains("broken.rego"))
            }))
    })
    .await
    .expect("an Event names the broken file");
    create(&client, &ns, "deny-2", dry("0", "payments")).await;
    let d2 = wait_terminal(&client, &ns, "deny-2").await;
    assert_eq!(reason(&d2), reasons::POLICY_DENIED, "old decisions hold");
    assert_eq!(
        d2.status
            .and_then(|s| s.validation_results)
            .and_then(|v| v.policy_decision)
            .map(|d| d.policy_set_digest),
        Some(digest.clone()),
        "decided by the last good set"
    );
    create(&client, &ns, "allow-2", dry("2", "web")).await;
    let a2 = wait_terminal(&client, &ns, "allow-2").await;
    assert_eq!(phase(&a2), Phase::Completed, "{:?}", a2.status);

    // Every policy removed: nothing is allowed, and the operator is not ready.
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("rm");
    }
    eventually("readyz 503", WAIT, || async {
        Ok(http_get(&op.health, "/readyz").await?.0 == 503)
    })
    .await
    .expect("not ready without policies");
    create(&client, &ns, "deny-3", dry("2", "web")).await;
    let d3 = wait_terminal(&client, &ns, "deny-3").await;
    assert_eq!(reason(&d3), reasons::POLICY_DENIED, "{:?}", d3.status);
    assert!(message(&d3).contains("fail closed"), "{}", message(&d3));
    drop(op);

    // An operator whose policies do not compile never becomes ready.
    let bad = tempfile::tempdir().expect("tmp");
    std::fs::write(
        bad.path().join("oops.rego"),
        "package kubernetes_executor.safety\n\ndeny contains msg if {\n  msg :=\n}\n",
    )
    .expect("write");
    let (mp, hp) = (
        testkit::controlplane::free_port().expect("port"),
        testkit::controlplane::free_port().expect("port"),
    );
    let kc = env.dir().join("operator-reload.kubeconfig");
    let args: Vec<String> = [
        "run",
        "--namespace",
        OPERATOR_NS,
        "--policy-dir",
        &bad.path().display().to_string(),
        "--metrics-bind-address",
        &format!("127.0.0.1:{mp}"),
        "--health-probe-bind-address",
        &format!("127.0.0.1:{hp}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _broken = testkit::Proc::spawn(
        "operator-broken",
        binary(),
        &args,
        &[("KUBECONFIG".into(), kc.display().to_string())],
        &env.dir().join("logs"),
    )
    .expect("spawn");
    let health = format!("127.0.0.1:{hp}");
    eventually("readyz answers", WAIT, || async {
        Ok(http_get(&health, "/readyz").await?.0 != 0)
    })
    .await
    .expect("serving");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, body) = http_get(&health, "/readyz").await.expect("readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("oops.rego"), "names the file: {body}");
}
