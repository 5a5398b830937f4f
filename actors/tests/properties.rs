//! Property tests of the pure core: arbitrary specs never panic in
//! validation, every refusal carries a documented reason, every accepted
//! spec means the same thing after the round trip through the Job's
//! arguments; durations never panic; the phase machine never panics and a
//! terminal phase never changes. `make fuzz` runs these with many more cases.

use std::collections::BTreeMap;

use kubernetes_executor_actors::catalog::{CATALOG, Rejection, lookup, validate, validate_params};
use kubernetes_executor_actors::duration::{format_duration, parse_duration};
use kubernetes_executor_actors::job::run_action_args;
use kubernetes_executor_actors::machine::{Event, JobOutcome, MachineState, Plan, transition};
use kubernetes_executor_crds::{KubernetesExecutionSpec, Phase, TargetResource, reasons};
use proptest::prelude::*;

/// Reasons validation may answer with (docs/api.md).
const VALIDATION_REASONS: &[&str] = &[
    reasons::UNKNOWN_ACTION,
    reasons::INVALID_PARAMETERS,
    reasons::INVALID_TARGET,
    reasons::INVALID_TIMEOUT,
];

fn action_name() -> impl Strategy<Value = String> {
    let known: Vec<String> = CATALOG
        .iter()
        .flat_map(|a| std::iter::once(a.name).chain(a.aliases.iter().copied()))
        .map(String::from)
        .collect();
    prop_oneof![
        4 => proptest::sample::select(known),
        1 => ".{0,20}",
    ]
}

fn kind() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec!["Deployment", "Pod", "ConfigMap", "Secret", "Node"])
            .prop_map(String::from),
        1 => ".{0,12}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,4}",
        "[ +-]?0?[0-9]{1,3}[ \n]?",
        "(true|false|merge|json|strategic)",
        r#"\{"data":\{"[a-z]{1,5}":"[a-z]{0,5}"\}\}"#,
        "[a-z0-9.:/-]{0,30}",
        "[0-9]{1,3}(ms|s|m|h)",
        ".{0,16}",
    ]
}

fn param_name() -> impl Strategy<Value = String> {
    let known: Vec<String> = CATALOG
        .iter()
        .flat_map(|a| a.params.iter().map(|p| p.name.to_string()))
        .chain(["patch", "bogus"].map(String::from))
        .collect();
    prop_oneof![4 => proptest::sample::select(known), 1 => "[a-zA-Z]{0,10}"]
}

fn spec() -> impl Strategy<Value = KubernetesExecutionSpec> {
    (
        action_name(),
        kind(),
        "[a-z0-9.-]{0,70}",
        proptest::option::of("[a-z0-9-]{0,70}"),
        proptest::collection::btree_map(param_name(), value(), 0..4),
        proptest::option::of(prop_oneof!["[0-9]{1,5}(ms|s|m|h)", ".{0,10}"]),
        proptest::option::of(-3i32..10),
    )
        .prop_map(
            |(action, kind, name, ns, parameters, timeout, max_retries)| KubernetesExecutionSpec {
                parameters,
                timeout,
                max_retries,
                ..KubernetesExecutionSpec::new(
                    action,
                    TargetResource::new(kind, name, ns.as_deref()),
                )
            },
        )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000)
}

fn plan(dry_run: bool) -> Plan {
    Plan {
        dry_run,
        action: "ScaleDeployment".into(),
        target: "Deployment/ns/web".into(),
        snapshot: None,
        decision: None,
        output: dry_run.then(|| "would scale".to_string()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn validation_never_panics_and_refuses_with_a_documented_reason(s in spec()) {
        match validate(&s, "tenant-a") {
            Ok(v) => {
                // Round trip through the Job's arguments: same action, same
                // target, same parameters, same time budget.
                let args = run_action_args(&v, None, false, "tenant-a");
                let arg = |flag: &str| {
                    args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
                };
                prop_assert_eq!(
                    arg("--action").and_then(|a| lookup(&a)).map(|a| a.name),
                    Some(v.action.name)
                );
                prop_assert_eq!(arg("--name"), Some(v.target.name.clone()));
                prop_assert_eq!(arg("--namespace"), v.target.namespace.clone());
                prop_assert_eq!(arg("--timeout-seconds"), Some(v.timeout.as_secs().to_string()));
                let given: BTreeMap<String, String> = args
                    .windows(2)
                    .filter(|w| w[0] == "--param")
                    .filter_map(|w| {
                        w[1].split_once('=').map(|(k, val)| (k.to_string(), val.to_string()))
                    })
                    .collect();
                let reparsed = validate_params(v.action, &given);
                prop_assert_eq!(reparsed.as_ref().ok(), Some(&v.params), "{:?}", reparsed);
            }
            Err(r) => {
                prop_assert!(
                    VALIDATION_REASONS.contains(&r.reason),
                    "undocumented reason {}",
                    r.reason
                );
                prop_assert!(!r.message.is_empty());
            }
        }
    }

    #[test]
    fn durations_never_panic_and_round_trip(s in ".{0,24}", secs in 0u64..100_000) {
        let _ = parse_duration(&s);
        let d = std::time::Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn the_machine_never_panics_and_terminal_phases_never_change(
        start in 0usize..6,
        events in proptest::collection::vec(0usize..9, 0..12),
    ) {
        let phases = [
            Phase::Pending,
            Phase::Validating,
            Phase::Executing,
            Phase::Verifying,
            Phase::Completed,
            Phase::Failed,
        ];
        let mut state = MachineState { phase: phases[start], ..Default::default() };
        for e in events {
            let ev = match e {
                0 => Event::Resume,
                1 => Event::Validated(Ok(plan(false))),
                2 => Event::Validated(Ok(plan(true))),
                3 => Event::Validated(Err(Rejection::new(reasons::POLICY_DENIED, "no").into())),
                4 => Event::JobCreated { job_name: "ke-x-1".into() },
                5 => Event::JobFinished(JobOutcome::Missing),
                6 => Event::Verified(Ok(())),
                7 => Event::TimedOut,
                _ => Event::RetryCreateJob,
            };
            let before = state.phase;
            let (next, _) = transition(&state, ev);
            if before.is_terminal() {
                prop_assert_eq!(next.phase, before, "a terminal phase changed");
            }
            state = next;
        }
    }
}
