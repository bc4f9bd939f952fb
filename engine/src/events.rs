//! Events: every state change writes one tenant-scoped row in the same transaction as the change,
//! and notifies listeners on commit.
//!
//! Readers page through a tenant's events in **stream order**: by the writing transaction's id
//! (`xact_id`), then by event id, and only up to the visibility horizon, the oldest transaction
//! still in flight. Everything below the horizon is final (committed or rolled back), and any
//! transaction that commits later has an id at or above it, so its events sort after everything
//! already handed out: a reader resuming after the last event it received misses nothing and sees
//! nothing twice. Plain id order would not do: ids come from a sequence when the row is inserted,
//! so a transaction holding id 5 can commit after another one's id 6 was handed out. Stream order
//! is id order except between transactions that overlapped.

use gofer_core::model::{Event, PageRequest};
use gofer_core::{EventKind, NamespaceId, PipelineId, RunId, TaskId, TenantId};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::EngineError;
use crate::runs::{PipelineKey, RunKey};

/// The Postgres channel on which new events are announced (payload: the tenant id).
pub const EVENTS_CHANNEL: &str = "gofer_events";

/// What an event is about, from the pipeline down.
#[derive(Debug, Clone, Default)]
pub struct EventScope<'a> {
    /// The pipeline, when there is one.
    pub pipeline: Option<&'a PipelineKey>,
    /// The run number, when there is one.
    pub run: Option<gofer_core::RunId>,
    /// The task, when there is one.
    pub task: Option<&'a TaskId>,
}

impl<'a> EventScope<'a> {
    /// An event about a run.
    pub fn run(run: &'a RunKey) -> Self {
        Self { pipeline: Some(&run.pipeline), run: Some(run.run), task: None }
    }

    /// An event about one task execution of a run.
    pub fn task(run: &'a RunKey, task: &'a TaskId) -> Self {
        Self { pipeline: Some(&run.pipeline), run: Some(run.run), task: Some(task) }
    }

    /// An event about a pipeline.
    pub fn pipeline(pipeline: &'a PipelineKey) -> Self {
        Self { pipeline: Some(pipeline), run: None, task: None }
    }
}

/// Which of a tenant's events to read: all, or those inside one namespace, pipeline or run.
/// A narrower scope always names its parents, so a filter is valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventFilter {
    /// Every event of the tenant.
    #[default]
    All,
    /// Events inside a namespace.
    Namespace(NamespaceId),
    /// Events of a pipeline (its configs, runs and their tasks).
    Pipeline(NamespaceId, PipelineId),
    /// Events of one run and its tasks.
    Run(NamespaceId, PipelineId, RunId),
}

/// Records an event inside the caller's transaction; listeners hear of it when it commits.
pub async fn record(
    conn: &mut PgConnection,
    tenant: &TenantId,
    kind: EventKind,
    scope: EventScope<'_>,
    payload: Value,
) -> Result<(), EngineError> {
    crate::db::insert_event(conn, tenant, kind, &scope, &payload).await
}

/// Lists a tenant's events after the event `after` (0: from the start) in stream order, only up
/// to the visibility horizon (see the module docs), so a later call resuming from the last id
/// misses nothing.
pub async fn list_after(pool: &PgPool, tenant: &TenantId, after: i64, limit: i64) -> Result<Vec<Event>, EngineError> {
    list(pool, tenant, &EventFilter::All, after, limit).await
}

/// Lists a tenant's events that pass `filter`, after the event `after` (0: from the start), in
/// stream order up to the visibility horizon. `after` should be an id this tenant's stream handed
/// out; another number resumes after the tenant's last event with a lower id.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &EventFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, EngineError> {
    let mut conn = crate::db::scoped(pool, tenant).await?;
    crate::db::events::list(&mut conn, tenant, filter, after, limit).await
}

/// One page of a tenant's events in stream order; the key of the next page is the last event's id.
pub async fn page(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &EventFilter,
    request: &PageRequest<i64>,
) -> Result<(Vec<Event>, Option<i64>), EngineError> {
    let after = request.after.unwrap_or(0);
    let rows = list(pool, tenant, filter, after, i64::from(request.limit) + 1).await?;
    Ok(request.finish(rows, |e| e.id))
}
