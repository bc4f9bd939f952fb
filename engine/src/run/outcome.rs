//! How an attempt's ending decides the task execution: complete it, or run it again.
//! Pure functions over typed inputs, so every rule is unit-tested.

use std::time::Duration;

use gofer_core::model::Reason;
use gofer_core::scheduler::{KillReason, TaskObservation};
use gofer_core::{StatusReason, TaskStatus};

use crate::run::cancel_reason::CancelReason;

/// How one attempt ended, as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The scheduler reported a final observation.
    Observed(TaskObservation),
    /// The scheduler refused the task; trying again will not help.
    StartRejected(String),
    /// The scheduler could not be reached to start the task.
    StartUnavailable(String),
    /// The secret store could not be reached to resolve the task's secrets.
    SecretStoreUnavailable(String),
    /// The run was being stopped before this attempt started.
    NotStarted,
    /// The task cannot start as configured (a `secret{{ key }}` that does not resolve): it
    /// fails at once, without retries.
    Unresolvable(Reason),
}

/// What to do with the task execution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// It is complete.
    Complete { status: TaskStatus, reason: Option<Reason>, exit_code: Option<i32> },
    /// Run it again after `backoff`; this attempt ended with `reason`.
    Retry { infra: bool, reason: Reason, exit_code: Option<i32>, backoff: Duration },
}

/// Retry limits and pacing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Infrastructure failures retried per task execution.
    pub infra_limit: u32,
    /// The task's own `retries`.
    pub own_limit: u32,
    /// First backoff; doubled per failure, capped at a minute.
    pub backoff_base: Duration,
}

impl RetryPolicy {
    fn backoff(&self, failures_so_far: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures_so_far.min(16));
        self.backoff_base.saturating_mul(factor).min(Duration::from_secs(60))
    }
}

fn reason(reason: StatusReason, description: impl Into<String>) -> Reason {
    Reason { reason, description: description.into() }
}

/// Decides what an attempt's ending means. `failures` counts earlier (infra, own) failures.
pub(crate) fn verdict(
    ending: &Ending,
    cancelling: Option<CancelReason>,
    timeout_s: u64,
    failures: (u32, u32),
    policy: RetryPolicy,
) -> Verdict {
    let (infra_failures, own_failures) = failures;
    let complete = |status, reason: Option<Reason>, exit_code| Verdict::Complete { status, reason, exit_code };
    let failed = |r: Reason, exit_code| complete(TaskStatus::Failed, Some(r), exit_code);
    let own = |r: Reason, exit_code| {
        if cancelling.is_none() && own_failures < policy.own_limit {
            Verdict::Retry { infra: false, reason: r, exit_code, backoff: policy.backoff(own_failures) }
        } else {
            failed(r, exit_code)
        }
    };
    let infra = |r: Reason| {
        if cancelling.is_none() && infra_failures < policy.infra_limit {
            Verdict::Retry { infra: true, reason: r, exit_code: None, backoff: policy.backoff(infra_failures) }
        } else {
            failed(r, None)
        }
    };
    match ending {
        Ending::Observed(TaskObservation::Exited { exit_code: 0 }) => complete(TaskStatus::Successful, None, Some(0)),
        Ending::Observed(TaskObservation::Exited { exit_code }) => {
            own(reason(StatusReason::AbnormalExit, format!("exited with code {exit_code}")), Some(*exit_code))
        }
        Ending::Observed(TaskObservation::Killed { reason: KillReason::Stopped }) | Ending::NotStarted => {
            match cancelling {
                Some(cancel) => {
                    let (status, r) = cancel.task_outcome(matches!(ending, Ending::Observed(_)));
                    complete(status, Some(r), None)
                }
                None => infra(reason(StatusReason::Orphaned, "the task was stopped outside Gofer")),
            }
        }
        Ending::Observed(TaskObservation::Killed { reason: KillReason::Timeout }) => {
            own(reason(StatusReason::Timeout, format!("ran longer than its timeout of {timeout_s}s")), None)
        }
        Ending::Observed(TaskObservation::Killed { reason: KillReason::OutOfMemory }) => {
            own(reason(StatusReason::OutOfMemory, "used more memory than allowed"), None)
        }
        Ending::Observed(TaskObservation::Failed { detail }) => {
            infra(reason(StatusReason::SchedulerError, detail.clone()))
        }
        Ending::Observed(TaskObservation::Unknown | TaskObservation::Pending | TaskObservation::Running) => {
            infra(reason(StatusReason::Orphaned, "the scheduler lost track of the task"))
        }
        Ending::StartRejected(detail) => failed(reason(StatusReason::SchedulerError, detail.clone()), None),
        Ending::StartUnavailable(detail) => infra(reason(StatusReason::SchedulerError, detail.clone())),
        Ending::SecretStoreUnavailable(detail) => infra(reason(StatusReason::SecretStoreUnavailable, detail.clone())),
        Ending::Unresolvable(r) => failed(r.clone(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy { infra_limit: 2, own_limit: 1, backoff_base: Duration::from_secs(1) };

    fn exited(code: i32) -> Ending {
        Ending::Observed(TaskObservation::Exited { exit_code: code })
    }

    #[test]
    fn success_completes() {
        assert!(matches!(
            verdict(&exited(0), None, 10, (0, 0), POLICY),
            Verdict::Complete { status: TaskStatus::Successful, exit_code: Some(0), .. }
        ));
    }

    #[test]
    fn own_failures_retry_only_as_configured() {
        assert!(matches!(verdict(&exited(2), None, 10, (0, 0), POLICY), Verdict::Retry { infra: false, .. }));
        match verdict(&exited(2), None, 10, (0, 1), POLICY) {
            Verdict::Complete { status, reason, exit_code } => {
                assert_eq!((status, exit_code), (TaskStatus::Failed, Some(2)));
                assert_eq!(reason.unwrap().reason, StatusReason::AbnormalExit);
            }
            other => panic!("{other:?}"),
        }
        let no_retries = RetryPolicy { own_limit: 0, ..POLICY };
        assert!(matches!(verdict(&exited(1), None, 10, (0, 0), no_retries), Verdict::Complete { .. }));
        let timeout = Ending::Observed(TaskObservation::Killed { reason: KillReason::Timeout });
        assert!(matches!(
            verdict(&timeout, None, 10, (0, 0), no_retries),
            Verdict::Complete { reason: Some(Reason { reason: StatusReason::Timeout, .. }), .. }
        ));
    }

    #[test]
    fn infrastructure_failures_retry_up_to_the_limit_with_backoff() {
        let lost = Ending::Observed(TaskObservation::Unknown);
        match verdict(&lost, None, 10, (1, 0), POLICY) {
            Verdict::Retry { infra: true, reason, backoff, .. } => {
                assert_eq!(reason.reason, StatusReason::Orphaned);
                assert_eq!(backoff, Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verdict(&lost, None, 10, (2, 0), POLICY),
            Verdict::Complete { status: TaskStatus::Failed, .. }
        ));
        let unavailable = Ending::StartUnavailable("down".into());
        assert!(matches!(verdict(&unavailable, None, 10, (0, 0), POLICY), Verdict::Retry { infra: true, .. }));
        match verdict(&Ending::SecretStoreUnavailable("sealed".into()), None, 10, (0, 0), POLICY) {
            Verdict::Retry { infra: true, reason, .. } => {
                assert_eq!(reason.reason, StatusReason::SecretStoreUnavailable)
            }
            other => panic!("{other:?}"),
        }
        let rejected = Ending::StartRejected("bad spec".into());
        assert!(matches!(verdict(&rejected, None, 10, (0, 0), POLICY), Verdict::Complete { .. }));
    }

    #[test]
    fn a_stopping_run_never_retries_and_says_why() {
        let stopped = Ending::Observed(TaskObservation::Killed { reason: KillReason::Stopped });
        match verdict(&stopped, Some(CancelReason::User), 10, (0, 0), POLICY) {
            Verdict::Complete { status, reason, .. } => {
                assert_eq!(status, TaskStatus::Cancelled);
                assert_eq!(reason.unwrap().reason, StatusReason::UserCancelled);
            }
            other => panic!("{other:?}"),
        }
        match verdict(&stopped, Some(CancelReason::Timeout), 10, (0, 0), POLICY) {
            Verdict::Complete { status, reason, .. } => {
                assert_eq!(status, TaskStatus::Failed);
                assert_eq!(reason.unwrap().reason, StatusReason::Timeout);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(verdict(&exited(3), Some(CancelReason::User), 10, (0, 0), POLICY), Verdict::Complete { .. }));
        assert!(matches!(
            verdict(&Ending::Observed(TaskObservation::Unknown), Some(CancelReason::User), 10, (0, 0), POLICY),
            Verdict::Complete { .. }
        ));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(POLICY.backoff(0), Duration::from_secs(1));
        assert_eq!(POLICY.backoff(3), Duration::from_secs(8));
        assert_eq!(POLICY.backoff(30), Duration::from_secs(60));
    }
}
