//! Tests of the policy engine: the Rego tests in policies/, decisions,
//! conditions, the plan's v0 policies and how allow and deny combine.

use super::*;
use serde_json::json;
use std::path::PathBuf;

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// The plan's policies (Rego v0, each file with its own `allow`) load
/// from a directory side by side with the v1 default set and decide as
/// they say.
#[test]
fn plan_style_v0_policies_load_next_to_the_v1_default_set() {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/plan-policies");
    let mut sources = read_dir(&policies_dir(), false).expect("default set");
    sources.extend(read_dir(&plan, false).expect("plan set"));
    let mut set = PolicySet::compile(&sources).expect("both compile");
    let mut v0 = set.v0_files.clone();
    v0.sort();
    assert_eq!(
        v0,
        vec![
            "control_plane_nodes.rego",
            "critical_scale.rego",
            "protected_namespaces.rego"
        ],
        "the plan's files are v0, the default set v1"
    );
    let input = |action: &str,
                 kind: &str,
                 name: &str,
                 ns: Option<&str>,
                 labels: serde_json::Value,
                 params: serde_json::Value| {
        json!({
            "action": action, "parameters": params, "parameter_sizes": {},
            "target_resource": {"kind": kind, "name": name, "namespace": ns, "labels": labels},
            "dry_run": false, "metadata": {}, "requester": null,
            "cluster": {"operator_namespace": "kubernetes-executor-system"},
        })
    };
    let decide = |set: &mut PolicySet, i: serde_json::Value| set.evaluate(&i).expect("decides");
    // Allowed by both.
    let ok = input(
        "ScaleDeployment",
        "Deployment",
        "web",
        Some("shop"),
        json!({}),
        json!({"replicas": "3"}),
    );
    assert_eq!(decide(&mut set, ok), Vec::<String>::new());
    // Each plan rule denies, with its own reason.
    let cases = [
        (
            input(
                "RestartDeployment",
                "Deployment",
                "web",
                Some("istio-system"),
                json!({}),
                json!({}),
            ),
            "plan: namespace istio-system is protected",
        ),
        (
            input(
                "CordonNode",
                "Node",
                "cp-1",
                None,
                json!({"node-role.kubernetes.io/control-plane": ""}),
                json!({}),
            ),
            "plan: node cp-1 is a control-plane node",
        ),
        (
            input(
                "ScaleDeployment",
                "Deployment",
                "db",
                Some("shop"),
                json!({"critical": "true"}),
                json!({"replicas": "0"}),
            ),
            "plan: deployment db is critical and cannot be scaled to zero",
        ),
    ];
    for (i, reason) in cases {
        let got = decide(&mut set, i);
        assert!(got.iter().any(|r| r == reason), "{reason}: {got:?}");
    }
}

/// `allow` and `deny` combine: denied when `deny` is non-empty, or when
/// an `allow` rule exists and is not true.
#[test]
fn a_declared_allow_must_hold_too() {
    let only_rollout = r#"package kubernetes_executor.safety

default allow = false

allow {
input.action == "RolloutStatus"
}
"#;
    let mut set = PolicySet::compile(&[("allow.rego".into(), only_rollout.into())]).expect("v0");
    assert_eq!(
        set.evaluate(&json!({"action": "RolloutStatus"}))
            .expect("eval"),
        Vec::<String>::new()
    );
    assert_eq!(
        set.evaluate(&json!({"action": "DeletePod"})).expect("eval"),
        vec![NOT_ALLOWED.to_string()]
    );
    // Without any allow rule, deny alone decides (the v1 default set).
    let mut default = PolicySet::load_dir(&policies_dir()).expect("default");
    assert!(!default.has_allow);
    assert!(set.has_allow);
    let _ = default
        .evaluate(&json!({"action": "DeletePod"}))
        .expect("eval");
    // A file that is neither valid v1 nor v0 names the v1 error.
    let broken = PolicySet::compile(&[(
        "b.rego".into(),
        "package x
 deny contains {"
            .into(),
    )]);
    assert!(matches!(broken, Err(PolicyError::Compile { path, .. }) if path == "b.rego"));
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

#[test]
fn metrics_label_the_safety_policy_as_the_policy_module_names_it() {
    assert_eq!(crate::metrics::SAFETY_PACKAGE, super::SAFETY_PACKAGE);
    assert_eq!(crate::metrics::SAFETY_DENY_RULE, super::DENY_RULE_NAME);
    assert_eq!(
        super::DENY_RULE,
        format!("data.{}", super::DENY_RULE_NAME),
        "the rule evaluated is the rule named"
    );
    assert_eq!(
        super::deciding_rule(&[super::NOT_ALLOWED.to_string()]),
        super::ALLOW_RULE_NAME
    );
    assert_eq!(
        super::deciding_rule(&[super::FAIL_CLOSED.to_string()]),
        super::FAIL_CLOSED_NAME
    );
    assert_eq!(
        super::deciding_rule(&["replicas too high".to_string()]),
        super::DENY_RULE_NAME
    );
}
