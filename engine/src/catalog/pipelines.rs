//! Pipelines: reads, disabling and deleting. Their config versions (registration, reads, diffs)
//! are in `versions.rs`, re-exported here where callers have always found them.

use gofer_core::model::{PageRequest, Pipeline};
use gofer_core::{EventKind, NamespaceId, PipelineId, PipelineState, TenantId};
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::db::pipelines as dbp;
use crate::events::{self, EventScope};
use crate::logs::LogStore;
use crate::{EngineError, db};
use gofer_core::keys::PipelineKey;

pub use super::versions::{Registered, diff_configs, get_config, list_configs, register_config};

/// Checks the namespace then the pipeline, answering the first that is missing. With `lock`, the
/// pipeline row stays locked until the transaction ends. A bare connection: tenant transactions
/// check it, and so does the cross-tenant completion of a canary run ([`super::deployments`]).
pub(crate) async fn require(
    conn: &mut PgConnection,
    key: &PipelineKey,
    lock: bool,
) -> Result<db::PipelineRow, EngineError> {
    let lookup = db::lookup_pipeline(conn, key, lock).await?;
    if !lookup.namespace_exists {
        return Err(EngineError::NamespaceNotFound(key.namespace.clone()));
    }
    lookup.pipeline.ok_or_else(|| EngineError::PipelineNotFound(key.pipeline.clone()))
}

/// Reads one pipeline.
pub async fn get(pool: &PgPool, key: &PipelineKey) -> Result<Pipeline, EngineError> {
    let mut conn = db::scoped(pool, &key.tenant).await?;
    require(&mut conn, key, false).await?;
    dbp::get_pipeline(&mut conn, key).await?.ok_or_else(|| EngineError::PipelineNotFound(key.pipeline.clone()))
}

/// Lists a namespace's pipelines, by id.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    namespace: &NamespaceId,
    page: &PageRequest<PipelineId>,
) -> Result<(Vec<Pipeline>, Option<PipelineId>), EngineError> {
    let mut conn = db::scoped(pool, tenant).await?;
    if !dbp::namespace_exists(&mut conn, tenant, namespace).await? {
        return Err(EngineError::NamespaceNotFound(namespace.clone()));
    }
    let rows =
        dbp::list_pipelines(&mut conn, tenant, namespace, page.after.as_ref(), i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |p| p.id.clone()))
}

/// Disables or enables a pipeline; setting the state it has already changes nothing.
#[tracing::instrument(skip_all, fields(tenant = %key.tenant, namespace = %key.namespace, pipeline = %key.pipeline))]
pub async fn set_state(pool: &PgPool, key: &PipelineKey, state: PipelineState) -> Result<Pipeline, EngineError> {
    let mut tx = db::scoped(pool, &key.tenant).await?;
    require(&mut tx, key, true).await?;
    if dbp::set_pipeline_state(&mut tx, key, state).await? {
        let kind = match state {
            PipelineState::Active => EventKind::PipelineEnabled,
            PipelineState::Disabled => EventKind::PipelineDisabled,
        };
        events::record(&mut tx, &key.tenant, kind, EventScope::pipeline(key), json!({"state": state})).await?;
        tracing::info!(%state, "pipeline state changed");
    }
    let pipeline =
        dbp::get_pipeline(&mut tx, key).await?.ok_or_else(|| EngineError::PipelineNotFound(key.pipeline.clone()))?;
    tx.commit().await?;
    Ok(pipeline)
}

/// Deletes a pipeline with its configs, deployments, runs, task executions and logs. Refused
/// while a run is in progress, and when it has runs unless `delete_runs`.
#[tracing::instrument(skip_all, fields(tenant = %key.tenant, namespace = %key.namespace, pipeline = %key.pipeline))]
pub async fn delete(pool: &PgPool, logs: &LogStore, key: &PipelineKey, delete_runs: bool) -> Result<(), EngineError> {
    let mut tx = db::scoped(pool, &key.tenant).await?;
    // The lock keeps new runs from starting while we look.
    require(&mut tx, key, true).await?;
    let (runs, unfinished) = dbp::run_counts(&mut tx, key).await?;
    if unfinished > 0 {
        return Err(EngineError::PipelineBusy(key.pipeline.clone()));
    }
    if runs > 0 && !delete_runs {
        return Err(EngineError::PipelineHasRuns(key.pipeline.clone()));
    }
    dbp::delete_pipeline(&mut tx, key).await?;
    events::record(&mut tx, &key.tenant, EventKind::PipelineDeleted, EventScope::pipeline(key), json!({"runs": runs}))
        .await?;
    // Logs go before the commit: if removing them fails nothing is deleted and the caller may
    // retry, whereas logs left behind would be appended to by a new pipeline of the same id.
    logs.remove_pipeline(&key.tenant, &key.namespace, &key.pipeline).await?;
    tx.commit().await?;
    tracing::info!(runs, "pipeline deleted");
    Ok(())
}
