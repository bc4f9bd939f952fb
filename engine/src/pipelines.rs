//! Pipelines and their config versions.

use gofer_core::ValidConfig;
use sqlx::PgPool;

use crate::events::{self, EventScope};
use crate::runs::PipelineKey;
use crate::{EngineError, db};
use gofer_core::EventKind;

/// Registers `config` as the next version of the pipeline (creating the pipeline on its first
/// config) and makes it live. Answers the new version.
#[tracing::instrument(skip_all, fields(tenant = %key.tenant, namespace = %key.namespace, pipeline = %key.pipeline))]
pub async fn register_config(pool: &PgPool, key: &PipelineKey, config: &ValidConfig) -> Result<i64, EngineError> {
    let mut tx = pool.begin().await?;
    let lookup = db::lookup_pipeline(&mut tx, key, false).await?;
    if !lookup.namespace_exists {
        return Err(EngineError::NamespaceNotFound(key.namespace.clone()));
    }
    if lookup.pipeline.is_none() {
        db::insert_pipeline(&mut tx, key).await?;
    }
    // Lock the pipeline row so concurrent registrations get consecutive versions.
    db::lookup_pipeline(&mut tx, key, true).await?;
    let version = db::insert_live_config(&mut tx, key, config.config(), &config.canonical_hash()).await?;
    let payload = serde_json::json!({"version": version, "config_hash": config.canonical_hash()});
    events::record(&mut tx, &key.tenant, EventKind::ConfigRegistered, EventScope::pipeline(key), payload).await?;
    tx.commit().await?;
    tracing::info!(version, "registered pipeline config");
    Ok(version)
}
