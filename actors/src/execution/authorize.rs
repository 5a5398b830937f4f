//! The execution's first step after catalog validation: is its requester
//! allowed to ask for this, in the target's scope? Each check of
//! [`crate::authz::required_checks`] becomes a SubjectAccessReview for the
//! recorded requester (user, uid, groups). Fails closed: a missing requester,
//! a denial or an unanswerable review refuses the execution with
//! `RequesterUnauthorized` before anything is read, locked, granted or run.

use kubernetes_executor_crds::{KubernetesExecution, reasons};

use crate::authz::{requester, required_checks};
use crate::catalog::{Rejection, ValidatedAction};
use crate::context::Ctx;
use crate::k8s::{PATIENCE, retry_for};

/// Checks every access the requester of `exec` needs for `v`.
pub(super) async fn authorize(
    ctx: &Ctx,
    exec: &KubernetesExecution,
    v: &ValidatedAction,
) -> Result<(), Rejection> {
    let who = requester(exec.spec.requester.as_ref())?;
    let exec_ns = exec.metadata.namespace.as_deref().unwrap_or_default();
    for check in required_checks(v, exec_ns) {
        let denied = |detail: String| {
            let mut message = check.denied(&who.username);
            if !detail.is_empty() {
                message.push_str(&format!(" ({detail})"));
            }
            Rejection::new(reasons::REQUESTER_UNAUTHORIZED, message)
        };
        let answer = match ctx.access.get(who, &check, std::time::Instant::now()) {
            Some(cached) => Ok(cached),
            None => {
                let fresh = retry_for(PATIENCE, || ctx.api.review_access(who, &check)).await;
                if let Ok(a) = &fresh {
                    ctx.access
                        .put(who, &check, a.clone(), std::time::Instant::now());
                }
                fresh
            }
        };
        match answer {
            Ok(None) => {}
            Ok(Some(why)) => return Err(denied(why)),
            Err(e) => return Err(denied(format!("the access review failed: {e}"))),
        }
    }
    Ok(())
}

/// Inline Rego in `spec.preconditions`/`postconditions` runs with the
/// operator's view of the cluster; it is refused unless the execution's
/// namespace is listed in `--allow-inline-conditions` (names, or prefixes
/// ending in `*`).
pub(super) fn inline_conditions_allowed(
    allowed: &[String],
    exec: &KubernetesExecution,
) -> Result<(), Rejection> {
    let ns = exec.metadata.namespace.as_deref().unwrap_or_default();
    let inline = exec
        .spec
        .pre()
        .iter()
        .chain(exec.spec.post())
        .find(|c| crate::policy::is_inline(&c.policy));
    let Some(c) = inline else { return Ok(()) };
    if namespace_listed(allowed, ns) {
        return Ok(());
    }
    Err(Rejection::new(
        reasons::INVALID_PARAMETERS,
        format!(
            "condition {:?} is inline Rego, which is not allowed in namespace {ns} \
             (name a condition module from the policy directory instead, or ask the \
             operator's administrator to list the namespace in --allow-inline-conditions)",
            c.name
        ),
    ))
}

/// Whether `ns` matches one of `patterns` (exact, `prefix*`, or `*`).
pub fn namespace_listed(patterns: &[String], ns: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => ns.starts_with(prefix),
        None => p == ns,
    })
}

#[cfg(test)]
mod tests {
    use super::namespace_listed;

    #[test]
    fn namespace_patterns() {
        let p = vec!["team-*".to_string(), "ops".to_string()];
        assert!(namespace_listed(&p, "team-a"));
        assert!(namespace_listed(&p, "ops"));
        assert!(!namespace_listed(&p, "opsx"));
        assert!(!namespace_listed(&p, "tenant-a"));
        assert!(!namespace_listed(&[], "ops"));
        assert!(namespace_listed(&["*".to_string()], "anything"));
    }
}
