//! Machine-readable `status.reason` values and condition types. Clients and
//! alerts match on these strings; they are part of the API.

/// The action is not in the catalog.
pub const UNKNOWN_ACTION: &str = "UnknownAction";
/// A parameter is missing, unknown or out of range.
pub const INVALID_PARAMETERS: &str = "InvalidParameters";
/// The target is malformed or of the wrong kind for the action.
pub const INVALID_TARGET: &str = "InvalidTarget";
/// `spec.timeout` or a condition timeout is not a valid duration.
pub const INVALID_TIMEOUT: &str = "InvalidTimeout";
/// The target object does not exist.
pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
/// The target changed (UID) between validation and execution.
pub const TARGET_CHANGED: &str = "TargetChanged";
/// Waiting for another execution to release the target.
pub const WAITING_FOR_TARGET: &str = "WaitingForTarget";
/// Another live execution holds the target.
pub const TARGET_BUSY: &str = "TargetBusy";
/// The requester is not recorded, or may not `execute` the action in the
/// target's scope (checked with a SubjectAccessReview).
pub const REQUESTER_UNAUTHORIZED: &str = "RequesterUnauthorized";
/// The safety policies denied the action.
pub const POLICY_DENIED: &str = "PolicyDenied";
/// No usable policy set is loaded (fail closed).
pub const POLICY_UNAVAILABLE: &str = "PolicyUnavailable";
/// A required precondition did not hold.
pub const PRECONDITION_FAILED: &str = "PreconditionFailed";
/// The Job failed.
pub const JOB_FAILED: &str = "JobFailed";
/// The execution ran past its timeout.
pub const TIMEOUT: &str = "Timeout";
/// A required postcondition failed.
pub const POSTCONDITION_FAILED: &str = "PostconditionFailed";
/// Dry run: everything validated, nothing mutated.
pub const DRY_RUN_SUCCEEDED: &str = "DryRunSucceeded";
/// The action ran and was verified.
pub const SUCCEEDED: &str = "Succeeded";
/// New executions are paused by the kill switch.
pub const PAUSED: &str = "Paused";
/// Accepted, waiting for the operator.
pub const ACCEPTED: &str = "Accepted";
/// Validation in progress.
pub const VALIDATING: &str = "Validating";
/// The Job was created and is running.
pub const JOB_RUNNING: &str = "JobRunning";
/// Postconditions are being verified.
pub const VERIFYING: &str = "Verifying";
/// An unexpected internal error that retries did not clear.
pub const INTERNAL_ERROR: &str = "InternalError";

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
    /// Every condition type the operator writes (and owns).
    pub const ALL: &[&str] = &[VALIDATED, POLICY_ALLOWED, EXECUTED, VERIFIED, SUCCEEDED];
}
