//! Pre- and postconditions: their input (policy input plus live cluster
//! state), one evaluation on the PolicyActor, postcondition polling, and
//! recording results in status.

use super::*;

/// Policy input with live cluster state, for pre/postconditions.
pub(super) async fn condition_input(
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
pub(super) async fn evaluate_once(
    ctx: &Ctx,
    c: &ActionCondition,
    input: &serde_json::Value,
    phase: ConditionPhase,
) -> ConditionResult {
    let reply = ctx
        .peers
        .call(
            &ctx.registry,
            crate::peers::Singleton::Policy,
            |reply| PolicyMsg::Condition {
                policy: c.policy.clone(),
                input: input.clone(),
                reply,
            },
            crate::tunables::POLICY_CALL_TIMEOUT,
        )
        .await;
    let (outcome, message) = crate::decide::condition(reply);
    let passed = outcome == crate::decide::ConditionVerdict::Verified;
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

/// Replaces the results of one phase in status.
pub(super) fn record_conditions(
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
