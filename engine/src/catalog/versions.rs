//! A pipeline's config versions: registration (deduplicated by canonical hash, optionally
//! deployed at once), listing, reading and diffing.

use gofer_core::diff::diff;
use gofer_core::model::{ConfigDetail, ConfigDiff, ConfigSummary, PageRequest};
use gofer_core::{ConfigState, EventKind, ValidConfig, Version};
use gofer_db::TenantTx;
use serde_json::json;
use sqlx::PgPool;

use super::deployments;
use super::pipelines::require;
use crate::db::pipelines as dbp;
use crate::events::{self, EventScope};
use crate::{EngineError, db};
use gofer_core::keys::PipelineKey;

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

async fn require_config(tx: &mut TenantTx, key: &PipelineKey, version: Version) -> Result<ConfigDetail, EngineError> {
    dbp::get_config_detail(tx, key, version).await?.ok_or(EngineError::ConfigNotFound(version))
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
