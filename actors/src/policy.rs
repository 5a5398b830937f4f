//! PolicyActor: owns the regorus engines. Loads the safety policy set from
//! `--policy-dir` (fail closed: no set, no action), evaluates decisions with
//! a per-evaluation time limit, and hot-reloads the directory — a broken new
//! set is rejected and the last good one stays.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sha2::{Digest, Sha256};

use crate::health::Health;
use crate::metrics::Metrics;

/// The rule whose value is the set of deny reasons.
pub const DENY_RULE: &str = "data.kubernetes_executor.safety.deny";
/// Deny reason when no policy set is loaded.
pub const FAIL_CLOSED: &str = "no safety policy set is loaded; nothing may execute (fail closed)";
/// Per-evaluation time limit.
pub const EVAL_LIMIT: Duration = Duration::from_millis(250);

/// A policy set failed to load or evaluate.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file did not compile (the message carries file and line).
    #[error("policy {path} does not compile: {message}")]
    Compile {
        /// The file.
        path: String,
        /// regorus' message (with line and column).
        message: String,
    },
    /// Evaluation failed or ran past its time limit.
    #[error("policy evaluation failed: {0}")]
    Eval(String),
}

/// A compiled set of Rego modules and its digest.
#[derive(Clone)]
pub struct PolicySet {
    engine: regorus::Engine,
    /// `sha256:<hex>` over file names and contents.
    pub digest: String,
    /// Loaded file names.
    pub files: Vec<String>,
    /// Packages the modules declare.
    pub packages: Vec<String>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("digest", &self.digest)
            .field("files", &self.files)
            .finish()
    }
}

/// Reads the `.rego` files of `dir` (tests included when `with_tests`),
/// sorted by name. A missing directory yields no files.
pub fn read_dir(dir: &Path, with_tests: bool) -> Result<Vec<(String, String)>, PolicyError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(PolicyError::Read {
                path: dir.display().to_string(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        // ConfigMap mounts hold `..data` symlinked dirs and dotfiles: skip them.
        if name.starts_with('.')
            || !name.ends_with(".rego")
            || (!with_tests && name.ends_with("_test.rego"))
        {
            continue;
        }
        let src = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        out.push((name, src));
    }
    out.sort();
    Ok(out)
}

/// Digest of a set of sources.
pub fn digest(sources: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    for (name, src) in sources {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(src.as_bytes());
        h.update([0]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl PolicySet {
    /// Compiles `sources` (file name, Rego v1 text).
    pub fn compile(sources: &[(String, String)]) -> Result<PolicySet, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVAL_LIMIT,
            check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        });
        for (name, src) in sources {
            engine
                .add_policy(name.clone(), src.clone())
                .map_err(|e| PolicyError::Compile {
                    path: name.clone(),
                    message: e.to_string(),
                })?;
        }
        if !sources.is_empty() {
            // Surface rule-level errors (e.g. conflicting definitions) at load time.
            let mut probe = engine.clone();
            probe.set_input(regorus::Value::new_object());
            probe
                .eval_rule(DENY_RULE.to_string())
                .map_err(|e| PolicyError::Compile {
                    path: sources[0].0.clone(),
                    message: e.to_string(),
                })?;
        }
        let packages = sources
            .iter()
            .filter_map(|(_, src)| {
                src.lines()
                    .find_map(|l| l.trim().strip_prefix("package "))
                    .map(|p| p.trim().to_string())
            })
            .collect();
        Ok(PolicySet {
            engine,
            digest: digest(sources),
            files: sources.iter().map(|(n, _)| n.clone()).collect(),
            packages,
        })
    }

    /// Loads and compiles the non-test `.rego` files of `dir`.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        PolicySet::compile(&read_dir(dir, false)?)
    }

    /// Whether the set has no modules (which denies everything).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The deny reasons for `input` (empty: allowed), sorted.
    ///
    /// Evaluates on the set's own engine (set input, evaluate): no copy of
    /// the compiled modules per decision. The PolicyActor owns the set and
    /// evaluates one decision at a time.
    pub fn evaluate(&mut self, input: &serde_json::Value) -> Result<Vec<String>, PolicyError> {
        if self.is_empty() {
            return Ok(vec![FAIL_CLOSED.to_string()]);
        }
        let engine = &mut self.engine;
        let input = regorus::Value::from_json_str(&input.to_string())
            .map_err(|e| PolicyError::Eval(e.to_string()))?;
        engine.set_input(input);
        let value = engine
            .eval_rule(DENY_RULE.to_string())
            .map_err(|e| PolicyError::Eval(e.to_string()))?;
        let mut reasons = Vec::new();
        if value == regorus::Value::Undefined {
            return Ok(reasons);
        }
        let set = value
            .as_set()
            .map_err(|_| PolicyError::Eval(format!("{DENY_RULE} is not a set")))?;
        for v in set.iter() {
            match v.as_string() {
                Ok(s) => reasons.push(s.to_string()),
                Err(_) => reasons.push(v.to_json_str().unwrap_or_default()),
            }
        }
        reasons.sort();
        Ok(reasons)
    }
}

/// Package of a named condition module.
pub fn condition_package(name: &str) -> String {
    format!("kubernetes_executor.conditions.{name}")
}

/// What a pre/postcondition evaluation concluded.
#[derive(Clone, Debug, PartialEq)]
pub enum ConditionOutcome {
    /// `deny` and `inconclusive` are empty: the condition holds.
    Holds,
    /// `deny` gave these reasons.
    Fails(Vec<String>),
    /// `inconclusive` gave these reasons (and `deny` none).
    Inconclusive(Vec<String>),
}

fn string_set(value: &regorus::Value, rule: &str) -> Result<Vec<String>, PolicyError> {
    if *value == regorus::Value::Undefined {
        return Ok(vec![]);
    }
    let set = value
        .as_set()
        .map_err(|_| PolicyError::Eval(format!("{rule} is not a set")))?;
    let mut out: Vec<String> = set
        .iter()
        .map(|v| {
            v.as_string()
                .map(|s| s.to_string())
                .unwrap_or_else(|_| v.to_json_str().unwrap_or_default())
        })
        .collect();
    out.sort();
    Ok(out)
}

fn eval_condition(
    engine: &mut regorus::Engine,
    package: &str,
    input: &serde_json::Value,
) -> Result<ConditionOutcome, PolicyError> {
    let input = regorus::Value::from_json_str(&input.to_string())
        .map_err(|e| PolicyError::Eval(e.to_string()))?;
    engine.set_input(input);
    // A query (not eval_rule): a module may leave `deny` or `inconclusive` undefined.
    let mut query = |rule: &str| -> Result<Vec<String>, PolicyError> {
        let r = engine
            .eval_query(rule.to_string(), false)
            .map_err(|e| PolicyError::Eval(e.to_string()))?;
        let v = r
            .result
            .first()
            .and_then(|x| x.expressions.first())
            .map(|e| e.value.clone())
            .unwrap_or(regorus::Value::Undefined);
        string_set(&v, rule)
    };
    let deny = query(&format!("data.{package}.deny"))?;
    if !deny.is_empty() {
        return Ok(ConditionOutcome::Fails(deny));
    }
    let inc = query(&format!("data.{package}.inconclusive"))?;
    Ok(if inc.is_empty() {
        ConditionOutcome::Holds
    } else {
        ConditionOutcome::Inconclusive(inc)
    })
}

/// Whether a condition's `policy` is inline Rego (a whole module) rather
/// than the name of a condition module of the policy set.
pub fn is_inline(policy: &str) -> bool {
    policy.contains("package ")
}

impl PolicySet {
    /// Evaluates a pre/postcondition: `policy` is the name of a condition
    /// module of this set (package `kubernetes_executor.conditions.<name>`) or
    /// inline Rego (a whole module with its own package).
    pub fn evaluate_condition(
        &mut self,
        policy: &str,
        input: &serde_json::Value,
    ) -> Result<ConditionOutcome, PolicyError> {
        if is_inline(policy) {
            let package = policy
                .lines()
                .find_map(|l| l.trim().strip_prefix("package "))
                .map(|p| p.trim().to_string())
                .ok_or_else(|| PolicyError::Compile {
                    path: "inline".into(),
                    message: "no package".into(),
                })?;
            let mut engine = regorus::Engine::new();
            engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
                limit: EVAL_LIMIT,
                check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
            });
            engine
                .add_policy("inline.rego".into(), policy.to_string())
                .map_err(|e| PolicyError::Compile {
                    path: "inline".into(),
                    message: e.to_string(),
                })?;
            return eval_condition(&mut engine, &package, input);
        }
        let package = condition_package(policy);
        let known = self
            .packages
            .iter()
            .any(|p| p == &format!("data.{package}") || p == &package);
        if !known {
            return Err(PolicyError::Eval(format!(
                "unknown condition policy {policy:?} (no module with package {package} is loaded)"
            )));
        }
        eval_condition(&mut self.engine, &package, input)
    }
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Deny reasons (empty: allowed).
    pub violations: Vec<String>,
    /// Digest of the deciding set.
    pub digest: String,
    /// Evaluation could not decide (error or timeout): treat as denied.
    pub error: Option<String>,
}

impl Verdict {
    /// Allowed iff no violation and no error.
    pub fn allowed(&self) -> bool {
        self.violations.is_empty() && self.error.is_none()
    }
}

/// Messages of the PolicyActor.
pub enum PolicyMsg {
    /// Evaluate the safety policies for `input` (the documented input schema).
    Evaluate {
        /// Policy input.
        input: serde_json::Value,
        /// Canonical action name (metric label).
        action: String,
        /// Where the verdict goes.
        reply: RpcReplyPort<Verdict>,
    },
    /// Evaluate one pre/postcondition (named module or inline Rego).
    Condition {
        /// Module name or inline Rego.
        policy: String,
        /// Policy input with live cluster state.
        input: serde_json::Value,
        /// Where the outcome goes (an error is a message).
        reply: RpcReplyPort<Result<ConditionOutcome, String>>,
    },
    /// Re-read the policy directory and swap in a changed, valid set.
    Reload,
    /// Test hook (chaos only): fail now.
    Chaos,
}

/// Shorthand for the actor's reference.
pub type PolicyRef = ActorRef<PolicyMsg>;

/// Arguments of the PolicyActor.
pub struct PolicyArgs {
    /// Directory of `.rego` files.
    pub dir: PathBuf,
    /// How often to look for changes.
    pub reload_interval: Duration,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness flags.
    pub health: Arc<Health>,
    /// Where to report rejected policy sets as Events (regarding the
    /// policies ConfigMap), when running against a cluster.
    pub events: Option<crate::k8s::KubeApi>,
    /// The live-actor registry.
    pub registry: Arc<crate::registry::ActorRegistry>,
    /// Parent (for `/actors`).
    pub parent: String,
}

/// Name of the ConfigMap the policies are mounted from (Events refer to it).
pub const POLICY_CONFIGMAP: &str = "kubernetes-executor-policies";

/// State of the PolicyActor.
pub struct PolicyState {
    dir: PathBuf,
    set: Option<PolicySet>,
    source_digest: Option<String>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    events: Option<crate::k8s::KubeApi>,
    pending_event: Option<String>,
    reloads: tokio::task::JoinHandle<()>,
    life: crate::registry::Lifecycle,
}

/// The PolicyActor.
pub struct PolicyActor;

impl PolicyState {
    fn reload(&mut self) {
        let sources = match read_dir(&self.dir, false) {
            Ok(s) => s,
            Err(e) => {
                self.reject(&e);
                return;
            }
        };
        let d = digest(&sources);
        if self.source_digest.as_deref() == Some(d.as_str()) {
            return;
        }
        self.source_digest = Some(d);
        match PolicySet::compile(&sources) {
            Ok(set) => {
                tracing::info!(digest = %set.digest, files = ?set.files, "policy set loaded");
                self.metrics
                    .policy_set_loaded
                    .set(i64::from(!set.is_empty()));
                self.health.set_policy(!set.is_empty(), None);
                self.set = Some(set);
            }
            Err(e) => self.reject(&e),
        }
    }

    fn reject(&mut self, e: &PolicyError) {
        self.metrics.policy_reload_errors.inc();
        self.pending_event = Some(e.to_string());
        tracing::error!(error = %e, kept = ?self.set.as_ref().map(|s| &s.digest), "policy set rejected; keeping the last good set");
        let loaded = self.set.as_ref().is_some_and(|s| !s.is_empty());
        self.health.set_policy(loaded, Some(e.to_string()));
    }
}

impl PolicyState {
    /// Publishes the last rejection as a Warning Event (once).
    async fn publish(&mut self) {
        let (Some(api), Some(error)) = (&self.events, self.pending_event.take()) else {
            return;
        };
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some(POLICY_CONFIGMAP.into()),
            namespace: Some(api.namespace().to_string()),
            ..Default::default()
        };
        let kept = match &self.set {
            Some(s) if !s.is_empty() => format!("; keeping policy set {}", s.digest),
            _ => "; no policy set is active: every action is denied".into(),
        };
        api.event_about(
            &reference,
            true,
            "LoadPolicies",
            "PolicyRejected",
            format!("{error}{kept}"),
        )
        .await;
    }
}

impl Actor for PolicyActor {
    type Msg = PolicyMsg;
    type State = PolicyState;
    type Arguments = PolicyArgs;

    async fn pre_start(
        &self,
        myself: PolicyRef,
        args: PolicyArgs,
    ) -> Result<PolicyState, ActorProcessingErr> {
        let life = crate::registry::Lifecycle::enter(
            &args.registry,
            &args.metrics,
            "policy",
            &myself.get_name().unwrap_or_default(),
            Some(&args.parent),
            None,
        );
        let reloads =
            crate::registry::post_every(&args.registry, &myself, args.reload_interval, || {
                PolicyMsg::Reload
            });
        let mut state = PolicyState {
            dir: args.dir,
            set: None,
            source_digest: None,
            metrics: args.metrics,
            health: args.health,
            events: args.events,
            pending_event: None,
            reloads,
            life,
        };
        state.reload();
        state.publish().await;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: PolicyRef,
        state: &mut PolicyState,
    ) -> Result<(), ActorProcessingErr> {
        state.reloads.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: PolicyRef,
        msg: PolicyMsg,
        state: &mut PolicyState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        match msg {
            PolicyMsg::Chaos => panic!("chaos: injected panic in the policy actor"),
            PolicyMsg::Reload => {
                state.reload();
                state.publish().await;
            }
            PolicyMsg::Condition {
                policy,
                input,
                reply,
            } => {
                let start = Instant::now();
                let out = match &mut state.set {
                    None => Err(FAIL_CLOSED.to_string()),
                    Some(set) => set
                        .evaluate_condition(&policy, &input)
                        .map_err(|e| e.to_string()),
                };
                state
                    .metrics
                    .policy_evaluation_duration
                    .with_label_values(&["condition"])
                    .observe(start.elapsed().as_secs_f64());
                let _ = reply.send(out);
            }
            PolicyMsg::Evaluate {
                input,
                action,
                reply,
            } => {
                let start = Instant::now();
                let verdict = match &mut state.set {
                    None => Verdict {
                        violations: vec![FAIL_CLOSED.to_string()],
                        digest: String::new(),
                        error: None,
                    },
                    Some(set) => match set.evaluate(&input) {
                        Ok(violations) => Verdict {
                            violations,
                            digest: set.digest.clone(),
                            error: None,
                        },
                        Err(e) => Verdict {
                            violations: vec![],
                            digest: set.digest.clone(),
                            error: Some(e.to_string()),
                        },
                    },
                };
                state
                    .metrics
                    .policy_evaluation_duration
                    .with_label_values(&["safety"])
                    .observe(start.elapsed().as_secs_f64());
                if !verdict.allowed() {
                    state
                        .metrics
                        .policy_denials
                        .with_label_values(&["safety", &action])
                        .inc();
                }
                let _ = reply.send(verdict);
            }
        }
        state.life.handled(started, None);
        Ok(())
    }
}

/// Builds the policy input (the one schema documented in docs/policies.md)
/// for an execution. Secret parameter values are replaced by `<redacted>`;
/// `parameter_sizes` carries every parameter's length in bytes.
pub fn policy_input(
    exec: &kubernetes_executor_crds::KubernetesExecution,
    v: &crate::catalog::ValidatedAction,
    live_labels: &std::collections::BTreeMap<String, String>,
    operator_namespace: &str,
) -> serde_json::Value {
    let mut params = serde_json::Map::new();
    let mut sizes = serde_json::Map::new();
    for (k, val) in &v.params {
        let secret = v.action.param(k).is_some_and(|p| p.secret);
        params.insert(
            k.clone(),
            serde_json::Value::String(if secret {
                "<redacted>".into()
            } else {
                val.clone()
            }),
        );
        sizes.insert(k.clone(), serde_json::Value::from(val.len()));
    }
    serde_json::json!({
        "action": v.action.name,
        "parameters": params,
        "parameter_sizes": sizes,
        "target_resource": {
            "kind": v.target.kind,
            "name": v.target.name,
            "namespace": v.target.namespace,
            "labels": live_labels,
        },
        "dry_run": exec.spec.dry_run,
        "metadata": {
            "execution_name": exec.metadata.name,
            "execution_namespace": exec.metadata.namespace,
            "workflow_execution": exec.spec.workflow_execution_ref.as_ref().and_then(|r| r.name.clone()),
            "step_number": exec.spec.step_number,
        },
        "requester": exec.spec.requester.as_ref().map(|r| serde_json::json!({
            "username": r.username,
            "groups": r.groups,
        })),
        "cluster": {
            "operator_namespace": operator_namespace,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policies_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    /// Runs every `test_*` rule of the Rego test files in `policies/`, like `opa test`.
    #[test]
    fn rego_tests_in_policies_dir_pass() {
        let sources = read_dir(&policies_dir(), true).expect("read policies");
        let mut engine = regorus::Engine::new();
        for (name, src) in &sources {
            engine
                .add_policy(name.clone(), src.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let mut ran = 0;
        let mut failed = Vec::new();
        for (name, src) in sources.iter().filter(|(n, _)| n.ends_with("_test.rego")) {
            let pkg = src
                .lines()
                .find_map(|l| l.trim().strip_prefix("package "))
                .unwrap_or_else(|| panic!("{name} has no package"))
                .trim()
                .to_string();
            for rule in src
                .lines()
                .filter_map(|l| l.strip_prefix("test_"))
                .map(|l| l.split([' ', '(']).next().unwrap_or(""))
            {
                let path = format!("data.{pkg}.test_{rule}");
                ran += 1;
                match engine.eval_rule(path.clone()) {
                    Ok(v) if v == regorus::Value::from(true) => {}
                    other => failed.push(format!("{path}: {other:?}")),
                }
            }
        }
        assert!(ran >= 10, "expected the policy tests to run, ran {ran}");
        assert!(
            failed.is_empty(),
            "failing Rego tests:\n{}",
            failed.join("\n")
        );
    }

    #[test]
    fn default_set_denies_kube_system_and_allows_plain_scale() {
        let mut set = PolicySet::load_dir(&policies_dir()).expect("load");
        assert!(set.digest.starts_with("sha256:"));
        let input = json!({
            "action": "ScaleDeployment",
            "parameters": {"replicas": "2"},
            "parameter_sizes": {"replicas": 1},
            "target_resource": {"kind": "Deployment", "name": "web", "namespace": "shop", "labels": {}},
            "dry_run": false,
            "metadata": {}, "cluster": {"operator_namespace": "kubernetes-executor-system"},
        });
        assert_eq!(set.evaluate(&input).expect("eval"), Vec::<String>::new());
        let mut denied = input.clone();
        denied["target_resource"]["namespace"] = json!("kube-system");
        let v = set.evaluate(&denied).expect("eval");
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("kube-system"), "{v:?}");
        // One engine serves every decision: nothing carries over between inputs.
        assert_eq!(set.evaluate(&input).expect("eval"), Vec::<String>::new());
        assert_eq!(set.evaluate(&denied).expect("eval"), v);
    }

    #[test]
    fn named_and_inline_conditions() {
        let mut set = PolicySet::load_dir(&policies_dir()).expect("load");
        let input = json!({ "target_resource": {"namespace": "shop"}, "cluster": { "pods": [{"name": "p", "waiting_reasons": ["CrashLoopBackOff"]}] } });
        match set
            .evaluate_condition("no_crashloop_pods", &input)
            .expect("eval")
        {
            ConditionOutcome::Fails(r) => assert!(r[0].contains("CrashLoopBackOff"), "{r:?}"),
            other => panic!("{other:?}"),
        }
        let inline = "package custom.check\n\ninconclusive contains \"no metrics\" if { true }\n";
        assert_eq!(
            set.evaluate_condition(inline, &input).expect("eval"),
            ConditionOutcome::Inconclusive(vec!["no metrics".into()])
        );
        let err = set
            .evaluate_condition("no_such_condition", &input)
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("no_such_condition"), "{err}");
    }

    #[test]
    fn empty_or_missing_dir_denies_everything() {
        let mut set = PolicySet::load_dir(Path::new("/nonexistent/policies")).expect("empty set");
        assert!(set.is_empty());
        assert_eq!(
            set.evaluate(&json!({})).expect("eval"),
            vec![FAIL_CLOSED.to_string()]
        );
    }

    #[test]
    fn malformed_policy_names_file_and_line() {
        let bad = vec![(
            "broken.rego".to_string(),
            "package x\n\ndeny contains msg if {\n  msg := \n}\n".to_string(),
        )];
        let err = PolicySet::compile(&bad)
            .expect_err("must not compile")
            .to_string();
        assert!(err.contains("broken.rego"), "{err}");
        assert!(
            err.contains(":4") || err.contains("line 4") || err.contains(":5"),
            "names the line: {err}"
        );
    }
}
