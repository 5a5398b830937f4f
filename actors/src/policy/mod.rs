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

/// Package of the safety policies.
pub const SAFETY_PACKAGE: &str = "kubernetes_executor.safety";
/// The rule whose value is the set of deny reasons.
pub const DENY_RULE: &str = "data.kubernetes_executor.safety.deny";
/// The optional rule that must be true as well, when a module declares it.
pub const ALLOW_RULE: &str = "data.kubernetes_executor.safety.allow";
/// [`DENY_RULE`] as metrics name it (`policy_denials_total{policy}`).
pub const DENY_RULE_NAME: &str = "kubernetes_executor.safety.deny";
/// [`ALLOW_RULE`] as metrics name it.
pub const ALLOW_RULE_NAME: &str = "kubernetes_executor.safety.allow";
/// The "rule" that denies when no policy set is loaded (metrics label).
pub const FAIL_CLOSED_NAME: &str = "fail-closed";

/// The rule that decided a denial with these reasons (a metrics label).
pub fn deciding_rule(violations: &[String]) -> &'static str {
    match violations {
        [only] if only == FAIL_CLOSED => FAIL_CLOSED_NAME,
        [only] if only == NOT_ALLOWED => ALLOW_RULE_NAME,
        _ => DENY_RULE_NAME,
    }
}

/// The package a condition reference evaluates (a metrics label): the
/// named module's package, or `inline` for inline Rego.
pub fn condition_label(policy: &str) -> String {
    if is_inline(policy) {
        "inline".to_string()
    } else {
        condition_package(policy)
    }
}

/// Deny reason when `deny` is empty but a declared `allow` is not true.
pub const NOT_ALLOWED: &str =
    "no allow rule of package kubernetes_executor.safety holds (allow is false or undefined)";
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
    /// Some safety module declares `deny`.
    has_deny: bool,
    /// Some safety module declares `allow` (then it must be true too).
    has_allow: bool,
    /// Files loaded as Rego v0.
    pub v0_files: Vec<String>,
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
        let mut v0_files = Vec::new();
        for (name, src) in sources {
            // Rego v1 first; a file that only parses as v0 (`deny[msg] {`,
            // `default allow = false`) is loaded as v0. Each module keeps
            // its own version, so both kinds mix in one set.
            engine.set_rego_v0(false);
            if let Err(v1) = engine.add_policy(name.clone(), src.clone()) {
                engine.set_rego_v0(true);
                let loaded = engine.add_policy(name.clone(), src.clone());
                engine.set_rego_v0(false);
                if loaded.is_err() {
                    return Err(PolicyError::Compile {
                        path: name.clone(),
                        message: v1.to_string(),
                    });
                }
                v0_files.push(name.clone());
            }
        }
        let has_deny = sources
            .iter()
            .any(|(_, src)| declares_safety_rule(src, "deny"));
        let has_allow = sources
            .iter()
            .any(|(_, src)| declares_safety_rule(src, "allow"));
        // Surface rule-level errors (e.g. conflicting definitions) at load time.
        let mut probe = engine.clone();
        probe.set_input(regorus::Value::new_object());
        for (declared, rule) in [(has_deny, DENY_RULE), (has_allow, ALLOW_RULE)] {
            if declared {
                probe
                    .eval_rule(rule.to_string())
                    .map_err(|e| PolicyError::Compile {
                        path: sources[0].0.clone(),
                        message: e.to_string(),
                    })?;
            }
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
            has_deny,
            has_allow,
            v0_files,
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
    pub fn evaluate(&mut self, input: &impl serde::Serialize) -> Result<Vec<String>, PolicyError> {
        if self.is_empty() {
            return Ok(vec![FAIL_CLOSED.to_string()]);
        }
        let engine = &mut self.engine;
        let input =
            regorus::Value::from_json_str(&serde_json::to_string(input).unwrap_or_default())
                .map_err(|e| PolicyError::Eval(e.to_string()))?;
        engine.set_input(input);
        let value = if self.has_deny {
            engine
                .eval_rule(DENY_RULE.to_string())
                .map_err(|e| PolicyError::Eval(e.to_string()))?
        } else {
            regorus::Value::Undefined
        };
        let mut reasons = Vec::new();
        if value == regorus::Value::Undefined {
            return self.allow_reasons(reasons);
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
        self.allow_reasons(reasons)
    }

    /// The plan's combination: denied when `deny` is non-empty, or when an
    /// `allow` rule exists and is not true (input already set).
    fn allow_reasons(&mut self, mut reasons: Vec<String>) -> Result<Vec<String>, PolicyError> {
        if reasons.is_empty() && self.has_allow {
            let allow = self
                .engine
                .eval_rule(ALLOW_RULE.to_string())
                .map_err(|e| PolicyError::Eval(e.to_string()))?;
            if allow != regorus::Value::from(true) {
                reasons.push(NOT_ALLOWED.to_string());
            }
        }
        Ok(reasons)
    }
}

/// Whether a module of the safety package declares rule `rule` (`deny`,
/// `allow`), in either Rego version's syntax.
fn declares_safety_rule(src: &str, rule: &str) -> bool {
    let safety = src
        .lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .is_some_and(|p| p.trim() == SAFETY_PACKAGE);
    safety
        && src.lines().any(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("default ").unwrap_or(l).trim_start();
            l.strip_prefix(rule).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with([' ', '{', ':', '=', '[', '\t'])
            })
        })
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
    input: &impl serde::Serialize,
) -> Result<ConditionOutcome, PolicyError> {
    let input = regorus::Value::from_json_str(&serde_json::to_string(input).unwrap_or_default())
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
        input: &impl serde::Serialize,
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
mod tests;
