//! Micro-benchmarks of the hot pure paths: phase transitions, parameter
//! validation, a policy decision with the default policy set, a condition
//! evaluation, and status serialization. `make bench` runs them.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use kubernetes_executor_actors::catalog::validate;
use kubernetes_executor_actors::machine::{Event, MachineState, Plan, transition};
use kubernetes_executor_actors::policy::{PolicySet, policy_input};
use kubernetes_executor_crds::Phase;

mod support;
use support::exec;

fn benches(c: &mut Criterion) {
    let e = exec();
    c.bench_function("transition Pending+Resume", |b| {
        let s = MachineState {
            phase: Phase::Pending,
            ..Default::default()
        };
        b.iter(|| transition(black_box(&s), Event::Resume))
    });
    c.bench_function("transition Validating+Validated", |b| {
        let s = MachineState {
            phase: Phase::Validating,
            ..Default::default()
        };
        let plan = Plan {
            action: "ScaleDeployment".into(),
            target: "Deployment/shop/web".into(),
            ..Default::default()
        };
        b.iter(|| transition(black_box(&s), Event::Validated(Ok(plan.clone()))))
    });
    c.bench_function("validate ScaleDeployment spec", |b| {
        b.iter(|| validate(black_box(&e.spec), "shop"))
    });

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut set = PolicySet::load_dir(&dir).expect("policies");
    let v = validate(&e.spec, "shop").expect("valid");
    let input = serde_json::to_value(policy_input(
        &e,
        &v,
        &Default::default(),
        "kubernetes-executor-system",
    ))
    .expect("input");
    c.bench_function("policy decision (default safety set)", |b| {
        b.iter(|| set.evaluate(black_box(&input)))
    });
    let mut cond_input = input.clone();
    cond_input["cluster"] = serde_json::json!({
        "pods": (0..20).map(|i| serde_json::json!({"name": format!("web-{i}"), "waiting_reasons": []})).collect::<Vec<_>>(),
    });
    c.bench_function("condition no_crashloop_pods (20 pods)", |b| {
        b.iter(|| set.evaluate_condition("no_crashloop_pods", black_box(&cond_input)))
    });

    let mut done = exec();
    done.status = Some(kubernetes_executor_crds::KubernetesExecutionStatus {
        phase: Some(Phase::Completed),
        reason: Some("Succeeded".into()),
        message: Some("the action succeeded and was verified".into()),
        ..Default::default()
    });
    c.bench_function("status serialization", |b| {
        b.iter(|| serde_json::to_vec(black_box(&done.status)))
    });
}

criterion_group!(hot, benches);
criterion_main!(hot);
