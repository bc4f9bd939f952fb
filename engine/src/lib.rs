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
pub use catalog::{deployments, pipelines, stats};
pub use logs::masking;
pub use run::{attach, object_refs, worker};

pub use deployments::DeploymentKey;
pub use logs::LogStore;
pub use measure::{QueueDepth, queue_depth};
pub use pipelines::Registered;
pub use run::cancel::CANCEL_CHANNEL;
pub use settings::EngineSettings;
pub use worker::{Engine, EngineConfig, EngineHandle};

use gofer_core::{ConfigError, DeploymentId, NamespaceId, PipelineId, RunId, TaskId, Version};

/// Begins a transaction scoped to one tenant (role `gofer_tenant`, `app.tenant_id` set), for crates
/// that keep tenant-owned tables of their own (objects): row-level security keeps it in the tenant.
pub async fn tenant_transaction(
    pool: &sqlx::PgPool,
    tenant: &gofer_core::TenantId,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, EngineError> {
    db::scoped(pool, tenant).await
}

/// The Postgres channel on which queue changes are announced.
pub const QUEUE_CHANNEL: &str = gofer_core::channels::QUEUE;

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
