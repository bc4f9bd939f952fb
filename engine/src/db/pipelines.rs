//! SQL of pipelines and their config versions. Every function takes the tenant first (inside the key).

use gofer_core::model::{ConfigDetail, ConfigSummary, Pipeline};
use gofer_core::{ConfigState, NamespaceId, PipelineConfig, PipelineId, PipelineState, TenantId, Version};
use gofer_db::{BindKey, TenantTx};
use sqlx::PgConnection;
use sqlx::types::Json;
use time::OffsetDateTime;

use super::corrupt;
use crate::EngineError;
use gofer_core::keys::PipelineKey;

pub(crate) async fn namespace_exists(
    tx: &mut TenantTx,
    tenant: &TenantId,
    namespace: &NamespaceId,
) -> Result<bool, EngineError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM namespaces WHERE tenant_id = $1 AND id = $2)")
        .bind(tenant.as_str())
        .bind(namespace.as_str())
        .fetch_one(&mut **tx)
        .await?)
}

#[derive(sqlx::FromRow)]
struct PipelineInfoRow {
    namespace_id: String,
    id: String,
    state: String,
    live_version: Option<i64>,
    latest_version: Option<i64>,
    created_at: OffsetDateTime,
    modified_at: OffsetDateTime,
}

impl PipelineInfoRow {
    fn into_pipeline(self) -> Result<Pipeline, EngineError> {
        Ok(Pipeline {
            id: self.id.parse().map_err(corrupt)?,
            namespace_id: self.namespace_id.parse().map_err(corrupt)?,
            state: self.state.parse::<PipelineState>().map_err(corrupt)?,
            live_version: self.live_version,
            latest_version: self.latest_version,
            created: self.created_at,
            modified: self.modified_at,
        })
    }
}

/// The columns [`PipelineInfoRow`] reads, from `pipelines p`.
macro_rules! pipeline_columns {
    () => {
        "p.namespace_id, p.id, p.state, p.live_version, p.created_at, p.modified_at,
         (SELECT max(c.version) FROM pipeline_configs c
          WHERE c.tenant_id = p.tenant_id AND c.namespace_id = p.namespace_id AND c.pipeline_id = p.id) AS latest_version"
    };
}

pub(crate) async fn get_pipeline(tx: &mut TenantTx, key: &PipelineKey) -> Result<Option<Pipeline>, EngineError> {
    sqlx::query_as::<_, PipelineInfoRow>(concat!(
        "SELECT ",
        pipeline_columns!(),
        " FROM pipelines p WHERE p.tenant_id = $1 AND p.namespace_id = $2 AND p.id = $3"
    ))
    .bind_key(key)
    .fetch_optional(&mut **tx)
    .await?
    .map(PipelineInfoRow::into_pipeline)
    .transpose()
}

/// Pipelines of a namespace, by id, after `after`.
pub(crate) async fn list_pipelines(
    tx: &mut TenantTx,
    tenant: &TenantId,
    namespace: &NamespaceId,
    after: Option<&PipelineId>,
    limit: i64,
) -> Result<Vec<Pipeline>, EngineError> {
    let rows = sqlx::query_as::<_, PipelineInfoRow>(concat!(
        "SELECT ",
        pipeline_columns!(),
        " FROM pipelines p WHERE p.tenant_id = $1 AND p.namespace_id = $2
          AND ($3::text IS NULL OR p.id > $3) ORDER BY p.id LIMIT $4"
    ))
    .bind(tenant.as_str())
    .bind(namespace.as_str())
    .bind(after.map(PipelineId::as_str))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(PipelineInfoRow::into_pipeline).collect()
}

/// Sets the pipeline's state; answers whether it changed.
pub(crate) async fn set_pipeline_state(
    tx: &mut TenantTx,
    key: &PipelineKey,
    state: PipelineState,
) -> Result<bool, EngineError> {
    let changed = sqlx::query(
        "UPDATE pipelines SET state = $4, modified_at = now()
         WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3 AND state <> $4",
    )
    .bind_key(key)
    .bind(state.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// A bare connection: deployments make a version live from the API (a `TenantTx`) and when a
/// canary is promoted in the cross-tenant completion of a run.
pub(crate) async fn set_live_version(
    conn: &mut PgConnection,
    key: &PipelineKey,
    version: i64,
) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE pipelines SET live_version = $4, modified_at = now() WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3",
    )
    .bind_key(key)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many runs the pipeline has, and how many of them are not complete.
pub(crate) async fn run_counts(tx: &mut TenantTx, key: &PipelineKey) -> Result<(i64, i64), EngineError> {
    Ok(sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE state <> 'complete') FROM runs
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3",
    )
    .bind_key(key)
    .fetch_one(&mut **tx)
    .await?)
}

/// Deletes the pipeline; its configs, deployments, runs and task executions go with it (cascades).
pub(crate) async fn delete_pipeline(tx: &mut TenantTx, key: &PipelineKey) -> Result<(), EngineError> {
    sqlx::query("DELETE FROM pipelines WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3")
        .bind_key(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The newest version whose canonical hash is `hash`.
pub(crate) async fn version_by_hash(
    tx: &mut TenantTx,
    key: &PipelineKey,
    hash: &str,
) -> Result<Option<i64>, EngineError> {
    Ok(sqlx::query_scalar(
        "SELECT version FROM pipeline_configs
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND config_hash = $4
         ORDER BY version DESC LIMIT 1",
    )
    .bind_key(key)
    .bind(hash)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Inserts the next config version, unreleased (the caller holds the pipeline's lock).
pub(crate) async fn insert_config(
    tx: &mut TenantTx,
    key: &PipelineKey,
    config: &PipelineConfig,
    hash: &str,
) -> Result<i64, EngineError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO pipeline_configs (tenant_id, namespace_id, pipeline_id, version, config, config_hash, state)
         SELECT $1, $2, $3, COALESCE(MAX(version), 0) + 1, $4, $5, 'unreleased' FROM pipeline_configs
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3
         RETURNING version",
    )
    .bind_key(key)
    .bind(Json(config))
    .bind(hash)
    .fetch_one(&mut **tx)
    .await?)
}

pub(crate) async fn config_state(
    tx: &mut TenantTx,
    key: &PipelineKey,
    version: i64,
) -> Result<Option<ConfigState>, EngineError> {
    let state: Option<String> = sqlx::query_scalar(
        "SELECT state FROM pipeline_configs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND version = $4",
    )
    .bind_key(key)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    state.map(|s| s.parse::<ConfigState>().map_err(corrupt)).transpose()
}

/// Moves a version to `state`, stamping `deprecated_at` when it becomes deprecated.
/// A bare connection: the API's deployments (a `TenantTx`) and the cross-tenant promotion or
/// rollback of a canary both move versions.
pub(crate) async fn set_config_state(
    conn: &mut PgConnection,
    key: &PipelineKey,
    version: i64,
    state: ConfigState,
) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE pipeline_configs SET state = $5,
             deprecated_at = CASE WHEN $5 = 'deprecated' THEN now() ELSE NULL END
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND version = $4",
    )
    .bind_key(key)
    .bind(version)
    .bind(state.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ConfigRow {
    version: i64,
    config_hash: String,
    state: String,
    created_at: OffsetDateTime,
    deprecated_at: Option<OffsetDateTime>,
}

impl ConfigRow {
    fn into_summary(self) -> Result<ConfigSummary, EngineError> {
        Ok(ConfigSummary {
            version: self.version,
            config_hash: self.config_hash,
            state: self.state.parse::<ConfigState>().map_err(corrupt)?,
            registered: self.created_at,
            deprecated: self.deprecated_at,
        })
    }
}

/// Config versions of a pipeline, newest first, before `before`.
pub(crate) async fn list_configs(
    tx: &mut TenantTx,
    key: &PipelineKey,
    before: Option<Version>,
    limit: i64,
) -> Result<Vec<ConfigSummary>, EngineError> {
    let rows = sqlx::query_as::<_, ConfigRow>(
        "SELECT version, config_hash, state, created_at, deprecated_at FROM pipeline_configs
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND ($4::bigint IS NULL OR version < $4)
         ORDER BY version DESC LIMIT $5",
    )
    .bind_key(key)
    .bind(before.map(Version::get))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(ConfigRow::into_summary).collect()
}

#[derive(sqlx::FromRow)]
struct ConfigDetailRow {
    #[sqlx(flatten)]
    summary: ConfigRow,
    config: Json<PipelineConfig>,
}

pub(crate) async fn get_config_detail(
    tx: &mut TenantTx,
    key: &PipelineKey,
    version: Version,
) -> Result<Option<ConfigDetail>, EngineError> {
    let row = sqlx::query_as::<_, ConfigDetailRow>(
        "SELECT version, config_hash, state, created_at, deprecated_at, config FROM pipeline_configs
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND version = $4",
    )
    .bind_key(key)
    .bind(version.get())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        let s = r.summary.into_summary()?;
        Ok(ConfigDetail {
            version: s.version,
            config_hash: s.config_hash,
            state: s.state,
            registered: s.registered,
            deprecated: s.deprecated,
            config: r.config.0,
        })
    })
    .transpose()
}
