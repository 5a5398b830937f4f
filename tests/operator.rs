//! Operator core acceptance tests against the real local control plane:
//! validation failures, dry runs, policy denials, real Jobs run by the job
//! runner under the per-action ServiceAccount, Job failure and timeout,
//! idempotence, cleanup on deletion, spec immutability, supervised restarts.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_crds::{KubernetesExecution, Phase, labels, reasons};
use kubernetes_executor_testkit::eventually;
use serde_json::json;

async fn setup(prefix: &str) -> (Client, String, String) {
    let metrics = shared_operator().await.to_string();
    let client = env().client().await.expect("client");
    let ns = namespace(&client, prefix).await;
    (client, ns, metrics)
}

async fn jobs_of(client: &Client, uid: &str) -> Vec<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    jobs.list(&ListParams::default().labels(&format!("{}={uid}", labels::EXECUTION_UID)))
        .await
        .expect("list jobs")
        .items
}

fn condition(e: &KubernetesExecution, t: &str) -> Option<String> {
    e.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_fails_with_a_named_reason_and_no_job() {
    let (client, ns, _) = setup("invalid").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;

    let e = create(
        &client,
        &ns,
        "unknown",
        spec("RebootEverything", "Deployment", "web", None, &[]),
    )
    .await;
    let done = wait_terminal(&client, &ns, "unknown").await;
    assert_eq!(phase(&done), Phase::Failed);
    assert_eq!(reason(&done), reasons::UNKNOWN_ACTION);
    assert!(
        message(&done).contains("\"RebootEverything\"")
            && message(&done).contains("ScaleDeployment"),
        "{}",
        message(&done)
    );
    assert_eq!(condition(&done, "Validated").as_deref(), Some("False"));
    assert!(
        jobs_of(&client, &e.uid().unwrap_or_default())
            .await
            .is_empty()
    );

    let e = create(
        &client,
        &ns,
        "missing",
        spec("ScaleDeployment", "Deployment", "web", None, &[]),
    )
    .await;
    let done = wait_terminal(&client, &ns, "missing").await;
    assert_eq!(reason(&done), reasons::INVALID_PARAMETERS);
    assert!(
        message(&done).contains("\"replicas\""),
        "{}",
        message(&done)
    );
    assert!(
        jobs_of(&client, &e.uid().unwrap_or_default())
            .await
            .is_empty()
    );

    let e = create(
        &client,
        &ns,
        "range",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "5000")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "range").await;
    assert_eq!(reason(&done), reasons::INVALID_PARAMETERS);
    assert!(
        message(&done).contains("\"5000\"") && message(&done).contains("between 0 and 1000"),
        "{}",
        message(&done)
    );
    assert!(
        jobs_of(&client, &e.uid().unwrap_or_default())
            .await
            .is_empty()
    );

    // An Event explains the failure.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eventually("failure event", WAIT, || async {
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|ev| {
                ev.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("range")
                    && ev.reason.as_deref() == Some(reasons::INVALID_PARAMETERS)
            }))
    })
    .await
    .expect("a Warning event names the reason");
}

/// A dry run holds no finalizer, so deleting it while it runs removes the
/// object at once; the operator, told by its watch, deletes the dry run's
/// Job and revokes its grant: nothing of it stays in the cluster, and the
/// Deployment is untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_deleted_while_it_runs_leaves_no_job_and_no_grant() {
    let (client, ns, _) = setup("drygone").await;
    deployment(&client, &ns, "web", 2, json!({}), true).await;
    let s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "4")],
    );
    let e = create(&client, &ns, "dry-gone", dry_run(s)).await;
    let uid = e.uid().expect("uid");
    // Deleted as soon as its Job exists (the Job usually still runs).
    eventually("the dry run's Job exists", WAIT, || async {
        Ok(!jobs_of(&client, &uid).await.is_empty())
    })
    .await
    .expect("the dry run gets its Job");
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    api.delete("dry-gone", &DeleteParams::default())
        .await
        .expect("delete the dry run");
    assert!(
        api.get_opt("dry-gone").await.expect("get").is_none(),
        "no finalizer holds a dry run: it is gone at once"
    );
    let grants: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(client.clone(), &ns);
    let of_it = ListParams::default().labels(&format!("{}={uid}", labels::EXECUTION_UID));
    eventually("its Job and grant are gone", WAIT, || async {
        Ok(jobs_of(&client, &uid).await.is_empty()
            && grants.list_metadata(&of_it).await?.items.is_empty())
    })
    .await
    .expect("the operator deletes a deleted dry run's Job and revokes its grant");
    let d: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let web = d.get("web").await.expect("web");
    assert_eq!(
        web.spec.and_then(|s| s.replicas),
        Some(2),
        "a dry run changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_is_a_server_side_dry_run_and_policy_denial_lists_violations() {
    let (client, ns, _) = setup("dryrun").await;
    deployment(&client, &ns, "web", 2, json!({}), true).await;
    let s = spec(
        "scale_deployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "4")],
    );
    let e = create(&client, &ns, "dry", dry_run(s)).await;
    // A dry run changes nothing: the admission policy gives it no
    // finalizer (its deletion need not wait), and the operator adds none.
    assert!(
        e.finalizers().is_empty(),
        "a dry run is born without the finalizer: {:?}",
        e.finalizers()
    );
    let done = wait_terminal(&client, &ns, "dry").await;
    assert!(done.finalizers().is_empty(), "{:?}", done.finalizers());
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(reason(&done), reasons::DRY_RUN_SUCCEEDED);
    assert_eq!(condition(&done, "Succeeded").as_deref(), Some("True"));
    assert_eq!(condition(&done, "DryRunCompleted").as_deref(), Some("True"));
    // The action ran as a server-side dry run, in its Job, under its own
    // ServiceAccount.
    let jobs = jobs_of(&client, &e.uid().unwrap_or_default()).await;
    assert_eq!(jobs.len(), 1, "one dry-run Job");
    let pod = jobs[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("kubernetes-executor-scale-deployment")
    );
    assert!(
        pod.containers[0]
            .args
            .iter()
            .flatten()
            .any(|a| a == "--dry-run"),
        "{:?}",
        pod.containers[0].args
    );
    assert!(
        done.status
            .as_ref()
            .and_then(|s| s.result.as_ref())
            .and_then(|r| r.output.as_deref())
            .is_some_and(|o| o.contains("dry run")),
        "{:?}",
        done.status
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = deployments.get("web").await.expect("deployment");
    assert_eq!(
        d.spec.and_then(|s| s.replicas),
        Some(2),
        "dry run changes nothing"
    );

    // A patch the API server would refuse: the dry run fails, naming the
    // rejection, and the ConfigMap is untouched.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({ "metadata": { "name": "settings" }, "data": { "mode": "slow" } }),
        )
        .expect("cm"),
    )
    .await
    .expect("configmap");
    let mut s = spec(
        "update_configmap",
        "ConfigMap",
        "settings",
        None,
        &[("patch", r#"{"data":{"mode":5}}"#)],
    );
    s.dry_run = true;
    create(&client, &ns, "dry-bad-patch", s).await;
    let done = wait_terminal(&client, &ns, "dry-bad-patch").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    assert_eq!(
        reason(&done),
        reasons::DRY_RUN_REJECTED,
        "{:?}",
        done.status
    );
    assert!(
        message(&done).contains("server-side dry run"),
        "{}",
        message(&done)
    );
    assert!(
        message(&done).to_lowercase().contains("unmarshal") || message(&done).contains("nvalid"),
        "the API server's rejection is named: {}",
        message(&done)
    );
    // A valid patch: accepted by the server-side dry run, and still nothing
    // changes.
    let mut s = spec(
        "PatchConfigMap",
        "ConfigMap",
        "settings",
        None,
        &[("patch", r#"{"data":{"mode":"fast"}}"#)],
    );
    s.dry_run = true;
    create(&client, &ns, "dry-good-patch", s).await;
    let done = wait_terminal(&client, &ns, "dry-good-patch").await;
    assert_eq!(
        reason(&done),
        reasons::DRY_RUN_SUCCEEDED,
        "{:?}",
        done.status
    );
    assert!(
        done.status
            .as_ref()
            .and_then(|s| s.rollback_info.as_ref())
            .is_none(),
        "nothing to roll back"
    );
    let cm = cms.get("settings").await.expect("cm");
    assert_eq!(
        cm.data.and_then(|d| d.get("mode").cloned()).as_deref(),
        Some("slow"),
        "a dry run changes nothing"
    );

    // Scale-to-zero of a critical deployment is denied by the default policies.
    deployment(
        &client,
        &ns,
        "payments",
        2,
        json!({ "critical": "true" }),
        true,
    )
    .await;
    let e = create(
        &client,
        &ns,
        "zero",
        spec(
            "ScaleDeployment",
            "Deployment",
            "payments",
            None,
            &[("replicas", "0")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "zero").await;
    assert_eq!(phase(&done), Phase::Failed);
    assert_eq!(reason(&done), reasons::POLICY_DENIED);
    let st = done.status.clone().expect("status");
    assert_eq!(st.policy_violations.len(), 1, "{:?}", st.policy_violations);
    assert!(
        st.policy_violations[0].contains("critical"),
        "{:?}",
        st.policy_violations
    );
    let decision = st
        .validation_results
        .and_then(|v| v.policy_decision)
        .expect("decision recorded");
    assert!(!decision.allowed && decision.policy_set_digest.starts_with("sha256:"));
    assert_eq!(condition(&done, "PolicyAllowed").as_deref(), Some("False"));
    assert!(
        jobs_of(&client, &e.uid().unwrap_or_default())
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_runs_one_least_privilege_job_and_completes() {
    let (client, ns, metrics) = setup("scale").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "3")],
    );
    s.timeout = Some("2m".into());
    s.max_retries = Some(1);
    s.step_number = Some(7);
    let e = create(&client, &ns, "scale-web", s).await;
    let uid = e.uid().unwrap_or_default();
    let done = wait_terminal(&client, &ns, "scale-web").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(reason(&done), reasons::SUCCEEDED);
    for c in [
        "Validated",
        "PolicyAllowed",
        "Executed",
        "Verified",
        "Succeeded",
    ] {
        assert_eq!(
            condition(&done, c).as_deref(),
            Some("True"),
            "condition {c}: {:?}",
            done.status
        );
    }
    let st = done.status.clone().expect("status");
    assert_eq!(
        st.rollback_info.as_ref().and_then(|r| r.previous_replicas),
        Some(1)
    );
    assert!(st.rollback_info.as_ref().is_some_and(|r| r.restorable));
    assert_eq!(st.result.as_ref().map(|r| r.succeeded), Some(true));
    assert_eq!(
        st.result.as_ref().map(|r| r.resources_affected.clone()),
        Some(vec![format!("Deployment/{ns}/web")])
    );
    assert_eq!(
        st.target_snapshot.as_ref().map(|t| t.uid.is_empty()),
        Some(false)
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        deployments
            .get("web")
            .await
            .expect("get")
            .spec
            .and_then(|s| s.replicas),
        Some(3)
    );

    let jobs = jobs_of(&client, &uid).await;
    assert_eq!(jobs.len(), 1, "exactly one Job");
    let job = serde_json::to_value(&jobs[0]).expect("json");
    assert_eq!(st.job_name.as_deref(), jobs[0].metadata.name.as_deref());
    assert_eq!(
        job["metadata"]["labels"][labels::EXECUTION_NAME],
        "scale-web"
    );
    assert_eq!(
        job["metadata"]["labels"][labels::EXECUTION_NAMESPACE],
        ns.as_str()
    );
    assert_eq!(job["metadata"]["labels"][labels::ACTION], "ScaleDeployment");
    assert_eq!(job["metadata"]["labels"][labels::STEP], "7");
    // The Job's deadline is what remains of the 2m timeout when it starts.
    let deadline = job["spec"]["activeDeadlineSeconds"]
        .as_i64()
        .unwrap_or_default();
    assert!((100..=120).contains(&deadline), "{deadline}");
    assert_eq!(job["spec"]["backoffLimit"], 1);
    assert!(
        job["spec"]["ttlSecondsAfterFinished"]
            .as_i64()
            .is_some_and(|t| t > 0)
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        "kubernetes-executor-scale-deployment"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0]["securityContext"];
    assert_eq!(c["readOnlyRootFilesystem"], true);
    assert_eq!(c["allowPrivilegeEscalation"], false);
    assert_eq!(c["capabilities"]["drop"], json!(["ALL"]));

    // The Job was created with the execution's UID in the User-Agent (audit log).
    let audit = std::fs::read_to_string(env().audit_log()).expect("audit log");
    let job_name = st.job_name.clone().unwrap_or_default();
    let job_create = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "jobs"
                && e["objectRef"]["name"] == job_name.as_str()
        })
        .expect("audited Job create");
    let ua = job_create["userAgent"].as_str().unwrap_or_default();
    assert!(
        ua.contains(&format!("execution {uid}")),
        "User-Agent names the execution: {ua}"
    );
    // Every status write of this execution too (one shared client: the
    // User-Agent comes from the execution's span, per request).
    let agents: Vec<String> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["objectRef"]["resource"] == "kubernetesexecutions"
                && e["objectRef"]["subresource"] == "status"
                && e["objectRef"]["namespace"] == ns.as_str()
                && e["objectRef"]["name"] == "scale-web"
                && e["verb"] == "patch"
        })
        .map(|e| e["userAgent"].as_str().unwrap_or_default().to_string())
        .collect();
    // Executing and Completed at least (Validating, Preparing and
    // Verifying are written only when they last).
    assert!(agents.len() >= 2, "status writes audited: {agents:?}");
    assert!(
        agents
            .iter()
            .all(|a| a.contains(&format!("execution {uid}"))),
        "every status write names the execution: {agents:?}"
    );

    // The just-in-time RoleBinding is gone once the execution ended.
    let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(client.clone(), &ns);
    eventually("JIT RoleBinding removed", WAIT, || async {
        Ok(rbs
            .get_opt(&format!("kubernetes-executor-{uid}"))
            .await?
            .is_none())
    })
    .await
    .expect("grant revoked");

    // Terminal executions hold no actor.
    let (code, body) = http_get(&metrics, "/actors").await.expect("actors");
    assert_eq!(code, 200);
    assert!(!body.contains(&format!("\"{ns}/scale-web\"")), "{body}");
    let (_, m) = http_get(&metrics, "/metrics").await.expect("metrics");
    assert!(m.contains("kubernetes_execution_phase_transitions_total{from_phase=\"Executing\",to_phase=\"Verifying\"}"), "{m}");

    // The inverse restores the previous state.
    let previous = st
        .rollback_info
        .as_ref()
        .and_then(|r| r.previous_replicas)
        .unwrap_or_default()
        .to_string();
    create(
        &client,
        &ns,
        "scale-back",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", &previous)],
        ),
    )
    .await;
    assert_eq!(
        phase(&wait_terminal(&client, &ns, "scale-back").await),
        Phase::Completed
    );
    assert_eq!(
        deployments
            .get("web")
            .await
            .expect("get")
            .spec
            .and_then(|s| s.replicas),
        Some(1)
    );

    // Deleting the execution removes its Job (finalizer) and the execution.
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    api.delete("scale-web", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("execution and Job gone", WAIT, || async {
        Ok(api.get_opt("scale-web").await?.is_none() && jobs_of(&client, &uid).await.is_empty())
    })
    .await
    .expect("deletion cleans up the Job");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_job_fails_with_job_failed_and_the_error() {
    let (client, ns, _) = setup("jobfail").await;
    // Pods that never schedule: the rollout cannot finish; run-action gives up
    // before the deadline and exits non-zero; no retries.
    deployment(&client, &ns, "stuck", 1, json!({}), false).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "stuck",
        None,
        &[("replicas", "2")],
    );
    s.timeout = Some("20s".into());
    create(&client, &ns, "fail", s).await;
    let done = wait_terminal(&client, &ns, "fail").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    assert_eq!(reason(&done), reasons::JOB_FAILED, "{:?}", done.status);
    let err = done
        .status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .and_then(|r| r.error.clone())
        .unwrap_or_default();
    assert!(err.contains("did not finish rolling out"), "{err}");
    assert_eq!(
        done.status.as_ref().and_then(|s| s.attempts),
        Some(1),
        "one pod ran (no retries)"
    );
    assert_eq!(condition(&done, "Executed").as_deref(), Some("False"));
    // The action changed the replicas before failing: rollback info says how to undo it.
    assert_eq!(
        done.status
            .as_ref()
            .and_then(|s| s.rollback_info.as_ref())
            .and_then(|r| r.previous_replicas),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn job_past_its_deadline_fails_with_timeout() {
    let (client, ns, _) = setup("timeout").await;
    deployment(&client, &ns, "stuck", 1, json!({}), false).await;
    let mut s = spec("RolloutStatus", "Deployment", "stuck", None, &[]);
    // Each attempt gives up after ~9s; the Job controller's retry backoff (10s)
    // carries the Job past its 12s deadline.
    s.timeout = Some("12s".into());
    s.max_retries = Some(3);
    create(&client, &ns, "late", s).await;
    let done = wait_terminal(&client, &ns, "late").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    assert_eq!(reason(&done), reasons::TIMEOUT, "{:?}", done.status);
    assert!(message(&done).contains("deadline"), "{}", message(&done));
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_re_reconciles_are_idempotent_and_spec_is_immutable() {
    let (client, ns, _) = setup("idem").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let e = create(
        &client,
        &ns,
        "idem",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let uid = e.uid().unwrap_or_default();
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    // Hammer the object with metadata changes while it runs.
    for i in 0..30 {
        let _ = api
            .patch(
                "idem",
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "annotations": { "poke": i.to_string() } } })),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = wait_terminal(&client, &ns, "idem").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(jobs_of(&client, &uid).await.len(), 1, "exactly one Job");
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let evs = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    let count = |r: &str| event_count(&evs, "idem", r);
    // One outcome, announced once (milestones are not Events).
    assert_eq!(count(reasons::SUCCEEDED), 1, "Completed entered once");
    assert_eq!(count(reasons::JOB_RUNNING), 0, "no milestone Events");

    // The spec cannot change after Pending (CEL rule).
    let err = api
        .patch(
            "idem",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "parameters": { "replicas": "9" } } })),
        )
        .await
        .expect_err("spec is immutable");
    match err {
        kube::Error::Api(s) => assert!(s.code == 422 && s.message.contains("immutable"), "{s:?}"),
        other => panic!("{other:?}"),
    }
    // A terminal phase cannot be rewritten either.
    let err = api
        .patch_status(
            "idem",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Executing" } })),
        )
        .await
        .expect_err("terminal phase is final");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_execution_actor_is_restarted_and_others_are_unaffected() {
    let (client, ns, metrics) = setup("panic").await;
    deployment(&client, &ns, "a", 1, json!({}), true).await;
    deployment(&client, &ns, "b", 1, json!({}), true).await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    let mut chaos = KubernetesExecution::new(
        "chaos",
        spec(
            "ScaleDeployment",
            "Deployment",
            "a",
            None,
            &[("replicas", "2")],
        ),
    );
    chaos.metadata.annotations = Some(
        [(
            "kubernetesexecution.kubernaut.io/chaos-panic".to_string(),
            "Pending".to_string(),
        )]
        .into(),
    );
    let created = api
        .create(&Default::default(), &chaos)
        .await
        .expect("create");
    create(
        &client,
        &ns,
        "calm",
        spec(
            "ScaleDeployment",
            "Deployment",
            "b",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "chaos").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    let calm = wait_terminal(&client, &ns, "calm").await;
    assert_eq!(phase(&calm), Phase::Completed);
    assert_eq!(
        jobs_of(&client, &created.uid().unwrap_or_default())
            .await
            .len(),
        1
    );
    let (_, m) = http_get(&metrics, "/metrics").await.expect("metrics");
    let restarts = m
        .lines()
        .find(|l| l.starts_with("kubernetes_executor_actor_restarts_total{kind=\"execution\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        restarts >= 1.0,
        "the supervisor restarted the actor: {restarts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_executions_on_one_target_run_one_at_a_time() {
    let (client, ns, _) = setup("lock").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let n = 20;
    let mut handles = Vec::new();
    for i in 0..n {
        let client = client.clone();
        let ns = ns.clone();
        handles.push(tokio::spawn(async move {
            let replicas = if i % 2 == 0 { "2" } else { "3" };
            create(
                &client,
                &ns,
                &format!("s-{i}"),
                spec(
                    "ScaleDeployment",
                    "Deployment",
                    "web",
                    None,
                    &[("replicas", replicas)],
                ),
            )
            .await;
        }));
    }
    for h in handles {
        h.await.expect("create");
    }
    // A Fail-policy execution arriving while the target is busy fails at once.
    let mut impatient = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "4")],
    );
    impatient.on_target_busy = Some(kubernetes_executor_crds::TargetBusyPolicy::Fail);
    for i in 0..n {
        let done = wait_terminal(&client, &ns, &format!("s-{i}")).await;
        assert_eq!(phase(&done), Phase::Completed, "s-{i}: {:?}", done.status);
        if i == 0 {
            create(&client, &ns, "impatient", impatient.clone()).await;
        }
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    let mut js = jobs
        .list(&ListParams::default().labels(&format!("{}={ns}", labels::EXECUTION_NAMESPACE)))
        .await
        .expect("jobs")
        .items;
    js.retain(|j| {
        j.labels()
            .get(labels::EXECUTION_NAME)
            .is_some_and(|n| n.starts_with("s-"))
    });
    assert_eq!(js.len(), n, "one Job per execution");
    js.sort_by_key(|j| j.metadata.creation_timestamp.clone());
    for pair in js.windows(2) {
        let prev_done = pair[0]
            .status
            .as_ref()
            .and_then(|s| s.completion_time.clone())
            .expect("completed");
        let next_created = pair[1]
            .metadata
            .creation_timestamp
            .clone()
            .expect("created");
        assert!(
            next_created.0 >= prev_done.0,
            "{} was created at {:?} before {} completed at {:?}",
            pair[1].name_any(),
            next_created,
            pair[0].name_any(),
            prev_done
        );
    }
    let impatient = wait_terminal(&client, &ns, "impatient").await;
    if phase(&impatient) == Phase::Failed {
        assert_eq!(
            reason(&impatient),
            reasons::TARGET_BUSY,
            "{:?}",
            impatient.status
        );
        assert!(
            message(&impatient).contains(&format!("{ns}/s-")),
            "names the holder: {}",
            message(&impatient)
        );
    }
    // Every lock was released.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), OPERATOR_NS);
    eventually("locks released", WAIT, || async {
        Ok(!leases
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|l| {
                l.annotations()
                    .get("kubernetesexecution.kubernaut.io/holder")
                    .is_some_and(|h| h.starts_with(&format!("{ns}/")))
            }))
    })
    .await
    .expect("no lock left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_namespace_holds_new_executions_until_resumed() {
    let (client, ns, _) = setup("pause").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    set_paused(&client, &ns, true).await;
    let e = create(
        &client,
        &ns,
        "held",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    eventually("held as Paused", WAIT, || async {
        Ok(reason(&api.get("held").await?) == reasons::PAUSED)
    })
    .await
    .expect("paused");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = api.get("held").await.expect("get");
    assert_eq!(phase(&held), Phase::Pending, "{:?}", held.status);
    assert!(message(&held).contains(&ns), "{}", message(&held));
    assert!(
        jobs_of(&client, &e.uid().unwrap_or_default())
            .await
            .is_empty()
    );
    set_paused(&client, &ns, false).await;
    let done = wait_terminal(&client, &ns, "held").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_required_precondition_creates_no_job() {
    let (client, ns, _) = setup("precond").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "template": { "spec": {
                "nodeSelector": { "type": "no-such-node-type" },
                "imagePullSecrets": [{ "name": "missing-regcred" }],
            } } } })),
        )
        .await
        .expect("select no node; reference a pull secret");
    let e = create(
        &client,
        &ns,
        "pre",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "pre").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    assert_eq!(reason(&done), reasons::PRECONDITION_FAILED);
    assert!(
        message(&done).contains("no-such-node-type"),
        "{}",
        message(&done)
    );
    let results = done
        .status
        .clone()
        .and_then(|s| s.validation_results)
        .expect("results")
        .conditions;
    let selector = results
        .iter()
        .find(|r| r.name == "node_selector_matches")
        .unwrap_or_else(|| panic!("recorded: {:?}", done.status));
    assert!(!selector.passed && selector.required);
    assert_eq!(selector.outcome.as_deref(), Some("Failed"));
    // The operator reads no Secrets: the pull secret is reported unverified
    // (Inconclusive, optional), never silently passed.
    let pull = results
        .iter()
        .find(|r| r.name == "image_pull_secrets_valid")
        .expect("pull secrets recorded");
    assert!(!pull.passed && !pull.required);
    assert_eq!(pull.outcome.as_deref(), Some("Inconclusive"));
    assert!(
        pull.message
            .as_deref()
            .unwrap_or_default()
            .contains("cannot be verified"),
        "{pull:?}"
    );
    assert!(
        jobs_of(&client, &e.uid().unwrap_or_default())
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_looping_pods_fail_the_postcondition_and_keep_rollback_info() {
    let (client, ns, _) = setup("postcond").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    eventually("pod running", WAIT, || async {
        Ok(pods
            .list(&ListParams::default().labels("app=web"))
            .await?
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
    })
    .await
    .expect("running");
    // The existing pod starts crash-looping (as a kubelet would report it).
    let pod = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods")
        .items
        .remove(0);
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": { "containerStatuses": [{
            "name": "app", "image": "nginx:1.27", "imageID": "", "ready": false, "restartCount": 7,
            "state": { "waiting": { "reason": "CrashLoopBackOff", "message": "back-off restarting failed container" } },
        }]}})),
    )
    .await
    .expect("crashloop");
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    s.postconditions = vec![kubernetes_executor_crds::ActionCondition {
        name: "no_crashloop_pods".into(),
        policy: "no_crashloop_pods".into(),
        required: true,
        timeout: Some("4s".into()),
    }];
    create(&client, &ns, "post", s).await;
    let done = wait_terminal(&client, &ns, "post").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    assert_eq!(reason(&done), reasons::POSTCONDITION_FAILED);
    assert!(
        message(&done).contains("CrashLoopBackOff"),
        "{}",
        message(&done)
    );
    let st = done.status.clone().expect("status");
    let post = st
        .validation_results
        .expect("results")
        .conditions
        .into_iter()
        .find(|r| r.name == "no_crashloop_pods")
        .expect("post");
    assert_eq!(post.outcome.as_deref(), Some("Failed"));
    assert_eq!(
        st.rollback_info.and_then(|r| r.previous_replicas),
        Some(1),
        "rollback info kept"
    );
    assert_eq!(condition(&done, "Executed").as_deref(), Some("True"));
    assert_eq!(condition(&done, "Verified").as_deref(), Some("False"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecidable_postcondition_ends_inconclusive_never_passed() {
    // Inline Rego is allowed only in namespaces the operator lists.
    let (client, ns, _) = setup("inline-ok-inconclusive").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    s.postconditions = vec![kubernetes_executor_crds::ActionCondition {
        name: "latency-slo".into(),
        policy: "package custom.latency\n\ninconclusive contains \"no latency metrics are available\" if { true }\n".into(),
        required: false,
        timeout: Some("3s".into()),
    }];
    create(&client, &ns, "maybe", s).await;
    let done = wait_terminal(&client, &ns, "maybe").await;
    assert_eq!(
        phase(&done),
        Phase::Completed,
        "an optional condition only warns: {:?}",
        done.status
    );
    let results = done
        .status
        .and_then(|s| s.validation_results)
        .expect("results")
        .conditions;
    let slo = results
        .iter()
        .find(|r| r.name == "latency-slo")
        .expect("recorded");
    assert_eq!(slo.outcome.as_deref(), Some("Inconclusive"));
    assert!(!slo.passed, "never silently passed");
    assert!(
        results
            .iter()
            .any(|r| r.name == "no_crashloop_pods" && r.passed),
        "catalog defaults verified too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_policies_protect_system_namespaces_and_control_plane_nodes() {
    let (client, ns, _) = setup("policy").await;
    // A deployment in kube-system.
    deployment(
        &client,
        "kube-system",
        &kubernetes_executor_testkit::unique_name("coredns"),
        1,
        json!({}),
        true,
    )
    .await;
    let sys = Api::<Deployment>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .find(|d| d.name_any().starts_with("coredns-"))
        .expect("kube-system deployment");
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        &sys.name_any(),
        Some("kube-system"),
        &[("replicas", "3")],
    );
    s.dry_run = true;
    create(&client, &ns, "kube-system", s).await;
    let done = wait_terminal(&client, &ns, "kube-system").await;
    assert_eq!(reason(&done), reasons::POLICY_DENIED, "{:?}", done.status);
    assert!(done.status.as_ref().is_some_and(|s| {
        s.policy_violations
            .iter()
            .any(|v| v.contains("kube-system is protected"))
    }));

    // A node labelled control-plane cannot be cordoned or drained; uncordon is fine.
    let node = kubernetes_executor_testkit::unique_name("cp");
    kubernetes_executor_testkit::controlplane::create_ready_node(&client, &node, true)
        .await
        .expect("node");
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "node-role.kubernetes.io/control-plane": "" } } })),
        )
        .await
        .expect("label");
    for (name, action) in [("cordon-cp", "CordonNode"), ("drain-cp", "DrainNode")] {
        create(&client, &ns, name, spec(action, "Node", &node, None, &[])).await;
        let done = wait_terminal(&client, &ns, name).await;
        assert_eq!(
            reason(&done),
            reasons::POLICY_DENIED,
            "{name}: {:?}",
            done.status
        );
        assert!(
            message(&done).contains("control-plane"),
            "{}",
            message(&done)
        );
    }
    let mut s = spec("UncordonNode", "Node", &node, None, &[]);
    s.dry_run = true;
    create(&client, &ns, "uncordon-cp", s).await;
    assert_eq!(
        phase(&wait_terminal(&client, &ns, "uncordon-cp").await),
        Phase::Completed
    );

    // Scale-to-zero of a normal deployment is allowed.
    deployment(&client, &ns, "batch", 1, json!({}), true).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "batch",
        None,
        &[("replicas", "0")],
    );
    s.dry_run = true;
    create(&client, &ns, "zero-ok", s).await;
    let done = wait_terminal(&client, &ns, "zero-ok").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
}

#[tokio::test(flavor = "multi_thread")]
async fn actors_endpoint_lists_exactly_the_live_executions_and_metrics_follow_the_contract() {
    let (client, ns, metrics) = setup("actors").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    set_paused(&client, &ns, true).await;
    let n = 100;
    for i in 0..n {
        let mut s = spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        );
        s.dry_run = true;
        create(&client, &ns, &format!("a-{i:03}"), s).await;
    }
    let listed = |body: &str| -> Vec<(String, String)> {
        let v: Vec<serde_json::Value> = serde_json::from_str(body).unwrap_or_default();
        v.into_iter()
            .filter(|a| {
                a["kind"] == "execution"
                    && a["execution"]
                        .as_str()
                        .is_some_and(|e| e.starts_with(&format!("{ns}/")))
            })
            .map(|a| {
                (
                    a["execution"].as_str().unwrap_or_default().to_string(),
                    a["phase"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    eventually("100 live actors", WAIT, || async {
        let (code, body) = http_get(&metrics, "/actors").await?;
        Ok(code == 200 && listed(&body).len() == n)
    })
    .await
    .expect("/actors lists every live execution");
    let started = std::time::Instant::now();
    let (code, body) = http_get(&metrics, "/actors").await.expect("actors");
    eprintln!(
        "/actors with {n} live executions answered in {:?}",
        started.elapsed()
    );
    assert_eq!(code, 200);
    let actors = listed(&body);
    assert_eq!(actors.len(), n);
    assert!(
        actors.iter().all(|(_, phase)| phase == "Pending"),
        "{actors:?}"
    );
    let (code, one) = http_get(&metrics, &format!("/actors/{ns}/a-007"))
        .await
        .expect("one");
    assert_eq!(code, 200, "{one}");
    assert!(one.contains(&format!("{ns}/a-007")));
    let (_, table) = http_get(&metrics, "/actors?format=table")
        .await
        .expect("table");
    assert!(table.starts_with("KIND"), "{table}");

    set_paused(&client, &ns, false).await;
    for i in 0..n {
        assert_eq!(
            phase(&wait_terminal(&client, &ns, &format!("a-{i:03}")).await),
            Phase::Completed
        );
    }
    eventually("no actor left", WAIT, || async {
        Ok(listed(&http_get(&metrics, "/actors").await?.1).is_empty())
    })
    .await
    .expect("terminal executions hold no actor");
    let (code, _) = http_get(&metrics, &format!("/actors/{ns}/a-007"))
        .await
        .expect("one");
    assert_eq!(code, 404);

    let (_, m) = http_get(&metrics, "/metrics").await.expect("metrics");
    for name in [
        "kubernetes_execution_reconciliation_duration_seconds_bucket{phase=\"Validating\"",
        "kubernetes_execution_phase_transitions_total{from_phase=\"Executing\",to_phase=\"Completed\"}",
        "policy_evaluation_duration_seconds_bucket{policy=\"kubernetes_executor.safety\"",
        "job_creation_duration_seconds_bucket",
        "job_completion_duration_seconds_bucket",
        "kubernetes_executor_live_actors{kind=\"execution\"}",
        "kubernetes_executor_build_info{version=",
        "kubernetes_executor_is_leader 1",
        "kubernetes_executor_api_requests_total{outcome=\"2xx\",resource=\"kubernetesexecutions/status\",verb=\"patch\"}",
    ] {
        assert!(
            m.contains(name),
            "{name} missing from /metrics: {}",
            m.lines()
                .filter(|l| l.starts_with("kubernetes_executor_api"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let transitions: f64 = m
        .lines()
        .find(|l| l.starts_with("kubernetes_execution_phase_transitions_total{from_phase=\"Executing\",to_phase=\"Completed\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        transitions >= n as f64,
        "at least our {n} dry runs: {transitions}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_253_character_name_works_end_to_end() {
    // Longer than a label value (63): the Job's events are routed by the
    // execution's UID, so the execution sees its Job finish.
    let (client, ns, _) = setup("longname").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let name = format!("scale-{}", "a".repeat(247));
    assert_eq!(name.len(), 253);
    create(
        &client,
        &ns,
        &name,
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, &name).await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(reason(&done), "Succeeded");
    let d = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .expect("web");
    assert_eq!(
        d.spec.and_then(|s| s.replicas),
        Some(2),
        "the cluster shows it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_deleted_by_someone_else_fails_the_execution_at_once() {
    let (client, ns, _) = setup("jobgone").await;
    // Pods never schedule: the rollout (and so the Job) would run to the timeout.
    deployment(&client, &ns, "web", 1, json!({}), false).await;
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    s.timeout = Some("5m".into());
    create(&client, &ns, "orphaned", s).await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    eventually("Executing with a Job", WAIT, || async {
        let e = api.get("orphaned").await?;
        Ok(phase(&e) == Phase::Executing
            && e.status.as_ref().and_then(|s| s.job_name.clone()).is_some())
    })
    .await
    .expect("executing");
    let job = api
        .get("orphaned")
        .await
        .expect("get")
        .status
        .and_then(|s| s.job_name)
        .expect("job name");
    let deleted_at = std::time::Instant::now();
    Api::<Job>::namespaced(client.clone(), OPERATOR_NS)
        .delete(&job, &kube::api::DeleteParams::background())
        .await
        .expect("delete the Job");
    let done = wait_terminal(&client, &ns, "orphaned").await;
    assert!(
        deleted_at.elapsed() < std::time::Duration::from_secs(30),
        "noticed in seconds, not at the 5m timeout: {:?}",
        deleted_at.elapsed()
    );
    assert_eq!(phase(&done), Phase::Failed);
    assert_eq!(reason(&done), reasons::JOB_FAILED);
    assert!(message(&done).contains("deleted"), "{}", message(&done));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_job_was_created_adopts_the_job_instead_of_validating_again() {
    // The actor's first life panics right after creating the Job, before
    // Executing is recorded. The restarted actor resumes in Validating. The
    // Job deletes the pod, so validating again would now answer
    // TargetNotFound; the Job must be adopted and its real outcome recorded.
    let (client, ns, _) = setup("adopt").await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    kwok_pod(&client, &ns, "victim").await;
    let created = create_annotated(
        &client,
        &ns,
        "adopt",
        spec(
            "DeletePod",
            "Pod",
            "victim",
            None,
            &[("gracePeriodSeconds", "1")],
        ),
        (
            "kubernetesexecution.kubernaut.io/chaos-crash-after-job",
            "true",
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "adopt").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(reason(&done), "Succeeded");
    let uid = created.uid().unwrap_or_default();
    assert_eq!(jobs_of(&client, &uid).await.len(), 1, "one Job, adopted");
    assert_eq!(
        done.status.as_ref().and_then(|s| s.job_name.clone()),
        Some(format!("ke-{uid}-1"))
    );
    eventually("pod gone", WAIT, || async {
        Ok(pods.get_opt("victim").await?.is_none())
    })
    .await
    .expect("the pod was deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_whose_actor_keeps_crashing_ends_failed_with_a_reason() {
    let (client, ns, _) = setup("abandon").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    create_annotated(
        &client,
        &ns,
        "doomed",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
        ("kubernetesexecution.kubernaut.io/chaos-panic", "always"),
    )
    .await;
    let done = wait_terminal(&client, &ns, "doomed").await;
    assert_eq!(phase(&done), Phase::Failed, "{:?}", done.status);
    assert_eq!(reason(&done), reasons::INTERNAL_ERROR);
    assert!(message(&done).contains("gave up"), "{}", message(&done));
    let d = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("web")
        .await
        .expect("web");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(1), "nothing ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn conditions_written_by_another_controller_survive_the_operators_writes() {
    let (client, ns, _) = setup("ssa").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    // Paused: the execution waits in Pending while another controller (a
    // second field manager) adds its own condition.
    set_paused(&client, &ns, true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    create(
        &client,
        &ns,
        "shared",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    eventually("paused", WAIT, || async {
        Ok(reason(&api.get("shared").await?) == "Paused")
    })
    .await
    .expect("held");
    let approval = json!({
        "apiVersion": "kubernetesexecution.kubernaut.io/v1alpha1",
        "kind": "KubernetesExecution",
        "metadata": { "name": "shared", "namespace": ns },
        "status": { "conditions": [{
            "type": "ExternalApproval", "status": "True", "reason": "Approved",
            "message": "approved by the change board", "lastTransitionTime": "2026-11-30T12:00:00Z",
        }]},
    });
    api.patch_status(
        "shared",
        &PatchParams::apply("change-board").force(),
        &Patch::Apply(approval),
    )
    .await
    .expect("second manager applies its condition");
    set_paused(&client, &ns, false).await;
    let done = wait_terminal(&client, &ns, "shared").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(condition(&done, "Succeeded").as_deref(), Some("True"));
    assert_eq!(
        condition(&done, "ExternalApproval").as_deref(),
        Some("True"),
        "another controller's condition survives: {:?}",
        done.status
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_precondition_timeout_is_waited_for() {
    // nodeSelector matches no node yet; the spec gives the (same, required)
    // precondition 40 s to hold. A matching node label appears meanwhile.
    let (client, ns, _) = setup("prewait").await;
    let node = kubernetes_executor_testkit::unique_name("ke-late-node");
    kubernetes_executor_testkit::controlplane::create_ready_node(&client, &node, false)
        .await
        .expect("node");
    let d = deployment(&client, &ns, "web", 0, json!({}), true).await;
    let key = d.metadata.namespace.clone().unwrap_or_default();
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "template": { "spec": { "nodeSelector": { "type": null, "ke-late": key } } } } })),
        )
        .await
        .expect("select a label no node has yet");
    let mut s = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "0")],
    );
    s.preconditions = vec![kubernetes_executor_crds::ActionCondition {
        name: "node_selector_matches".into(),
        policy: "node_selector_matches".into(),
        required: true,
        timeout: Some("40s".into()),
    }];
    create(&client, &ns, "waits", s).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    assert!(
        !api.get("waits").await.expect("get").phase().is_terminal(),
        "still waiting for the precondition"
    );
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "ke-late": key } } })),
        )
        .await
        .expect("label the node");
    let done = wait_terminal(&client, &ns, "waits").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_created_although_its_create_failed_is_adopted() {
    let (client, ns, _) = setup("lostcreate").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let created = create_annotated(
        &client,
        &ns,
        "lost",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
        ("kubernetesexecution.kubernaut.io/chaos-create-lost", "true"),
    )
    .await;
    let done = wait_terminal(&client, &ns, "lost").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    assert_eq!(reason(&done), "Succeeded");
    assert_eq!(
        jobs_of(&client, &created.uid().unwrap_or_default())
            .await
            .len(),
        1,
        "the one Job the server created was adopted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jobs_deadline_is_what_remains_after_waiting_for_the_target() {
    let (client, ns, _) = setup("remaining").await;
    // Sub-second timeouts would give a Job a 0 s deadline: refused up front.
    let mut s = spec("RolloutStatus", "Deployment", "stuck", None, &[]);
    s.timeout = Some("500ms".into());
    create(&client, &ns, "too-short", s).await;
    let refused = wait_terminal(&client, &ns, "too-short").await;
    assert_eq!(
        reason(&refused),
        reasons::INVALID_TIMEOUT,
        "{:?}",
        refused.status
    );
    assert!(
        jobs_of(&client, &refused.uid().unwrap_or_default())
            .await
            .is_empty()
    );

    // The first execution holds the target for ~15 s (its rollout never ends).
    deployment(&client, &ns, "stuck", 1, json!({}), false).await;
    let mut first = spec(
        "ScaleDeployment",
        "Deployment",
        "stuck",
        None,
        &[("replicas", "2")],
    );
    first.timeout = Some("20s".into());
    create(&client, &ns, "first", first).await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    eventually("first runs", WAIT, || async {
        Ok(phase(&api.get("first").await?) == Phase::Executing)
    })
    .await
    .expect("first executing");
    let mut second = spec(
        "ScaleDeployment",
        "Deployment",
        "stuck",
        None,
        &[("replicas", "3")],
    );
    second.timeout = Some("90s".into());
    let e = create(&client, &ns, "second", second).await;
    let uid = e.uid().unwrap_or_default();
    eventually("second's Job exists", WAIT, || async {
        Ok(!jobs_of(&client, &uid).await.is_empty())
    })
    .await
    .expect("second got the target");
    let job = jobs_of(&client, &uid).await.remove(0);
    let deadline = job
        .spec
        .and_then(|s| s.active_deadline_seconds)
        .unwrap_or_default();
    assert!(
        (1..=80).contains(&deadline),
        "the Job's deadline ({deadline}s) is what remains of 90 s after waiting for the target"
    );
    api.delete("second", &Default::default())
        .await
        .expect("clean up");
}
