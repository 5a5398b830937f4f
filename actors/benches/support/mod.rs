//! Fixtures shared by the benchmarks.

use kubernetes_executor_crds::{KubernetesExecution, KubernetesExecutionSpec, TargetResource};

/// "Scale deployment web in shop to 3".
pub fn exec() -> KubernetesExecution {
    let mut e = KubernetesExecution::new(
        "scale-web",
        KubernetesExecutionSpec {
            parameters: [("replicas".to_string(), "3".to_string())].into(),
            ..KubernetesExecutionSpec::new(
                "ScaleDeployment",
                TargetResource::new("Deployment", "web", Some("shop")),
            )
        },
    );
    e.metadata.namespace = Some("shop".into());
    e
}
