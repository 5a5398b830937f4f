//! Machine-readable `status.reason` values and condition types. Clients and
//! alerts match on these strings; they are part of the API. [`Reason`] is
//! the list (its strings are the contract); the constants are its strings,
//! for the places that compare with what a status says.

/// Every `status.reason` value the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The action is not in the catalog.
    UnknownAction,
    /// A parameter is missing, unknown or out of range.
    InvalidParameters,
    /// The target is malformed or of the wrong kind for the action.
    InvalidTarget,
    /// `spec.timeout` or a condition timeout is not a valid duration.
    InvalidTimeout,
    /// The target object does not exist.
    TargetNotFound,
    /// The target changed (UID) between validation and execution.
    TargetChanged,
    /// Waiting for another execution to release the target.
    WaitingForTarget,
    /// Another live execution holds the target.
    TargetBusy,
    /// The requester is not recorded, or may not `execute` the action in the
    /// target's scope (checked with a SubjectAccessReview).
    RequesterUnauthorized,
    /// The safety policies denied the action.
    PolicyDenied,
    /// No usable policy set is loaded (fail closed).
    PolicyUnavailable,
    /// A required precondition did not hold.
    PreconditionFailed,
    /// The Job failed.
    JobFailed,
    /// The execution ran past its timeout.
    Timeout,
    /// A required postcondition failed.
    PostconditionFailed,
    /// Dry run: everything validated, nothing mutated.
    DryRunSucceeded,
    /// Dry run: the API server (or RBAC, or admission) refused the action's
    /// server-side dry run; the message names the rejection.
    DryRunRejected,
    /// The action ran and was verified.
    Succeeded,
    /// New executions are paused by the kill switch.
    Paused,
    /// Validation in progress.
    Validating,
    /// Validated; lock, grants and Job being prepared.
    Preparing,
    /// The Job was created and is running.
    JobRunning,
    /// Postconditions are being verified.
    Verifying,
    /// An unexpected internal error that retries did not clear.
    InternalError,
}

impl Reason {
    /// Every reason.
    pub const ALL: &[Reason] = &[
        Reason::UnknownAction,
        Reason::InvalidParameters,
        Reason::InvalidTarget,
        Reason::InvalidTimeout,
        Reason::TargetNotFound,
        Reason::TargetChanged,
        Reason::WaitingForTarget,
        Reason::TargetBusy,
        Reason::RequesterUnauthorized,
        Reason::PolicyDenied,
        Reason::PolicyUnavailable,
        Reason::PreconditionFailed,
        Reason::JobFailed,
        Reason::Timeout,
        Reason::PostconditionFailed,
        Reason::DryRunSucceeded,
        Reason::DryRunRejected,
        Reason::Succeeded,
        Reason::Paused,
        Reason::Validating,
        Reason::Preparing,
        Reason::JobRunning,
        Reason::Verifying,
        Reason::InternalError,
    ];

    /// The contract string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownAction => "UnknownAction",
            Reason::InvalidParameters => "InvalidParameters",
            Reason::InvalidTarget => "InvalidTarget",
            Reason::InvalidTimeout => "InvalidTimeout",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::TargetChanged => "TargetChanged",
            Reason::WaitingForTarget => "WaitingForTarget",
            Reason::TargetBusy => "TargetBusy",
            Reason::RequesterUnauthorized => "RequesterUnauthorized",
            Reason::PolicyDenied => "PolicyDenied",
            Reason::PolicyUnavailable => "PolicyUnavailable",
            Reason::PreconditionFailed => "PreconditionFailed",
            Reason::JobFailed => "JobFailed",
            Reason::Timeout => "Timeout",
            Reason::PostconditionFailed => "PostconditionFailed",
            Reason::DryRunSucceeded => "DryRunSucceeded",
            Reason::DryRunRejected => "DryRunRejected",
            Reason::Succeeded => "Succeeded",
            Reason::Paused => "Paused",
            Reason::Validating => "Validating",
            Reason::Preparing => "Preparing",
            Reason::JobRunning => "JobRunning",
            Reason::Verifying => "Verifying",
            Reason::InternalError => "InternalError",
        }
    }

    /// The reason a contract string names.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The action is not in the catalog.
pub const UNKNOWN_ACTION: &str = Reason::UnknownAction.as_str();
/// A parameter is missing, unknown or out of range.
pub const INVALID_PARAMETERS: &str = Reason::InvalidParameters.as_str();
/// The target is malformed or of the wrong kind for the action.
pub const INVALID_TARGET: &str = Reason::InvalidTarget.as_str();
/// `spec.timeout` or a condition timeout is not a valid duration.
pub const INVALID_TIMEOUT: &str = Reason::InvalidTimeout.as_str();
/// The target object does not exist.
pub const TARGET_NOT_FOUND: &str = Reason::TargetNotFound.as_str();
/// The target changed (UID) between validation and execution.
pub const TARGET_CHANGED: &str = Reason::TargetChanged.as_str();
/// Waiting for another execution to release the target.
pub const WAITING_FOR_TARGET: &str = Reason::WaitingForTarget.as_str();
/// Another live execution holds the target.
pub const TARGET_BUSY: &str = Reason::TargetBusy.as_str();
/// The requester is not recorded, or may not `execute` the action in the
/// target's scope (checked with a SubjectAccessReview).
pub const REQUESTER_UNAUTHORIZED: &str = Reason::RequesterUnauthorized.as_str();
/// The safety policies denied the action.
pub const POLICY_DENIED: &str = Reason::PolicyDenied.as_str();
/// No usable policy set is loaded (fail closed).
pub const POLICY_UNAVAILABLE: &str = Reason::PolicyUnavailable.as_str();
/// A required precondition did not hold.
pub const PRECONDITION_FAILED: &str = Reason::PreconditionFailed.as_str();
/// The Job failed.
pub const JOB_FAILED: &str = Reason::JobFailed.as_str();
/// The execution ran past its timeout.
pub const TIMEOUT: &str = Reason::Timeout.as_str();
/// A required postcondition failed.
pub const POSTCONDITION_FAILED: &str = Reason::PostconditionFailed.as_str();
/// Dry run: everything validated, nothing mutated.
pub const DRY_RUN_SUCCEEDED: &str = Reason::DryRunSucceeded.as_str();
/// Dry run: the action's server-side dry run was refused.
pub const DRY_RUN_REJECTED: &str = Reason::DryRunRejected.as_str();
/// The action ran and was verified.
pub const SUCCEEDED: &str = Reason::Succeeded.as_str();
/// New executions are paused by the kill switch.
pub const PAUSED: &str = Reason::Paused.as_str();
/// Validation in progress.
pub const VALIDATING: &str = Reason::Validating.as_str();
/// Validated; lock, grants and Job being prepared.
pub const PREPARING: &str = Reason::Preparing.as_str();
/// The Job was created and is running.
pub const JOB_RUNNING: &str = Reason::JobRunning.as_str();
/// Postconditions are being verified.
pub const VERIFYING: &str = Reason::Verifying.as_str();
/// An unexpected internal error that retries did not clear.
pub const INTERNAL_ERROR: &str = Reason::InternalError.as_str();

/// Condition types in `status.conditions`.
pub mod conditions {
    /// Spec validated against the catalog.
    pub const VALIDATED: &str = "Validated";
    /// Safety policies allowed the action.
    pub const POLICY_ALLOWED: &str = "PolicyAllowed";
    /// The action's Job finished successfully.
    pub const EXECUTED: &str = "Executed";
    /// Postconditions verified.
    pub const VERIFIED: &str = "Verified";
    /// The execution as a whole succeeded (`kubectl wait --for=condition=Succeeded`).
    pub const SUCCEEDED: &str = "Succeeded";
    /// The plan's name for [`VALIDATED`] (same status, reason and message).
    pub const ACTION_VALIDATED: &str = "ActionValidated";
    /// The plan's: set `True` when validation refused the execution.
    pub const ACTION_VALIDATION_FAILED: &str = "ActionValidationFailed";
    /// The plan's: set `True` when a parameter (or the timeout) was invalid.
    pub const PARAMETER_VALIDATION_FAILED: &str = "ParameterValidationFailed";
    /// The plan's: set `True` when the safety policies denied the action.
    pub const POLICY_VIOLATION: &str = "PolicyViolation";
    /// The plan's: set `True` when a dry run completed.
    pub const DRY_RUN_COMPLETED: &str = "DryRunCompleted";
    /// Every condition type the operator writes (and owns).
    pub const ALL: &[&str] = &[
        VALIDATED,
        POLICY_ALLOWED,
        EXECUTED,
        VERIFIED,
        SUCCEEDED,
        ACTION_VALIDATED,
        ACTION_VALIDATION_FAILED,
        PARAMETER_VALIDATION_FAILED,
        POLICY_VIOLATION,
        DRY_RUN_COMPLETED,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_string() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "{r} twice");
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Reason::parse("Accepted"), None);
    }
}
