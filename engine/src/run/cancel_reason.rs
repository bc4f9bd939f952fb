//! Why a run is being stopped, and how each of its tasks then ends: a pure decision, shared by
//! cancelling (`cancel.rs`) and the SQL that records it (`crate::db`).

use gofer_core::model::Reason;
use gofer_core::{StatusReason, TaskStatus};

/// Why a run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// A user asked.
    User,
    /// The run passed its deadline.
    Timeout,
    /// The tenant's task-seconds for the month ran out.
    Quota,
}

impl CancelReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CancelReason::User => "user",
            CancelReason::Timeout => "timeout",
            CancelReason::Quota => "quota",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(CancelReason::User),
            "timeout" => Some(CancelReason::Timeout),
            "quota" => Some(CancelReason::Quota),
            _ => None,
        }
    }

    /// How a task stopped (or never started) for this reason ends.
    pub(crate) fn task_outcome(self, started: bool) -> (TaskStatus, Reason) {
        match self {
            CancelReason::User => (
                TaskStatus::Cancelled,
                Reason { reason: StatusReason::UserCancelled, description: "the run was cancelled".into() },
            ),
            CancelReason::Timeout => (
                if started { TaskStatus::Failed } else { TaskStatus::Cancelled },
                Reason { reason: StatusReason::Timeout, description: "the run passed its deadline".into() },
            ),
            CancelReason::Quota => (
                if started { TaskStatus::Failed } else { TaskStatus::Cancelled },
                Reason {
                    reason: StatusReason::QuotaExhausted,
                    description: "the tenant's task-seconds for this month ran out".into(),
                },
            ),
        }
    }
}
