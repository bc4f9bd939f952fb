//! Gofer's run engine: pipelines and their config versions, runs, the Postgres run queue, dispatch
//! to a [`Scheduler`](gofer_core::scheduler::Scheduler), monitoring, DAG release and log capture.

mod cancel;
mod db;
mod deployments;
pub mod events;
pub mod logs;
mod monitor;
mod outcome;
pub mod pipelines;
mod release;
pub mod runs;
pub mod worker;

use gofer_core::{ConfigError, NamespaceId, PipelineId, RunId, TaskId};

pub use logs::LogStore;
pub use worker::{Engine, EngineConfig, EngineHandle};

/// The Postgres channel on which queue changes are announced.
pub const QUEUE_CHANNEL: &str = "gofer_queue";

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
