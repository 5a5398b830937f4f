//! The monitoring assets tell the truth: the alerts are valid Prometheus
//! rules (`promtool check rules`), each fires and resolves when it should
//! (`promtool test rules tests/monitoring/alerts_test.yaml`), each links a
//! runbook section that exists, and every metric the alerts and the
//! dashboard use is one the operator exposes from its first scrape.
//! promtool is built from Go modules (tests/gotools/promtool), cached.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn promtool() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("tests/gotools/build.sh"))
        .arg("promtool")
        .output()
        .expect("run tests/gotools/build.sh");
    assert!(
        out.status.success(),
        "building promtool failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn rule(doc: &Value) -> Vec<Value> {
    doc["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn prometheus_rule() -> Value {
    serde_yaml::from_str(&read("deploy/monitoring/prometheusrule.yaml")).expect("parse rules")
}

/// The PrometheusRule's groups as a plain rules file, with the unit tests
/// next to it.
fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let groups = serde_json::json!({ "groups": prometheus_rule()["spec"]["groups"] });
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&groups).expect("yaml"),
    )
    .expect("write rules");
    std::fs::copy(
        repo().join("tests/monitoring/alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .expect("copy tests");
    dir
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_rules_are_valid_and_every_alert_fires_and_resolves_as_tested() {
    let dir = rules_dir();
    let checked = run(dir.path(), &["check", "rules", "rules.yaml"]);
    println!("{checked}");
    let tested = run(dir.path(), &["test", "rules", "alerts_test.yaml"]);
    println!("{tested}");

    // Every alert has unit tests that expect it to fire, and to be silent.
    let tests: Value =
        serde_yaml::from_str(&read("tests/monitoring/alerts_test.yaml")).expect("parse tests");
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for t in tests["tests"].as_array().expect("tests") {
        for a in t["alert_rule_test"].as_array().cloned().unwrap_or_default() {
            let name = a["alertname"].as_str().unwrap_or_default().to_string();
            if a["exp_alerts"].as_array().is_some_and(|e| e.is_empty()) {
                silent.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    for r in rule(&prometheus_rule()) {
        let name = r["alert"].as_str().expect("alert name").to_string();
        assert!(fires.contains(&name), "no test expects {name} to fire");
        assert!(silent.contains(&name), "no test expects {name} to resolve");
    }
}

#[test]
fn a_broken_alert_fails_the_unit_tests() {
    // The tests can fail: the old reload alert (increase over 15 m) resolves
    // while the rejected source is still in place.
    let dir = rules_dir();
    let rules = std::fs::read_to_string(dir.path().join("rules.yaml")).expect("rules");
    let broken = rules.replace(
        "max(policy_reload_failing) == 1",
        "increase(policy_reload_failing[15m]) > 0",
    );
    assert_ne!(rules, broken, "the reload alert's expression moved");
    std::fs::write(dir.path().join("rules.yaml"), broken).expect("write");
    let out = Command::new(promtool())
        .args(["test", "rules", "alerts_test.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run promtool");
    assert!(!out.status.success(), "promtool accepted a broken alert");
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

#[test]
fn every_runbook_url_points_at_a_section_that_exists() {
    let docs = read("docs/operations.md");
    let anchors: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    for r in rule(&prometheus_rule()) {
        let name = r["alert"].as_str().expect("alert");
        let url = r["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let (page, frag) = url.split_once('#').expect("an anchor");
        assert!(page.ends_with("/docs/operations.md"), "{name}: {url}");
        assert!(
            anchors.contains(frag),
            "{name}: no heading for #{frag} in docs/operations.md"
        );
    }
}

/// Metric names in a PromQL expression (identifiers followed by `{`, `[`
/// or used bare), minus functions and keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "by",
        "max",
        "min",
        "rate",
        "increase",
        "histogram_quantile",
        "absent",
        "clamp_min",
        "le",
        "without",
        "on",
        "ignoring",
        "and",
        "or",
        "unless",
        "count",
        "avg",
        "irate",
        "topk",
        "bool",
        "offset",
        "label_replace",
        "time",
        "vector",
        "job",
        "namespace",
        "pod",
        "phase",
        "reason",
        "kind",
        "outcome",
        "action",
        "policy",
        "verb",
        "resource",
        "instance",
        "from_phase",
        "to_phase",
        "version",
        "actor",
        "e",
        "datasource",
    ];
    let mut out = BTreeSet::new();
    let mut in_string = false;
    let mut word = String::new();
    let mut in_braces = 0;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_string = !in_string;
            continue;
        }
        if in_string {
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if !word.is_empty()
            && in_braces == 0
            && !word.starts_with(|ch: char| ch.is_ascii_digit())
            && !word.starts_with('$')
            && !NOT_METRICS.contains(&word.as_str())
            && c != '('
        {
            out.insert(word.clone());
        }
        word.clear();
        match c {
            '{' => in_braces += 1,
            '}' => in_braces -= 1,
            _ => {}
        }
    }
    out
}

#[test]
fn every_metric_the_alerts_and_dashboard_use_exists_on_a_fresh_operator() {
    let exposed = kubernetes_executor_actors::metrics::Metrics::new()
        .expect("metrics")
        .render();
    let exists = |name: &str| {
        name == "up"
            || exposed
                .lines()
                .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
    };
    let mut exprs: Vec<String> = rule(&prometheus_rule())
        .iter()
        .map(|r| r["expr"].as_str().expect("expr").to_string())
        .collect();
    let dashboard: Value =
        serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json")).expect("dashboard");
    let mut targets = Vec::new();
    collect_exprs(&dashboard, &mut targets);
    assert!(targets.len() >= 8, "dashboard panels: {targets:?}");
    exprs.extend(targets);
    let mut missing = BTreeSet::new();
    for e in &exprs {
        for m in metric_names(e) {
            if !exists(&m) {
                missing.insert(format!("{m} (in {e})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "used but not exposed at start:\n  {}",
        missing.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            m.values().for_each(|v| collect_exprs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
