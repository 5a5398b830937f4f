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
    ActionCondition, ConditionPhase, ConditionResult, ExecutionResult, KubernetesExecution,
    KubernetesExecutionStatus, Phase, PolicyDecision, TargetSnapshot, reasons,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::Instrument;

use crate::catalog::{Rejection, ValidatedAction, validate};
use crate::context::{Context, Ctx};
use crate::job::{ActionOutput, build_job, job_name};
use crate::kube_api::{ApiError, PATIENCE, retry, retry_for};
use crate::machine::{
    Effect, Event, JobOutcome, MachineState, Plan, Refusal, StatusChange, transition,
};
use crate::policy::{ConditionOutcome, PolicyMsg, policy_input};
use crate::rbac::RbacMsg;

mod authorize;
pub use authorize::namespace_listed;

/// Annotation read by the chaos knob (see [`crate::context::Settings::chaos`]).
pub const CHAOS_PANIC_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/chaos-panic";
/// Chaos knob: Job creation "fails" although the server created the Job
/// (its answer lost), in the actor's first life.
pub const CHAOS_CREATE_LOST_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/chaos-create-lost";
/// Chaos knob: the first life of the actor panics right after creating the
/// Job, before `Executing` is recorded (a crash at the worst moment).
pub const CHAOS_CRASH_AFTER_JOB_ANNOTATION: &str =
    "kubernetesexecution.kubernaut.io/chaos-crash-after-job";

/// Registered name of the actor of the execution with `uid`. By UID, not
/// by name: a name can be 253 characters, longer than a label value, and the
/// Job watcher routes by the UID label of the Job.
pub fn actor_name(uid: &str) -> String {
    format!("exec/{uid}")
}

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
    /// The postcondition verification task finished.
    PostconditionsDone(Vec<ConditionResult>),
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
    verifying: bool,
    /// The postcondition polling task, aborted when the actor stops (the
    /// execution ended, timed out or was deleted).
    verify_task: Option<AbortOnDrop>,
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
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        let name = actor_name(&exec.uid().unwrap_or_default());
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
        args.ctx
            .metrics
            .live_actors
            .with_label_values(&["execution"])
            .inc();
        let mut info = crate::context::ActorInfo::new(
            "execution",
            name.clone(),
            Some(exec.key()),
            args.restarts,
        );
        info.phase = Some(machine.phase.to_string());
        args.ctx.registry.insert(info);
        let deleting = exec.metadata.deletion_timestamp.is_some();
        let first = if deleting {
            Event::Deleted
        } else {
            Event::Resume
        };
        myself.cast(ExecutionMsg::Machine(Box::new(first)))?;
        let resumed_in_validating = machine.phase == Phase::Validating;
        Ok(ExecutionState {
            exec,
            status,
            machine,
            validated: None,
            phase_since: Instant::now(),
            timeout_armed: false,
            verifying: false,
            verify_task: None,
            job_created: None,
            finalizer_added: false,
            released: false,
            admitted: None,
            restarts: args.restarts,
            resumed_in_validating,
            ctx,
            name,
            span,
        })
    }

    async fn post_stop(
        &self,
        _myself: ExecutionRef,
        state: &mut ExecutionState,
    ) -> Result<(), ActorProcessingErr> {
        // Postcondition polling stops with the execution (also when the
        // actor fails: the guard aborts it when the state is dropped).
        state.verify_task = None;
        state
            .ctx
            .metrics
            .live_actors
            .with_label_values(&["execution"])
            .dec();
        state.ctx.registry.remove(&state.name);
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
                state.verifying = false;
                record_conditions(&mut state.status, ConditionPhase::Post, results.clone());
                let failed: Vec<String> = results
                    .iter()
                    .filter(|r| r.required && !r.passed)
                    .map(|r| {
                        format!(
                            "{} ({}): {}",
                            r.name,
                            r.outcome.clone().unwrap_or_default(),
                            r.message.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                let outcome = if failed.is_empty() {
                    Ok(())
                } else {
                    Err(Rejection::new(
                        reasons::POSTCONDITION_FAILED,
                        format!(
                            "required postconditions did not hold: {}",
                            failed.join("; ")
                        ),
                    ))
                };
                run(&myself, state, Event::Verified(outcome)).await;
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
            .ctx
            .registry
            .touch(&state.name, Some(state.machine.phase.as_str()));
        state
            .ctx
            .metrics
            .message_handling
            .with_label_values(&["execution"])
            .observe(start.elapsed().as_secs_f64());
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
                let _ = myself.cast(ExecutionMsg::JobChanged(Box::new(job)));
                return Some(Event::JobCreated { job_name: name });
            }
            Some(Event::Validated(validate_all(state).await))
        }
        Effect::CreateJob => match create_job(state).await {
            Ok(Created::Job(job)) => {
                // The Job may be one created before a restart, and may even be
                // finished already (its watch event went to no actor): look at it.
                let name = job.name_any();
                let _ = myself.cast(ExecutionMsg::JobChanged(job));
                Some(Event::JobCreated { job_name: name })
            }
            Ok(Created::Busy(holder)) => busy(myself, state, holder).await,
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
                myself.send_after(remaining, || {
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
            if !state.verifying {
                state.verifying = true;
                // Polling can take minutes: run it in a task that messages back.
                let (ctx, me, exec) = (state.ctx.clone(), myself.clone(), state.exec.clone());
                let task = tokio::spawn(async move {
                    let results = verify_postconditions(&ctx, &exec, &v, &post).await;
                    let _ = me.cast(ExecutionMsg::PostconditionsDone(results));
                });
                state.verify_task = Some(AbortOnDrop(task.abort_handle()));
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
                if let Err(e) = retry_for(PATIENCE, || ctx.api.release_lock(&name, &exec_uid)).await
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
                target_ns,
                exec,
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
            myself.stop(Some(crate::supervisor::FINISHED.into()));
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
        ctx.registry.transition(
            &state.name,
            format!("{from}→{} {}", change.phase, change.reason),
        );
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
        match retry(3, || state.ctx.api.paused(ns)).await {
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
        let change = StatusChange {
            phase: Phase::Pending,
            reason: reasons::PAUSED,
            message: why,
            ..Default::default()
        };
        write_transition(state, &change).await;
    }
    myself.send_after(Duration::from_secs(2), || {
        ExecutionMsg::Machine(Box::new(Event::Resume))
    });
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
    (timeout, elapsed_since(started, Timestamp::now()))
}

/// Time from `started` to `now`; zero when `started` lies in the future (a
/// clock ahead on the replica that wrote it must not time an execution out).
fn elapsed_since(started: Timestamp, now: Timestamp) -> Duration {
    let d = now.duration_since(started);
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

/// The target lock is held by another execution: wait (bounded by the
/// timeout) or fail, per `spec.onTargetBusy`.
async fn busy(
    myself: &ExecutionRef,
    state: &mut ExecutionState,
    holder: crate::lock::Holder,
) -> Option<Event> {
    let target = state.status.target.clone().unwrap_or_default();
    let (timeout, waited) = timeout_and_elapsed(state);
    let policy = state.exec.spec.on_target_busy.unwrap_or_default();
    if policy == kubernetes_executor_crds::TargetBusyPolicy::Fail || waited >= timeout {
        let message = if policy == kubernetes_executor_crds::TargetBusyPolicy::Fail {
            format!(
                "target {target} is being changed by execution {}",
                holder.key
            )
        } else {
            format!(
                "target {target} stayed locked by execution {} for {}s (the timeout)",
                holder.key,
                waited.as_secs()
            )
        };
        return Some(Event::Validated(Err(Refusal {
            rejection: Rejection::new(reasons::TARGET_BUSY, message),
            decision: None,
            action: state.status.resolved_action.clone(),
            target: Some(target),
        })));
    }
    if state.status.reason.as_deref() != Some(reasons::WAITING_FOR_TARGET) {
        let change = StatusChange {
            phase: Phase::Validating,
            reason: reasons::WAITING_FOR_TARGET,
            message: format!(
                "waiting for execution {} to release target {target}",
                holder.key
            ),
            ..Default::default()
        };
        write_transition(state, &change).await;
    }
    myself.send_after(Duration::from_millis(500), || {
        ExecutionMsg::Machine(Box::new(Event::RetryCreateJob))
    });
    None
}

/// Catalog, target and policy validation. Produces the plan or the refusal.
async fn validate_all(state: &mut ExecutionState) -> Result<Plan, Refusal> {
    let ctx = state.ctx.clone();
    let exec_ns = state.exec.namespace().unwrap_or_default();
    let v = validate(&state.exec.spec, &exec_ns)?;
    let action = v.action.name.to_string();
    let target = v.target.display();
    let with = |rejection: Rejection, decision: Option<PolicyDecision>| Refusal {
        rejection,
        decision,
        action: Some(action.clone()),
        target: Some(target.clone()),
    };
    // Who may ask: the requester, in the target's scope, before anything
    // about the target is read, locked, granted or run.
    authorize::authorize(&ctx, &state.exec, &v)
        .await
        .map_err(|r| with(r, None))?;
    authorize::inline_conditions_allowed(&ctx.settings.inline_conditions, &state.exec)
        .map_err(|r| with(r, None))?;
    let (pre, _) = crate::catalog::effective_conditions(v.action, &state.exec.spec);
    // With preconditions on a Deployment, read the whole object once: its
    // metadata for validation and the object itself for the condition state.
    let mut deployment = None;
    let target_read = if !pre.is_empty() && v.target.kind == "Deployment" {
        let ns = v.target.namespace.clone().unwrap_or_default();
        retry_for(PATIENCE, || ctx.api.get_deployment(&ns, &v.target.name))
            .await
            .map(|d| {
                d.map(|d| {
                    let meta = crate::kube_api::TargetMeta {
                        uid: d.metadata.uid.clone().unwrap_or_default(),
                        resource_version: d.metadata.resource_version.clone(),
                        labels: d.metadata.labels.clone().unwrap_or_default(),
                    };
                    deployment = Some(d);
                    meta
                })
            })
    } else if v.target.kind == "Secret" {
        // The operator may not read Secrets outside its namespace (not even
        // their metadata): the Job, under its just-in-time grant, checks the
        // target exists. Policies see no labels of Secret targets.
        Ok(Some(crate::kube_api::TargetMeta::default()))
    } else {
        retry_for(PATIENCE, || {
            ctx.api.get_target_meta(
                &v.target.kind,
                v.target.namespace.as_deref(),
                &v.target.name,
            )
        })
        .await
    };
    let meta = match target_read {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Err(with(
                Rejection::new(
                    reasons::TARGET_NOT_FOUND,
                    format!("target {target} does not exist"),
                ),
                None,
            ));
        }
        Err(e) => {
            return Err(with(
                Rejection::new(
                    reasons::INTERNAL_ERROR,
                    format!("cannot read target {target}: {e}"),
                ),
                None,
            ));
        }
    };
    let input = policy_input(&state.exec, &v, &meta.labels, ctx.api.namespace());
    let verdict = ctx
        .policy
        .call(
            |reply| PolicyMsg::Evaluate {
                input,
                action: action.clone(),
                reply,
            },
            Some(Duration::from_secs(10)),
        )
        .await;
    let verdict = match verdict {
        Ok(ractor::rpc::CallResult::Success(v)) => v,
        other => {
            let msg = format!(
                "policy evaluation unavailable ({:?}); failing closed",
                other.map(|_| ())
            );
            return Err(with(Rejection::new(reasons::POLICY_UNAVAILABLE, msg), None));
        }
    };
    let decision = PolicyDecision {
        allowed: verdict.allowed(),
        policy_set_digest: verdict.digest.clone(),
        violations: verdict.violations.clone(),
        evaluated_at: Some(now()),
    };
    if let Some(err) = verdict.error {
        return Err(with(
            Rejection::new(
                reasons::POLICY_UNAVAILABLE,
                format!("policy evaluation failed: {err}"),
            ),
            Some(decision),
        ));
    }
    if !decision.allowed {
        let msg = format!("denied by policy: {}", decision.violations.join("; "));
        return Err(with(
            Rejection::new(reasons::POLICY_DENIED, msg),
            Some(decision),
        ));
    }
    if !pre.is_empty() {
        let input = condition_input(&ctx, &state.exec, &v, &meta.labels, deployment.as_ref())
            .await
            .map_err(|e| {
                with(
                    Rejection::new(
                        reasons::PRECONDITION_FAILED,
                        format!("cannot read cluster state for preconditions: {e}"),
                    ),
                    Some(decision.clone()),
                )
            })?;
        let mut results = Vec::new();
        for c in &pre {
            results.push(evaluate_once(&ctx, c, &input, ConditionPhase::Pre).await);
        }
        // A required precondition that does not hold yet is evaluated again
        // (fresh cluster state, backoff) until its own `timeout` — `0s`, the
        // catalog default, means once. Bounded by the execution's timeout.
        let limit = |c: &ActionCondition| {
            c.timeout
                .as_deref()
                .and_then(|t| crate::duration::parse_duration(t).ok())
                .unwrap_or_default()
                .min(v.timeout)
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let waiting: Vec<usize> = (0..pre.len())
                .filter(|&i| {
                    results[i].required
                        && !results[i].passed
                        && started.elapsed() + delay <= limit(&pre[i])
                })
                .collect();
            if waiting.is_empty() {
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(4));
            let Ok(input) = condition_input(&ctx, &state.exec, &v, &meta.labels, None).await else {
                continue;
            };
            for i in waiting {
                results[i] = evaluate_once(&ctx, &pre[i], &input, ConditionPhase::Pre).await;
            }
        }
        record_conditions(&mut state.status, ConditionPhase::Pre, results.clone());
        if let Some(failed) = results.iter().find(|r| r.required && !r.passed) {
            let msg = format!(
                "required precondition {} did not hold: {}",
                failed.name,
                failed.message.clone().unwrap_or_default()
            );
            return Err(with(
                Rejection::new(reasons::PRECONDITION_FAILED, msg),
                Some(decision),
            ));
        }
    }
    let snapshot = (!meta.uid.is_empty()).then(|| TargetSnapshot {
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
    });
    let dry_run = state.exec.spec.dry_run;
    let output = dry_run.then(|| {
        format!(
            "would run {} on {} with {}",
            action,
            target,
            if v.params.is_empty() {
                "no parameters".to_string()
            } else {
                v.params
                    .iter()
                    .map(|(k, val)| {
                        if v.action.param(k).is_some_and(|p| p.secret) {
                            format!("{k}=<redacted>")
                        } else {
                            format!("{k}={val}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    });
    state.validated = Some(v);
    Ok(Plan {
        dry_run,
        action,
        target,
        snapshot,
        decision: Some(decision),
        output,
    })
}

#[allow(clippy::result_large_err)]
/// What creating the Job came to.
enum Created {
    /// The Job exists (created now, or found from before a restart).
    Job(Box<Job>),
    /// Another execution holds the target lock.
    Busy(crate::lock::Holder),
}

/// Name of this execution's target lock, for mutating non-dry-run actions.
fn lock_name(state: &ExecutionState, v: &ValidatedAction) -> Option<String> {
    if !v.action.mutating || state.exec.spec.dry_run {
        return None;
    }
    let target_uid = state
        .status
        .target_snapshot
        .as_ref()
        .map(|s| s.uid.clone())
        .unwrap_or_default();
    Some(crate::lock::lease_name(
        &v.target.kind,
        v.target.namespace.as_deref(),
        &v.target.name,
        &target_uid,
    ))
}

/// Adds the finalizer (compare-and-swap on resourceVersion; re-reads on conflict).
async fn ensure_finalizer(state: &mut ExecutionState) -> Result<(), ApiError> {
    let ctx = state.ctx.clone();
    let (ns, name) = (
        state.exec.namespace().unwrap_or_default(),
        state.exec.name_any(),
    );
    let mut last = None;
    for attempt in 0..5 {
        // First try the version this actor last wrote or saw; read only on conflict.
        if attempt > 0
            && let Some(fresh) = retry_for(PATIENCE, || ctx.api.get_execution(&ns, &name)).await?
        {
            state.exec = fresh;
        }
        // A conflict means a newer version exists: read it (above) rather
        // than retrying the same stale one; other transient errors back off.
        let exec = state.exec.clone();
        let added = retry_for(PATIENCE, || async {
            match ctx.api.add_finalizer(&exec).await {
                Err(ApiError::Conflict { what, message }) => {
                    Ok(Err(ApiError::Conflict { what, message }))
                }
                other => other.map(Ok),
            }
        })
        .await?;
        match added {
            Ok(()) => {
                state.finalizer_added = true;
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ApiError::Conflict {
        what: format!("finalizer of {ns}/{name}"),
        message: "kept conflicting".into(),
    }))
}

#[allow(clippy::result_large_err)]
async fn create_job(state: &mut ExecutionState) -> Result<Created, Refusal> {
    let ctx = state.ctx.clone();
    let started = Instant::now();
    let Some(v) = state.validated.clone() else {
        return Err(Rejection::new(reasons::INTERNAL_ERROR, "no validated action to run").into());
    };
    let fail = |m: String| -> Refusal { Rejection::new(reasons::INTERNAL_ERROR, m).into() };
    ensure_finalizer(state)
        .await
        .map_err(|e| fail(format!("cannot add finalizer: {e}")))?;
    if let Some(name) = lock_name(state, &v) {
        let duration = i32::try_from((v.timeout + ctx.settings.timeout_grace).as_secs() + 60)
            .unwrap_or(i32::MAX);
        let lease = crate::lock::lease(
            &name,
            ctx.api.namespace(),
            &v.target.display(),
            &uid(state),
            &state.exec.key(),
            duration,
            Timestamp::now(),
        );
        let exec_uid = uid(state);
        // Waiting costs no request while a live execution of this operator
        // holds the lock (watched Leases, the live-actor registry); the API
        // is asked when the lock looks free, expired, or held by someone
        // this operator does not run (a vanished holder is taken over there).
        if let Some(h) = ctx
            .locks
            .as_ref()
            .and_then(|l| l.holder(&name, Timestamp::now()))
            && h.uid != exec_uid
            && !h.expired
            && ctx.registry.contains(&actor_name(&h.uid))
        {
            return Ok(Created::Busy(h));
        }
        match retry_for(PATIENCE, || ctx.api.acquire_lock(&lease, &exec_uid)).await {
            Ok(crate::kube_api::LockOutcome::Acquired) => {}
            Ok(crate::kube_api::LockOutcome::Busy(h)) => return Ok(Created::Busy(h)),
            Err(e) => return Err(fail(format!("cannot take the target lock: {e}"))),
        }
    }
    let exec = execution_id(state);
    let target_ns = v.target.namespace.clone();
    let action = v.action;
    ask_rbac(&ctx, |reply| RbacMsg::Grant {
        action,
        target_ns,
        exec,
        reply,
    })
    .await
    .map_err(|e| fail(format!("cannot grant the action's ServiceAccount: {e}")))?;
    let expected = state.status.target_snapshot.clone();
    // The Job's deadline is what remains of the timeout (time spent waiting
    // for the target lock is already gone), in whole seconds.
    let (timeout, elapsed) = timeout_and_elapsed(state);
    let remaining = Duration::from_secs(timeout.saturating_sub(elapsed).as_secs());
    if remaining.is_zero() {
        return Err(Rejection::new(
            reasons::TIMEOUT,
            format!(
                "the timeout ({}s) passed before the Job could start",
                timeout.as_secs()
            ),
        )
        .into());
    }
    let v = ValidatedAction {
        timeout: remaining,
        ..v
    };
    let job = build_job(&state.exec, &v, expected.as_ref(), &ctx.settings.job);
    let mut outcome = retry_for(PATIENCE, || ctx.api.create_job(&job)).await;
    if ctx.settings.chaos
        && state.restarts == 0
        && state
            .exec
            .annotations()
            .contains_key(CHAOS_CREATE_LOST_ANNOTATION)
        && outcome.is_ok()
    {
        // Chaos: the server created the Job but its answer was lost.
        outcome = Err(ApiError::Invalid {
            what: "create job".into(),
            message: "chaos: the answer to the create was lost".into(),
        });
    }
    let created = match outcome {
        Ok(j) => j,
        // "Failed" after retries may still have been created by the server.
        Err(e) => match existing_job(state).await {
            Some(j) => j,
            None => return Err(fail(format!("cannot create Job: {e}"))),
        },
    };
    if ctx.settings.chaos
        && state.restarts == 0
        && state
            .exec
            .annotations()
            .contains_key(CHAOS_CRASH_AFTER_JOB_ANNOTATION)
    {
        panic!("chaos: crash after creating Job {}", created.name_any());
    }
    ctx.metrics
        .job_creation_duration
        .observe(started.elapsed().as_secs_f64());
    state.job_created = Some(Instant::now());
    Ok(Created::Job(Box::new(created)))
}

/// Asks the RbacActor for a grant or revocation; its answer, or why there
/// was none.
async fn ask_rbac(
    ctx: &Ctx,
    msg: impl FnOnce(ractor::RpcReplyPort<Result<(), String>>) -> RbacMsg,
) -> Result<(), String> {
    match ctx.rbac.call(msg, Some(Duration::from_secs(30))).await {
        Ok(ractor::rpc::CallResult::Success(result)) => result,
        other => Err(format!("RBAC actor unavailable: {:?}", other.map(|_| ()))),
    }
}

/// This execution's Job, if one exists (deterministic name, matching UID label).
async fn existing_job(state: &ExecutionState) -> Option<Job> {
    let name = job_name(&uid(state), 1);
    match retry_for(PATIENCE, || state.ctx.api.get_job(&name)).await {
        Ok(Some(job))
            if job
                .labels()
                .get(kubernetes_executor_crds::labels::EXECUTION_UID)
                == Some(&uid(state)) =>
        {
            Some(job)
        }
        _ => None,
    }
}

/// Interprets a Job's status; `Some` when it finished.
async fn job_event(state: &mut ExecutionState, job: &Job) -> Option<Event> {
    if job
        .labels()
        .get(kubernetes_executor_crds::labels::EXECUTION_UID)
        != Some(&uid(state))
    {
        return None;
    }
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let is = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    let complete = is("Complete").is_some();
    let failed = is("Failed");
    if !complete && failed.is_none() {
        return None;
    }
    // Real attempts: every pod that ran to an end (retries included).
    if let Some(st) = job.status.as_ref() {
        let n = st.failed.unwrap_or(0) + st.succeeded.unwrap_or(0);
        if n > 0 {
            state.status.attempts = Some(n);
        }
    }
    if let Some(t) = state.job_created {
        state
            .ctx
            .metrics
            .job_completion_duration
            .observe(t.elapsed().as_secs_f64());
    }
    let output = termination_output(state, &job.name_any(), complete).await;
    if complete {
        let (result, rollback) = match output {
            Some(o) => (o.result, o.rollback),
            None => (
                ExecutionResult {
                    succeeded: true,
                    ..Default::default()
                },
                None,
            ),
        };
        return Some(Event::JobFinished(JobOutcome::Succeeded {
            result,
            rollback,
        }));
    }
    let failed = failed?;
    if failed.reason.as_deref() == Some("DeadlineExceeded") {
        let message = format!(
            "the action's Job {} ran past its deadline ({}s): {}",
            job.name_any(),
            job.spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .unwrap_or_default(),
            failed.message.clone().unwrap_or_default()
        );
        return Some(Event::JobFinished(JobOutcome::DeadlineExceeded { message }));
    }
    let target_changed = output
        .as_ref()
        .is_some_and(|o| o.reason.as_deref() == Some(reasons::TARGET_CHANGED));
    let (result, rollback) = match output {
        Some(mut o) => {
            o.result.succeeded = false;
            (o.result, o.rollback)
        }
        None => (
            ExecutionResult {
                succeeded: false,
                error: Some(format!(
                    "Job {} failed ({}): {}",
                    job.name_any(),
                    failed.reason.clone().unwrap_or_default(),
                    failed.message.clone().unwrap_or_default()
                )),
                ..Default::default()
            },
            None,
        ),
    };
    Some(Event::JobFinished(JobOutcome::Failed {
        result,
        rollback,
        target_changed,
    }))
}

/// Reads the newest pod's termination message (`run-action`'s JSON output).
async fn termination_output(
    state: &ExecutionState,
    job: &str,
    succeeded: bool,
) -> Option<ActionOutput> {
    // The Job controller marked the Job finished after its informer saw the
    // pod terminate, so the API server's watch cache normally has the pod
    // already; read from it, and from etcd only if the pod looks unfinished.
    let want = if succeeded { "Succeeded" } else { "Failed" };
    let mut message = None;
    for cached in [true, false] {
        let pods = retry_for(PATIENCE, || state.ctx.api.job_pods(job, cached))
            .await
            .ok()?;
        let pod = pods
            .iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(want))
            .or_else(|| pods.first());
        message = pod
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.message.clone().unwrap_or_default());
        if message.is_some() {
            break;
        }
    }
    let message = message?;
    match serde_json::from_str::<ActionOutput>(&message) {
        Ok(o) => Some(o),
        Err(_) if message.trim().is_empty() => None,
        Err(_) => Some(ActionOutput {
            result: ExecutionResult {
                succeeded,
                error: (!succeeded).then(|| message.chars().take(1024).collect()),
                output: succeeded.then(|| message.chars().take(1024).collect()),
                ..Default::default()
            },
            rollback: None,
            reason: None,
        }),
    }
}

/// Convenience for tests and the supervisor: an `Arc` clone of the context.
pub fn ctx_of(state: &ExecutionState) -> Ctx {
    Arc::clone(&state.ctx)
}

/// Policy input with live cluster state, for pre/postconditions.
async fn condition_input(
    ctx: &Ctx,
    exec: &KubernetesExecution,
    v: &ValidatedAction,
    labels: &std::collections::BTreeMap<String, String>,
    target: Option<&k8s_openapi::api::apps::v1::Deployment>,
) -> Result<serde_json::Value, ApiError> {
    let mut input = policy_input(exec, v, labels, ctx.api.namespace());
    let cluster = retry_for(PATIENCE, || {
        ctx.api.cluster_state(
            &v.target.kind,
            v.target.namespace.as_deref(),
            &v.target.name,
            target,
        )
    })
    .await?;
    input["cluster"] = cluster;
    Ok(input)
}

/// Evaluates one condition once.
async fn evaluate_once(
    ctx: &Ctx,
    c: &ActionCondition,
    input: &serde_json::Value,
    phase: ConditionPhase,
) -> ConditionResult {
    let reply = ctx
        .policy
        .call(
            |reply| PolicyMsg::Condition {
                policy: c.policy.clone(),
                input: input.clone(),
                reply,
            },
            Some(Duration::from_secs(10)),
        )
        .await;
    let (passed, outcome, message) = match reply {
        Ok(ractor::rpc::CallResult::Success(Ok(ConditionOutcome::Holds))) => {
            (true, "Verified", "the condition holds".to_string())
        }
        Ok(ractor::rpc::CallResult::Success(Ok(ConditionOutcome::Fails(r)))) => {
            (false, "Failed", r.join("; "))
        }
        Ok(ractor::rpc::CallResult::Success(Ok(ConditionOutcome::Inconclusive(r)))) => {
            (false, "Inconclusive", r.join("; "))
        }
        Ok(ractor::rpc::CallResult::Success(Err(e))) => {
            (false, "Inconclusive", format!("evaluation failed: {e}"))
        }
        _ => (
            false,
            "Inconclusive",
            "the policy engine did not answer".to_string(),
        ),
    };
    ConditionResult {
        name: c.name.clone(),
        phase,
        passed,
        required: c.required,
        outcome: Some(outcome.to_string()),
        message: Some(crate::status::bounded(
            &message,
            crate::status::MAX_MESSAGE_BYTES,
        )),
        evaluated_at: Some(now()),
    }
}

/// Verifies postconditions, each polled with backoff until it holds or its
/// timeout passes; a condition that never decides ends Inconclusive.
async fn verify_postconditions(
    ctx: &Ctx,
    exec: &KubernetesExecution,
    v: &ValidatedAction,
    post: &[ActionCondition],
) -> Vec<ConditionResult> {
    let mut results = Vec::new();
    for c in post {
        let timeout = c
            .timeout
            .as_deref()
            .and_then(|t| crate::duration::parse_duration(t).ok())
            .unwrap_or(Duration::from_secs(60));
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(500);
        let result = loop {
            let r = match condition_input(ctx, exec, v, &Default::default(), None).await {
                Ok(input) => evaluate_once(ctx, c, &input, ConditionPhase::Post).await,
                Err(e) => ConditionResult {
                    name: c.name.clone(),
                    phase: ConditionPhase::Post,
                    passed: false,
                    required: c.required,
                    outcome: Some("Inconclusive".into()),
                    message: Some(format!("cannot read cluster state: {e}")),
                    evaluated_at: Some(now()),
                },
            };
            if r.passed || Instant::now() + delay > deadline {
                break r;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(4));
        };
        results.push(result);
    }
    results
}

/// Replaces the results of one phase in status.
fn record_conditions(
    status: &mut KubernetesExecutionStatus,
    phase: ConditionPhase,
    results: Vec<ConditionResult>,
) {
    let vr = status
        .validation_results
        .get_or_insert_with(Default::default);
    vr.conditions.retain(|c| c.phase != phase);
    vr.conditions.extend(results);
}

#[cfg(test)]
mod tests {
    use super::elapsed_since;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use std::time::Duration;

    #[test]
    fn a_start_time_in_the_future_counts_as_no_time_elapsed() {
        let now = Timestamp::now();
        let ahead = now
            .checked_add(SignedDuration::from_secs(20))
            .expect("time");
        assert_eq!(elapsed_since(ahead, now), Duration::ZERO);
        let before = now.checked_sub(SignedDuration::from_secs(5)).expect("time");
        assert_eq!(elapsed_since(before, now), Duration::from_secs(5));
    }
}
