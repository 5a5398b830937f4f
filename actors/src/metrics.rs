//! Every Prometheus metric of the operator, registered once in one struct
//! and shared (`Arc<Metrics>`) by the actors and the HTTP server. Names are
//! part of the API (DESIGN §5).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The operator's metrics.
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// `kubernetes_execution_reconciliation_duration_seconds{phase}`: time an
    /// execution actor took to handle one event (message), by the phase it
    /// was in when the event arrived.
    pub reconciliation_duration: HistogramVec,
    /// `kubernetes_execution_phase_duration_seconds{phase}`: time an
    /// execution spent in a phase before leaving it.
    pub phase_duration: HistogramVec,
    /// `kubernetes_execution_phase_transitions_total{from_phase,to_phase}`.
    pub phase_transitions: IntCounterVec,
    /// `policy_evaluation_duration_seconds{policy}`: `policy` is the Rego
    /// package evaluated (`kubernetes_executor.safety`,
    /// `kubernetes_executor.conditions.<name>`, `inline`).
    pub policy_evaluation_duration: HistogramVec,
    /// `policy_denials_total{policy,action}`: `policy` is the rule that
    /// decided (`kubernetes_executor.safety.deny`, `….allow`, or
    /// `fail-closed` when no set is loaded).
    pub policy_denials: IntCounterVec,
    /// `policy_evaluation_errors_total{policy}`: evaluations that failed (the
    /// execution fails closed).
    pub policy_evaluation_errors: IntCounterVec,
    /// `policy_reload_errors_total`.
    pub policy_reload_errors: IntCounter,
    /// `policy_reload_failing`: 1 while the policy source in place was
    /// rejected (the previous set still decides); 0 once a source loads.
    pub policy_reload_failing: IntGauge,
    /// `policy_set_loaded`: 1 when a policy set is loaded.
    pub policy_set_loaded: IntGauge,
    /// `job_creation_duration_seconds`: validation done → Job created.
    pub job_creation_duration: Histogram,
    /// `job_completion_duration_seconds`: Job created → Job finished.
    pub job_completion_duration: Histogram,
    /// `kubernetes_executor_live_actors{kind}`.
    pub live_actors: IntGaugeVec,
    /// `kubernetes_executor_actor_restarts_total{kind}`.
    pub actor_restarts: IntCounterVec,
    /// `kubernetes_executor_executions_finished_total{phase,reason}`.
    pub executions_finished: IntCounterVec,
    /// `kubernetes_executor_api_requests_total{verb,resource,outcome}`;
    /// `outcome`: `2xx`, `429` (throttled), `4xx` (other client errors),
    /// `5xx`, `error` (no response).
    pub api_requests: IntCounterVec,
    /// `kubernetes_executor_message_handling_seconds{actor}`.
    pub message_handling: HistogramVec,
    /// `kubernetes_executor_executions_collected_total{why}`: finished
    /// executions deleted by the history clean-up (`ttl`, `limit`).
    pub executions_collected: IntCounterVec,
    /// `kubernetes_executor_build_info{version}`: always 1.
    pub build_info: IntGaugeVec,
    /// `kubernetes_executor_is_leader`: 1 while this replica leads.
    pub is_leader: IntGauge,
    /// `kubernetes_executor_waiting_executions`: new executions waiting for
    /// an actor (more than `--max-live-executions` are live).
    pub waiting_executions: IntGauge,
    /// `kubernetes_executor_heap_bytes{state}`: the allocator's own count
    /// (jemalloc builds; absent with another allocator): `allocated` is
    /// what live objects use, `resident` the heap pages the process holds.
    /// Resident well above allocated is memory freed but not yet returned
    /// (or stranded by a long-lived object on a page), not a leak.
    pub heap_bytes: IntGaugeVec,
}

/// Every actor kind (`live_actors`, `actor_restarts`, `message_handling`).
pub const ACTOR_KINDS: &[&str] = &[
    "root",
    "policy",
    "rbac",
    "job-watcher",
    "kill-switch",
    "supervisor",
    "execution",
    "postconditions",
];

/// The safety package and its deny rule as metrics label them (the same
/// strings as `policy::SAFETY_PACKAGE` and `policy::DENY_RULE_NAME`; a test
/// there checks: metrics sits below policy in the module layers).
pub const SAFETY_PACKAGE: &str = "kubernetes_executor.safety";
/// See [`SAFETY_PACKAGE`].
pub const SAFETY_DENY_RULE: &str = "kubernetes_executor.safety.deny";

/// Values of `api_requests_total{outcome}`.
pub const API_OUTCOMES: &[&str] = &["2xx", "429", "4xx", "5xx", "error"];

/// Phase transitions the machine can make (`phase_transitions`).
pub const TRANSITIONS: &[(&str, &str)] = &[
    ("Pending", "Validating"),
    ("Pending", "Failed"),
    ("Validating", "Preparing"),
    ("Validating", "Failed"),
    ("Preparing", "Executing"),
    ("Preparing", "Failed"),
    ("Executing", "Verifying"),
    ("Executing", "Completed"),
    ("Executing", "Failed"),
    ("Verifying", "Completed"),
    ("Verifying", "Failed"),
];

/// Handling one message, creating a Job: milliseconds to a minute (the
/// reconciliation alert's threshold, 5 s, is a bucket bound).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Jobs and phases: up to the longest timeout (15 m) and beyond (the slow
/// Jobs alert's threshold, 600 s, is a bucket bound).
const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
];
const POLICY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1,
];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let h = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
        };
        let c = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let m = Metrics {
            reconciliation_duration: h(
                "kubernetes_execution_reconciliation_duration_seconds",
                "Time to handle one event of an execution, by the phase it was in",
                &["phase"],
                LATENCY_BUCKETS,
            )?,
            phase_duration: h(
                "kubernetes_execution_phase_duration_seconds",
                "Time an execution spent in a phase before leaving it",
                &["phase"],
                DURATION_BUCKETS,
            )?,
            phase_transitions: c(
                "kubernetes_execution_phase_transitions_total",
                "Phase transitions of executions",
                &["from_phase", "to_phase"],
            )?,
            policy_evaluation_duration: h(
                "policy_evaluation_duration_seconds",
                "Time to evaluate a policy decision",
                &["policy"],
                POLICY_BUCKETS,
            )?,
            policy_denials: c(
                "policy_denials_total",
                "Actions denied by policy",
                &["policy", "action"],
            )?,
            policy_evaluation_errors: c(
                "policy_evaluation_errors_total",
                "Policy evaluations that failed (the decision fails closed)",
                &["policy"],
            )?,
            policy_reload_failing: IntGauge::new(
                "policy_reload_failing",
                "1 while the policy source in place was rejected (the previous set still decides)",
            )?,
            policy_reload_errors: IntCounter::new(
                "policy_reload_errors_total",
                "Policy sets rejected at load or reload",
            )?,
            policy_set_loaded: IntGauge::new("policy_set_loaded", "1 when a policy set is loaded")?,
            job_creation_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "job_creation_duration_seconds",
                    "Time to create an action's Job (RBAC grant + create)",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            job_completion_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "job_completion_duration_seconds",
                    "Time from Job creation to its completion or failure (once per Job)",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
            )?,
            live_actors: IntGaugeVec::new(
                Opts::new("kubernetes_executor_live_actors", "Live actors by kind"),
                &["kind"],
            )?,
            actor_restarts: c(
                "kubernetes_executor_actor_restarts_total",
                "Actor restarts by kind",
                &["kind"],
            )?,
            executions_finished: c(
                "kubernetes_executor_executions_finished_total",
                "Executions that reached a terminal phase",
                &["phase", "reason"],
            )?,
            api_requests: c(
                "kubernetes_executor_api_requests_total",
                "Kubernetes API requests by verb, resource and outcome",
                &["verb", "resource", "outcome"],
            )?,
            message_handling: h(
                "kubernetes_executor_message_handling_seconds",
                "Time an actor spent handling one message",
                &["actor"],
                LATENCY_BUCKETS,
            )?,
            executions_collected: c(
                "kubernetes_executor_executions_collected_total",
                "Finished executions deleted by the history clean-up, by why (ttl, limit)",
                &["why"],
            )?,
            build_info: IntGaugeVec::new(
                Opts::new(
                    "kubernetes_executor_build_info",
                    "The operator's version (always 1)",
                ),
                &["version"],
            )?,
            is_leader: IntGauge::new(
                "kubernetes_executor_is_leader",
                "1 while this replica leads (runs the executions)",
            )?,
            waiting_executions: IntGauge::new(
                "kubernetes_executor_waiting_executions",
                "New executions waiting for an actor (the live ones are at --max-live-executions)",
            )?,
            heap_bytes: IntGaugeVec::new(
                Opts::new(
                    "kubernetes_executor_heap_bytes",
                    "Heap bytes by state (allocated: in live objects; resident: pages held), from the allocator",
                ),
                &["state"],
            )?,
            registry,
        };
        m.registry
            .register(Box::new(m.reconciliation_duration.clone()))?;
        m.registry.register(Box::new(m.phase_duration.clone()))?;
        m.registry
            .register(Box::new(m.policy_evaluation_errors.clone()))?;
        m.registry
            .register(Box::new(m.policy_reload_failing.clone()))?;
        m.registry.register(Box::new(m.phase_transitions.clone()))?;
        m.registry
            .register(Box::new(m.policy_evaluation_duration.clone()))?;
        m.registry.register(Box::new(m.policy_denials.clone()))?;
        m.registry
            .register(Box::new(m.policy_reload_errors.clone()))?;
        m.registry.register(Box::new(m.policy_set_loaded.clone()))?;
        m.registry
            .register(Box::new(m.job_creation_duration.clone()))?;
        m.registry
            .register(Box::new(m.job_completion_duration.clone()))?;
        m.registry.register(Box::new(m.live_actors.clone()))?;
        m.registry.register(Box::new(m.actor_restarts.clone()))?;
        m.registry
            .register(Box::new(m.executions_finished.clone()))?;
        m.registry.register(Box::new(m.api_requests.clone()))?;
        m.registry.register(Box::new(m.message_handling.clone()))?;
        m.registry.register(Box::new(m.heap_bytes.clone()))?;
        m.registry.register(Box::new(m.build_info.clone()))?;
        m.registry
            .register(Box::new(m.executions_collected.clone()))?;
        m.registry.register(Box::new(m.is_leader.clone()))?;
        m.registry
            .register(Box::new(m.waiting_executions.clone()))?;
        m.init_series();
        // process_resident_memory_bytes, process_cpu_seconds_total, ...: the
        // load harness and dashboards read the operator's footprint here.
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    /// Creates every series an alert or dashboard uses at zero, so a fresh
    /// operator exposes them before their first sample (an alert on a
    /// missing series sees nothing).
    fn init_series(&self) {
        use kubernetes_executor_crds::reasons::Reason;
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for why in ["ttl", "limit"] {
            self.executions_collected.with_label_values(&[why]);
        }
        for k in ACTOR_KINDS {
            self.live_actors.with_label_values(&[k]);
            self.actor_restarts.with_label_values(&[k]);
            self.message_handling.with_label_values(&[k]);
        }
        for (from, to) in TRANSITIONS {
            self.phase_transitions.with_label_values(&[from, to]);
        }
        for p in kubernetes_executor_crds::Phase::ALL {
            self.reconciliation_duration
                .with_label_values(&[p.as_str()]);
            if !p.is_terminal() {
                self.phase_duration.with_label_values(&[p.as_str()]);
            }
        }
        let in_progress = [
            Reason::Paused,
            Reason::Validating,
            Reason::Preparing,
            Reason::WaitingForTarget,
            Reason::JobRunning,
            Reason::Verifying,
        ];
        for r in Reason::ALL {
            let phase = match r {
                Reason::Succeeded | Reason::DryRunSucceeded => "Completed",
                r if in_progress.contains(r) => continue,
                _ => "Failed",
            };
            self.executions_finished
                .with_label_values(&[phase, r.as_str()]);
        }
        // The request every execution makes (its status patch), by every
        // outcome: the throttling alert and panel see 0, not nothing.
        for outcome in API_OUTCOMES {
            self.api_requests
                .with_label_values(&["patch", "kubernetesexecutions/status", outcome]);
        }
        self.policy_evaluation_duration
            .with_label_values(&[SAFETY_PACKAGE]);
        self.policy_evaluation_errors
            .with_label_values(&[SAFETY_PACKAGE]);
        for a in crate::catalog::CATALOG {
            self.policy_denials
                .with_label_values(&[SAFETY_DENY_RULE, a.name]);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_registry_exposes_every_series_alerts_use() {
        let m = Metrics::new().expect("metrics");
        let text = m.render();
        for series in [
            "kubernetes_executor_build_info{version=\"",
            "kubernetes_executor_is_leader 0",
            "kubernetes_executor_executions_finished_total{phase=\"Failed\",reason=\"PolicyDenied\"} 0",
            "kubernetes_executor_executions_finished_total{phase=\"Completed\",reason=\"Succeeded\"} 0",
            "policy_denials_total{action=\"ScaleDeployment\",policy=\"kubernetes_executor.safety.deny\"} 0",
            "policy_evaluation_errors_total{policy=\"kubernetes_executor.safety\"} 0",
            "policy_reload_failing 0",
            "kubernetes_execution_reconciliation_duration_seconds_bucket{phase=\"Executing\",le=\"5\"} 0",
            "kubernetes_execution_phase_duration_seconds_bucket{phase=\"Executing\",le=\"600\"} 0",
            "job_completion_duration_seconds_bucket{le=\"600\"} 0",
            "kubernetes_executor_actor_restarts_total{kind=\"policy\"} 0",
            "kubernetes_executor_live_actors{kind=\"execution\"} 0",
            "kubernetes_execution_phase_transitions_total{from_phase=\"Validating\",to_phase=\"Preparing\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        assert!(
            !text.contains("reason=\"Validating\""),
            "no finished series for an in-progress reason"
        );
    }
}
