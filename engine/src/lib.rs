//! Gofer's run engine: pipelines and their config versions, runs, the Postgres run queue, dispatch
//! to a [`Scheduler`](gofer_core::scheduler::Scheduler), monitoring, DAG release and log capture.

mod catalog;
mod db;
pub mod events;
pub mod logs;
mod measure;
mod run;
pub mod runs;
mod settings;

// The crate is sorted into `catalog/`, `run/` and `logs/`; these keep the public paths it had
// before, so no caller changed.
pub use catalog::{Pipelines, deployments, pipelines, stats};
pub use logs::masking;
pub use run::{attach, object_refs, worker};

pub use deployments::DeploymentKey;
pub use logs::LogStore;
pub use measure::{QueueDepth, queue_depth};
pub use pipelines::Registered;
pub use settings::EngineSettings;
pub use worker::{Engine, EngineConfig, EngineHandle};

use gofer_core::{ConfigError, DeploymentId, NamespaceId, PipelineId, RunId, TaskId, Version};

/// Everything that can go wrong in the engine, as callers need to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such namespace in the tenant.
    #[error("namespace {0} does not exist")]
    NamespaceNotFound(NamespaceId),
    /// No such pipeline in the namespace.
    #[error("pipeline {0} does not exist")]
    PipelineNotFound(PipelineId),
    /// No such run of the pipeline.
    #[error("run {0} does not exist")]
    RunNotFound(RunId),
    /// No such task in the run.
    #[error("task {0} does not exist in this run")]
    TaskNotFound(TaskId),
    /// No such attempt of the task execution.
    #[error("attempt {0} does not exist for this task")]
    AttemptNotFound(u32),
    /// The task execution is not running, so it cannot be attached to.
    #[error("task {task} is {state}, not running: only a running task can be attached to")]
    TaskNotRunning {
        /// The task.
        task: TaskId,
        /// Where it is instead.
        state: gofer_core::TaskState,
    },
    /// The attempt's log was removed after the retention period.
    #[error("the log of attempt {0} was removed after the retention period")]
    LogsExpired(u32),
    /// No such config version of the pipeline.
    #[error("config version {0} does not exist")]
    ConfigNotFound(Version),
    /// No such deployment of the pipeline.
    #[error("deployment {0} does not exist")]
    DeploymentNotFound(DeploymentId),
    /// The pipeline is disabled; runs cannot start.
    #[error("pipeline {0} is disabled; enable it to start runs")]
    PipelineDisabled(PipelineId),
    /// The pipeline has no live version to run.
    #[error("pipeline {0} has no live version; deploy a config version first")]
    NoLiveVersion(PipelineId),
    /// A canary needs a live version to send the other runs to.
    #[error("pipeline {0} has no live version for a canary to run beside; deploy a version immediately first")]
    CanaryWithoutLiveVersion(PipelineId),
    /// Another deployment of the pipeline is still running.
    #[error("deployment {0} of this pipeline is still running; wait for it or roll it back")]
    DeploymentInProgress(DeploymentId),
    /// Only a running canary can be rolled back.
    #[error("deployment {0} is not running, so it cannot be rolled back")]
    DeploymentNotRunning(DeploymentId),
    /// Deleting the pipeline would delete runs, and the caller did not ask for that.
    #[error("pipeline {0} has runs; delete with ?delete_runs=true to delete them too")]
    PipelineHasRuns(PipelineId),
    /// The pipeline has runs in progress.
    #[error("pipeline {0} has runs in progress; wait for them to complete")]
    PipelineBusy(PipelineId),
    /// The tenant's plan cannot admit the run.
    #[error(transparent)]
    QuotaExceeded(gofer_core::model::QuotaExceeded),
    /// A run started by a run may not start: its pipeline is already in the chain that led to it,
    /// or the chain is too deep.
    #[error(transparent)]
    RunChainRefused(gofer_core::chain::ChainRefusal),
    /// Run variables broke a rule.
    #[error(transparent)]
    InvalidVariables(ConfigError),
    /// A stored row could not be read back (a newer replica wrote it, or it is corrupt).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Reading or writing a log failed.
    #[error("log storage failed: {0}")]
    Logs(#[from] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl gofer_core::Classify for EngineError {
    fn kind(&self) -> gofer_core::ErrorKind {
        use gofer_core::ErrorKind as K;
        match self {
            EngineError::NamespaceNotFound(_)
            | EngineError::PipelineNotFound(_)
            | EngineError::RunNotFound(_)
            | EngineError::TaskNotFound(_)
            | EngineError::AttemptNotFound(_)
            | EngineError::ConfigNotFound(_)
            | EngineError::DeploymentNotFound(_) => K::NotFound,
            EngineError::LogsExpired(_) => K::Gone,
            EngineError::PipelineDisabled(_)
            | EngineError::NoLiveVersion(_)
            | EngineError::CanaryWithoutLiveVersion(_)
            | EngineError::DeploymentInProgress(_)
            | EngineError::DeploymentNotRunning(_)
            | EngineError::PipelineHasRuns(_)
            | EngineError::TaskNotRunning { .. }
            | EngineError::PipelineBusy(_)
            | EngineError::RunChainRefused(_) => K::Conflict,
            EngineError::QuotaExceeded(_) => K::Forbidden,
            // Variables are checked by the config's rules after the body's shape (422, like a config).
            EngineError::InvalidVariables(_) => K::Unprocessable,
            EngineError::Database(e) => gofer_db::kind_of(e),
            EngineError::Corrupt(_) | EngineError::Logs(_) => K::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            EngineError::NamespaceNotFound(_) => "namespace_not_found",
            EngineError::PipelineNotFound(_) => "pipeline_not_found",
            EngineError::RunNotFound(_) => "run_not_found",
            EngineError::TaskNotFound(_) => "task_not_found",
            EngineError::AttemptNotFound(_) => "attempt_not_found",
            EngineError::ConfigNotFound(_) => "config_not_found",
            EngineError::DeploymentNotFound(_) => "deployment_not_found",
            EngineError::LogsExpired(_) => "logs_expired",
            EngineError::PipelineDisabled(_) => "pipeline_disabled",
            EngineError::NoLiveVersion(_) | EngineError::CanaryWithoutLiveVersion(_) => "no_live_version",
            EngineError::DeploymentInProgress(_) => "deployment_in_progress",
            EngineError::DeploymentNotRunning(_) => "deployment_not_running",
            EngineError::PipelineHasRuns(_) => "pipeline_has_runs",
            EngineError::TaskNotRunning { .. } => "task_not_running",
            EngineError::PipelineBusy(_) => "pipeline_busy",
            EngineError::QuotaExceeded(_) => "quota_exceeded",
            EngineError::RunChainRefused(e) => e.code(),
            EngineError::InvalidVariables(e) => e.code(),
            EngineError::Database(_) | EngineError::Corrupt(_) | EngineError::Logs(_) => "internal",
        }
    }
}
