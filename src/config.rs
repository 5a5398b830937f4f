//! Command-line configuration: one clap struct per subcommand; every flag
//! has an environment fallback. Configuration enters here and is passed down.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// kubernetes-executor: runs single remediation actions on a Kubernetes
/// cluster safely (catalog, Rego policies, least-privilege Jobs, rollback info).
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator.
    Run(RunArgs),
    /// Run one action (the program inside an action's Job).
    RunAction(RunActionArgs),
    /// Print the KubernetesExecution CRD as YAML.
    Crd,
    /// Print the policies ConfigMap built from a directory of Rego files.
    PoliciesConfigmap {
        /// Directory of `.rego` files.
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
        /// Namespace of the ConfigMap.
        #[arg(long, default_value = "kubernetes-executor-system")]
        namespace: String,
    },
    /// Print the admission policies that record and authorize requesters
    /// and limit the operator's own grants, as YAML.
    Admission {
        /// Namespace the operator runs in (its ServiceAccount is named in the policies).
        #[arg(long, default_value = "kubernetes-executor-system")]
        namespace: String,
    },
    /// Print the per-action RBAC manifests (ServiceAccounts, ClusterRoles, bindings) as YAML.
    Rbac {
        /// Namespace the operator and its Jobs run in.
        #[arg(long, default_value = "kubernetes-executor-system")]
        namespace: String,
    },
}

/// Flags of `run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Namespace the operator runs in and creates Jobs in.
    #[arg(
        long,
        env = "KE_NAMESPACE",
        default_value = "kubernetes-executor-system"
    )]
    pub namespace: String,
    /// Directory of Rego safety policies (the mounted ConfigMap).
    #[arg(long, env = "KE_POLICY_DIR", default_value = "/etc/policies")]
    pub policy_dir: PathBuf,
    /// Address of /metrics and /actors (`:8080` means all interfaces).
    #[arg(long, env = "KE_METRICS_BIND_ADDRESS", default_value = ":8080")]
    pub metrics_bind_address: String,
    /// Address of /healthz and /readyz.
    #[arg(long, env = "KE_HEALTH_PROBE_BIND_ADDRESS", default_value = ":8081")]
    pub health_probe_bind_address: String,
    /// Run leader election on a Lease so only one replica acts.
    #[arg(long, env = "KE_LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Most API requests in flight for executions at once (the operator's
    /// own watches and leader lease are not limited). Protects the API
    /// server's priority-and-fairness queues from bursts of thousands of
    /// executions; excess requests wait in the operator.
    #[arg(long, env = "KE_MAX_CONCURRENT_REQUESTS", default_value_t = 64)]
    pub max_concurrent_requests: usize,
    /// Most executions validating at once; the rest wait, cheaply, for a
    /// permit, still `Pending` (bounds memory under bursts of thousands of
    /// executions; with the request limit it keeps each validation short,
    /// so its passing phase is not written: docs/performance.md).
    #[arg(long, env = "KE_MAX_VALIDATING", default_value_t = 64)]
    pub max_validating: usize,
    /// Most execution actors alive at once. Further new executions wait in
    /// `Pending` (a small entry in the supervisor, no actor, no request)
    /// until one finishes; executions already past `Pending`, being deleted
    /// or restarting always get their actor. Bounds memory under a backlog
    /// of thousands (docs/performance.md).
    #[arg(long, env = "KE_MAX_LIVE_EXECUTIONS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_live_executions: u32,
    /// Image of the action Jobs. Unset: the image of this pod's `operator`
    /// container (read at start; so one image override changes both), or
    /// `kubernetes-executor:latest` outside a pod.
    #[arg(long, env = "KE_IMAGE")]
    pub image: Option<String>,
    /// Seconds finished Jobs are kept.
    #[arg(long, env = "KE_JOB_TTL_SECONDS", default_value_t = kubernetes_executor_actors::job::DEFAULT_TTL_SECONDS)]
    pub job_ttl_seconds: i32,
    /// How often the policy directory is checked for changes, in seconds.
    #[arg(long, env = "KE_POLICY_RELOAD_SECONDS", default_value_t = 2)]
    pub policy_reload_seconds: u64,
    /// Log format: `json`, `text`, or `auto` (text on a terminal).
    #[arg(long, env = "KE_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
    /// OTLP/HTTP collector to export traces to (e.g. `http://otel-collector:4318`);
    /// unset: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Name of this replica's pod (Event reporter instance, lease holder).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Testing knob: executions annotated `kubernetesexecution.kubernaut.io/chaos-panic`
    /// make their actor panic once. Never enable in production.
    #[arg(long, env = "KE_CHAOS", default_value_t = false, hide = true)]
    pub chaos: bool,
    /// Namespaces whose executions may use inline Rego conditions
    /// (comma-separated; `team-*` matches a prefix, `*` every namespace).
    /// Inline conditions run with the operator's view of the cluster, so
    /// they are off by default: conditions name modules of the policy set.
    #[arg(long, env = "KE_ALLOW_INLINE_CONDITIONS", value_delimiter = ',')]
    pub allow_inline_conditions: Vec<String>,
    /// Delete finished executions this long after they finished (a Go
    /// duration; `0`: never by age). Applies to executions without their own
    /// `spec.ttlSecondsAfterFinished` and not owned by another object (a
    /// workflow's steps go with their workflow).
    #[arg(long, env = "KE_FINISHED_TTL", default_value = "168h", value_parser = parse_ttl)]
    pub finished_ttl: std::time::Duration,
    /// Keep at most this many finished executions per namespace (the newest;
    /// `0`: no limit). Same exemptions as `--finished-ttl`.
    #[arg(long, env = "KE_FINISHED_HISTORY_LIMIT", default_value_t = 1000)]
    pub finished_history_limit: usize,
}

/// Flags of `run-action`.
#[derive(Args, Debug, Clone)]
pub struct RunActionArgs {
    /// Catalog action name.
    #[arg(long)]
    pub action: String,
    /// Target kind.
    #[arg(long)]
    pub kind: String,
    /// Target name.
    #[arg(long)]
    pub name: String,
    /// Target namespace (namespaced kinds).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Namespace of the execution, where PatchSecret reads its `fromSecret` source.
    #[arg(long)]
    pub source_namespace: Option<String>,
    /// UID the target had at validation; a different UID is refused.
    #[arg(long)]
    pub expected_uid: Option<String>,
    /// resourceVersion the target had at validation (PatchConfigMap): a
    /// target changed since is refused (`TargetChanged`).
    #[arg(long)]
    pub expected_resource_version: Option<String>,
    /// Time budget of the action in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_seconds: u64,
    /// Parameters as `name=value` (repeatable).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Server-side dry run: change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where to write the JSON result (the pod's terminationMessagePath).
    #[arg(
        long,
        env = "KE_TERMINATION_LOG",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,
}

/// Parses `:8080` / `0.0.0.0:8080` / `127.0.0.1:0`.
pub fn parse_bind(addr: &str) -> anyhow::Result<SocketAddr> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    Ok(full.parse()?)
}

fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    kubernetes_executor_actors::duration::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(parse_bind(":8080").expect("ok").to_string(), "0.0.0.0:8080");
        assert_eq!(parse_bind("127.0.0.1:0").expect("ok").port(), 0);
        assert!(parse_bind("nonsense").is_err());
    }

    #[test]
    fn defaults_match_the_contract() {
        let cli = Cli::parse_from(["kubernetes-executor", "run"]);
        let Command::Run(a) = cli.command else {
            panic!("run")
        };
        assert_eq!(a.metrics_bind_address, ":8080");
        assert_eq!(a.health_probe_bind_address, ":8081");
        assert_eq!(a.namespace, "kubernetes-executor-system");
        assert!(!a.leader_elect);
    }
}
