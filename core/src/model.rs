//! Wire models: the objects the API answers with and the SDK reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::id::{NamespaceId, PipelineId, RunId, TaskId, TenantId};
use crate::state::{RunState, RunStatus, StatusReason, TaskState, TaskStatus};

/// A tenant: an isolated customer of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Tenant id.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// When it was created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

/// A namespace: a group of pipelines inside a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Namespace {
    /// Namespace id, unique within the tenant.
    pub id: NamespaceId,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub modified: OffsetDateTime,
}

/// A machine-readable reason with a human description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reason {
    /// Stable code.
    pub reason: StatusReason,
    /// Human-readable detail.
    pub description: String,
}

/// One execution of a pipeline version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    /// Run number, counted from 1 per pipeline.
    pub id: RunId,
    /// Namespace of the pipeline.
    pub namespace_id: NamespaceId,
    /// The pipeline.
    pub pipeline_id: PipelineId,
    /// The config version this run executes.
    pub config_version: i64,
    /// Where the run is in its life.
    pub state: RunState,
    /// How it ended (`unknown` until complete).
    pub status: RunStatus,
    /// Why it ended that way, when it did not succeed.
    pub status_reason: Option<Reason>,
    /// Variables given at start; every task sees them as environment variables.
    pub variables: BTreeMap<String, String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When its first task was dispatched.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    /// When it completed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
}

/// One task's execution within a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskExecution {
    /// The run.
    pub run_id: RunId,
    /// The task of the pipeline config.
    pub task_id: TaskId,
    /// The image the task asked for.
    pub image: String,
    /// Where it is in its life.
    pub state: TaskState,
    /// How it ended (`unknown` until complete).
    pub status: TaskStatus,
    /// Why it ended that way, when it did not succeed.
    pub status_reason: Option<Reason>,
    /// The process exit code, when it ran to an exit.
    pub exit_code: Option<i32>,
    /// The scheduler's id for the job (deterministic, see DESIGN.md).
    pub scheduler_id: Option<String>,
    /// When the execution was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it was dispatched.
    #[serde(with = "time::serde::rfc3339::option")]
    pub started: Option<OffsetDateTime>,
    /// When it completed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
}

/// One page of a list. `next_cursor` is opaque; pass it back as `?cursor=` for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Cursor of the next page, `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The default page size of every list.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// The largest page size a client may ask for.
pub const MAX_PAGE_LIMIT: u32 = 500;

/// A request for one page, keyset-paginated: items strictly after `after` in the list's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// How many items at most.
    pub limit: u32,
    /// The key of the last item of the previous page.
    pub after: Option<K>,
}

impl<K> PageRequest<K> {
    /// The first page with the default size.
    pub fn first() -> Self {
        Self { limit: DEFAULT_PAGE_LIMIT, after: None }
    }

    /// Builds a page from `limit + 1` fetched rows: the extra row only tells that another page exists.
    pub fn finish<T>(&self, mut rows: Vec<T>, key_of: impl Fn(&T) -> K) -> (Vec<T>, Option<K>) {
        if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            let next = rows.last().map(key_of);
            (rows, next)
        } else {
            (rows, None)
        }
    }
}

/// Something that happened in a tenant: a state change of a run, task execution, pipeline or deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Unique id; resume a stream or history after it. Events come in stream order (by writing
    /// transaction, then id): increasing ids, except between transactions that overlapped.
    pub id: i64,
    /// What happened.
    pub kind: crate::EventKind,
    /// The namespace, when the event is about something inside one.
    pub namespace_id: Option<NamespaceId>,
    /// The pipeline, when the event is about one.
    pub pipeline_id: Option<PipelineId>,
    /// The run, when the event is about one.
    pub run_id: Option<RunId>,
    /// The task, when the event is about one task execution.
    pub task_id: Option<TaskId>,
    /// Details that depend on the kind (statuses, reasons, versions).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub emitted: OffsetDateTime,
}
