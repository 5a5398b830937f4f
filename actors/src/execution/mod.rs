//! ExecutionActor: one per live execution, named `exec/<uid>`. Feeds
//! events into the pure phase machine ([`crate::machine`]) and executes the
//! effects it returns: status writes, events, validation (catalog, target,
//! PolicyActor), RBAC grants (RbacActor), the Job, timers, cleanup.
//! Recoverable API errors are retried here; a handler returns `Err` only for
//! corrupted state, which makes the supervisor restart the actor — and a
//! restarted actor resumes from status and the deterministic Job name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kubernetes_executor_crds::{
    ActionCondition, ConditionPhase, ConditionResult, KubernetesExecution,
    KubernetesExecutionStatus, Phase, PolicyDecision, TargetSnapshot, reasons,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use crate::catalog::{Rejection, ValidatedAction, validate};
use crate::context::{Context, Ctx};
use crate::job::{ActionOutput, build_job, job_name};
use crate::k8s::{ApiError, PATIENCE, retry_for};
use crate::machine::{
    Effect, Event, JobOutcome, MachineState, Plan, Refusal, StatusChange, transition,
};
use crate::policy::{PolicyInput, PolicyMsg, policy_input};
use crate::rbac::RbacMsg;

mod authorize;
mod conditions;
mod effects;
mod hold;
mod job_outcome;
mod start;
mod validation;
mod verify;
use crate::registry::{Lifecycle, post, post_after};
pub use authorize::namespace_listed;
use conditions::{condition_input, evaluate_once, record_conditions};
use effects::execute;
use hold::{busy, paused, timeout_and_elapsed};
use job_outcome::{existing_job, job_changed, job_deleted, job_event};
use start::{Created, ask_rbac, create_job, ensure_finalizer, lock_name};
use validation::validate_all;
pub use verify::{CHAOS_VERIFIER_ANNOTATION, VerifierActor, VerifierArgs, VerifierMsg};
use verify::{spawn_verifier, verifier_failed};

/// Annotation read by the chaos knob (see [`crate::context::Settings::chaos`]).
pub const CHAOS_PANIC_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/chaos-panic";
/// Chaos knob: Job creation "fails" although the server created the Job
/// (its answer lost), in the actor's first life.
pub const CHAOS_CREATE_LOST_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/chaos-create-lost";
/// Chaos knob: the first life of the actor panics right after creating the
/// Job, before `Executing` is recorded (a crash at the worst moment).
pub const CHAOS_CRASH_AFTER_JOB_ANNOTATION: &str =
    "kubernetesexecution.kubernaut.io/chaos-crash-after-job";

/// Stop reason of an actor that finished its work (an execution actor:
/// terminal phase reached, or deletion cleaned up; a verifier: results sent).
pub const FINISHED: &str = "finished";

/// Messages of an ExecutionActor.
pub enum ExecutionMsg {
    /// The watch saw a new version of the execution.
    Observed(Box<KubernetesExecution>),
    /// The JobWatcher saw the execution's Job change.
    JobChanged(Box<Job>),
    /// The JobWatcher saw the execution's Job deleted (its last state).
    JobDeleted(Box<Job>),
    /// A machine event produced by an effect or a timer.
    Machine(Box<Event>),
    /// The postcondition verifier finished.
    PostconditionsDone(Vec<ConditionResult>),
    /// Restart the postcondition verifier (after it failed).
    RespawnVerifier,
    /// Write a passing phase still unrecorded after
    /// [`crate::tunables::PASSING_PHASE_WINDOW`].
    FlushStatus,
    /// The execution is gone (deleted without the operator's finalizer: a
    /// dry run): delete its Job, revoke its grants, stop.
    Gone,
}

/// Shorthand for the actor's reference.
pub type ExecutionRef = ActorRef<ExecutionMsg>;

/// Arguments of an ExecutionActor.
pub struct ExecutionArgs {
    /// The execution as last seen.
    pub exec: KubernetesExecution,
    /// Shared context.
    pub ctx: Ctx,
    /// How often the supervisor restarted this execution's actor.
    pub restarts: u32,
    /// First seen in a full list of executions (at start, after a leader
    /// change, after a re-list), not as a new object: an earlier operator
    /// process may have worked on it beyond what its status shows.
    pub listed: bool,
}

/// State of an ExecutionActor.
pub struct ExecutionState {
    exec: KubernetesExecution,
    status: KubernetesExecutionStatus,
    machine: MachineState,
    validated: Option<ValidatedAction>,
    phase_since: Instant,
    timeout_armed: bool,
    /// The armed timeout's timer task: aborted when the actor stops, so a
    /// finished execution's actor (its cell and channels, ~10 KB) is not
    /// kept alive by a timer until the timeout would have fired.
    timeout_timer: Option<tokio::task::JoinHandle<()>>,
    /// The verifier's arguments while postconditions are being verified
    /// (the verifier is a linked child: it stops with this actor).
    verifier: Option<VerifierArgs>,
    job_created: Option<Instant>,
    /// How long the Job ran, once its outcome is known and until the
    /// outcome is written (then `job_completion_duration` observes it).
    job_duration: Option<f64>,
    finalizer_added: bool,
    /// `state.status` holds a passing phase not yet written.
    unwritten: bool,
    /// A passing phase was written and no lasting phase since: a further
    /// passing phase before the next lasting one is not written on its own
    /// (at most one progress write between two lasting phases).
    passing_shown: bool,
    /// A lock or grants may exist for this execution: this life began
    /// taking them, or an earlier life may have (it got past `Pending`, or
    /// crashed). When false, releasing costs no request.
    may_hold: bool,
    /// The target lock's resourceVersion when this life took it (its
    /// release is then a conditional DELETE, without a read first).
    lock_version: Option<String>,
    released: bool,
    admitted: Option<tokio::sync::OwnedSemaphorePermit>,
    restarts: u32,
    /// Resumed (after a crash or failover) in `Validating`: a Job may
    /// already exist, and must be adopted rather than validated again.
    resumed_in_validating: bool,
    ctx: Ctx,
    name: String,
    span: tracing::Span,
    life: Lifecycle,
}

/// The ExecutionActor.
pub struct ExecutionActor;

impl Actor for ExecutionActor {
    type Msg = ExecutionMsg;
    type State = ExecutionState;
    type Arguments = ExecutionArgs;

    async fn pre_start(
        &self,
        myself: ExecutionRef,
        args: ExecutionArgs,
    ) -> Result<ExecutionState, ActorProcessingErr> {
        let exec = args.exec;
        // Requests made for this execution carry its UID in the User-Agent.
        let ctx: Ctx = Arc::new(Context {
            api: args.ctx.api.for_execution(),
            ..(*args.ctx).clone()
        });
        let status = exec.status.clone().unwrap_or_default();
        let name = myself.get_name().unwrap_or_default();
        let requester = exec
            .spec
            .requester
            .as_ref()
            .map(|r| r.username.clone())
            .unwrap_or_default();
        // A root: one trace per execution (not a child of the actor
        // framework's spans), or the workflow engine's trace (below).
        let span = tracing::info_span!(parent: None, "execution", key = %exec.key(), uid = %exec.uid().unwrap_or_default(), requester = %requester, trace_id = tracing::field::Empty);
        // A workflow engine's span (annotation) is the parent; the trace ID
        // goes on every log line of the execution.
        crate::trace::adopt_parent(
            &span,
            exec.annotations()
                .get(crate::trace::TRACEPARENT_ANNOTATION)
                .map(String::as_str),
        );
        if let Some(id) = crate::trace::trace_id_of(&span) {
            span.record("trace_id", tracing::field::display(id));
        }
        // Requests made in this span carry the execution's User-Agent.
        crate::k8s::clients::tag_span(&span, &exec.uid().unwrap_or_default());
        let machine = MachineState {
            phase: status.phase.unwrap_or_default(),
            deleting: false,
            dry_run: exec.spec.dry_run,
        };
        let parent = ctx.peers.name(crate::peers::Singleton::Supervisor);
        let life = Lifecycle::enter_in_phase(
            &ctx.registry,
            &ctx.metrics,
            "execution",
            &name,
            Some(&parent),
            Some(exec.key()),
            Some(machine.phase.as_str()),
        );
        let deleting = exec.metadata.deletion_timestamp.is_some();
        let first = if deleting {
            Event::Deleted
        } else {
            Event::Resume
        };
        post(
            &ctx.registry,
            &myself,
            ExecutionMsg::Machine(Box::new(first)),
        );
        // An earlier life may have got further than status shows (the
        // passing phases are written late): it crashed (restarts), or it
        // was another operator process's (listed, not new).
        let earlier_life = args.restarts > 0 || args.listed || machine.phase != Phase::Pending;
        // It may have created the Job: look for it before validating again
        // (a dry run's Job changed nothing; re-validating it is harmless).
        let resumed_in_validating = machine.phase == Phase::Validating
            || (machine.phase == Phase::Pending && earlier_life && !exec.spec.dry_run);
        let may_hold = earlier_life;
        Ok(ExecutionState {
            exec,
            status,
            machine,
            validated: None,
            phase_since: Instant::now(),
            timeout_armed: false,
            timeout_timer: None,
            verifier: None,
            job_created: None,
            job_duration: None,
            finalizer_added: false,
            unwritten: false,
            passing_shown: false,
            may_hold,
            lock_version: None,
            released: false,
            admitted: None,
            restarts: args.restarts,
            resumed_in_validating,
            ctx,
            name,
            span,
            life,
        })
    }

    async fn post_stop(
        &self,
        _myself: ExecutionRef,
        state: &mut ExecutionState,
    ) -> Result<(), ActorProcessingErr> {
        // The verifier (a linked child) stops with this actor; the
        // registry entry goes with the lifecycle guard.
        state.verifier = None;
        if let Some(t) = state.timeout_timer.take() {
            t.abort();
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ExecutionRef,
        evt: ractor::SupervisionEvent,
        state: &mut ExecutionState,
    ) -> Result<(), ActorProcessingErr> {
        if let ractor::SupervisionEvent::ActorFailed(cell, err) = evt
            && let Some(args) = state.verifier.as_mut()
        {
            let err = err.to_string();
            let restarts = state
                .ctx
                .registry
                .record_failure(&cell.get_name().unwrap_or_default(), &err);
            state
                .ctx
                .metrics
                .actor_restarts
                .with_label_values(&["postconditions"])
                .inc();
            tracing::warn!(error = %err, restarts, "postcondition verifier failed");
            let msg = match verifier_failed(args, &err) {
                None => ExecutionMsg::RespawnVerifier,
                Some(results) => ExecutionMsg::PostconditionsDone(results),
            };
            post_after(
                &state.ctx.registry,
                &myself,
                crate::tunables::EXECUTION_RESTART_BACKOFF,
                move || msg,
            );
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ExecutionRef,
        msg: ExecutionMsg,
        state: &mut ExecutionState,
    ) -> Result<(), ActorProcessingErr> {
        // Admission: starting (or resuming) validation takes a permit first,
        // awaited here — before the large handler future exists.
        let starts_validation = matches!(&msg, ExecutionMsg::Machine(ev) if matches!(**ev, Event::Resume))
            && matches!(state.machine.phase, Phase::Pending | Phase::Validating);
        if starts_validation
            && state.admitted.is_none()
            && let Ok(permit) = state.ctx.admission.clone().acquire_owned().await
        {
            state.admitted = Some(permit);
        }
        let span = state.span.clone();
        let (started, phase) = (Instant::now(), state.machine.phase);
        // Boxed: the handler's state machine (validation, Job creation, ...)
        // is large, and ractor embeds `handle`'s future in every actor's
        // task. Boxed, an idle actor (thousands of them wait on Jobs) holds
        // a pointer, and the large future exists only while a message runs.
        let result = Box::pin(handle_message(myself, msg, state).instrument(span)).await;
        state
            .ctx
            .metrics
            .reconciliation_duration
            .with_label_values(&[phase.as_str()])
            .observe(started.elapsed().as_secs_f64());
        if state.machine.phase != Phase::Validating
            || state.status.reason.as_deref() == Some(reasons::WAITING_FOR_TARGET)
        {
            // Validated (or still Pending, paused), or waiting for a busy
            // target (validation is done; waiters must not starve the
            // executions of other targets): give the permit back.
            state.admitted = None;
        }
        result
    }
}

/// Handles one message inside the execution's span.
async fn handle_message(
    myself: ExecutionRef,
    msg: ExecutionMsg,
    state: &mut ExecutionState,
) -> Result<(), ActorProcessingErr> {
    {
        let start = Instant::now();
        match msg {
            ExecutionMsg::Observed(exec) => {
                let deleting = exec.metadata.deletion_timestamp.is_some();
                state.exec = *exec;
                if state.ctx.settings.chaos
                    && state.restarts == 0
                    && state
                        .exec
                        .annotations()
                        .contains_key(CHAOS_PANIC_ANNOTATION)
                {
                    panic!("chaos: injected panic in {}", state.name);
                }
                if deleting && !state.machine.deleting {
                    run(&myself, state, Event::Deleted).await;
                }
            }
            ExecutionMsg::PostconditionsDone(results) => {
                if state.verifier.take().is_some() {
                    let outcome = crate::decide::postconditions(&results);
                    record_conditions(&mut state.status, ConditionPhase::Post, results);
                    run(&myself, state, Event::Verified(outcome)).await;
                }
            }
            ExecutionMsg::FlushStatus => {
                if state.unwritten && !state.machine.phase.is_terminal() {
                    effects::persist(state).await;
                }
            }
            ExecutionMsg::RespawnVerifier => {
                if let Some(args) = state.verifier.clone()
                    && let Err(e) = spawn_verifier(args).await
                {
                    tracing::warn!(error = %e, "cannot restart the verifier; retrying");
                    post_after(
                        &state.ctx.registry,
                        &myself,
                        Duration::from_millis(200),
                        || ExecutionMsg::RespawnVerifier,
                    );
                }
            }
            ExecutionMsg::Gone => {
                if !state.machine.deleting {
                    run(&myself, state, Event::Deleted).await;
                }
            }
            ExecutionMsg::JobChanged(job) => {
                if let Some(ev) = Box::pin(job_changed(state, &job)).await {
                    run(&myself, state, ev).await;
                }
            }
            ExecutionMsg::JobDeleted(job) => {
                if let Some(ev) = Box::pin(job_deleted(state, &job)).await {
                    run(&myself, state, ev).await;
                }
            }
            ExecutionMsg::Machine(ev) => {
                let ev = *ev;
                let chaos = state.exec.annotations().get(CHAOS_PANIC_ANNOTATION);
                if matches!(ev, Event::Resume)
                    && state.ctx.settings.chaos
                    && chaos.is_some_and(|p| {
                        // `always`: every life panics (the supervisor gives up).
                        p == "always" || (state.restarts == 0 && p == state.machine.phase.as_str())
                    })
                {
                    panic!(
                        "chaos: injected panic in {} at {}",
                        state.name, state.machine.phase
                    );
                }
                let held = matches!(ev, Event::Resume)
                    && state.machine.phase == Phase::Pending
                    && Box::pin(paused(&myself, state)).await;
                if !held {
                    run(&myself, state, ev).await;
                }
            }
        }
        state
            .life
            .handled(start, Some(state.machine.phase.as_str()));
        Ok(())
    }
}

/// Feeds `first` (and every event its effects produce) through the machine.
async fn run(myself: &ExecutionRef, state: &mut ExecutionState, first: Event) {
    let mut queue = std::collections::VecDeque::from([first]);
    while let Some(ev) = queue.pop_front() {
        let (next, effects) = transition(&state.machine, ev);
        for fx in effects {
            if let Some(ev) = execute(myself, state, fx).await {
                queue.push_back(ev);
            }
        }
        state.machine = next;
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn uid(state: &ExecutionState) -> String {
    state.exec.uid().unwrap_or_default()
}

/// The validated action: from this actor's validation, or (after a restart
/// past Validating) re-derived from the immutable spec.
fn validated(state: &ExecutionState) -> Option<ValidatedAction> {
    state.validated.clone().or_else(|| {
        validate(
            &state.exec.spec,
            &state.exec.namespace().unwrap_or_default(),
        )
        .ok()
    })
}

fn execution_id(state: &ExecutionState) -> crate::rbac::ExecutionId {
    crate::rbac::ExecutionId {
        namespace: state.exec.namespace().unwrap_or_default(),
        name: state.exec.name_any(),
        uid: uid(state),
    }
}

fn current_job_name(state: &ExecutionState) -> String {
    state
        .status
        .job_name
        .clone()
        .unwrap_or_else(|| job_name(&uid(state), 1))
}
