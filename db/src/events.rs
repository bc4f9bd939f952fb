//! The events writer: every state change, whichever crate makes it, writes one tenant-scoped row
//! of `events` in the same transaction as the change and notifies [`channels::EVENTS`] with the
//! tenant id, which Postgres delivers on commit. Readers (the engine's history, the API's feeds)
//! hand events out in stream order; see `gofer_engine::events`.

use gofer_core::keys::{PipelineKey, RunKey};
use gofer_core::{EventKind, RunId, TaskId, TenantId};
use serde_json::Value;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::channels;

/// What an event is about, from the pipeline down.
#[derive(Debug, Clone, Default)]
pub struct EventScope<'a> {
    /// The pipeline, when there is one.
    pub pipeline: Option<&'a PipelineKey>,
    /// The run number, when there is one.
    pub run: Option<RunId>,
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
///
/// It takes a bare connection: tenant transactions write events (`&mut *tx`), and so does the
/// engine's cross-tenant queue work, which concludes many tenants' tasks in one transaction.
pub async fn record(
    conn: &mut PgConnection,
    tenant: &TenantId,
    kind: EventKind,
    scope: EventScope<'_>,
    payload: Value,
) -> Result<(), sqlx::Error> {
    // One round trip: the insert and its notification (delivered on commit) together.
    sqlx::query(
        "WITH inserted AS (
             INSERT INTO events (tenant_id, kind, namespace_id, pipeline_id, run_id, task_id, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING tenant_id
         )
         SELECT pg_notify($8, tenant_id) FROM inserted",
    )
    .bind(tenant.as_str())
    .bind(kind.as_str())
    .bind(scope.pipeline.map(|p| p.namespace.as_str()))
    .bind(scope.pipeline.map(|p| p.pipeline.as_str()))
    .bind(scope.run.map(RunId::get))
    .bind(scope.task.map(TaskId::as_str))
    .bind(Json(&payload))
    .bind(channels::EVENTS)
    .execute(conn)
    .await?;
    Ok(())
}

/// One event of a batch written by [`record_batch`].
pub struct NewEvent<'a> {
    /// Whose event it is.
    pub tenant: &'a TenantId,
    /// What happened.
    pub kind: EventKind,
    /// What it is about.
    pub scope: EventScope<'a>,
    /// Details that depend on the kind.
    pub payload: Value,
}

/// Records a batch of events, of any tenants, in the given order, with one notification per
/// tenant (delivered on commit), in one round trip: the engine's batched claims and completions.
pub async fn record_batch(conn: &mut PgConnection, events: &[NewEvent<'_>]) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = events.iter().map(|e| e.tenant.as_str()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let namespaces: Vec<Option<&str>> = events.iter().map(|e| e.scope.pipeline.map(|p| p.namespace.as_str())).collect();
    let pipelines: Vec<Option<&str>> = events.iter().map(|e| e.scope.pipeline.map(|p| p.pipeline.as_str())).collect();
    let runs: Vec<Option<i64>> = events.iter().map(|e| e.scope.run.map(RunId::get)).collect();
    let tasks: Vec<Option<&str>> = events.iter().map(|e| e.scope.task.map(TaskId::as_str)).collect();
    let payloads: Vec<Json<&Value>> = events.iter().map(|e| Json(&e.payload)).collect();
    sqlx::query(
        "WITH inserted AS (
             INSERT INTO events (tenant_id, kind, namespace_id, pipeline_id, run_id, task_id, payload)
             SELECT tenant_id, kind, namespace_id, pipeline_id, run_id, task_id, payload
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::jsonb[])
                  WITH ORDINALITY AS e(tenant_id, kind, namespace_id, pipeline_id, run_id, task_id, payload, position)
             ORDER BY position
             RETURNING tenant_id
         )
         SELECT pg_notify($8, tenant_id) FROM (SELECT DISTINCT tenant_id FROM inserted) notified",
    )
    .bind(&tenants)
    .bind(&kinds)
    .bind(&namespaces)
    .bind(&pipelines)
    .bind(&runs)
    .bind(&tasks)
    .bind(&payloads)
    .bind(channels::EVENTS)
    .execute(conn)
    .await?;
    Ok(())
}
