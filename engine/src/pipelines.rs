//! Pipelines and their config versions: registration (deduplicated by canonical hash), reads,
//! diffs, disabling and deleting.

use gofer_core::diff::diff;
use gofer_core::model::{ConfigDetail, ConfigDiff, ConfigSummary, PageRequest, Pipeline};
use gofer_core::{ConfigState, EventKind, NamespaceId, PipelineId, PipelineState, TenantId, ValidConfig, Version};
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::db::pipelines as dbp;
use crate::events::{self, EventScope};
use crate::logs::LogStore;
use crate::runs::PipelineKey;
use crate::{EngineError, db, deployments};

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The version holding the config: new, or the existing one with the same canonical hash.
    pub version: i64,
    /// SHA-256 of the canonical config.
    pub config_hash: String,
    /// Whether a new version was created (false: an existing version had the same hash).
    pub created: bool,
    /// The version's state after the registration.
    pub state: ConfigState,
}

/// Checks the namespace then the pipeline, answering the first that is missing. With `lock`, the
/// pipeline row stays locked until the transaction ends.
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

/// Registers `config` for the pipeline, creating the pipeline on its first config. A config whose
/// canonical hash equals an existing version's creates nothing and answers that version. With
/// `deploy`, the version then goes live at once through an immediate deployment (refused with
/// [`EngineError::DeploymentInProgress`] while a canary runs); without, a new version stays
/// unreleased.
#[tracing::instrument(skip_all, fields(tenant = %key.tenant, namespace = %key.namespace, pipeline = %key.pipeline))]
pub async fn register_config(
    pool: &PgPool,
    key: &PipelineKey,
    config: &ValidConfig,
    deploy: bool,
) -> Result<Registered, EngineError> {
    let config_hash = config.canonical_hash();
    let mut tx = db::scoped(pool, &key.tenant).await?;
    let lookup = db::lookup_pipeline(&mut tx, key, false).await?;
    if !lookup.namespace_exists {
        return Err(EngineError::NamespaceNotFound(key.namespace.clone()));
    }
    if lookup.pipeline.is_none() {
        db::insert_pipeline(&mut tx, key).await?;
    }
    // Lock the pipeline row so concurrent registrations get consecutive versions and see each
    // other's hashes.
    let pipeline = require(&mut tx, key, true).await?;
    let (version, created) = match dbp::version_by_hash(&mut tx, key, &config_hash).await? {
        Some(version) => (version, false),
        None => {
            let version = dbp::insert_config(&mut tx, key, config.config(), &config_hash).await?;
            let payload = json!({"version": version, "config_hash": config_hash});
            events::record(&mut tx, &key.tenant, EventKind::ConfigRegistered, EventScope::pipeline(key), payload)
                .await?;
            (version, true)
        }
    };
    if deploy && pipeline.live_version != Some(version) {
        deployments::ensure_none_running(&mut tx, key).await?;
        deployments::deploy_immediately(&mut tx, key, pipeline.live_version, version).await?;
    }
    let state = dbp::config_state(&mut tx, key, version)
        .await?
        .ok_or_else(|| db::corrupt(format!("version {version} vanished")))?;
    tx.commit().await?;
    tracing::info!(version, created, deploy, "registered pipeline config");
    Ok(Registered { version, config_hash, created, state })
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

/// Lists a pipeline's config versions, newest first.
pub async fn list_configs(
    pool: &PgPool,
    key: &PipelineKey,
    page: &PageRequest<Version>,
) -> Result<(Vec<ConfigSummary>, Option<Version>), EngineError> {
    let mut conn = db::scoped(pool, &key.tenant).await?;
    require(&mut conn, key, false).await?;
    let rows = dbp::list_configs(&mut conn, key, page.after, i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |c| Version::from_i64(c.version)))
}

async fn require_config(
    conn: &mut PgConnection,
    key: &PipelineKey,
    version: Version,
) -> Result<ConfigDetail, EngineError> {
    dbp::get_config_detail(conn, key, version).await?.ok_or(EngineError::ConfigNotFound(version))
}

/// Reads one config version with its config.
pub async fn get_config(pool: &PgPool, key: &PipelineKey, version: Version) -> Result<ConfigDetail, EngineError> {
    let mut conn = db::scoped(pool, &key.tenant).await?;
    require(&mut conn, key, false).await?;
    require_config(&mut conn, key, version).await
}

/// What changed from version `from` to version `to`.
pub async fn diff_configs(
    pool: &PgPool,
    key: &PipelineKey,
    from: Version,
    to: Version,
) -> Result<ConfigDiff, EngineError> {
    let mut conn = db::scoped(pool, &key.tenant).await?;
    require(&mut conn, key, false).await?;
    let old = require_config(&mut conn, key, from).await?;
    let new = require_config(&mut conn, key, to).await?;
    Ok(ConfigDiff { from: from.get(), to: to.get(), changes: diff(&old.config, &new.config) })
}
