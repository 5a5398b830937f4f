//! The Go API (crds/go) and the Rust types describe the same resource.
//!
//! controller-gen (built from Go modules, tests/gotools) generates a CRD from
//! the Go types; its schema must equal the one `crdgen` generates from the
//! Rust types in everything the API server enforces (types, required fields,
//! enums, patterns, bounds, defaults, list types, CEL rules), and in names,
//! scope and printer columns. Descriptions are not compared. For the two
//! upstream types embedded in the schema (`metav1.Condition`,
//! `corev1.ObjectReference`) only the shape (fields, types, required) is
//! compared: their validations come from upstream markers. The committed
//! `zz_generated.deepcopy.go` must be what controller-gen writes, and every
//! contract string (reasons, condition types, labels) must have its Go
//! constant.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube::core::CustomResourceExt;
use kubernetes_executor_crds::{KubernetesExecution, labels, reasons};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn go_module() -> PathBuf {
    repo().join("crds/go")
}

/// Builds (once, cached outside the clone) and returns a tool from tests/gotools.
fn tool(name: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("tests/gotools/build.sh"))
        .arg(name)
        .output()
        .expect("run tests/gotools/build.sh");
    assert!(
        out.status.success(),
        "building {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn controller_gen(dir: &Path, args: &[&str]) {
    let out = Command::new(tool("controller-gen"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run controller-gen");
    assert!(
        out.status.success(),
        "controller-gen {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Keys whose values the API server enforces, compared as they are.
const ENFORCED: &[&str] = &[
    "type",
    "format",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "maxProperties",
    "minItems",
    "maxItems",
    "default",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
];
/// Bounds, compared as numbers (`5` and `5.0` are the same bound).
const NUMERIC: &[&str] = &["minimum", "maximum"];
/// Paths of upstream types: only their shape is compared.
const UPSTREAM: &[&str] = &[".spec.workflowExecutionRef", ".status.conditions[]"];

fn diff_schema(path: &str, rust: &Value, go: &Value, shape_only: bool, out: &mut Vec<String>) {
    let shape_only = shape_only || UPSTREAM.contains(&path);
    let keys: &[&str] = if shape_only {
        &["type", "format"]
    } else {
        ENFORCED
    };
    for key in keys {
        if rust.get(key) != go.get(key) {
            out.push(format!(
                "{path}: {key} differs: rust {} / go {}",
                show(rust.get(key)),
                show(go.get(key))
            ));
        }
    }
    if !shape_only {
        for key in NUMERIC {
            let (r, g) = (
                rust.get(key).and_then(Value::as_f64),
                go.get(key).and_then(Value::as_f64),
            );
            if r != g {
                out.push(format!("{path}: {key} differs: rust {r:?} / go {g:?}"));
            }
        }
        let rules = |v: &Value| -> Vec<(String, String)> {
            v.get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            (
                                r["rule"].as_str().unwrap_or_default().to_string(),
                                r["message"].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        if rules(rust) != rules(go) {
            out.push(format!(
                "{path}: CEL rules differ: rust {:?} / go {:?}",
                rules(rust),
                rules(go)
            ));
        }
    }
    let required = |v: &Value| -> BTreeSet<String> {
        v.get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    if required(rust) != required(go) {
        out.push(format!(
            "{path}: required differs: rust {:?} / go {:?}",
            required(rust),
            required(go)
        ));
    }
    let props = |v: &Value| -> BTreeSet<String> {
        v.get("properties")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (rp, gp) = (props(rust), props(go));
    for only in rp.difference(&gp) {
        out.push(format!("{path}.{only}: only in the Rust types"));
    }
    for only in gp.difference(&rp) {
        out.push(format!("{path}.{only}: only in the Go types"));
    }
    for name in rp.intersection(&gp) {
        diff_schema(
            &format!("{path}.{name}"),
            &rust["properties"][name],
            &go["properties"][name],
            shape_only,
            out,
        );
    }
    for (key, suffix) in [("items", "[]"), ("additionalProperties", "{}")] {
        match (rust.get(key), go.get(key)) {
            (Some(r), Some(g)) => diff_schema(&format!("{path}{suffix}"), r, g, shape_only, out),
            (None, None) => {}
            (r, g) => out.push(format!(
                "{path}: {key} differs: rust {} / go {}",
                show(r),
                show(g)
            )),
        }
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_string(), Value::to_string)
}

/// Everything of a CRD but its schema, in a comparable form.
fn crd_frame(crd: &Value) -> Value {
    let spec = &crd["spec"];
    let version = &spec["versions"][0];
    let columns: Vec<Value> = version["additionalPrinterColumns"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "name": c["name"], "type": c["type"], "jsonPath": c["jsonPath"],
                "priority": c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            })
        })
        .collect();
    serde_json::json!({
        "name": crd["metadata"]["name"],
        "group": spec["group"],
        "names": {
            "kind": spec["names"]["kind"], "plural": spec["names"]["plural"],
            "singular": spec["names"]["singular"], "shortNames": spec["names"]["shortNames"],
            "categories": spec["names"]["categories"], "listKind": spec["names"]["listKind"],
        },
        "scope": spec["scope"],
        "versions": spec["versions"].as_array().map(Vec::len),
        "version": version["name"], "served": version["served"], "storage": version["storage"],
        "subresources": version["subresources"],
        "columns": columns,
    })
}

#[test]
fn the_go_types_generate_the_crd_the_rust_types_do() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().display().to_string();
    controller_gen(
        &go_module(),
        &["crd", "paths=./...", &format!("output:crd:dir={dir}")],
    );
    let file = out
        .path()
        .join("kubernetesexecution.kubernaut.io_kubernetesexecutions.yaml");
    let go: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).expect("generated CRD"))
        .expect("parse generated CRD");
    let mut rust = serde_json::to_value(KubernetesExecution::crd()).expect("rust CRD");
    // kube-rs leaves listKind to the API server's default; controller-gen writes it.
    if rust["spec"]["names"].get("listKind").is_none() {
        rust["spec"]["names"]["listKind"] = "KubernetesExecutionList".into();
    }

    assert_eq!(
        crd_frame(&rust),
        crd_frame(&go),
        "names, scope, versions or printer columns differ"
    );
    // controller-gen also declares the root's apiVersion, kind and metadata,
    // which the API server fills in the same way for both.
    let mut go_schema = go["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    if let Some(props) = go_schema["properties"].as_object_mut() {
        for implicit in ["apiVersion", "kind", "metadata"] {
            props.remove(implicit);
        }
    }
    let mut diffs = Vec::new();
    diff_schema(
        "",
        &rust["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        &go_schema,
        false,
        &mut diffs,
    );
    assert!(
        diffs.is_empty(),
        "the Go API (crds/go) and the Rust types disagree:\n  {}",
        diffs.join("\n  ")
    );
}

#[test]
fn the_comparison_catches_a_difference() {
    // A check that cannot fail proves nothing: mutate one bound, one enum
    // value and one field, and expect each to be reported.
    let rust = serde_json::to_value(KubernetesExecution::crd()).expect("rust CRD");
    let schema = &rust["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut go = schema.clone();
    go["properties"]["spec"]["properties"]["maxRetries"]["maximum"] = 6.into();
    go["properties"]["spec"]["properties"]["onTargetBusy"]["enum"] =
        serde_json::json!(["Wait", "Fail", "Skip"]);
    go["properties"]["status"]["properties"]
        .as_object_mut()
        .expect("status properties")
        .remove("jobName");
    let mut diffs = Vec::new();
    diff_schema("", schema, &go, false, &mut diffs);
    let all = diffs.join("\n");
    assert!(all.contains(".spec.maxRetries: maximum"), "{all}");
    assert!(all.contains(".spec.onTargetBusy: enum"), "{all}");
    assert!(
        all.contains(".status.jobName: only in the Rust types"),
        "{all}"
    );
    assert_eq!(diffs.len(), 3, "{all}");
}

#[test]
fn the_committed_generated_code_is_what_controller_gen_writes() {
    // DeepCopy and the apply configurations: regenerate in a copy, compare
    // every generated file (and no file more or less).
    let copy = tempfile::tempdir().expect("tempdir");
    let src = go_module();
    let generated = |root: &Path| -> std::collections::BTreeMap<PathBuf, String> {
        walk(root)
            .into_iter()
            .filter_map(|p| {
                let rel = p.strip_prefix(root).expect("inside").to_path_buf();
                let is_generated = rel.ends_with("zz_generated.deepcopy.go")
                    || rel.starts_with("api/v1alpha1/applyconfiguration");
                is_generated.then(|| (rel, std::fs::read_to_string(&p).expect("read")))
            })
            .collect()
    };
    let committed = generated(&src);
    for entry in walk(&src) {
        let rel = entry.strip_prefix(&src).expect("inside");
        if committed.contains_key(rel) {
            continue;
        }
        let to = copy.path().join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&entry, &to).expect("copy");
    }
    controller_gen(
        copy.path(),
        &["object", "applyconfiguration", "paths=./..."],
    );
    let fresh = generated(copy.path());
    assert!(
        committed.len() >= 10,
        "the generated files are committed: {:?}",
        committed.keys()
    );
    let stale: Vec<String> = fresh
        .keys()
        .chain(committed.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| fresh.get(*k) != committed.get(*k))
        .map(|k| k.display().to_string())
        .collect();
    assert!(
        stale.is_empty(),
        "crds/go generated code is stale ({}): run `make go-api`",
        stale.join(", ")
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_contract_string_has_its_go_constant() {
    let go = std::fs::read_to_string(go_module().join("api/v1alpha1/constants.go"))
        .expect("constants.go");
    let go_reg =
        std::fs::read_to_string(go_module().join("api/v1alpha1/register.go")).expect("register.go");
    let has = |name: &str, value: &str| {
        go.lines().chain(go_reg.lines()).any(|l| {
            let l = l.trim();
            let l = l.strip_prefix("const ").unwrap_or(l);
            l.starts_with(name)
                && l[name.len()..].trim_start().starts_with('=')
                && l.ends_with(&format!("\"{value}\""))
        })
    };
    let mut missing = Vec::new();
    for r in reasons::Reason::ALL {
        let s = r.as_str();
        if !has(&format!("Reason{s}"), s) {
            missing.push(format!("Reason{s} = \"{s}\""));
        }
    }
    for c in reasons::conditions::ALL {
        if !has(&format!("Condition{c}"), c) {
            missing.push(format!("Condition{c} = \"{c}\""));
        }
    }
    for (name, value) in [
        ("Group", kubernetes_executor_crds::GROUP),
        ("Version", kubernetes_executor_crds::VERSION),
        ("Finalizer", kubernetes_executor_crds::FINALIZER),
        ("LabelManagedBy", labels::MANAGED_BY),
        ("LabelManagedByValue", labels::MANAGER),
        ("LabelExecutionNamespace", labels::EXECUTION_NAMESPACE),
        ("LabelExecutionName", labels::EXECUTION_NAME),
        ("LabelExecutionUID", labels::EXECUTION_UID),
        ("LabelAction", labels::ACTION),
        ("LabelWorkflowExecution", labels::WORKFLOW),
        ("LabelStepNumber", labels::STEP),
        ("LabelPlanExecution", labels::PLAN_EXECUTION),
        ("LabelPlanAction", labels::PLAN_ACTION),
        (
            "AnnotationPaused",
            kubernetes_executor_actors::views::PAUSE_ANNOTATION,
        ),
    ] {
        if !has(name, value) {
            missing.push(format!("{name} = \"{value}\""));
        }
    }
    assert!(
        missing.is_empty(),
        "crds/go/api/v1alpha1 lacks (or has a different value for):\n  {}",
        missing.join("\n  ")
    );
}
