//! Crash safety: SIGKILL the operator repeatedly while executions move
//! through their phases; a new operator resumes every execution to its final
//! state with exactly one Job each and no repeated status transition.
//! (Its own test binary: it kills the operator, so it gets its own control plane.)

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kubernetes_executor_crds::{KubernetesExecution, Phase, labels, reasons};
use kubernetes_executor_testkit::eventually;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_any_phase_resumes_without_duplicates() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "crash").await;
    let n = 8;
    for i in 0..n {
        deployment(&client, &ns, &format!("web-{i}"), 1, json!({}), true).await;
    }
    let mut op = start_operator(env, "operator-1", &[]).await;
    let mut uids = Vec::new();
    for i in 0..n {
        let mut s = spec(
            "ScaleDeployment",
            "Deployment",
            &format!("web-{i}"),
            None,
            &[("replicas", "2")],
        );
        if i % 4 == 3 {
            s.dry_run = true;
        }
        let e = create(&client, &ns, &format!("exec-{i}"), s).await;
        uids.push(e.uid().unwrap_or_default());
        // Kill the operator at staggered moments: mid-validation, mid-job, ...
        if i % 3 == 2 {
            tokio::time::sleep(Duration::from_millis(150 * i as u64)).await;
            op.proc.signal("KILL").expect("SIGKILL operator");
            op = start_operator(env, &format!("operator-{}", i + 2), &[]).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    op.proc.signal("KILL").expect("SIGKILL operator");
    let _op = start_operator(env, "operator-final", &[]).await;

    let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    for (i, uid) in uids.iter().enumerate() {
        let name = format!("exec-{i}");
        let done: KubernetesExecution = wait_terminal(&client, &ns, &name).await;
        assert_eq!(phase(&done), Phase::Completed, "{name}: {:?}", done.status);
        // Every execution runs one Job (a dry run's is a server-side dry run).
        let expect_jobs = 1;
        let js = jobs
            .list(&ListParams::default().labels(&format!("{}={}", labels::EXECUTION_UID, uid)))
            .await
            .expect("jobs")
            .items;
        assert_eq!(js.len(), expect_jobs, "{name}: Jobs");
        let evs = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items;
        for r in [
            reasons::VALIDATING,
            reasons::JOB_RUNNING,
            reasons::VERIFYING,
            reasons::SUCCEEDED,
        ] {
            let count = event_count(&evs, &name, r);
            assert!(count <= 1, "{name}: transition {r} recorded {count} times");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_whose_holder_is_gone_does_not_block_forever() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "lockgone").await;
    // Pods never schedule, so the first execution sits in Executing holding the lock.
    deployment(&client, &ns, "web", 1, json!({}), false).await;
    let op = start_operator(env, "operator-lock-1", &[]).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    s.timeout = Some("10m".into());
    create(&client, &ns, "holder", s).await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    kubernetes_executor_testkit::eventually("holder executing", WAIT, || async {
        Ok(api.get("holder").await?.phase() == Phase::Executing)
    })
    .await
    .expect("executing");
    let mut op = op;
    op.proc.signal("KILL").expect("SIGKILL operator");
    // The holder disappears while no operator runs (finalizer stripped by hand).
    api.patch(
        "holder",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .expect("strip finalizer");
    api.delete("holder", &Default::default())
        .await
        .expect("delete holder");
    // Make the next execution's target schedulable so it can finish.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "template": { "spec": { "nodeSelector": { "kubernetes.io/hostname": null, "type": "kwok" } } } } })),
        )
        .await
        .expect("fix scheduling");
    create(
        &client,
        &ns,
        "next",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "3")],
        ),
    )
    .await;
    let _op = start_operator(env, "operator-lock-2", &[]).await;
    let done = wait_terminal(&client, &ns, "next").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
}

/// Finished executions hold no finalizer: a namespace holding them is
/// deleted promptly even while no operator runs. While the operator runs,
/// deleting a finished execution takes its Job along.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_of_finished_executions_deletes_with_the_operator_down() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "finished").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let mut op = start_operator(env, "operator-finished", &[]).await;
    let real = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    let mut dry = real.clone();
    dry.dry_run = true;
    let mut gone_job = real.clone();
    gone_job.parameters.insert("replicas".into(), "3".into());
    let mut uids = Vec::new();
    for (name, s) in [("real", real), ("dry", dry), ("deleted", gone_job)] {
        let e = create(&client, &ns, name, s).await;
        uids.push(e.uid().unwrap_or_default());
        let done = wait_terminal(&client, &ns, name).await;
        assert_eq!(phase(&done), Phase::Completed, "{name}: {:?}", done.status);
        assert!(
            eventually("no finalizer", WAIT, || async {
                let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
                Ok(api.get(name).await?.finalizers().is_empty())
            })
            .await
            .is_ok(),
            "{name} keeps no finalizer once finished"
        );
    }
    // A denied execution came with the finalizer too (the admission
    // policy adds it on create); it goes when the denial is written.
    deployment(&client, &ns, "db", 1, json!({ "critical": "true" }), true).await;
    let born = create(
        &client,
        &ns,
        "denied",
        spec(
            "ScaleDeployment",
            "Deployment",
            "db",
            None,
            &[("replicas", "0")],
        ),
    )
    .await;
    assert!(
        born.finalizers()
            .iter()
            .any(|f| f == kubernetes_executor_crds::FINALIZER),
        "a new execution carries the finalizer: {:?}",
        born.finalizers()
    );
    let done = wait_terminal(&client, &ns, "denied").await;
    assert_eq!(reason(&done), reasons::POLICY_DENIED, "{:?}", done.status);
    assert!(
        eventually("no finalizer", WAIT, || async {
            let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
            Ok(api.get("denied").await?.finalizers().is_empty())
        })
        .await
        .is_ok(),
        "a denied execution keeps no finalizer once finished"
    );
    // Deleting a finished execution (operator running) deletes its Job.
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    api.delete("deleted", &Default::default())
        .await
        .expect("delete");
    wait_jobs_gone(
        &client,
        &uids[2],
        "the Job of a deleted finished execution is deleted",
    )
    .await;

    // The operator is down: the namespace still goes.
    op.proc.signal("KILL").expect("SIGKILL operator");
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.delete(&ns, &Default::default())
        .await
        .expect("delete namespace");
    eventually("namespace gone", WAIT, || async {
        Ok(nss.get_opt(&ns).await?.is_none())
    })
    .await
    .expect("a namespace of finished executions deletes without the operator");
}

/// How long after an operator starts a namespace deleted while it was down
/// (holding a running execution) may take to go (docs/operations.md,
/// "Uninstalling"): the execution is cancelled, its Job deleted, and its
/// finalizer removed.
const RUNNING_DELETE_BOUND: Duration = Duration::from_secs(60);

/// A running execution holds the finalizer. Deleting its namespace while no
/// operator runs leaves the namespace Terminating (the finalizer waits for
/// cleanup); once an operator runs, it cancels the execution, deletes its
/// Job and removes the finalizer, and the namespace goes within the bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_with_a_running_execution_deletes_once_the_operator_runs() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "running").await;
    // Its pods never schedule: the scale runs until its timeout.
    deployment(&client, &ns, "stuck", 1, json!({}), false).await;
    let mut op = start_operator(env, "operator-running", &[]).await;
    let mut long = spec(
        "ScaleDeployment",
        "Deployment",
        "stuck",
        None,
        &[("replicas", "2")],
    );
    long.timeout = Some("10m".into());
    let e = create(&client, &ns, "long", long).await;
    let uid = e.uid().unwrap_or_default();
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    eventually("running with the finalizer", WAIT, || async {
        let e = api.get("long").await?;
        Ok(e.phase() == Phase::Executing
            && e.finalizers()
                .iter()
                .any(|f| f == kubernetes_executor_crds::FINALIZER))
    })
    .await
    .expect("the execution runs and holds the finalizer");

    op.proc.signal("KILL").expect("SIGKILL operator");
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.delete(&ns, &Default::default())
        .await
        .expect("delete namespace");
    eventually(
        "the namespace controller deletes the execution",
        WAIT,
        || async { Ok(api.get("long").await?.metadata.deletion_timestamp.is_some()) },
    )
    .await
    .expect("the execution is being deleted");
    // Held by the finalizer: nobody cleans up while no operator runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        api.get_opt("long").await.expect("get").is_some(),
        "a running execution's finalizer waits for the operator's cleanup"
    );

    let started = std::time::Instant::now();
    let _op = start_operator(env, "operator-running-2", &[]).await;
    eventually("namespace gone", RUNNING_DELETE_BOUND, || async {
        Ok(nss.get_opt(&ns).await?.is_none())
    })
    .await
    .expect("the namespace is deleted within the bound once the operator runs");
    println!(
        "namespace with a running execution deleted {:.1} s after the operator started",
        started.elapsed().as_secs_f64()
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    eventually("its Job is gone", WAIT, || async {
        Ok(jobs
            .list(&ListParams::default().labels(&format!("{}={uid}", labels::EXECUTION_UID)))
            .await?
            .items
            .is_empty())
    })
    .await
    .expect("the cancelled execution's Job is deleted");
}

/// `job_completion_duration_seconds` is observed once per Job, also by an
/// operator that adopted the running Job after a crash (from the Job's own
/// timestamps): the adopting operator's histogram counts exactly the one
/// Job it saw finish.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_adopted_after_a_crash_is_measured_once() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "measured").await;
    // Its pods never schedule: the scale runs until its deadline.
    deployment(&client, &ns, "stuck", 1, json!({}), false).await;
    let mut first = start_operator(env, "operator-measured-1", &[]).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "stuck",
        None,
        &[("replicas", "2")],
    );
    s.timeout = Some("20s".into());
    create(&client, &ns, "slow", s).await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    eventually("executing", WAIT, || async {
        Ok(api.get("slow").await?.phase() == Phase::Executing)
    })
    .await
    .expect("the Job runs");
    first.proc.signal("KILL").expect("SIGKILL operator");

    let second = start_operator(env, "operator-measured-2", &[]).await;
    let done = wait_terminal(&client, &ns, "slow").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    // The action gives up on the rollout (JobFailed) or the deadline hits (Timeout).
    assert!(
        [reasons::JOB_FAILED, reasons::TIMEOUT].contains(&reason(&done).as_str()),
        "{:?}",
        done.status
    );
    let (_, text) = http_get(&second.metrics, "/metrics")
        .await
        .expect("metrics");
    let samples = kubernetes_executor_loadtest::promtext::parse(&text);
    let count = kubernetes_executor_loadtest::promtext::sum(
        &samples,
        "job_completion_duration_seconds_count",
        &[],
    );
    assert_eq!(count, 1.0, "observed once by the adopting operator");
    let sum = kubernetes_executor_loadtest::promtext::sum(
        &samples,
        "job_completion_duration_seconds_sum",
        &[],
    );
    assert!(
        (15.0..120.0).contains(&sum),
        "from the Job's timestamps (created before the crash): {sum} s"
    );
}

/// The value of an unlabelled or singly-labelled gauge line in `/metrics`.
fn gauge(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_beyond_the_actor_limit_waits_unwritten_and_every_execution_completes() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "backlog").await;
    let n = 7;
    for i in 0..n {
        deployment(&client, &ns, &format!("web-{i}"), 1, json!({}), true).await;
    }
    let scale = |i: usize| {
        spec(
            "ScaleDeployment",
            "Deployment",
            &format!("web-{i}"),
            None,
            &[("replicas", "2")],
        )
    };
    // A backlog the operator lists at start, and more arriving by the watch.
    for i in 0..4 {
        create(&client, &ns, &format!("exec-{i}"), scale(i)).await;
    }
    let op = start_operator(env, "operator-backlog", &["--max-live-executions", "2"]).await;
    for i in 4..n {
        create(&client, &ns, &format!("exec-{i}"), scale(i)).await;
    }
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    // Most live actors, most waiting, most executions with no status while
    // some waited — sampled until every execution finished.
    let seen = std::sync::Mutex::new((0.0f64, 0.0f64, 0usize));
    let seen = &seen;
    let all_done = eventually("every execution of the backlog finished", WAIT * 2, || {
        let api = api.clone();
        let metrics = op.metrics.clone();
        async move {
            let (_, m) = http_get(&metrics, "/metrics").await?;
            let live =
                gauge(&m, "kubernetes_executor_live_actors{kind=\"execution\"}").unwrap_or(0.0);
            let waiting = gauge(&m, "kubernetes_executor_waiting_executions").unwrap_or(0.0);
            let execs = api.list(&ListParams::default()).await?.items;
            let unwritten = execs.iter().filter(|e| e.status.is_none()).count();
            if let Ok(mut s) = seen.lock() {
                s.0 = s.0.max(live);
                s.1 = s.1.max(waiting);
                if waiting > 0.0 {
                    s.2 = s.2.max(unwritten);
                }
            }
            Ok(execs.len() == n && execs.iter().all(|e| phase(e).is_terminal()))
        }
    })
    .await;
    let (most_live, most_waiting, unwritten_while_waiting) = *seen.lock().expect("samples");
    assert!(all_done.is_ok(), "{all_done:?}");
    assert!(
        most_live <= 2.0,
        "never more execution actors than --max-live-executions: saw {most_live}"
    );
    assert!(
        most_waiting >= 1.0,
        "executions waited for an actor (kubernetes_executor_waiting_executions)"
    );
    assert!(
        unwritten_while_waiting >= 1,
        "a waiting execution has nothing written (it is Pending, as created)"
    );
    // Every one ran, once, and the cluster shows it.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    for i in 0..n {
        let name = format!("exec-{i}");
        let done = api.get(&name).await.expect("execution");
        assert_eq!(phase(&done), Phase::Completed, "{name}: {:?}", done.status);
        let uid = done.uid().unwrap_or_default();
        let js = jobs
            .list(&ListParams::default().labels(&format!("{}={}", labels::EXECUTION_UID, uid)))
            .await
            .expect("jobs")
            .items;
        assert_eq!(js.len(), 1, "{name}: one Job");
        let d = deployments
            .get(&format!("web-{i}"))
            .await
            .expect("deployment");
        assert_eq!(
            d.spec.and_then(|s| s.replicas),
            Some(2),
            "{name}: web-{i} scaled"
        );
    }
    let (_, m) = http_get(&op.metrics, "/metrics").await.expect("metrics");
    assert_eq!(
        gauge(&m, "kubernetes_executor_waiting_executions"),
        Some(0.0),
        "none left waiting"
    );
}
