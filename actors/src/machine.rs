//! The ExecutionActor's phase machine as a pure function:
//! `transition(state, event) -> (state, effects)`. No I/O, no clocks: the
//! actor feeds it events (its own start, results of the effects it ran,
//! Job changes, timers, deletion) and executes the effects it returns.
//!
//! ```text
//! Pending → Validating → Executing → Verifying → Completed
//!               │  └─(dry run)──────────────────→ Completed
//!               └──────────┴───────────┴────────→ Failed
//! ```
//! `Completed` and `Failed` are terminal: nothing but deletion moves them.

use kubernetes_executor_crds::{
    ExecutionResult, Phase, PolicyDecision, RollbackInfo, TargetSnapshot, reasons,
};

use crate::catalog::Rejection;

/// What the machine knows; the actor keeps it next to the resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MachineState {
    /// Current phase (as last written to status).
    pub phase: Phase,
    /// The execution is being deleted.
    pub deleting: bool,
}

/// Everything validation learned, carried into status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The execution is a dry run.
    pub dry_run: bool,
    /// Canonical action name.
    pub action: String,
    /// `Kind/ns/name` of the target.
    pub target: String,
    /// Identity of the target at validation.
    pub snapshot: Option<TargetSnapshot>,
    /// The allowing policy decision.
    pub decision: Option<PolicyDecision>,
    /// What the dry run would do (dry runs only).
    pub output: Option<String>,
}

/// A validation failure with what was learned before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// Reason and message.
    pub rejection: Rejection,
    /// The denying decision, when policy refused.
    pub decision: Option<PolicyDecision>,
    /// Canonical action name and target, when known.
    pub action: Option<String>,
    /// `Kind/ns/name` of the target, when known.
    pub target: Option<String>,
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Refusal {
            rejection,
            decision: None,
            action: None,
            target: None,
        }
    }
}

/// How the Job ended, as read from its conditions and pod termination message.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    /// The Job completed; the action's result and rollback information.
    Succeeded {
        /// Result reported by `run-action`.
        result: ExecutionResult,
        /// Rollback information reported by `run-action`.
        rollback: Option<RollbackInfo>,
    },
    /// The Job failed (backoff limit reached, or the action reported failure).
    Failed {
        /// Result reported by `run-action`, or built from the Job status.
        result: ExecutionResult,
        /// Rollback information, when the action got far enough to record it.
        rollback: Option<RollbackInfo>,
        /// The action refused because the target changed since validation
        /// (recreated, or modified: its resourceVersion moved).
        target_changed: bool,
    },
    /// The Job ran past `activeDeadlineSeconds`.
    DeadlineExceeded {
        /// Human-readable detail.
        message: String,
    },
    /// The Job vanished before finishing (deleted by someone else).
    Missing,
}

/// Inputs of the machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The actor started (first time or after a restart) on the current status.
    Resume,
    /// The validation pipeline (catalog, target, policy, preconditions) ended.
    Validated(Result<Plan, Refusal>),
    /// The Job exists (created now, or found from before a restart).
    JobCreated {
        /// Its name.
        job_name: String,
    },
    /// The target lock was busy and the wait continues: try creating the Job again.
    RetryCreateJob,
    /// The kill switch holds a Pending execution (why); it looks again later.
    Paused(String),
    /// Another execution holds the target and this one waits (what for).
    TargetBusy(String),
    /// The Job finished.
    JobFinished(JobOutcome),
    /// Postcondition verification ended.
    Verified(Result<(), Rejection>),
    /// The execution's own timeout fired.
    TimedOut,
    /// The execution is being deleted.
    Deleted,
}

/// What should go into status with a phase change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusChange {
    /// The new phase.
    pub phase: Phase,
    /// Machine-readable reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Validation outcome to record, if any.
    pub plan: Option<Plan>,
    /// Refusal details to record, if any.
    pub refusal: Option<Refusal>,
    /// Job name to record.
    pub job_name: Option<String>,
    /// Result to record.
    pub result: Option<ExecutionResult>,
    /// Rollback information to record.
    pub rollback: Option<RollbackInfo>,
}

/// Outputs of the machine, executed in order by the actor.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Write the phase change to status, emit an Event, count the transition.
    Transition(Box<StatusChange>),
    /// Run the validation pipeline; it answers with [`Event::Validated`].
    Validate,
    /// Ensure RBAC and the (deterministically named) Job; answers with [`Event::JobCreated`].
    CreateJob,
    /// Look at the existing Job (after a restart); answers with Job events.
    ObserveJob,
    /// Arm the execution's timeout timer.
    ArmTimeout,
    /// Verify postconditions; answers with [`Event::Verified`].
    Verify,
    /// Delete the Job (and its pods).
    DeleteJob,
    /// Release per-execution grants (the just-in-time RoleBinding).
    ReleaseGrants,
    /// Remove the operator's finalizer.
    RemoveFinalizer,
    /// Stop the actor.
    Stop,
}

fn to(phase: Phase, reason: &'static str, message: impl Into<String>) -> StatusChange {
    StatusChange {
        phase,
        reason,
        message: message.into(),
        ..Default::default()
    }
}

fn tr(change: StatusChange) -> Effect {
    Effect::Transition(Box::new(change))
}

/// The phase machine.
pub fn transition(state: &MachineState, event: Event) -> (MachineState, Vec<Effect>) {
    use Effect::*;
    use Phase::*;
    let mut next = state.clone();

    if matches!(event, Event::Deleted) {
        next.deleting = true;
        let mut fx = Vec::new();
        if state.phase != Pending {
            // From Validating on a Job may exist (even one created just before
            // a crash); a finished Job lingers until its TTL. Take it along.
            fx.push(DeleteJob);
        }
        fx.extend([ReleaseGrants, RemoveFinalizer, Stop]);
        return (next, fx);
    }
    if state.phase.is_terminal() || state.deleting {
        // Terminal phases never change; a deleting execution only cleans up.
        return (next, vec![Stop]);
    }

    let fx = match (state.phase, event) {
        (Pending, Event::Resume) => {
            next.phase = Validating;
            vec![
                tr(to(
                    Validating,
                    reasons::VALIDATING,
                    "validating the action, target and policies",
                )),
                Validate,
            ]
        }
        (Validating, Event::Resume) => vec![Validate],
        (Pending, Event::Paused(why)) => vec![tr(to(Pending, reasons::PAUSED, why))],
        (Validating, Event::TargetBusy(what)) => {
            vec![tr(to(Validating, reasons::WAITING_FOR_TARGET, what))]
        }
        (Validating, Event::Validated(Err(refusal))) => {
            next.phase = Failed;
            let mut change = to(
                Failed,
                refusal.rejection.reason,
                refusal.rejection.message.clone(),
            );
            change.refusal = Some(refusal);
            vec![tr(change), ReleaseGrants, RemoveFinalizer, Stop]
        }
        (Validating, Event::Validated(Ok(plan))) if plan.dry_run => {
            next.phase = Completed;
            let message = format!(
                "dry run of {} on {}: validation, policies and preconditions passed; nothing was changed",
                plan.action, plan.target
            );
            let mut change = to(Completed, reasons::DRY_RUN_SUCCEEDED, message);
            change.result = Some(ExecutionResult {
                succeeded: true,
                output: plan.output.clone(),
                ..Default::default()
            });
            change.plan = Some(plan);
            vec![tr(change), ReleaseGrants, RemoveFinalizer, Stop]
        }
        (Validating, Event::Validated(Ok(plan))) => {
            // Record the decision now; the phase changes once the Job exists.
            let mut change = to(
                Validating,
                reasons::VALIDATING,
                "validated; creating the Job",
            );
            change.plan = Some(plan);
            vec![tr(change), CreateJob]
        }
        (Validating, Event::RetryCreateJob) => vec![CreateJob],
        (Validating, Event::JobCreated { job_name })
        | (Executing, Event::JobCreated { job_name }) => {
            let was = state.phase;
            next.phase = Executing;
            let mut fx = Vec::new();
            if was != Executing {
                let mut change = to(
                    Executing,
                    reasons::JOB_RUNNING,
                    format!("Job {job_name} is running the action"),
                );
                change.job_name = Some(job_name);
                fx.push(tr(change));
            }
            fx.push(ArmTimeout);
            fx
        }
        (Executing, Event::Resume) => vec![ArmTimeout, ObserveJob],
        (Executing, Event::JobFinished(outcome)) => match outcome {
            JobOutcome::Succeeded { result, rollback } => {
                next.phase = Verifying;
                let mut change = to(
                    Verifying,
                    reasons::VERIFYING,
                    "the action succeeded; verifying postconditions",
                );
                change.result = Some(result);
                change.rollback = rollback;
                vec![tr(change), Verify]
            }
            JobOutcome::Failed {
                result,
                rollback,
                target_changed,
            } => {
                next.phase = Failed;
                let message = result
                    .error
                    .clone()
                    .unwrap_or_else(|| "the action's Job failed".into());
                let reason = if target_changed {
                    reasons::TARGET_CHANGED
                } else {
                    reasons::JOB_FAILED
                };
                let mut change = to(Failed, reason, message);
                change.result = Some(result);
                change.rollback = rollback;
                vec![tr(change), ReleaseGrants, Stop]
            }
            JobOutcome::DeadlineExceeded { message } => {
                next.phase = Failed;
                let mut change = to(Failed, reasons::TIMEOUT, message.clone());
                change.result = Some(ExecutionResult {
                    succeeded: false,
                    error: Some(message),
                    ..Default::default()
                });
                vec![tr(change), ReleaseGrants, Stop]
            }
            JobOutcome::Missing => {
                next.phase = Failed;
                let message =
                    "the action's Job was deleted before it finished; what it did is unknown"
                        .to_string();
                let mut change = to(Failed, reasons::JOB_FAILED, message.clone());
                change.result = Some(ExecutionResult {
                    succeeded: false,
                    error: Some(message),
                    ..Default::default()
                });
                vec![tr(change), ReleaseGrants, Stop]
            }
        },
        (Validating | Executing | Verifying, Event::TimedOut) => {
            next.phase = Failed;
            let message = "the execution ran past its timeout".to_string();
            let mut change = to(Failed, reasons::TIMEOUT, message.clone());
            change.result = Some(ExecutionResult {
                succeeded: false,
                error: Some(message),
                ..Default::default()
            });
            let mut fx = vec![tr(change)];
            if state.phase == Executing {
                fx.push(DeleteJob);
            }
            fx.extend([ReleaseGrants, Stop]);
            fx
        }
        // After a restart the execution's own timer exists again, as it did
        // before (armed in Executing).
        (Verifying, Event::Resume) => vec![ArmTimeout, Verify],
        (Verifying, Event::Verified(Ok(()))) => {
            next.phase = Completed;
            vec![
                tr(to(
                    Completed,
                    reasons::SUCCEEDED,
                    "the action succeeded and was verified",
                )),
                ReleaseGrants,
                Stop,
            ]
        }
        (Verifying, Event::Verified(Err(rejection))) => {
            next.phase = Failed;
            vec![
                tr(to(Failed, rejection.reason, rejection.message)),
                ReleaseGrants,
                Stop,
            ]
        }
        // Anything else is stale or out of order (e.g. a Job event while
        // validating): ignore it.
        _ => vec![],
    };
    (next, fx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;

    fn st(phase: Phase) -> MachineState {
        MachineState {
            phase,
            deleting: false,
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
        assert_eq!(s.phase, Validating);
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
                Validating,
                Event::TargetBusy("busy".into()),
                Some(reasons::WAITING_FOR_TARGET),
            ),
            // Too late to pause, or nothing to wait for: ignored.
            (Validating, Event::Paused("paused".into()), None),
            (Executing, Event::TargetBusy("busy".into()), None),
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
    fn dry_run_goes_validating_to_completed_without_a_job() {
        let (s, _) = transition(&st(Pending), Event::Resume);
        let (s, fx) = transition(&s, Event::Validated(Ok(plan(true))));
        assert_eq!(s.phase, Completed);
        assert!(!fx.contains(&Effect::CreateJob));
        match &fx[0] {
            Effect::Transition(c) => assert_eq!(c.reason, reasons::DRY_RUN_SUCCEEDED),
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
        let (s, fx) = transition(&st(Validating), Event::RetryCreateJob);
        assert_eq!(s.phase, Validating);
        assert_eq!(fx, vec![Effect::CreateJob]);
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
        assert!(
            matches!(&fx[0], Effect::Transition(c) if c.reason == reasons::POSTCONDITION_FAILED)
        );
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
}
