//! Events: every state change writes one tenant-scoped row in the same transaction as the change,
//! and notifies listeners on commit.

use gofer_core::model::Event;
use gofer_core::{EventKind, TaskId};
use serde_json::Value;
use sqlx::PgConnection;

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

/// Records an event inside the caller's transaction; listeners hear of it when it commits.
pub async fn record(
    conn: &mut PgConnection,
    tenant: &gofer_core::TenantId,
    kind: EventKind,
    scope: EventScope<'_>,
    payload: Value,
) -> Result<(), EngineError> {
    crate::db::insert_event(conn, tenant, kind, &scope, &payload).await
}

/// Lists a tenant's events with ids above `after`, oldest first, only up to the visibility
/// horizon (see the migration), so a later call resuming from the last id misses nothing.
pub async fn list_after(
    pool: &sqlx::PgPool,
    tenant: &gofer_core::TenantId,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, EngineError> {
    let mut conn = pool.acquire().await?;
    crate::db::list_events(&mut conn, tenant, after, limit).await
}
