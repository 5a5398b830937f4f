//! Latency distribution of single policy decisions with the default policy
//! set (criterion reports means; the target is on p99): times 20,000
//! decisions one by one and prints p50/p90/p99/p99.9/max. `make bench` runs it.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use kubernetes_executor_actors::catalog::validate;
use kubernetes_executor_actors::policy::{PolicySet, policy_input};

mod support;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut set = PolicySet::load_dir(&dir).expect("policies");
    let e = support::exec();
    let v = validate(&e.spec, "shop").expect("valid");
    let input = serde_json::to_value(policy_input(
        &e,
        &v,
        &Default::default(),
        "kubernetes-executor-system",
    ))
    .expect("input");
    let allowed = set.evaluate(&input).expect("decision");
    assert!(
        allowed.is_empty(),
        "the fixture must be allowed: {allowed:?}"
    );
    for _ in 0..500 {
        let _ = black_box(set.evaluate(black_box(&input)));
    }
    let n = 20_000;
    let mut us: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let _ = black_box(set.evaluate(black_box(&input)));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
    println!(
        "policy decision (default safety set), {n} decisions: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
        q(50.0),
        q(90.0),
        q(99.0),
        q(99.9),
        us[n - 1]
    );
}
