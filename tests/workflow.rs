//! A workflow engine, end to end: tests/workflow-engine (Go,
//! controller-runtime, the typed Go API in crds/go) plays Kubernaut's
//! WorkflowExecution controller against the local control plane, as a
//! ServiceAccount holding only the shipped `kubernetes-executor-workflow-engine`
//! role (one RoleBinding) and its own test CRD's role.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use kubernetes_executor_crds::{KubernetesExecution, Phase, labels, reasons};
use kubernetes_executor_testkit::{Proc, eventually};
use serde_json::{Value, json};

const ENGINE_SA: &str = "workflow-engine";

fn workflow_resource() -> ApiResource {
    ApiResource {
        group: "workflowexecution.kubernaut.ai".into(),
        version: "v1alpha1".into(),
        api_version: "workflowexecution.kubernaut.ai/v1alpha1".into(),
        kind: "WorkflowExecution".into(),
        plural: "workflowexecutions".into(),
    }
}

/// Builds the engine (Go's build cache makes a rebuild of unchanged sources
/// a link at most) into the cache directory outside the clone.
fn build_engine() -> PathBuf {
    let out = kubernetes_executor_testkit::cache_dir().join("gotools/workflow-engine");
    let status = Command::new("go")
        .args(["build", "-trimpath", "-buildvcs=false", "-o"])
        .arg(&out)
        .arg(".")
        .env("CGO_ENABLED", "0")
        .current_dir(repo().join("tests/workflow-engine"))
        .status()
        .expect("run go build");
    assert!(status.success(), "building tests/workflow-engine failed");
    out
}

/// The engine's namespace: its ServiceAccount, the shipped workflow-engine
/// role bound there, and a Role for its own CRD.
async fn engine_namespace(admin: &Client) -> String {
    let env = env();
    // Once per test binary (tests run concurrently).
    static CRD: std::sync::Once = std::sync::Once::new();
    CRD.call_once(|| {
        testkit_kubectl(&[
            "apply",
            "-f",
            &repo()
                .join("tests/workflow-engine/crd.yaml")
                .display()
                .to_string(),
        ]);
        testkit_kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/workflowexecutions.workflowexecution.kubernaut.ai",
            "--timeout=60s",
        ]);
    });
    let ns = namespace(admin, "wf").await;
    for (kind, body) in [
        (
            "sa",
            json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": ENGINE_SA } }),
        ),
        (
            "role",
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": { "name": "workflow-engine-workflows" },
                "rules": [
                    { "apiGroups": ["workflowexecution.kubernaut.ai"], "resources": ["workflowexecutions"], "verbs": ["get", "list", "watch"] },
                    { "apiGroups": ["workflowexecution.kubernaut.ai"], "resources": ["workflowexecutions/status"], "verbs": ["update"] },
                ] }),
        ),
        (
            "rb",
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": "workflow-engine-workflows" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "workflow-engine-workflows" },
                "subjects": [{ "kind": "ServiceAccount", "name": ENGINE_SA, "namespace": ns }] }),
        ),
        (
            "rb",
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": "workflow-engine" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubernetes-executor-workflow-engine" },
                "subjects": [{ "kind": "ServiceAccount", "name": ENGINE_SA, "namespace": ns }] }),
        ),
    ] {
        let file = env.dir().join(format!(
            "{ns}-{kind}-{}.json",
            body["metadata"]["name"].as_str().unwrap_or("x")
        ));
        std::fs::write(&file, body.to_string()).expect("write manifest");
        testkit_kubectl(&["apply", "-n", &ns, "-f", &file.display().to_string()]);
    }
    ns
}

fn testkit_kubectl(args: &[&str]) -> String {
    kubernetes_executor_testkit::operator::kubectl(env(), args)
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e:#}"))
}

/// Starts the engine as its ServiceAccount, watching `ns`.
/// With `apply`, the engine creates steps by server-side apply with the Go
/// API's apply configurations; otherwise with a typed Create.
async fn start_engine(ns: &str, apply: bool) -> Proc {
    let bin = build_engine();
    // token_client writes the ServiceAccount's kubeconfig next to the control plane's.
    let _ = token_client(ns, ENGINE_SA).await;
    let kubeconfig = env().dir().join(format!("{ns}-{ENGINE_SA}.kubeconfig"));
    Proc::spawn(
        &format!("workflow-engine-{ns}"),
        &bin,
        &[
            "--namespace".to_string(),
            ns.to_string(),
            format!("--apply={apply}"),
        ],
        &[("KUBECONFIG".to_string(), kubeconfig.display().to_string())],
        env().dir(),
    )
    .expect("start the workflow engine")
}

fn step(action: &str, kind: &str, name: &str, params: Value) -> Value {
    json!({ "action": action, "target": { "kind": kind, "name": name }, "parameters": params })
}

async fn create_workflow(admin: &Client, ns: &str, name: &str, steps: Vec<Value>) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &workflow_resource());
    let wf: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "workflowexecution.kubernaut.ai/v1alpha1", "kind": "WorkflowExecution",
        "metadata": { "name": name }, "spec": { "steps": steps },
    }))
    .expect("workflow");
    api.create(&PostParams::default(), &wf)
        .await
        .expect("create workflow")
}

/// Waits for the workflow's status.phase to be Completed or Failed.
async fn wait_workflow(admin: &Client, ns: &str, name: &str, engine: &Proc) -> Value {
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &workflow_resource());
    let done = eventually(&format!("workflow {name} finished"), WAIT * 2, || async {
        let wf = api.get(name).await?;
        let phase = wf.data["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(phase == "Completed" || phase == "Failed")
    })
    .await;
    let wf = api.get(name).await.expect("workflow");
    assert!(
        done.is_ok(),
        "workflow {name} did not finish: {}\nengine log:\n{}",
        wf.data["status"],
        engine.log_tail(8000)
    );
    wf.data["status"].clone()
}

async fn steps_of(client: &Client, ns: &str, workflow: &str) -> Vec<KubernetesExecution> {
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), ns);
    let mut steps = api
        .list(&ListParams::default().labels(&format!("{}={workflow}", labels::WORKFLOW)))
        .await
        .expect("list steps")
        .items;
    steps.sort_by_key(|e| e.spec.step_number);
    steps
}

#[tokio::test(flavor = "multi_thread")]
async fn a_go_workflow_engine_runs_steps_in_order_and_stops_on_a_denied_one() {
    let env = env();
    shared_operator().await;
    let admin = env.client().await.expect("client");
    let ns = engine_namespace(&admin).await;
    deployment(&admin, &ns, "web", 1, json!({}), true).await;
    deployment(&admin, &ns, "db", 1, json!({ "critical": "true" }), true).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({ "metadata": { "name": "settings" }, "data": { "mode": "a" } }),
        )
        .expect("cm"),
    )
    .await
    .expect("create configmap");
    let mut engine = start_engine(&ns, false).await;

    // The happy path: three steps, each after the previous one succeeded.
    let wf = create_workflow(
        &admin,
        &ns,
        "happy",
        vec![
            step(
                "ScaleDeployment",
                "Deployment",
                "web",
                json!({ "replicas": "2" }),
            ),
            step(
                "PatchConfigMap",
                "ConfigMap",
                "settings",
                json!({ "patch": r#"{"data":{"mode":"b"}}"# }),
            ),
            step("RestartDeployment", "Deployment", "web", json!({})),
        ],
    )
    .await;
    let status = wait_workflow(&admin, &ns, "happy", &engine).await;
    assert_eq!(status["phase"], "Completed", "{status}");

    // The cluster, not only the statuses.
    let deps: Api<Deployment> = Api::namespaced(admin.clone(), &ns);
    let web = deps.get("web").await.expect("web");
    assert_eq!(web.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let restarted = web
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("kubectl.kubernetes.io/restartedAt").cloned());
    assert!(restarted.is_some(), "step 3 restarted web: {web:?}");
    let cm = cms.get("settings").await.expect("settings");
    assert_eq!(
        cm.data
            .as_ref()
            .and_then(|d| d.get("mode"))
            .map(String::as_str),
        Some("b")
    );

    // The steps, found by the workflow label (kubectl get kexec -l ...).
    let steps = steps_of(&admin, &ns, "happy").await;
    assert_eq!(steps.len(), 3, "{steps:?}");
    let wf_uid = wf.uid().expect("uid");
    for (i, s) in steps.iter().enumerate() {
        let n = i as i32 + 1;
        let st = s.status.clone().unwrap_or_default();
        assert_eq!(s.phase(), Phase::Completed, "{}: {st:?}", s.name_any());
        assert_eq!(
            s.labels().get(labels::STEP).map(String::as_str),
            Some(n.to_string().as_str())
        );
        assert_eq!(st.workflow_execution.as_deref(), Some("happy"));
        assert_eq!(st.step_number, Some(n));
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("WorkflowExecution", wf_uid.as_str())
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(
            s.spec.requester.as_ref().map(|r| r.username.clone()),
            Some(format!("system:serviceaccount:{ns}:{ENGINE_SA}")),
            "the engine asked, as itself"
        );
        // The engine sent metav1.Duration 0s: the catalog default applied.
        assert_eq!(s.spec.timeout.as_deref(), Some("0s"));
        if i > 0 {
            let prev_done = steps[i - 1]
                .status
                .as_ref()
                .and_then(|s| s.completion_time.clone())
                .expect("previous step's completionTime")
                .0;
            let created = s.creation_timestamp().expect("created").0;
            assert!(
                created.as_second() >= prev_done.as_second(),
                "step {n} created at {created} before step {} finished at {prev_done}",
                n - 1
            );
        }
    }
    let listed = testkit_kubectl(&[
        "get",
        "kexec",
        "-n",
        &ns,
        "-l",
        &format!("{}=happy", labels::WORKFLOW),
        "-o",
        "name",
    ]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    // The engine recorded each step's rollback information.
    assert_eq!(
        status["steps"][0]["rollbackInfo"]["previousReplicas"], 1,
        "{status}"
    );
    assert_eq!(
        status["steps"][1]["rollbackInfo"]["previousData"]["mode"], "a",
        "{status}"
    );
    assert!(
        status["steps"][2]["rollbackInfo"]["restorable"].is_boolean(),
        "{status}"
    );

    // What the shipped role does not let the engine do: act in a namespace
    // it is not bound in, or on a node.
    let as_engine: Api<KubernetesExecution> =
        Api::namespaced(token_client(&ns, ENGINE_SA).await, &ns);
    for (name, what, s) in [
        (
            "elsewhere",
            "ScaleDeployment in namespace default",
            spec(
                "ScaleDeployment",
                "Deployment",
                "web",
                Some("default"),
                &[("replicas", "1")],
            ),
        ),
        (
            "node",
            "CordonNode cluster-wide",
            spec("CordonNode", "Node", "any-node", None, &[]),
        ),
    ] {
        match as_engine
            .create(&PostParams::default(), &KubernetesExecution::new(name, s))
            .await
        {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 403, "{e:?}");
                assert!(
                    e.message.contains(&format!("may not execute {what}")),
                    "{}",
                    e.message
                );
            }
            other => panic!("the engine's role let it ask for {what}: {other:?}"),
        }
    }

    // A denied step stops the workflow; the engine sees why.
    create_workflow(
        &admin,
        &ns,
        "denied",
        vec![
            step(
                "ScaleDeployment",
                "Deployment",
                "web",
                json!({ "replicas": "3" }),
            ),
            step(
                "ScaleDeployment",
                "Deployment",
                "db",
                json!({ "replicas": "0" }),
            ),
            step(
                "ScaleDeployment",
                "Deployment",
                "web",
                json!({ "replicas": "1" }),
            ),
        ],
    )
    .await;
    let status = wait_workflow(&admin, &ns, "denied", &engine).await;
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["failedStep"], 2, "{status}");
    assert_eq!(status["failureReason"], reasons::POLICY_DENIED, "{status}");
    assert!(
        status["failureMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("critical"),
        "the denial names the rule: {status}"
    );
    // Step 3 was never created and nothing after the denial happened.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let steps = steps_of(&admin, &ns, "denied").await;
    assert_eq!(
        steps.len(),
        2,
        "{:?}",
        steps.iter().map(|s| s.name_any()).collect::<Vec<_>>()
    );
    let web = deps.get("web").await.expect("web");
    assert_eq!(web.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let db = deps.get("db").await.expect("db");
    assert_eq!(db.spec.as_ref().and_then(|s| s.replicas), Some(1));
    engine.stop();
}

/// Deleting a workflow deletes its steps through the garbage collector,
/// also a step that is still running and holds the operator's finalizer:
/// the operator cancels it (deletes its Job, releases lock and grants) and
/// removes the finalizer; nothing is left behind.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_workflow_cascades_to_its_steps_and_leaves_nothing_behind() {
    let env = env();
    shared_operator().await;
    let admin = env.client().await.expect("client");
    let ns = engine_namespace(&admin).await;
    deployment(&admin, &ns, "web", 1, json!({}), true).await;
    // Its pods never schedule: scaling it runs until the step's timeout.
    deployment(&admin, &ns, "stuck", 1, json!({}), false).await;
    let mut engine = start_engine(&ns, true).await;

    let mut long = step(
        "ScaleDeployment",
        "Deployment",
        "stuck",
        json!({ "replicas": "2" }),
    );
    long["timeout"] = "10m".into();
    create_workflow(
        &admin,
        &ns,
        "cascade",
        vec![
            step(
                "ScaleDeployment",
                "Deployment",
                "web",
                json!({ "replicas": "2" }),
            ),
            long,
        ],
    )
    .await;
    let execs: Api<KubernetesExecution> = Api::namespaced(admin.clone(), &ns);
    let running = eventually("step 2 runs and holds the finalizer", WAIT, || async {
        Ok(execs.get_opt("cascade-step-2").await?.is_some_and(|e| {
            e.phase() == Phase::Executing
                && e.finalizers()
                    .iter()
                    .any(|f| f == kubernetes_executor_crds::FINALIZER)
        }))
    })
    .await;
    assert!(running.is_ok(), "engine log:\n{}", engine.log_tail(6000));
    let step2 = execs.get("cascade-step-2").await.expect("step 2");
    assert_eq!(
        step2.spec.timeout.as_deref(),
        Some("10m0s"),
        "what metav1.Duration renders"
    );
    let uid = step2.uid().expect("uid");

    let wfs: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &ns, &workflow_resource());
    wfs.delete("cascade", &DeleteParams::background())
        .await
        .expect("delete workflow");
    eventually("the workflow's steps are gone", WAIT, || async {
        Ok(execs.list(&ListParams::default()).await?.items.is_empty())
    })
    .await
    .expect("every step, the running one too, is deleted");
    wait_jobs_gone(&admin, &uid, "the cancelled step's Job is deleted").await;
    let rbs: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin.clone(), &ns);
    let grants: Vec<String> = rbs
        .list(&ListParams::default().labels(&format!("{}={uid}", labels::EXECUTION_UID)))
        .await
        .expect("rolebindings")
        .items
        .iter()
        .map(|r| r.name_any())
        .collect();
    assert!(
        grants.is_empty(),
        "grants of the cancelled step remain: {grants:?}"
    );
    assert!(wfs.get_opt("cascade").await.expect("get").is_none());
    engine.stop();
}
