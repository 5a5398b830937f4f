//! The implementation plan's contract, read from one fixture
//! (tests/fixtures/plan-contract.json): its phase names, condition types,
//! status fields, spec spellings, Job labels, ServiceAccount and ClusterRole
//! names, action aliases and default timeouts — each checked as produced
//! or accepted by the operator on the local control plane.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kubernetes_executor_crds::{KubernetesExecution, Phase};
use serde_json::{Value, json};

fn fixture() -> Value {
    let path = repo().join("tests/fixtures/plan-contract.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The execution as the API server stores it (JSON, so field names are
/// checked as clients see them).
async fn raw(client: &kube::Client, ns: &str, name: &str) -> Value {
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), ns);
    serde_json::to_value(api.get(name).await.expect("get")).expect("json")
}

/// SubjectAccessReviews the operator has made so far.
async fn reviews(metrics: &str) -> f64 {
    let (_, text) = http_get(metrics, "/metrics").await.expect("metrics");
    let samples = kubernetes_executor_loadtest::promtext::parse(&text);
    kubernetes_executor_loadtest::promtext::sum(
        &samples,
        "kubernetes_executor_api_requests_total",
        &[("resource", "subjectaccessreviews")],
    )
}

fn condition_true(e: &Value, t: &str) -> bool {
    e["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == t && c["status"] == "True")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plans_names_are_produced_or_accepted() {
    let f = fixture();
    let metrics = shared_operator().await.to_string();
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "plan").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    deployment(&client, &ns, "db", 1, json!({ "critical": "true" }), true).await;

    // Every phase name is one the API accepts (the CRD's enum).
    let crd =
        std::fs::read_to_string(repo().join("deploy/crds/kubernetesexecutions.yaml")).expect("crd");
    for p in strings(&f["phases"]) {
        assert!(crd.contains(&format!("- {p}")), "phase {p} not in the CRD");
        assert!(
            Phase::ALL.iter().any(|x| x.as_str() == p),
            "phase {p} unknown"
        );
    }

    // A real execution, spelled the plan's way: an alias and `preConditions`.
    let mut s = spec(
        "scale_deployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "2")],
    );
    s.pre_conditions = vec![kubernetes_executor_crds::ActionCondition {
        name: "crash-free-before".into(),
        policy: "no_crashloop_pods".into(),
        required: true,
        timeout: None,
    }];
    let e = create(&client, &ns, "real", s).await;
    let done = wait_terminal(&client, &ns, "real").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    let real = raw(&client, &ns, "real").await;
    assert_eq!(
        real["spec"]["preConditions"][0]["name"], "crash-free-before",
        "the plan's spelling is stored, not pruned"
    );
    assert!(
        real["status"]["validationResults"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == "crash-free-before"
                && c["phase"] == "Pre"
                && c["passed"] == true),
        "and evaluated: {real}"
    );
    for field in strings(&f["statusFields"]) {
        assert!(!real["status"][&field].is_null(), "status.{field}: {real}");
    }
    for t in strings(&f["conditionTypes"]["onSuccess"]) {
        assert!(condition_true(&real, &t), "{t}: {real}");
    }
    // One Event for its outcome; the milestones on the way (Preparing,
    // JobRunning, Verifying) are in status and the trace, not Events (a
    // request each; docs/performance.md).
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let evs = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    assert_eq!(event_count(&evs, "real", "Succeeded"), 1, "{evs:?}");
    for reason in ["Validating", "Preparing", "JobRunning", "Verifying"] {
        assert_eq!(event_count(&evs, "real", reason), 0, "{reason}: {evs:?}");
    }
    // The Job carries the plan's labels and runs as the action's account.
    let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
    let job = jobs
        .list(&ListParams::default().labels(&format!(
            "kubernetesexecution.kubernaut.io/execution-uid={}",
            e.uid().unwrap_or_default()
        )))
        .await
        .expect("jobs")
        .items
        .pop()
        .expect("a Job");
    let labels: BTreeMap<String, String> = job.labels().clone();
    for l in strings(&f["jobLabels"]) {
        assert!(labels.contains_key(&l), "{l}: {labels:?}");
    }
    assert_eq!(labels["kubernaut.ai/action"], "ScaleDeployment");
    assert_eq!(labels["kubernaut.ai/execution"], "real");

    // Invalid parameters, a policy denial, a dry run: their condition types.
    create(
        &client,
        &ns,
        "bad-param",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "many")],
        ),
    )
    .await;
    create(
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
    let mut dry = spec(
        "ScaleDeployment",
        "Deployment",
        "web",
        None,
        &[("replicas", "3")],
    );
    dry.dry_run = true;
    create(&client, &ns, "dry", dry).await;
    for (name, key) in [
        ("bad-param", "onInvalidParameters"),
        ("denied", "onPolicyDenial"),
        ("dry", "onDryRun"),
    ] {
        wait_terminal(&client, &ns, name).await;
        let e = raw(&client, &ns, name).await;
        for t in strings(&f["conditionTypes"][key]) {
            assert!(condition_true(&e, &t), "{name}: {t}: {}", e["status"]);
        }
        if e["status"]["phase"] == "Failed" {
            for field in strings(&f["failureStatusFields"]) {
                assert_eq!(
                    e["status"][&field], e["status"]["reason"],
                    "{name}: {field}"
                );
            }
        }
    }

    // A failure with a result: `result.errorMessage` (a dry run the API
    // server refuses).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({ "metadata": { "name": "settings" }, "data": { "a": "1" } }),
        )
        .expect("cm"),
    )
    .await
    .expect("cm");
    let mut bad = spec(
        "update_configmap",
        "ConfigMap",
        "settings",
        None,
        &[("patch", r#"{"data":{"a":1}}"#)],
    );
    bad.dry_run = true;
    create(&client, &ns, "bad-patch", bad).await;
    wait_terminal(&client, &ns, "bad-patch").await;
    let e = raw(&client, &ns, "bad-patch").await;
    for field in strings(&f["failureResultFields"]) {
        assert!(
            e["status"]["result"][&field]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "result.{field}: {}",
            e["status"]
        );
    }

    // Every alias resolves to its canonical action (a missing target fails
    // fast, after the action was resolved).
    for (alias, canonical) in f["aliases"].as_object().expect("aliases") {
        let kind = match canonical.as_str().unwrap_or_default() {
            "DeletePod" => "Pod",
            "PatchConfigMap" => "ConfigMap",
            "PatchSecret" => "Secret",
            "CordonNode" | "DrainNode" | "UncordonNode" => "Node",
            _ => "Deployment",
        };
        let name = format!("alias-{}", alias.replace('_', "-"));
        create(
            &client,
            &ns,
            &name,
            spec(alias, kind, "does-not-exist", None, &[]),
        )
        .await;
        let done = wait_terminal(&client, &ns, &name).await;
        assert_eq!(
            done.status
                .as_ref()
                .and_then(|s| s.resolved_action.as_deref()),
            canonical.as_str(),
            "{alias}: {:?}",
            done.status
        );
    }

    // The plan's ServiceAccount and ClusterRole names exist.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), OPERATOR_NS);
    for sa in strings(&f["serviceAccounts"]) {
        assert!(
            sas.get_opt(&sa).await.expect("get").is_some(),
            "ServiceAccount {sa}"
        );
    }
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for r in strings(&f["clusterRoles"]) {
        assert!(
            roles.get_opt(&r).await.expect("get").is_some(),
            "ClusterRole {r}"
        );
        let bound = bindings
            .list(&ListParams::default())
            .await
            .expect("bindings")
            .items
            .iter()
            .any(|b| {
                b.role_ref.name == r
                    && b.subjects
                        .iter()
                        .flatten()
                        .any(|s| s.name == "kubernetes-executor")
            });
        assert!(bound, "ClusterRole {r} is bound to the operator");
    }

    // Durations as Go clients send them (metav1.Duration): accepted by the
    // CRD, `0s` meaning the action's default. (Three executions by one
    // requester for one action and scope: one access review between them.)
    let reviews_before = reviews(&metrics).await;
    for (name, timeout, want) in [
        ("go-zero", "0s", 60),
        ("go-decimal", "1.5m", 90),
        ("go-hms", "0h2m0s", 120),
    ] {
        let mut s = spec("rollout_status", "Deployment", "web", None, &[]);
        s.timeout = Some(timeout.into());
        s.workflow_execution_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
            name: Some("wf-1".into()),
            ..Default::default()
        });
        s.step_number = Some(2);
        create(&client, &ns, name, s).await;
        let done = wait_terminal(&client, &ns, name).await;
        assert_eq!(
            phase(&done),
            Phase::Completed,
            "{timeout}: {:?}",
            done.status
        );
        let jobs: Api<Job> = Api::namespaced(client.clone(), OPERATOR_NS);
        let job = jobs
            .list(&ListParams::default().labels(&format!(
                "kubernetesexecution.kubernaut.io/execution-uid={}",
                done.uid().unwrap_or_default()
            )))
            .await
            .expect("jobs")
            .items
            .pop()
            .expect("a Job");
        let deadline = job
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .unwrap_or_default();
        assert!(
            deadline <= want && deadline > want - 15,
            "{timeout}: deadline {deadline}"
        );
        let st = done.status.clone().unwrap_or_default();
        assert_eq!(
            (st.workflow_execution.as_deref(), st.step_number),
            (Some("wf-1"), Some(2))
        );
    }

    let reviews_made = reviews(&metrics).await - reviews_before;
    assert!(
        reviews_made <= 1.0,
        "the operator's access reviews are cached per requester and access: {reviews_made}"
    );

    // The workflow's steps are found by label (set at admission).
    let execs: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    let steps = execs
        .list(&ListParams::default().labels(
            "kubernetesexecution.kubernaut.io/workflow-execution=wf-1,kubernetesexecution.kubernaut.io/step-number=2",
        ))
        .await
        .expect("list")
        .items;
    assert_eq!(
        steps.len(),
        3,
        "{:?}",
        steps.iter().map(|e| e.name_any()).collect::<Vec<_>>()
    );

    // The plan's default timeouts.
    for (action, want) in f["defaultTimeouts"].as_object().expect("timeouts") {
        let spec = kubernetes_executor_actors::catalog::lookup(action).expect("action");
        let want =
            kubernetes_executor_actors::duration::parse_duration(want.as_str().unwrap_or_default())
                .expect("duration");
        assert_eq!(spec.default_timeout, want, "{action}");
    }
}
