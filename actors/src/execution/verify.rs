//! VerifierActor: a supervised child of an ExecutionActor that polls the
//! execution's postconditions, each with backoff until it holds or its
//! timeout passes (a condition that never decides ends Inconclusive), and
//! sends the results to its parent. Polling is a message to itself, so the
//! actor is never busy for long and a stop takes effect at once. It stops
//! when it is done and with its execution (ractor stops children with
//! their parent); if it fails, the execution actor restarts it (up to
//! [`VERIFIER_MAX_RESTARTS`] times) and the new life polls again from the
//! first condition — every condition is a read of live state, so nothing
//! is lost but time, and the execution's own timeout still bounds it.

use super::*;
use crate::registry::{Lifecycle, post, post_after};
use crate::tunables::VERIFIER_MAX_RESTARTS;

/// Annotation (with `--chaos`) that makes the first life of an execution's
/// verifier panic at its first poll.
pub const CHAOS_VERIFIER_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/chaos-panic-verifier";

/// Messages of the VerifierActor.
pub enum VerifierMsg {
    /// Evaluate the current condition once.
    Poll,
}

/// Arguments of a verifier (also kept by the parent to restart it).
#[derive(Clone)]
pub struct VerifierArgs {
    /// Shared context (the execution's).
    pub ctx: Ctx,
    /// The execution.
    pub exec: KubernetesExecution,
    /// Its validated action.
    pub validated: ValidatedAction,
    /// The postconditions, in order.
    pub post: Vec<ActionCondition>,
    /// The parent.
    pub parent: ExecutionRef,
    /// Lives before this one.
    pub restarts: u32,
}

/// State of a verifier.
pub struct VerifierState {
    args: VerifierArgs,
    index: usize,
    results: Vec<ConditionResult>,
    deadline: Instant,
    delay: Duration,
    life: Lifecycle,
    /// Its own root span (not the execution's: see `spawn_verifier`),
    /// marked with the execution's User-Agent for the requests it makes.
    span: tracing::Span,
}

/// The VerifierActor.
pub struct VerifierActor;

fn condition_timeout(c: &ActionCondition) -> Duration {
    c.timeout
        .as_deref()
        .and_then(|t| crate::duration::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(60))
}

impl VerifierState {
    fn start_condition(&mut self) {
        if let Some(c) = self.args.post.get(self.index) {
            self.deadline = Instant::now() + condition_timeout(c);
            self.delay = Duration::from_millis(500);
        }
    }
}

impl Actor for VerifierActor {
    type Msg = VerifierMsg;
    type State = VerifierState;
    type Arguments = VerifierArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<VerifierMsg>,
        args: VerifierArgs,
    ) -> Result<VerifierState, ActorProcessingErr> {
        let ctx = &args.ctx;
        let life = Lifecycle::enter(
            &ctx.registry,
            &ctx.metrics,
            "postconditions",
            &myself.get_name().unwrap_or_default(),
            args.parent.get_name().as_deref(),
            Some(args.exec.key()),
        );
        post(&ctx.registry, &myself, VerifierMsg::Poll);
        let span =
            tracing::info_span!(parent: None, "postconditions", execution = %args.exec.key());
        crate::k8s::clients::tag_span(&span, &args.exec.uid().unwrap_or_default());
        let mut state = VerifierState {
            args,
            index: 0,
            results: Vec::new(),
            deadline: Instant::now(),
            delay: Duration::from_millis(500),
            life,
            span,
        };
        state.start_condition();
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<VerifierMsg>,
        msg: VerifierMsg,
        state: &mut VerifierState,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        let VerifierMsg::Poll = msg;
        let a = &state.args;
        if a.ctx.settings.chaos
            && a.restarts == 0
            && a.exec.annotations().contains_key(CHAOS_VERIFIER_ANNOTATION)
        {
            panic!("chaos: injected panic in the verifier of {}", a.exec.key());
        }
        let Some(c) = a.post.get(state.index).cloned() else {
            return Ok(());
        };
        let gathered = condition_input(&a.ctx, &a.exec, &a.validated, &Default::default(), None)
            .instrument(state.span.clone())
            .await;
        let r = match gathered {
            Ok(input) => evaluate_once(&a.ctx, &c, &input, ConditionPhase::Post).await,
            Err(e) => ConditionResult {
                name: c.name.clone(),
                phase: ConditionPhase::Post,
                passed: false,
                required: c.required,
                outcome: Some(crate::decide::ConditionVerdict::Inconclusive.to_string()),
                message: Some(format!("cannot read cluster state: {e}")),
                evaluated_at: Some(now()),
            },
        };
        let registry = a.ctx.registry.clone();
        if r.passed || Instant::now() + state.delay > state.deadline {
            state.results.push(r);
            state.index += 1;
            state.start_condition();
            if state.index >= state.args.post.len() {
                let results = std::mem::take(&mut state.results);
                post(
                    &registry,
                    &state.args.parent,
                    ExecutionMsg::PostconditionsDone(results),
                );
                myself.stop(Some(FINISHED.into()));
            } else {
                post(&registry, &myself, VerifierMsg::Poll);
            }
        } else {
            post_after(&registry, &myself, state.delay, || VerifierMsg::Poll);
            state.delay = (state.delay * 2).min(Duration::from_secs(4));
        }
        state.life.handled(started, None);
        Ok(())
    }
}

/// Starts (or restarts) the verifier of an execution, linked to it.
pub(super) async fn spawn_verifier(args: VerifierArgs) -> Result<(), String> {
    let name = args
        .ctx
        .peers
        .verifier(&args.exec.uid().unwrap_or_default());
    let parent = args.parent.get_cell();
    // Spawned outside the execution's span: ractor parents an actor's span
    // to the spawner's current span, and a verifier still winding down
    // would keep the execution's span open (and unexported) past its end.
    Actor::spawn_linked(Some(name.clone()), VerifierActor, args, parent)
        .instrument(tracing::Span::none())
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot start {name}: {e}"))
}

/// What the execution does when its verifier failed: restart it, or (past
/// the limit) count the postconditions inconclusive.
pub(super) fn verifier_failed(
    args: &mut VerifierArgs,
    error: &str,
) -> Option<Vec<ConditionResult>> {
    args.restarts += 1;
    if args.restarts <= VERIFIER_MAX_RESTARTS {
        return None;
    }
    Some(
        args.post
            .iter()
            .map(|c| ConditionResult {
                name: c.name.clone(),
                phase: ConditionPhase::Post,
                passed: false,
                required: c.required,
                outcome: Some(crate::decide::ConditionVerdict::Inconclusive.to_string()),
                message: Some(crate::status::bounded(
                    &format!(
                        "the postcondition verifier failed {} times (last error: {error})",
                        args.restarts
                    ),
                    crate::status::MAX_MESSAGE_BYTES,
                )),
                evaluated_at: Some(now()),
            })
            .collect(),
    )
}
