//! Table tests of the phase machine.

use super::*;
use Phase::*;

fn st(phase: Phase) -> MachineState {
    MachineState {
        phase,
        ..Default::default()
    }
}

fn dry(phase: Phase) -> MachineState {
    MachineState {
        phase,
        dry_run: true,
        ..Default::default()
    }
}

fn phases_written(fx: &[Effect]) -> Vec<Phase> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Transition(c) => Some(c.phase),
            _ => None,
        })
        .collect()
}

fn plan(dry_run: bool) -> Plan {
    Plan {
        dry_run,
        action: "ScaleDeployment".into(),
        target: "Deployment/shop/web".into(),
        ..Default::default()
    }
}

fn refusal(reason: &'static str) -> Refusal {
    Rejection::new(reason, "no").into()
}

#[test]
fn happy_path_pending_to_completed() {
    let (s, fx) = transition(&st(Pending), Event::Resume);
    assert_eq!(s.phase, Validating);
    assert_eq!(fx.last(), Some(&Effect::Validate));
    let (s, fx) = transition(&s, Event::Validated(Ok(plan(false))));
    assert_eq!(s.phase, Preparing);
    assert_eq!(phases_written(&fx), vec![Preparing]);
    assert_eq!(fx.last(), Some(&Effect::CreateJob));
    let (s, fx) = transition(
        &s,
        Event::JobCreated {
            job_name: "ke-1".into(),
        },
    );
    assert_eq!(s.phase, Executing);
    assert_eq!(phases_written(&fx), vec![Executing]);
    assert!(fx.contains(&Effect::ArmTimeout));
    let ok = JobOutcome::Succeeded {
        result: ExecutionResult {
            succeeded: true,
            ..Default::default()
        },
        rollback: None,
    };
    let (s, fx) = transition(&s, Event::JobFinished(ok));
    assert_eq!(s.phase, Verifying);
    assert_eq!(fx.last(), Some(&Effect::Verify));
    let (s, fx) = transition(&s, Event::Verified(Ok(())));
    assert_eq!(s.phase, Completed);
    assert_eq!(phases_written(&fx), vec![Completed]);
    match &fx[0] {
        Effect::Transition(c) => assert_eq!(c.reason, reasons::SUCCEEDED),
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.last(), Some(&Effect::Stop));
}

#[test]
fn paused_and_busy_record_a_reason_without_moving() {
    let cases = [
        (
            Pending,
            Event::Paused("paused".into()),
            Some(reasons::PAUSED),
        ),
        (
            Preparing,
            Event::TargetBusy("busy".into()),
            Some(reasons::WAITING_FOR_TARGET),
        ),
        // Too late to pause, or nothing to wait for: ignored.
        (Validating, Event::Paused("paused".into()), None),
        (Executing, Event::TargetBusy("busy".into()), None),
        (Validating, Event::TargetBusy("busy".into()), None),
        (Completed, Event::Paused("paused".into()), None),
    ];
    for (phase, ev, reason) in cases {
        let (s, fx) = transition(&st(phase), ev.clone());
        assert_eq!(s.phase, phase, "{ev:?}");
        match (reason, fx.as_slice()) {
            (Some(r), [Effect::Transition(c)]) => {
                assert_eq!((c.phase, c.reason), (phase, r), "{ev:?}")
            }
            (None, fx) => assert!(
                fx.iter().all(|f| !matches!(f, Effect::Transition(_))),
                "{ev:?}: {fx:?}"
            ),
            (_, fx) => panic!("{ev:?}: {fx:?}"),
        }
    }
}

#[test]
fn a_dry_run_runs_its_job_as_a_server_side_dry_run_and_skips_verification() {
    let (s, _) = transition(&dry(Pending), Event::Resume);
    let (s, fx) = transition(&s, Event::Validated(Ok(plan(true))));
    assert_eq!(s.phase, Preparing);
    assert_eq!(fx.last(), Some(&Effect::CreateJob));
    let (s, _) = transition(
        &s,
        Event::JobCreated {
            job_name: "ke-1".into(),
        },
    );
    assert_eq!(s.phase, Executing);
    let ok = JobOutcome::Succeeded {
        result: ExecutionResult {
            succeeded: true,
            output: Some("dry run: would scale".into()),
            ..Default::default()
        },
        rollback: None,
    };
    let (done, fx) = transition(&s, Event::JobFinished(ok));
    assert_eq!(done.phase, Completed, "no Verifying: nothing changed");
    assert!(!fx.contains(&Effect::Verify));
    assert!(fx.contains(&Effect::ReleaseGrants));
    match &fx[0] {
        Effect::Transition(c) => {
            assert_eq!(c.reason, reasons::DRY_RUN_SUCCEEDED);
            assert_eq!(
                c.result.as_ref().and_then(|r| r.output.as_deref()),
                Some("dry run: would scale")
            );
        }
        other => panic!("{other:?}"),
    }
    let rejected = JobOutcome::Failed {
        result: ExecutionResult {
            succeeded: false,
            error: Some("ConfigMap \"x\" is invalid: data: Invalid value".into()),
            ..Default::default()
        },
        rollback: None,
        target_changed: false,
    };
    let (failed, fx) = transition(&s, Event::JobFinished(rejected));
    assert_eq!(failed.phase, Failed);
    match &fx[0] {
        Effect::Transition(c) => {
            assert_eq!(c.reason, reasons::DRY_RUN_REJECTED);
            assert!(c.message.contains("is invalid"), "{}", c.message);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn validation_failures_fail_with_their_reason_and_no_job() {
    for reason in [
        reasons::UNKNOWN_ACTION,
        reasons::INVALID_PARAMETERS,
        reasons::POLICY_DENIED,
        reasons::TARGET_NOT_FOUND,
    ] {
        let (s, fx) = transition(&st(Validating), Event::Validated(Err(refusal(reason))));
        assert_eq!(s.phase, Failed);
        assert!(!fx.contains(&Effect::CreateJob));
        match &fx[0] {
            Effect::Transition(c) => assert_eq!(c.reason, reason),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn job_failure_deadline_and_disappearance() {
    for (target_changed, reason) in [
        (false, reasons::JOB_FAILED),
        (true, reasons::TARGET_CHANGED),
    ] {
        let failed = JobOutcome::Failed {
            result: ExecutionResult {
                succeeded: false,
                error: Some("boom".into()),
                ..Default::default()
            },
            rollback: None,
            target_changed,
        };
        let (s, fx) = transition(&st(Executing), Event::JobFinished(failed));
        assert_eq!(s.phase, Failed);
        match &fx[0] {
            Effect::Transition(c) => {
                assert_eq!(c.reason, reason);
                assert_eq!(c.message, "boom");
            }
            other => panic!("{other:?}"),
        }
    }
    let (s, fx) = transition(
        &st(Executing),
        Event::JobFinished(JobOutcome::DeadlineExceeded {
            message: "late".into(),
        }),
    );
    assert_eq!(s.phase, Failed);
    assert!(matches!(&fx[0], Effect::Transition(c) if c.reason == reasons::TIMEOUT));
    let (s, _) = transition(&st(Executing), Event::JobFinished(JobOutcome::Missing));
    assert_eq!(s.phase, Failed);
}

#[test]
fn a_busy_target_retries_job_creation_without_a_transition() {
    let (s, fx) = transition(&st(Preparing), Event::RetryCreateJob);
    assert_eq!(s.phase, Preparing);
    assert_eq!(fx, vec![Effect::CreateJob]);
}

#[test]
fn preparing_resumes_by_creating_or_adopting_the_job_and_can_fail() {
    let (s, fx) = transition(&st(Preparing), Event::Resume);
    assert_eq!((s.phase, fx), (Preparing, vec![Effect::CreateJob]));
    let (s, fx) = transition(
        &st(Preparing),
        Event::Validated(Err(refusal(reasons::TARGET_BUSY))),
    );
    assert_eq!(s.phase, Failed);
    assert!(fx.contains(&Effect::ReleaseGrants));
    let (s, _) = transition(
        &st(Preparing),
        Event::JobCreated {
            job_name: "ke-1".into(),
        },
    );
    assert_eq!(s.phase, Executing);
    let (s, _) = transition(&st(Preparing), Event::TimedOut);
    assert_eq!(s.phase, Failed);
}

#[test]
fn own_timeout_fails_and_deletes_a_running_job() {
    let (s, fx) = transition(&st(Executing), Event::TimedOut);
    assert_eq!(s.phase, Failed);
    assert!(fx.contains(&Effect::DeleteJob));
    let (_, fx) = transition(&st(Validating), Event::TimedOut);
    assert!(!fx.contains(&Effect::DeleteJob));
}

#[test]
fn postcondition_failure_fails() {
    let (s, fx) = transition(
        &st(Verifying),
        Event::Verified(Err(Rejection::new(
            reasons::POSTCONDITION_FAILED,
            "crashloop",
        ))),
    );
    assert_eq!(s.phase, Failed);
    assert!(matches!(&fx[0], Effect::Transition(c) if c.reason == reasons::POSTCONDITION_FAILED));
}

#[test]
fn resume_never_repeats_a_transition() {
    assert_eq!(
        transition(&st(Validating), Event::Resume).1,
        vec![Effect::Validate]
    );
    assert_eq!(
        transition(&st(Executing), Event::Resume).1,
        vec![Effect::ArmTimeout, Effect::ObserveJob]
    );
    assert_eq!(
        transition(&st(Verifying), Event::Resume).1,
        vec![Effect::ArmTimeout, Effect::Verify]
    );
    // The Job found again after a restart does not re-write Executing.
    let (_, fx) = transition(
        &st(Executing),
        Event::JobCreated {
            job_name: "ke-1".into(),
        },
    );
    assert!(phases_written(&fx).is_empty());
}

#[test]
fn terminal_phases_never_change() {
    let all_events = || {
        vec![
            Event::Resume,
            Event::Validated(Ok(plan(false))),
            Event::Validated(Err(refusal(reasons::POLICY_DENIED))),
            Event::JobCreated {
                job_name: "x".into(),
            },
            Event::JobFinished(JobOutcome::Missing),
            Event::Verified(Ok(())),
            Event::TimedOut,
        ]
    };
    for phase in [Completed, Failed] {
        for ev in all_events() {
            let (s, fx) = transition(&st(phase), ev.clone());
            assert_eq!(s.phase, phase, "{ev:?}");
            assert_eq!(fx, vec![Effect::Stop], "{phase:?} + {ev:?}");
        }
    }
}

#[test]
fn out_of_order_events_are_ignored() {
    let ok = JobOutcome::Succeeded {
        result: ExecutionResult::default(),
        rollback: None,
    };
    for (phase, ev) in [
        (Pending, Event::JobFinished(ok.clone())),
        (Validating, Event::JobFinished(ok.clone())),
        (Validating, Event::Verified(Ok(()))),
        (Executing, Event::Validated(Ok(plan(false)))),
        (
            Verifying,
            Event::JobCreated {
                job_name: "x".into(),
            },
        ),
        (Pending, Event::TimedOut),
        (Executing, Event::RetryCreateJob),
        (Pending, Event::RetryCreateJob),
    ] {
        let (s, fx) = transition(&st(phase), ev.clone());
        assert_eq!(s.phase, phase, "{ev:?}");
        assert!(fx.is_empty(), "{phase:?} + {ev:?} -> {fx:?}");
    }
}

#[test]
fn deletion_cleans_up_in_every_phase() {
    for phase in Phase::ALL {
        let (s, fx) = transition(&st(phase), Event::Deleted);
        assert!(s.deleting);
        assert!(
            fx.ends_with(&[Effect::ReleaseGrants, Effect::RemoveFinalizer, Effect::Stop]),
            "{phase:?}: {fx:?}"
        );
        assert_eq!(
            fx.contains(&Effect::DeleteJob),
            phase != Pending,
            "{phase:?}"
        );
        assert_eq!(s.phase, phase, "deletion does not rewrite the phase");
    }
}

#[test]
fn an_abandoned_execution_fails_with_internal_error_unless_it_ended() {
    for phase in [Pending, Validating, Executing, Verifying] {
        let (s, fx) = transition(&st(phase), Event::Abandoned("gave up".into()));
        assert_eq!(s.phase, Failed);
        match fx.as_slice() {
            [Effect::Transition(c)] => {
                assert_eq!((c.phase, c.reason), (Failed, reasons::INTERNAL_ERROR));
                assert_eq!(c.message, "gave up");
            }
            other => panic!("{phase:?}: {other:?}"),
        }
    }
    for phase in [Completed, Failed] {
        let (s, fx) = transition(&st(phase), Event::Abandoned("gave up".into()));
        assert_eq!((s.phase, fx), (phase, vec![Effect::Stop]));
    }
}
