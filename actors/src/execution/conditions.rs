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
pub(super) async fn verify_postconditions(
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
