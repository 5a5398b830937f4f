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
