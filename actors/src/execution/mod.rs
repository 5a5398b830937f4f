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
use crate::k8s::{ApiError, PATIENCE, retry, retry_for};
use crate::machine::{
    Effect, Event, JobOutcome, MachineState, Plan, Refusal, StatusChange, transition,
};
use crate::policy::{PolicyMsg, policy_input};
use crate::rbac::RbacMsg;

mod authorize;
mod conditions;
mod job_outcome;
mod start;
mod validation;
mod verify;
use crate::registry::{Lifecycle, post, post_after};
pub use authorize::namespace_listed;
use conditions::{condition_input, evaluate_once, record_conditions};
use job_outcome::{existing_job, job_event};
use start::{Created, ask_rbac, create_job, lock_name};
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
}

/// State of an ExecutionActor.
pub struct ExecutionState {
    exec: KubernetesExecution,
    status: KubernetesExecutionStatus,
    machine: MachineState,
    validated: Option<ValidatedAction>,
    phase_since: Instant,
    timeout_armed: bool,
    /// The verifier's arguments while postconditions are being verified
    /// (the verifier is a linked child: it stops with this actor).
    verifier: Option<VerifierArgs>,
    job_created: Option<Instant>,
    finalizer_added: bool,
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
            api: args.ctx.api.for_execution(&exec.uid().unwrap_or_default()),
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
        let span = tracing::info_span!("execution", key = %exec.key(), uid = %exec.uid().unwrap_or_default(), requester = %requester);
        let machine = MachineState {
            phase: status.phase.unwrap_or_default(),
            deleting: false,
        };
        let parent = ctx.peers.name(crate::peers::Singleton::Supervisor);
        let life = Lifecycle::enter(
            &ctx.registry,
            &ctx.metrics,
            "execution",
            &name,
            Some(&parent),
            Some(exec.key()),
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
        let resumed_in_validating = machine.phase == Phase::Validating;
        Ok(ExecutionState {
            exec,
            status,
            machine,
            validated: None,
            phase_since: Instant::now(),
            timeout_armed: false,
            verifier: None,
            job_created: None,
            finalizer_added: false,
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
        // Boxed: the handler's state machine (validation, Job creation, ...)
        // is large, and ractor embeds `handle`'s future in every actor's
        // task. Boxed, an idle actor (thousands of them wait on Jobs) holds
        // a pointer, and the large future exists only while a message runs.
        let result = Box::pin(handle_message(myself, msg, state).instrument(span)).await;
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
            ExecutionMsg::JobChanged(job) => {
                if let Some(ev) = job_event(state, &job).await {
                    run(&myself, state, ev).await;
                }
            }
            ExecutionMsg::JobDeleted(job) => {
                // Finished before it went: its outcome stands. Deleted while
                // running (by someone else: the operator deletes Jobs only
                // when the execution is deleted): the action's outcome is
                // unknown, and the execution fails now, not at its timeout.
                let ev = match job_event(state, &job).await {
                    Some(ev) => Some(ev),
                    None if state.machine.phase == Phase::Executing
                        && !state.machine.deleting
                        && job.name_any() == current_job_name(state) =>
                    {
                        Some(Event::JobFinished(JobOutcome::Missing))
                    }
                    None => None,
                };
                if let Some(ev) = ev {
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
                    && paused(&myself, state).await;
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

/// Executes one effect; may produce the next machine event.
async fn execute(myself: &ExecutionRef, state: &mut ExecutionState, fx: Effect) -> Option<Event> {
    let ctx = state.ctx.clone();
    match fx {
        Effect::Transition(change) => {
            write_transition(state, &change).await;
            None
        }
        Effect::Validate => {
            if std::mem::take(&mut state.resumed_in_validating)
                && let Some(job) = existing_job(state).await
            {
                // A previous life created the Job and crashed before
                // recording Executing: adopt it and record its real
                // outcome, whatever validation would say now (the Job may
                // have deleted the target already).
                state.validated = validated(state);
                let name = job.name_any();
                tracing::info!(job = %name, "adopting the Job of a previous life");
                post(
                    &ctx.registry,
                    myself,
                    ExecutionMsg::JobChanged(Box::new(job)),
                );
                return Some(Event::JobCreated { job_name: name });
            }
            Some(Event::Validated(validate_all(state).await))
        }
        Effect::CreateJob => match create_job(state).await {
            Ok(Created::Job(job)) => {
                // The Job may be one created before a restart, and may even be
                // finished already (its watch event went to no actor): look at it.
                let name = job.name_any();
                post(&ctx.registry, myself, ExecutionMsg::JobChanged(job));
                Some(Event::JobCreated { job_name: name })
            }
            Ok(Created::Busy(holder)) => busy(myself, state, holder),
            // Could not create the Job for a permanent reason: fail as validation does.
            Err(refusal) => Some(Event::Validated(Err(refusal))),
        },
        Effect::ObserveJob => {
            let name = current_job_name(state);
            match retry_for(PATIENCE, || ctx.api.get_job(&name)).await {
                Ok(Some(job)) => job_event(state, &job).await,
                Ok(None) => Some(Event::JobFinished(JobOutcome::Missing)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read job; waiting for the job watch");
                    None
                }
            }
        }
        Effect::ArmTimeout => {
            if !state.timeout_armed {
                state.timeout_armed = true;
                let (timeout, elapsed) = timeout_and_elapsed(state);
                let remaining = (timeout + ctx.settings.timeout_grace).saturating_sub(elapsed);
                post_after(&ctx.registry, myself, remaining, || {
                    ExecutionMsg::Machine(Box::new(Event::TimedOut))
                });
            }
            None
        }
        Effect::Verify => {
            let v = validated(state)?;
            let (_, post) = crate::catalog::effective_conditions(v.action, &state.exec.spec);
            if post.is_empty() {
                // Nothing declared: the Job's success is the verification.
                return Some(Event::Verified(Ok(())));
            }
            if state.verifier.is_none() {
                // Polling can take minutes: a supervised child does it.
                let args = VerifierArgs {
                    ctx: state.ctx.clone(),
                    exec: state.exec.clone(),
                    validated: v,
                    post,
                    parent: myself.clone(),
                    restarts: 0,
                };
                state.verifier = Some(args.clone());
                if let Err(e) = spawn_verifier(args).await {
                    tracing::warn!(error = %e, "cannot start the verifier; retrying");
                    post_after(&ctx.registry, myself, Duration::from_millis(200), || {
                        ExecutionMsg::RespawnVerifier
                    });
                }
            }
            None
        }
        Effect::DeleteJob => {
            let name = current_job_name(state);
            if let Err(e) = retry_for(PATIENCE, || ctx.api.delete_job(&name)).await {
                tracing::warn!(error = %e, job = %name, "failed to delete job");
            }
            None
        }
        Effect::ReleaseGrants => {
            if state.exec.spec.dry_run || state.released {
                // A dry run never takes a lock, a grant or a params Secret
                // (the spec is immutable): nothing to release. Released
                // already in this actor's life: nothing left either.
                return None;
            }
            state.released = true;
            // Re-derived from the spec after a restart: once, not per grant.
            let v = validated(state);
            if let Some(name) = v.as_ref().and_then(|v| lock_name(state, v)) {
                let exec_uid = uid(state);
                let how = crate::k8s::leases::Release::Delete;
                if let Err(e) =
                    retry_for(PATIENCE, || ctx.api.release_lease(&name, &exec_uid, how)).await
                {
                    tracing::warn!(error = %e, "failed to release the target lock (it expires)");
                }
            }
            let (action, target_ns) = match v {
                Some(v) => (Some(v.action), v.target.namespace),
                None => (None, None),
            };
            let exec = execution_id(state);
            let revoked = ask_rbac(&ctx, |reply| RbacMsg::Revoke {
                action,
                target_ns: target_ns.clone(),
                exec: exec.clone(),
                reply,
            })
            .await;
            if let Err(e) = revoked {
                tracing::warn!(error = %e, "failed to revoke the just-in-time grants (the janitor sweeps them)");
            }
            None
        }
        Effect::RemoveFinalizer => {
            // The finalizer is added only by ensure_finalizer (this life) or
            // was there when this actor started (an earlier life): if neither,
            // there is nothing to remove and no request to make.
            if !state.finalizer_added
                && !state
                    .exec
                    .finalizers()
                    .iter()
                    .any(|f| f == kubernetes_executor_crds::FINALIZER)
            {
                return None;
            }
            let (ns, name) = (
                state.exec.namespace().unwrap_or_default(),
                state.exec.name_any(),
            );
            if let Err(e) = retry_for(PATIENCE, || ctx.api.remove_finalizer(&ns, &name)).await {
                tracing::warn!(error = %e, "failed to remove finalizer");
            }
            None
        }
        Effect::Stop => {
            myself.stop(Some(FINISHED.into()));
            None
        }
    }
}

async fn write_transition(state: &mut ExecutionState, change: &StatusChange) {
    let from = state.status.phase.unwrap_or_default();
    let span =
        tracing::info_span!("transition", from = %from, to = %change.phase, reason = change.reason);
    write_transition_in_span(state, change, from)
        .instrument(span)
        .await
}

async fn write_transition_in_span(state: &mut ExecutionState, change: &StatusChange, from: Phase) {
    let ctx = state.ctx.clone();
    let generation = state.exec.metadata.generation;
    crate::status::apply(&mut state.status, change, now(), generation);
    let (ns, name) = (
        state.exec.namespace().unwrap_or_default(),
        state.exec.name_any(),
    );
    let status = state.status.clone();
    match retry_for(Duration::MAX, || ctx.api.write_status(&ns, &name, &status)).await {
        // The freshest version of the object (its resourceVersion lets the
        // finalizer patch go without a read first).
        Ok(written) => state.exec = written,
        Err(ApiError::NotFound { .. }) => return,
        Err(e) => {
            tracing::error!(error = %e, "failed to write status");
            return;
        }
    }
    if from != change.phase {
        ctx.metrics
            .phase_transitions
            .with_label_values(&[from.as_str(), change.phase.as_str()])
            .inc();
        ctx.metrics
            .reconciliation_duration
            .with_label_values(&[from.as_str()])
            .observe(state.phase_since.elapsed().as_secs_f64());
        state.phase_since = Instant::now();
        state
            .life
            .transition(format!("{from}→{} {}", change.phase, change.reason));
        if change.phase.is_terminal() {
            ctx.metrics
                .executions_finished
                .with_label_values(&[change.phase.as_str(), change.reason])
                .inc();
        }
        tracing::info!(from = %from, to = %change.phase, reason = change.reason, message = %change.message, "phase transition");
        // Entering Validating is routine (status shows it); Events record
        // outcomes and milestones — one request less per execution.
        if change.phase == Phase::Validating {
            return;
        }
        let warning = change.phase == Phase::Failed;
        ctx.api
            .event(
                &state.exec,
                warning,
                change.reason,
                format!(
                    "{from} → {}: {} (requested by {})",
                    change.phase,
                    change.message,
                    state
                        .exec
                        .spec
                        .requester
                        .as_ref()
                        .map(|r| r.username.as_str())
                        .unwrap_or("nobody recorded")
                ),
            )
            .await;
    }
}

/// Kill switch: a Pending execution does not start while new executions are
/// paused (globally or in its namespace); it looks again every 2 s.
async fn paused(myself: &ExecutionRef, state: &mut ExecutionState) -> bool {
    // The execution's namespace and the target's: a paused namespace is
    // protected from executions created elsewhere too.
    let exec_ns = state.exec.namespace().unwrap_or_default();
    let mut namespaces = vec![exec_ns.clone()];
    if let Some(target_ns) = validate(&state.exec.spec, &exec_ns)
        .ok()
        .and_then(|v| v.target.namespace)
        .filter(|ns| *ns != exec_ns)
    {
        namespaces.push(target_ns);
    }
    let mut why = None;
    for ns in &namespaces {
        // The watched view first; the API when it is not synced.
        let operator_ns = state.ctx.api.namespace();
        let watched = state
            .ctx
            .views
            .as_ref()
            .and_then(|v| v.paused(operator_ns, ns));
        let answer = match watched {
            Some(a) => Ok(a),
            None => retry(3, || state.ctx.api.paused(ns)).await,
        };
        match answer {
            Ok(None) => {}
            Ok(Some(w)) => {
                why = Some(w);
                break;
            }
            Err(e) => {
                why = Some(format!("cannot read the kill switch ({e}); not starting"));
                break;
            }
        }
    }
    let Some(why) = why else { return false };
    if state.status.reason.as_deref() != Some(reasons::PAUSED)
        || state.status.message.as_deref() != Some(why.as_str())
    {
        run(myself, state, Event::Paused(why)).await;
    }
    post_after(
        &state.ctx.registry,
        myself,
        crate::tunables::PAUSE_POLL,
        || ExecutionMsg::Machine(Box::new(Event::Resume)),
    );
    true
}

/// The action's timeout and the time since the execution started (its
/// `status.startTime`; now, if it has none yet).
fn timeout_and_elapsed(state: &ExecutionState) -> (Duration, Duration) {
    let timeout = validated(state)
        .map(|v| v.timeout)
        .unwrap_or(crate::catalog::MAX_TIMEOUT);
    let started = state
        .status
        .start_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    (
        timeout,
        crate::decide::elapsed_since(started, Timestamp::now()),
    )
}

/// The target lock is held by another execution: wait (bounded by the
/// timeout) or fail, per `spec.onTargetBusy`.
fn busy(
    myself: &ExecutionRef,
    state: &mut ExecutionState,
    holder: crate::lock::Holder,
) -> Option<Event> {
    let target = state.status.target.clone().unwrap_or_default();
    let (timeout, waited) = timeout_and_elapsed(state);
    let policy = state.exec.spec.on_target_busy.unwrap_or_default();
    match crate::decide::busy(policy, &target, &holder.key, waited, timeout) {
        crate::decide::Busy::Fail(rejection) => Some(Event::Validated(Err(Refusal {
            rejection,
            decision: None,
            action: state.status.resolved_action.clone(),
            target: Some(target),
        }))),
        crate::decide::Busy::Wait(what) => {
            post_after(
                &state.ctx.registry,
                myself,
                crate::tunables::BUSY_POLL,
                || ExecutionMsg::Machine(Box::new(Event::RetryCreateJob)),
            );
            // Recorded once; later tries wait silently.
            (state.status.reason.as_deref() != Some(reasons::WAITING_FOR_TARGET))
                .then_some(Event::TargetBusy(what))
        }
    }
}
