//! Validation of a spec against the catalog: the action, its target,
//! its parameters (types, bounds, patch paths), timeouts and retries.

use super::*;

/// Why a spec was rejected: a status reason and a message naming the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// One of [`kubernetes_executor_crds::reasons`].
    pub reason: &'static str,
    /// Human-readable, names the offending value.
    pub message: String,
}

impl Rejection {
    /// A rejection with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// The target, with the namespace resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolvedTarget {
    /// Kind (as the catalog names it).
    pub kind: String,
    /// Namespace (None for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ResolvedTarget {
    /// `Kind/namespace/name` or `Kind/name`.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}/{}", self.kind, ns, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// A spec that passed catalog validation.
#[derive(Clone, Debug)]
pub struct ValidatedAction {
    /// The catalog entry.
    pub action: &'static ActionSpec,
    /// Parameters with defaults filled in.
    pub params: BTreeMap<String, String>,
    /// The target.
    pub target: ResolvedTarget,
    /// Effective timeout.
    pub timeout: Duration,
    /// Effective Job-level retries.
    pub max_retries: i32,
}

/// Validates `spec` (of an execution in `exec_namespace`) against the catalog.
pub fn validate(
    spec: &KubernetesExecutionSpec,
    exec_namespace: &str,
) -> Result<ValidatedAction, Rejection> {
    let action = lookup(&spec.action).ok_or_else(|| {
        Rejection::new(
            reasons::UNKNOWN_ACTION,
            format!(
                "unknown action {:?}; valid actions: {}",
                spec.action,
                action_names()
            ),
        )
    })?;

    let t = &spec.target_resource;
    if t.kind != action.target_kind {
        return Err(Rejection::new(
            reasons::INVALID_TARGET,
            format!(
                "action {} acts on a {}, but targetResource.kind is {:?}",
                action.name, action.target_kind, t.kind
            ),
        ));
    }
    if !is_dns_subdomain(&t.name) {
        return Err(Rejection::new(
            reasons::INVALID_TARGET,
            format!(
                "targetResource.name {:?} is not a valid object name",
                t.name
            ),
        ));
    }
    let namespace = match action.scope {
        Scope::Cluster => {
            if let Some(ns) = t.namespace.as_deref().filter(|ns| !ns.is_empty()) {
                return Err(Rejection::new(
                    reasons::INVALID_TARGET,
                    format!(
                        "{} is cluster-scoped; targetResource.namespace must be empty, got {ns:?}",
                        t.kind
                    ),
                ));
            }
            None
        }
        Scope::Namespaced => {
            let ns = t
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| exec_namespace.to_string());
            if !is_dns_label(&ns) {
                return Err(Rejection::new(
                    reasons::INVALID_TARGET,
                    format!("targetResource.namespace {ns:?} is not a valid namespace name"),
                ));
            }
            Some(ns)
        }
    };

    let params = validate_params(action, &spec.parameters)?;

    let timeout = match &spec.timeout {
        None => action.default_timeout,
        Some(s) => {
            let d = parse_duration(s).map_err(|e| {
                Rejection::new(reasons::INVALID_TIMEOUT, format!("spec.timeout: {e}"))
            })?;
            if d.is_zero() {
                // A Go client's zero `metav1.Duration` (`0s`) means "not set".
                action.default_timeout
            } else if d < Duration::from_secs(1) || d > MAX_TIMEOUT {
                // A Job's deadline is whole seconds: under 1s it would round
                // to zero and the Job could never run.
                return Err(Rejection::new(
                    reasons::INVALID_TIMEOUT,
                    format!(
                        "spec.timeout {:?} must be at least 1s and at most 15m",
                        bounded_value(s)
                    ),
                ));
            } else {
                d
            }
        }
    };
    for (ours, plans, what, plan) in [
        (
            &spec.preconditions,
            &spec.pre_conditions,
            "preconditions",
            "preConditions",
        ),
        (
            &spec.postconditions,
            &spec.post_conditions,
            "postconditions",
            "postConditions",
        ),
    ] {
        if !ours.is_empty() && !plans.is_empty() {
            return Err(Rejection::new(
                reasons::INVALID_PARAMETERS,
                format!("both spec.{what} and spec.{plan} are set: use one spelling"),
            ));
        }
    }
    for c in spec.pre().iter().chain(spec.post()) {
        if let Some(s) = &c.timeout {
            parse_duration(s).map_err(|e| {
                Rejection::new(
                    reasons::INVALID_TIMEOUT,
                    format!("timeout of condition {:?}: {e}", c.name),
                )
            })?;
        }
    }
    // A spec condition may share a catalog default's name only to tighten it
    // (same module; required stays required): never to replace or weaken it.
    for (given, defaults) in [
        (spec.pre(), action.preconditions),
        (spec.post(), action.postconditions),
    ] {
        for c in given {
            if let Some(d) = defaults.iter().find(|d| d.name == c.name)
                && (c.policy != d.name || (d.required && !c.required))
            {
                return Err(Rejection::new(
                    reasons::INVALID_PARAMETERS,
                    format!(
                        "condition {:?} would replace or weaken the catalog default of the same name \
                         for {} (it must use policy {:?}{}); give it another name",
                        c.name,
                        action.name,
                        d.name,
                        if d.required { " and stay required" } else { "" }
                    ),
                ));
            }
        }
    }
    if let Some(w) = spec
        .workflow_execution_ref
        .as_ref()
        .and_then(|r| r.name.as_deref())
        && !is_dns_subdomain(w)
    {
        return Err(Rejection::new(
            reasons::INVALID_PARAMETERS,
            format!(
                "workflowExecutionRef.name {:?} is not a valid object name",
                bounded_value(w)
            ),
        ));
    }
    let max_retries = spec.max_retries.unwrap_or(0);
    if !(0..=MAX_RETRIES).contains(&max_retries) {
        return Err(Rejection::new(
            reasons::INVALID_PARAMETERS,
            format!("spec.maxRetries {max_retries} is out of range 0..{MAX_RETRIES}"),
        ));
    }

    Ok(ValidatedAction {
        action,
        params,
        target: ResolvedTarget {
            kind: t.kind.clone(),
            namespace,
            name: t.name.clone(),
        },
        timeout,
        max_retries,
    })
}

/// The first path of a ConfigMap patch outside the keys of `data` and
/// `binaryData`, if any.
fn forbidden_patch_path(kind: &str, doc: &serde_json::Value) -> Option<String> {
    if kind == "json" {
        for op in doc.as_array().into_iter().flatten() {
            for field in ["path", "from"] {
                let Some(p) = op.get(field) else { continue };
                let p = p.as_str().unwrap_or_default();
                let key = p
                    .strip_prefix("/data/")
                    .or_else(|| p.strip_prefix("/binaryData/"));
                if key.is_none_or(|k| k.is_empty() || k.contains('/')) {
                    return Some(p.to_string());
                }
            }
        }
        return None;
    }
    for (k, v) in doc.as_object().into_iter().flatten() {
        match k.as_str() {
            "data" | "binaryData" if v.is_object() => {}
            "data" | "binaryData" => return Some(format!("/{k}")),
            other => return Some(format!("/{other}")),
        }
    }
    None
}

/// A value as shown in a message: at most 64 characters of it.
fn bounded_value(v: &str) -> String {
    if v.chars().count() <= 64 {
        v.to_string()
    } else {
        format!("{}…", v.chars().take(64).collect::<String>())
    }
}

/// Checks every parameter against the action's schema and fills defaults.
pub fn validate_params(
    action: &ActionSpec,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Rejection> {
    let invalid = |m: String| Rejection::new(reasons::INVALID_PARAMETERS, m);
    for name in given.keys() {
        if action.param(FROM_SECRET).is_some() && (name == "patch" || name == "patchType") {
            // Never accept secret values inline: they would stay in the
            // (immutable) spec, etcd, audit logs and last-applied annotations.
            return Err(invalid(format!(
                "parameter {name:?} is refused for action {}: secret values never travel in the spec; \
                 put the new keys in a Secret in the execution's namespace and name it with parameter {FROM_SECRET:?}",
                action.name
            )));
        }
        if action.param(name).is_none() {
            let accepted = if action.params.is_empty() {
                "it takes no parameters".to_string()
            } else {
                format!(
                    "accepted: {}",
                    action
                        .params
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(invalid(format!(
                "unknown parameter {name:?} for action {} ({accepted})",
                action.name
            )));
        }
    }
    let mut out = BTreeMap::new();
    for spec in action.params {
        let value = match (given.get(spec.name), spec.default) {
            (Some(v), _) => v.clone(),
            (None, Some(default)) => default.to_string(),
            (None, None) if spec.required => {
                return Err(invalid(format!(
                    "missing required parameter {:?} for action {}",
                    spec.name, action.name
                )));
            }
            (None, None) => continue,
        };
        check_value(spec, &value).map_err(|problem| {
            let shown = if spec.secret {
                "<redacted>".to_string()
            } else {
                format!("{value:?}")
            };
            invalid(format!("parameter {:?} = {shown}: {problem}", spec.name))
        })?;
        out.insert(spec.name.to_string(), value);
    }
    if let (Some(kind), Some(patch)) = (out.get("patchType"), out.get("patch")) {
        let doc: serde_json::Value = serde_json::from_str(patch)
            .map_err(|_| invalid("parameter \"patch\" is not valid JSON".into()))?;
        let ok = if kind == "json" {
            doc.is_array()
        } else {
            doc.is_object()
        };
        if !ok {
            return Err(invalid(format!(
                "parameter \"patch\" must be a JSON {} for patchType {kind:?}",
                if kind == "json" { "array" } else { "object" }
            )));
        }
        if let Some(path) = forbidden_patch_path(kind, &doc) {
            return Err(invalid(format!(
                "parameter \"patch\" touches {:?}: a patch may change only keys under \
                 /data and /binaryData (never metadata such as ownerReferences, finalizers or \
                 labels, never `immutable`, never all of data at once)",
                bounded_value(&path)
            )));
        }
    }
    Ok(out)
}

fn check_value(spec: &ParamSpec, v: &str) -> Result<(), String> {
    match spec.kind {
        ParamKind::Int { min, max } => {
            // One spelling per number: no sign, spaces, leading zeros or
            // exponents, so validation and the Job can never read the same
            // string differently.
            let digits = v.strip_prefix('-').unwrap_or(v);
            let canonical = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
                && v != "-0";
            if !canonical {
                return Err("must be an integer written plainly (digits only: no sign, spaces or leading zeros)".into());
            }
            let n: i64 = v.parse().map_err(|_| "must be an integer".to_string())?;
            if n < min || n > max {
                return Err(format!("must be between {min} and {max}"));
            }
        }
        ParamKind::Bool => {
            if v != "true" && v != "false" {
                return Err("must be \"true\" or \"false\"".into());
            }
        }
        ParamKind::Enum(values) => {
            if !values.contains(&v) {
                return Err(format!("must be one of {}", values.join(", ")));
            }
        }
        ParamKind::Image => {
            if v.is_empty()
                || v.len() > 512
                || v.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err("must be a non-empty image reference without whitespace".into());
            }
        }
        ParamKind::Name => {
            if !is_dns_label(v) {
                return Err("must be a valid container name (DNS-1123 label)".into());
            }
        }
        ParamKind::Patch => {
            if v.len() > MAX_PATCH_BYTES {
                return Err(format!(
                    "is {} bytes, more than the {MAX_PATCH_BYTES}-byte limit",
                    v.len()
                ));
            }
            serde_json::from_str::<serde_json::Value>(v)
                .map_err(|_| "must be valid JSON".to_string())?;
        }
        ParamKind::SecondsOrDuration { max } => {
            let d = parse_seconds_or_duration(v)?;
            if d > max {
                return Err(format!("must be at most {}s", max.as_secs()));
            }
        }
    }
    Ok(())
}

/// RFC 1123 label: lowercase alphanumerics and `-`, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}
