//! Prints the KubernetesExecution CRD as YAML (committed as
//! `deploy/crds/kubernetesexecutions.yaml`).
fn main() {
    print!("{}", kubernetes_executor_crds::crd_yaml());
}
