//! Tests of the catalog and of validation.

use super::*;
use kubernetes_executor_crds::TargetResource;

fn spec(action: &str, kind: &str, params: &[(&str, &str)]) -> KubernetesExecutionSpec {
    let mut s = KubernetesExecutionSpec::new(action, TargetResource::new(kind, "web", None));
    s.parameters = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

#[test]
fn every_action_has_a_unique_name_alias_and_rules() {
    let mut seen = std::collections::HashSet::new();
    assert_eq!(CATALOG.len(), 10);
    for a in CATALOG {
        assert!(seen.insert(a.name), "duplicate {}", a.name);
        for alias in a.aliases {
            assert!(seen.insert(alias), "duplicate alias {alias}");
        }
        assert!(!a.rules.is_empty(), "{} has no RBAC rules", a.name);
        assert!(a.default_timeout <= MAX_TIMEOUT);
    }
    assert_eq!(
        lookup("scale_deployment").map(|a| a.name),
        Some("ScaleDeployment")
    );
    assert_eq!(
        lookup("ScaleDeployment")
            .map(|a| a.service_account())
            .as_deref(),
        Some("kubernetes-executor-scale-deployment")
    );
}

#[test]
fn unknown_action_names_it_and_lists_valid_ones() {
    let err = validate(&spec("Reboot", "Node", &[]), "ns").expect_err("unknown");
    assert_eq!(err.reason, reasons::UNKNOWN_ACTION);
    assert!(err.message.contains("\"Reboot\""), "{}", err.message);
    assert!(
        err.message.contains("ScaleDeployment") && err.message.contains("RolloutStatus"),
        "{}",
        err.message
    );
}

#[test]
fn parameters_are_checked_by_name_type_and_bounds() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "missing required parameter \"replicas\""),
        (
            &[("replicas", "three")],
            "\"replicas\" = \"three\": must be an integer",
        ),
        (&[("replicas", "1001")], "must be between 0 and 1000"),
        (&[("replicas", "-1")], "must be between 0 and 1000"),
        (
            &[("replicas", "3"), ("replica", "3")],
            "unknown parameter \"replica\"",
        ),
    ];
    for (params, needle) in cases {
        let err = validate(&spec("ScaleDeployment", "Deployment", params), "ns").expect_err(needle);
        assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
        assert!(
            err.message.contains(needle),
            "{} does not contain {needle}",
            err.message
        );
    }
    let ok = validate(
        &spec("ScaleDeployment", "Deployment", &[("replicas", "0")]),
        "shop",
    )
    .expect("valid");
    assert_eq!(ok.target.namespace.as_deref(), Some("shop"));
    assert_eq!(ok.timeout, Duration::from_secs(300));
}

#[test]
fn patches_touch_only_data_keys() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "json",
            r#"[{"op":"add","path":"/metadata/ownerReferences","value":[]}]"#,
            "/metadata/ownerReferences",
        ),
        (
            "json",
            r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
            "/metadata/finalizers/0",
        ),
        (
            "json",
            r#"[{"op":"replace","path":"/data","value":{}}]"#,
            "/data",
        ),
        (
            "json",
            r#"[{"op":"add","path":"/immutable","value":true}]"#,
            "/immutable",
        ),
        (
            "json",
            r#"[{"op":"copy","from":"/metadata/name","path":"/data/x"}]"#,
            "/metadata/name",
        ),
        ("merge", r#"{"immutable":true}"#, "/immutable"),
        ("merge", r#"{"data":null}"#, "/data"),
        (
            "strategic",
            r#"{"metadata":{"labels":{"a":"b"}}}"#,
            "/metadata",
        ),
    ];
    for (kind, patch, path) in cases {
        let err = validate(
            &spec(
                "PatchConfigMap",
                "ConfigMap",
                &[("patch", patch), ("patchType", kind)],
            ),
            "ns",
        )
        .expect_err(patch);
        assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
        assert!(
            err.message.contains(&format!("{path:?}")),
            "{patch}: {}",
            err.message
        );
    }
    for (kind, patch) in [
        (
            "json",
            r#"[{"op":"replace","path":"/data/mode","value":"fast"}]"#,
        ),
        ("merge", r#"{"data":{"mode":"fast","old":null}}"#),
        ("strategic", r#"{"binaryData":{"b":"AA=="}}"#),
    ] {
        validate(
            &spec(
                "PatchConfigMap",
                "ConfigMap",
                &[("patch", patch), ("patchType", kind)],
            ),
            "ns",
        )
        .expect(patch);
    }
}

#[test]
fn integers_have_one_spelling() {
    for bad in [
        " 3", "3\n", "+3", "007", "1e3", "3.0", "", "-0", "0x10", "٣",
    ] {
        let err = validate(
            &spec("ScaleDeployment", "Deployment", &[("replicas", bad)]),
            "ns",
        )
        .expect_err(bad);
        assert_eq!(err.reason, reasons::INVALID_PARAMETERS, "{bad:?}");
        assert!(err.message.contains(&format!("{bad:?}")), "{}", err.message);
    }
    for good in ["0", "3", "1000"] {
        validate(
            &spec("ScaleDeployment", "Deployment", &[("replicas", good)]),
            "ns",
        )
        .expect(good);
    }
}

#[test]
fn defaults_are_filled_and_enums_checked() {
    let ok = validate(&spec("DeletePod", "Pod", &[]), "ns").expect("valid");
    assert_eq!(
        ok.params.get("gracePeriodSeconds").map(String::as_str),
        Some("30")
    );
    let ok = validate(&spec("DrainNode", "Node", &[("timeout", "2m")]), "ns").expect("valid");
    assert_eq!(
        ok.params.get("ignoreDaemonSets").map(String::as_str),
        Some("true")
    );
    assert_eq!(ok.target.namespace, None);
    let err = validate(
        &spec(
            "PatchConfigMap",
            "ConfigMap",
            &[("patch", "{}"), ("patchType", "yaml")],
        ),
        "ns",
    )
    .expect_err("bad enum");
    assert!(
        err.message
            .contains("must be one of merge, json, strategic"),
        "{}",
        err.message
    );
    let err = validate(
        &spec(
            "PatchConfigMap",
            "ConfigMap",
            &[("patch", "{}"), ("patchType", "json")],
        ),
        "ns",
    )
    .expect_err("json patch must be an array");
    assert!(err.message.contains("JSON array"), "{}", err.message);
}

#[test]
fn secret_values_are_refused_inline_and_never_echoed() {
    for (name, value) in [
        ("patch", r#"{"stringData":{"password":"hunter2"}}"#),
        ("patchType", "hunter2"),
    ] {
        let err = validate(
            &spec(
                "PatchSecret",
                "Secret",
                &[(name, value), (FROM_SECRET, "new-creds")],
            ),
            "ns",
        )
        .expect_err("inline secret values are refused");
        assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(err.message.contains("fromSecret"), "{}", err.message);
        assert!(
            err.message.contains(&format!("{name:?}")),
            "{}",
            err.message
        );
    }
    let err = validate(&spec("PatchSecret", "Secret", &[]), "ns").expect_err("required");
    assert!(err.message.contains("fromSecret"), "{}", err.message);
    let err = validate(
        &spec("PatchSecret", "Secret", &[(FROM_SECRET, "Not_A_Name")]),
        "ns",
    )
    .expect_err("a Secret name");
    assert!(err.message.contains("Not_A_Name"), "{}", err.message);
    let ok = validate(
        &spec("PatchSecret", "Secret", &[(FROM_SECRET, "new-creds")]),
        "ns",
    )
    .expect("by reference");
    assert_eq!(
        ok.params.get(FROM_SECRET).map(String::as_str),
        Some("new-creds")
    );
    assert!(
        CATALOG.iter().all(|a| a.params.iter().all(|p| !p.secret)),
        "no action takes a secret value as a parameter"
    );
}

#[test]
fn target_kind_and_scope_are_checked() {
    let err = validate(
        &spec("ScaleDeployment", "StatefulSet", &[("replicas", "1")]),
        "ns",
    )
    .expect_err("kind");
    assert_eq!(err.reason, reasons::INVALID_TARGET);
    assert!(err.message.contains("\"StatefulSet\""));
    let mut s = spec("CordonNode", "Node", &[]);
    s.target_resource.namespace = Some("default".into());
    let err = validate(&s, "ns").expect_err("cluster-scoped with namespace");
    assert!(err.message.contains("cluster-scoped"), "{}", err.message);
}

#[test]
fn timeout_and_retries_are_bounded() {
    let mut s = spec("RolloutStatus", "Deployment", &[]);
    s.timeout = Some("16m".into());
    assert_eq!(
        validate(&s, "ns").expect_err("too long").reason,
        reasons::INVALID_TIMEOUT
    );
    for bad in [
        "500ms",
        "-1m",
        "18446744073709551615s",
        "99999999999999999999999s",
    ] {
        s.timeout = Some(bad.into());
        assert_eq!(
            validate(&s, "ns").expect_err(bad).reason,
            reasons::INVALID_TIMEOUT,
            "{bad}"
        );
    }
    // What Go clients send: `0s` is "not set", decimals and `1h0m0s` parse.
    for (given, want) in [("0s", 60), ("1.5m", 90), ("0h2m0s", 120), ("1.5s", 1)] {
        s.timeout = Some(given.into());
        let v = validate(&s, "ns").expect(given);
        assert_eq!(v.timeout.as_secs(), want, "{given}");
    }
    s.timeout = Some("soon".into());
    let err = validate(&s, "ns").expect_err("bad");
    assert!(err.message.contains("\"soon\""), "{}", err.message);
    s.timeout = Some("90s".into());
    s.max_retries = Some(6);
    assert_eq!(
        validate(&s, "ns").expect_err("retries").reason,
        reasons::INVALID_PARAMETERS
    );
}

#[test]
fn a_spec_condition_cannot_weaken_a_default() {
    let weaken = |policy: &str, required: bool| {
        let mut s = spec("ScaleDeployment", "Deployment", &[("replicas", "1")]);
        s.postconditions = vec![kubernetes_executor_crds::ActionCondition {
            name: "no_crashloop_pods".into(),
            policy: policy.into(),
            required,
            timeout: Some("5s".into()),
        }];
        validate(&s, "ns")
    };
    let err = weaken("no_crashloop_pods", false).expect_err("optional");
    assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
    assert!(
        err.message.contains("\"no_crashloop_pods\""),
        "{}",
        err.message
    );
    let err = weaken("package x\ndeny contains 1 if false", true).expect_err("replaced");
    assert!(err.message.contains("weaken"), "{}", err.message);
    weaken("no_crashloop_pods", true).expect("a shorter timeout tightens it");
    let mut s = spec("ScaleDeployment", "Deployment", &[("replicas", "1")]);
    s.workflow_execution_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
        name: Some("Bad Name/..".into()),
        ..Default::default()
    });
    let err = validate(&s, "ns").expect_err("bad workflow name");
    assert_eq!(err.reason, reasons::INVALID_PARAMETERS);
    assert!(
        err.message.contains("workflowExecutionRef.name"),
        "{}",
        err.message
    );
}

#[test]
fn scale_has_default_conditions_and_spec_overrides_them() {
    let a = lookup("ScaleDeployment").expect("scale");
    let mut s = spec("ScaleDeployment", "Deployment", &[("replicas", "1")]);
    s.postconditions = vec![kubernetes_executor_crds::ActionCondition {
        name: "no_crashloop_pods".into(),
        policy: "no_crashloop_pods".into(),
        required: true,
        timeout: Some("5s".into()),
    }];
    let (pre, post) = effective_conditions(a, &s);
    assert_eq!(
        pre.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["image_pull_secrets_valid", "node_selector_matches"]
    );
    assert_eq!(post.len(), 2);
    let crash = post
        .iter()
        .find(|c| c.name == "no_crashloop_pods")
        .expect("override");
    assert_eq!(
        crash.timeout.as_deref(),
        Some("5s"),
        "the spec's (tighter) version is used"
    );
}

#[test]
fn kebab_case() {
    assert_eq!(kebab("ScaleDeployment"), "scale-deployment");
    assert_eq!(kebab("DrainNode"), "drain-node");
}

#[test]
fn the_catalog_has_one_entry_per_action_kind() {
    assert_eq!(CATALOG.len(), ActionKind::ALL.len());
    for k in ActionKind::ALL {
        let spec = k.spec();
        assert_eq!(spec.id, k);
        assert_eq!(spec.name, k.name());
        assert_eq!(CATALOG.iter().filter(|a| a.id == k).count(), 1, "{k:?}");
        assert_eq!(lookup(k.name()).map(|a| a.id), Some(k));
    }
}
