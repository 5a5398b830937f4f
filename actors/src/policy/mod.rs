//! The policy engine (the only user of regorus): a compiled [`PolicySet`]
//! of Rego modules, the safety decision (`deny` of package
//! `kubernetes_executor.safety`, fail closed), and pre/postcondition
//! modules. The PolicyActor ([`actor`]) owns the loaded set and hot-reloads
//! it; [`input`] is the typed input every policy sees.

mod actor;
pub mod input;
pub use actor::{POLICY_CONFIGMAP, PolicyActor, PolicyArgs, PolicyMsg, PolicyRef, PolicyState};
pub use input::{PolicyInput, policy_input};

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

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
