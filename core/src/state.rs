//! Run and task-execution state machines, as stored in Postgres and shown on the wire.

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The snake_case text used on the wire and in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::state::UnknownVariant;
            fn from_str(s: &str) -> Result<Self, $crate::state::UnknownVariant> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::state::UnknownVariant { kind: stringify!($name), value: other.to_owned() }),
                }
            }
        }
    };
}
pub(crate) use wire_enum;

/// A stored enum value that this build does not know (a newer replica wrote it, or the row is corrupt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} value {value:?}")]
pub struct UnknownVariant {
    /// The enum's name.
    pub kind: &'static str,
    /// The text that did not match.
    pub value: String,
}

wire_enum!(
    /// Where a run is in its life.
    RunState {
        /// Created; no task has started yet.
        Pending => "pending",
        /// At least one task was dispatched.
        Running => "running",
        /// Every task execution is complete; `status` says how it went.
        Complete => "complete",
    }
);

wire_enum!(
    /// How a run ended; `unknown` until it is complete.
    RunStatus {
        /// Not complete yet.
        Unknown => "unknown",
        /// No task failed or was cancelled.
        Successful => "successful",
        /// At least one task failed.
        Failed => "failed",
        /// The run was cancelled.
        Cancelled => "cancelled",
    }
);

wire_enum!(
    /// Where a task execution is in its life.
    TaskState {
        /// Some parent has not finished yet.
        Waiting => "waiting",
        /// Every condition holds; waiting for the engine to dispatch it.
        Queued => "queued",
        /// Dispatched to the scheduler.
        Running => "running",
        /// Finished; `status` says how.
        Complete => "complete",
    }
);

wire_enum!(
    /// How a task execution ended; `unknown` until it is complete.
    TaskStatus {
        /// Not complete yet.
        Unknown => "unknown",
        /// Exited with code 0.
        Successful => "successful",
        /// Exited non-zero, timed out, or could not be started.
        Failed => "failed",
        /// Stopped because the run was cancelled.
        Cancelled => "cancelled",
        /// Never ran: a depends_on condition could not hold.
        Skipped => "skipped",
    }
);

wire_enum!(
    /// Why a run or task ended the way it did (machine-readable; a description accompanies it).
    StatusReason {
        /// The task exited with a non-zero code.
        AbnormalExit => "abnormal_exit",
        /// The scheduler could not start or track the task.
        SchedulerError => "scheduler_error",
        /// A depends_on condition could not hold, so the task was skipped.
        FailedPrecondition => "failed_precondition",
        /// The task ran past its timeout and was stopped.
        Timeout => "timeout",
        /// The task was stopped because it used more memory than allowed.
        OutOfMemory => "out_of_memory",
        /// The run or task was cancelled by a user.
        UserCancelled => "user_cancelled",
        /// The scheduler lost track of the task.
        Orphaned => "orphaned",
        /// A task of the run failed.
        TaskFailed => "task_failed",
        /// A `secret{{ key }}` reference in the task's env could not be resolved (not set for the
        /// pipeline, not granted to its namespace); the task did not start.
        SecretUnavailable => "secret_unavailable",
        /// The secret store (OpenBao/Vault, or Postgres for the built-in store) could not be
        /// reached to resolve the task's secrets; an infrastructure failure, retried.
        SecretStoreUnavailable => "secret_store_unavailable",
        /// The tenant's task-seconds for the month ran out, so the run or task was stopped.
        QuotaExhausted => "quota_exhausted",
    }
);

impl TaskStatus {
    /// The overall status of a run whose task executions ended with `statuses`.
    /// Cancelled wins over failed, failed over everything else.
    pub fn run_status<'a>(statuses: impl IntoIterator<Item = &'a TaskStatus>) -> RunStatus {
        let mut status = RunStatus::Successful;
        for s in statuses {
            match s {
                TaskStatus::Cancelled => return RunStatus::Cancelled,
                TaskStatus::Failed => status = RunStatus::Failed,
                _ => {}
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), *s);
        }
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>().unwrap(), *s);
        }
        assert!("bogus".parse::<RunStatus>().is_err());
        assert_eq!(serde_json::to_string(&StatusReason::FailedPrecondition).unwrap(), "\"failed_precondition\"");
    }

    #[test]
    fn run_status_prefers_cancelled_then_failed() {
        use TaskStatus::*;
        assert_eq!(TaskStatus::run_status(&[Successful, Skipped]), RunStatus::Successful);
        assert_eq!(TaskStatus::run_status(&[Successful, Failed, Skipped]), RunStatus::Failed);
        assert_eq!(TaskStatus::run_status(&[Failed, Cancelled]), RunStatus::Cancelled);
        assert_eq!(TaskStatus::run_status(&[]), RunStatus::Successful);
    }
}

wire_enum!(
    /// Kinds of events.
    EventKind {
        /// A pipeline config version was registered.
        ConfigRegistered => "config_registered",
        /// A run was created.
        RunCreated => "run_created",
        /// A run's first task was dispatched.
        RunStarted => "run_started",
        /// A run completed; the payload has its status.
        RunCompleted => "run_completed",
        /// A task execution's conditions hold; it waits for dispatch.
        TaskQueued => "task_queued",
        /// A task execution was dispatched to the scheduler.
        TaskStarted => "task_started",
        /// A task execution completed (including skipped); the payload has its status.
        TaskCompleted => "task_completed",
        /// An attempt failed and the task execution will run again; the payload says why and when.
        TaskRetrying => "task_retrying",
        /// A replica took over a task execution whose lease expired.
        TaskTakenOver => "task_taken_over",
        /// Cancelling a run was requested (by a user, or by its timeout).
        RunCancelling => "run_cancelling",
        /// Expired or revoked tokens were deleted; the payload has how many.
        TokensPurged => "tokens_purged",
        /// A deployment started (an immediate one completes in the same transaction); the payload
        /// has its id, type and versions.
        DeploymentStarted => "deployment_started",
        /// A completed canary run was counted by its deployment; the payload has the run's status
        /// and the counts so far.
        CanaryRunCounted => "canary_run_counted",
        /// A deployment completed; the payload has its status and reason.
        DeploymentCompleted => "deployment_completed",
        /// A pipeline was disabled: new runs are refused.
        PipelineDisabled => "pipeline_disabled",
        /// A pipeline was enabled again.
        PipelineEnabled => "pipeline_enabled",
        /// A pipeline was deleted with its configs, deployments, runs and logs.
        PipelineDeleted => "pipeline_deleted",
        /// A pipeline object was evicted to keep the pipeline under its object count or the tenant
        /// under its plan's object storage; the payload has its key, size and why.
        ObjectEvicted => "object_evicted",
        /// Run objects of old runs expired; the payload has the run and how many.
        RunObjectsExpired => "run_objects_expired",
        /// Someone attached to a running task execution; the payload has the token id, the
        /// attempt, the command and whether it had a tty (never any input).
        TaskAttached => "task_attached",
    }
);

wire_enum!(
    /// Why a task execution that has not started running yet is waiting.
    WaitingReason {
        /// Some parent has not finished.
        WaitingForDependencies => "waiting_for_dependencies",
        /// Ready; waiting for a free slot (replica capacity or the tenant's concurrency limit).
        WaitingForCapacity => "waiting_for_capacity",
        /// Ready; the pipeline already runs as many runs as its `parallelism` allows.
        WaitingForParallelism => "waiting_for_parallelism",
        /// Ready; the tenant already runs as many tasks as its plan allows.
        WaitingForQuota => "waiting_for_quota",
        /// Dispatched; the scheduler has not started it yet (placing, pulling the image).
        WaitingForScheduler => "waiting_for_scheduler",
        /// A previous attempt failed; the next one starts after a backoff.
        WaitingForRetry => "waiting_for_retry",
    }
);
