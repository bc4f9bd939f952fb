//! The catalog: what can be run, as opposed to runs themselves. Pipelines (`pipelines.rs`), their
//! config versions (`versions.rs`, reached through `pipelines`), the deployments that decide which
//! version new runs get (`deployments.rs`), and the statistics read from completed runs
//! (`stats.rs`).

pub mod deployments;
pub mod pipelines;
pub mod stats;
mod versions;

use gofer_core::keys::{DeploymentKey, PipelineKey};
use gofer_core::model::{ConfigDetail, ConfigDiff, ConfigSummary, Deployment, PageRequest, Pipeline, PipelineStats};
use gofer_core::{CanaryPolicy, DeploymentId, NamespaceId, PipelineId, PipelineState, TenantId, ValidConfig, Version};
use sqlx::PgPool;

use crate::EngineError;
use crate::logs::LogStore;

/// Pipelines, their config versions and deployments, as the API uses them: the pool, and the log store that
/// deleting a pipeline's runs clears, so that no caller passes them along.
#[derive(Clone)]
pub struct Pipelines {
    pool: PgPool,
    logs: LogStore,
}

impl Pipelines {
    /// The handle over `pool`, deleting logs from `logs`.
    pub fn new(pool: PgPool, logs: LogStore) -> Self {
        Self { pool, logs }
    }

    /// Registers a config version, creating the pipeline on its first ([`pipelines::register_config`]).
    pub async fn register_config(
        &self,
        key: &PipelineKey,
        config: &ValidConfig,
        deploy: bool,
    ) -> Result<pipelines::Registered, EngineError> {
        pipelines::register_config(&self.pool, key, config, deploy).await
    }

    /// Reads one pipeline ([`pipelines::get`]).
    pub async fn get(&self, key: &PipelineKey) -> Result<Pipeline, EngineError> {
        pipelines::get(&self.pool, key).await
    }

    /// Lists a namespace's pipelines ([`pipelines::list`]).
    pub async fn list(
        &self,
        tenant: &TenantId,
        namespace: &NamespaceId,
        page: &PageRequest<PipelineId>,
    ) -> Result<(Vec<Pipeline>, Option<PipelineId>), EngineError> {
        pipelines::list(&self.pool, tenant, namespace, page).await
    }

    /// Enables or disables a pipeline ([`pipelines::set_state`]).
    pub async fn set_state(&self, key: &PipelineKey, state: PipelineState) -> Result<Pipeline, EngineError> {
        pipelines::set_state(&self.pool, key, state).await
    }

    /// Deletes a pipeline with its rows and logs ([`pipelines::delete`]).
    pub async fn delete(&self, key: &PipelineKey, delete_runs: bool) -> Result<(), EngineError> {
        pipelines::delete(&self.pool, &self.logs, key, delete_runs).await
    }

    /// The pipeline's run statistics ([`stats::pipeline_stats`]).
    pub async fn stats(&self, key: &PipelineKey) -> Result<PipelineStats, EngineError> {
        stats::pipeline_stats(&self.pool, key).await
    }

    /// Lists the pipeline's config versions ([`pipelines::list_configs`]).
    pub async fn list_configs(
        &self,
        key: &PipelineKey,
        page: &PageRequest<Version>,
    ) -> Result<(Vec<ConfigSummary>, Option<Version>), EngineError> {
        pipelines::list_configs(&self.pool, key, page).await
    }

    /// Reads one config version ([`pipelines::get_config`]).
    pub async fn get_config(&self, key: &PipelineKey, version: Version) -> Result<ConfigDetail, EngineError> {
        pipelines::get_config(&self.pool, key, version).await
    }

    /// Deploys a config version, at once or as a canary ([`deployments::deploy`]).
    pub async fn deploy(
        &self,
        key: &PipelineKey,
        version: Version,
        canary: Option<CanaryPolicy>,
    ) -> Result<(Deployment, bool), EngineError> {
        deployments::deploy(&self.pool, key, version, canary).await
    }

    /// Reads a deployment ([`deployments::get`]).
    pub async fn get_deployment(&self, key: &DeploymentKey) -> Result<Deployment, EngineError> {
        deployments::get(&self.pool, key).await
    }

    /// Lists a pipeline's deployments ([`deployments::list`]).
    pub async fn list_deployments(
        &self,
        key: &PipelineKey,
        page: &PageRequest<DeploymentId>,
    ) -> Result<(Vec<Deployment>, Option<DeploymentId>), EngineError> {
        deployments::list(&self.pool, key, page).await
    }

    /// Rolls a running canary back ([`deployments::rollback`]).
    pub async fn rollback(&self, key: &DeploymentKey, reason: Option<&str>) -> Result<Deployment, EngineError> {
        deployments::rollback(&self.pool, key, reason).await
    }

    /// What changed between two config versions ([`pipelines::diff_configs`]).
    pub async fn diff_configs(&self, key: &PipelineKey, from: Version, to: Version) -> Result<ConfigDiff, EngineError> {
        pipelines::diff_configs(&self.pool, key, from, to).await
    }
}
