//! The keys of a tenant's objects: plain data, always carrying the tenant (taken from the
//! authenticated token, never from the request), so that a query bound with one cannot reach
//! another tenant's rows. Every crate that stores or reads tenant data takes these (issue 21:
//! they lived in the engine, which is why the object store depended on it).

use crate::{DeploymentId, NamespaceId, PipelineId, RunId, TaskId, TenantId};

/// Identifies a pipeline within a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// Owner, always taken from the authenticated token.
    pub tenant: TenantId,
    /// Namespace.
    pub namespace: NamespaceId,
    /// Pipeline.
    pub pipeline: PipelineId,
}

/// Identifies a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The pipeline.
    pub pipeline: PipelineKey,
    /// Run number.
    pub run: RunId,
}

/// Identifies a task execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskKey {
    /// The run.
    pub run: RunKey,
    /// The task.
    pub task: TaskId,
}

impl TaskKey {
    /// Where the log of one attempt of this execution lives.
    pub fn log_key(&self, attempt: u32) -> LogKey {
        LogKey {
            tenant: self.run.pipeline.tenant.clone(),
            namespace: self.run.pipeline.namespace.clone(),
            pipeline: self.run.pipeline.pipeline.clone(),
            run: self.run.run,
            task: self.task.clone(),
            attempt,
        }
    }
}

/// Identifies a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentKey {
    /// The pipeline.
    pub pipeline: PipelineKey,
    /// Deployment number.
    pub deployment: DeploymentId,
}

/// Where one task execution's log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey {
    /// Owner.
    pub tenant: TenantId,
    /// Namespace.
    pub namespace: NamespaceId,
    /// Pipeline.
    pub pipeline: PipelineId,
    /// Run.
    pub run: RunId,
    /// Task.
    pub task: TaskId,
    /// Attempt, from 1: each attempt keeps its own log.
    pub attempt: u32,
}

impl LogKey {
    /// The relative path of the log; every component was validated, so it cannot escape the root.
    pub fn path(&self) -> String {
        format!(
            "tenants/{}/namespaces/{}/pipelines/{}/runs/{}/tasks/{}/attempt-{}.log",
            self.tenant, self.namespace, self.pipeline, self.run, self.task, self.attempt
        )
    }
}
