//! What `GET …/runs/{run}/debug` answers: everything the server knows about a run that helps
//! debug it, in one document (never secret values: configs name secrets, they never hold them).

use serde::{Deserialize, Serialize};

use crate::id::TaskId;
use crate::model::{ConfigDetail, Event, Plan, Run, TaskAttempt, TaskExecution};

/// A run with its config version, task executions and attempts, events and quota state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunDebug {
    /// The run.
    pub run: Run,
    /// The config version it executes.
    pub config: ConfigDetail,
    /// Every task execution with every attempt (scheduler job id, node, reason).
    pub tasks: Vec<TaskDebug>,
    /// The run's events, oldest first.
    pub events: Vec<Event>,
    /// The tenant's plan limits as they apply now, and the tasks they hold back.
    pub quota: QuotaState,
}

/// One task execution with its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskDebug {
    /// The execution.
    pub execution: TaskExecution,
    /// Every attempt, oldest first.
    pub attempts: Vec<TaskAttempt>,
}

/// The tenant's plan and what it holds back in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaState {
    /// The tenant's plan.
    pub plan: Plan,
    /// Tasks of this run waiting with `waiting_for_quota` (the plan's `max_concurrent_tasks`).
    pub waiting_for_quota: Vec<TaskId>,
}
