//! Every manifest in deploy/ is valid for the real API server: the whole
//! kustomization is applied with a server-side dry run (the monitoring objects
//! against stand-in CRDs), and the Deployment honours the contract.

mod common;

use common::*;

fn kubectl(args: &[&str]) -> (bool, String) {
    let env = env();
    let out = std::process::Command::new(env.bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(env.kubeconfig())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("kubectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn deploy_kustomization_applies_with_a_server_side_dry_run() {
    let (ok, out) = kubectl(&["apply", "--dry-run=server", "-k", "deploy/"]);
    assert!(ok, "{out}");
    for object in [
        "deployment.apps/kubernetes-executor",
        "service/kubernetes-executor-metrics",
        "configmap/kubernetes-executor-policies",
        "customresourcedefinition.apiextensions.k8s.io/kubernetesexecutions.kubernetesexecution.kubernaut.io",
        "clusterrole.rbac.authorization.k8s.io/kubernetes-executor-drain-node",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
    let (ok, out) = kubectl(&["kustomize", "deploy/"]);
    assert!(ok, "{out}");
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .collect();
    let dep = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["resources"]["requests"]["cpu"], "100m");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        65532
    );
    assert!(
        c["args"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "--leader-elect"))
    );
    let svc = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("service");
    assert_eq!(svc["metadata"]["name"], "kubernetes-executor-metrics");
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn monitoring_manifests_apply_with_a_server_side_dry_run() {
    let (ok, out) = kubectl(&["apply", "-f", "tests/fixtures/monitoring-crds.yaml"]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "--timeout=60s",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&["apply", "--dry-run=server", "-k", "deploy/monitoring/"]);
    assert!(ok, "{out}");
    for object in [
        "servicemonitor.monitoring.coreos.com/kubernetes-executor",
        "prometheusrule.monitoring.coreos.com/kubernetes-executor",
        "configmap/kubernetes-executor-dashboard",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
}

fn render(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let (ok, out) = kubectl(&["kustomize", &dir.display().to_string()]);
    assert!(ok, "{out}");
    serde_yaml::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .collect()
}

/// One kustomize image override changes the operator's image and the image
/// its Jobs run: the Deployment no longer names the Jobs' image; the
/// operator reads its own pod's image at start. Shown on the rendered
/// overlay and at run time: an operator whose pod has the overridden image
/// creates Jobs with it.
#[tokio::test(flavor = "multi_thread")]
async fn one_image_override_changes_the_operator_and_its_jobs() {
    // kustomize takes bases by relative path: the overlay lives in target/.
    let scratch = repo().join("target");
    std::fs::create_dir_all(&scratch).expect("target/");
    let overlay = tempfile::Builder::new()
        .prefix("overlay-")
        .tempdir_in(&scratch)
        .expect("tempdir");
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../deploy\nimages:\n  - name: kubernetes-executor\n    newName: registry.example/kubernetes-executor\n    newTag: v9\n",
    )
    .expect("write overlay");
    let docs = render(overlay.path());
    let dep = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "operator");
    let image = c["image"].as_str().expect("image").to_string();
    assert_eq!(image, "registry.example/kubernetes-executor:v9");
    let vars = c["env"].as_array().expect("env");
    assert!(
        !vars.iter().any(|e| e["name"] == "KE_IMAGE"),
        "no second copy of the image to forget: {vars:?}"
    );
    assert!(
        vars.iter().any(|e| e["name"] == "KE_NAMESPACE"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "the namespace comes from the downward API: {vars:?}"
    );
    let pod_spec = &dep["spec"]["template"]["spec"];
    assert_eq!(
        pod_spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    let pdb = docs
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .expect("a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    // At run time: the operator's pod (an object only: nodeName points
    // nowhere, it never runs) carries the overridden image.
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), OPERATOR_NS);
    // The rendered pod template itself (restricted PSS holds), never run.
    let mut pod_spec = pod_spec.clone();
    pod_spec["nodeName"] = "no-such-node".into();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "ke-image-probe" },
        "spec": pod_spec,
    }))
    .expect("pod");
    pods.create(&Default::default(), &pod)
        .await
        .expect("create pod");
    // Quiet logs (RUST_LOG=warn): the per-execution User-Agent must not
    // depend on the log level (checked in the audit log below).
    let op = start_operator_with_env(
        env,
        "operator-image",
        &["--pod-name", "ke-image-probe"],
        &[("RUST_LOG", "warn")],
    )
    .await;
    let ns = namespace(&client, "image").await;
    deployment(&client, &ns, "web", 1, serde_json::json!({}), true).await;
    let e = create(
        &client,
        &ns,
        "scale",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "scale").await;
    assert_eq!(
        phase(&done),
        kubernetes_executor_crds::Phase::Completed,
        "{:?}",
        done.status
    );
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(client.clone(), OPERATOR_NS);
    let uid = kube::ResourceExt::uid(&e).expect("uid");
    let job = jobs
        .list(&kube::api::ListParams::default().labels(&format!(
            "{}={uid}",
            kubernetes_executor_crds::labels::EXECUTION_UID
        )))
        .await
        .expect("jobs")
        .items
        .pop()
        .expect("the execution's Job");
    let job_image = job
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image);
    assert_eq!(job_image.as_deref(), Some(image.as_str()));
    let audit = std::fs::read_to_string(env.audit_log()).expect("audit log");
    let agent = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "jobs"
                && e["requestObject"]["metadata"]["labels"]
                    [kubernetes_executor_crds::labels::EXECUTION_UID]
                    == uid.as_str()
        })
        .map(|e| e["userAgent"].as_str().unwrap_or_default().to_string())
        .expect("the Job create is audited");
    assert!(
        agent.contains(&format!("execution {uid}")),
        "with RUST_LOG=warn the User-Agent still names the execution: {agent}"
    );
    drop(op);
    pods.delete("ke-image-probe", &Default::default())
        .await
        .expect("delete pod");
}

/// The label kube-prometheus-stack selects ServiceMonitors and rules by is
/// set once, in deploy/monitoring/kustomization.yaml, and reaches both.
#[test]
fn the_prometheus_selector_label_is_set_in_one_place() {
    let docs = render(&repo().join("deploy/monitoring"));
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        let d = docs
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(
            d["metadata"]["labels"]["release"], "kube-prometheus-stack",
            "{kind}: {d}"
        );
    }
    let sm = docs
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("sm");
    assert!(
        sm["spec"]["selector"]["matchLabels"]
            .get("release")
            .is_none(),
        "the label is not added to the ServiceMonitor's selector"
    );
}

/// The LICENSE file is the license Cargo.toml declares.
#[test]
fn the_license_file_matches_cargo_toml() {
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        cargo
            .lines()
            .any(|l| l.trim() == "license = \"Apache-2.0\""),
        "Cargo.toml declares Apache-2.0"
    );
    let license = std::fs::read_to_string(repo().join("LICENSE")).expect("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    assert!(
        license.contains("END OF TERMS AND CONDITIONS"),
        "the whole text"
    );
}
