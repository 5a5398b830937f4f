//! What holds an execution back: the kill switch (Pending) and a busy
//! target (Validating), and the timeout both are bounded by.

use super::*;

/// Kill switch: a Pending execution does not start while new executions are
/// paused (globally or in its namespace); it looks again every 2 s.
pub(super) async fn paused(myself: &ExecutionRef, state: &mut ExecutionState) -> bool {
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
            None => retry_for(crate::tunables::SHORT_PATIENCE, || state.ctx.api.paused(ns)).await,
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
pub(super) fn timeout_and_elapsed(state: &ExecutionState) -> (Duration, Duration) {
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
pub(super) fn busy(
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
