//! Use cases that span crates (rows, log store, secret store, object store, this replica's
//! caches), each written once so that routes and periodic jobs cannot drift apart.
//!
//! Tenant removal used to be written in the `DELETE /api/v1/tenants/{tenant}` route and again in
//! the job that ends trials, and the job's copy had lost two steps (forgetting the tenant's cached
//! tokens and its remembered runs). Here each step list exists once; callers only decide when.

use gofer_core::keys::PipelineKey;
use gofer_core::model::Tenant;
use gofer_core::secrets::SecretPrefix;
use gofer_core::{NamespaceId, TenantId};
use gofer_engine::LogStore;
use gofer_tenants::cache::TokenCache;
use sqlx::PgPool;

use crate::error::ApiError;
use crate::run_cache::CompleteRuns;
use crate::state::AppState;

/// Everything a tenant's data lives in or is remembered by on this replica. One struct for
/// every use case, because a caller that had to pick the pieces itself is how the trial job came
/// to skip the caches: whoever can build these handles cannot forget one.
#[derive(Clone, Copy)]
pub struct Handles<'a> {
    /// The database.
    pub pool: &'a PgPool,
    /// Runs (cancelling them).
    pub runs: &'a gofer_engine::runs::Runs,
    /// Pipelines (deleting them).
    pub pipelines: &'a gofer_engine::Pipelines,
    /// Task logs.
    pub logs: &'a LogStore,
    /// Secret values (their metadata are rows).
    pub secrets: &'a gofer_secrets::Secrets,
    /// Pipeline and run objects, and archived logs.
    pub objects: &'a gofer_objects::Objects,
    /// This replica's verified tokens; the other replicas evict on the change's NOTIFY.
    pub token_cache: &'a TokenCache,
    /// This replica's complete runs; the other replicas evict on the delete's NOTIFY.
    pub complete_runs: &'a CompleteRuns,
}

impl AppState {
    /// The handles the use cases take.
    pub fn handles(&self) -> Handles<'_> {
        Handles {
            pool: &self.pool,
            runs: &self.runs,
            pipelines: &self.pipelines,
            logs: &self.logs,
            secrets: &self.secrets,
            objects: &self.objects,
            token_cache: &self.token_cache,
            complete_runs: &self.complete_runs,
        }
    }
}

/// A suspended tenant and how many of its runs were cancelled.
pub struct Suspension {
    /// The tenant, as it is now.
    pub tenant: Tenant,
    /// Runs that were unfinished and are now being cancelled.
    pub cancelled_runs: usize,
}

/// Suspends a tenant and cancels its unfinished runs. Suspension comes first, so that no run can
/// start while the running ones are being cancelled; this replica forgets the tenant's tokens at
/// once instead of honouring them until the NOTIFY comes round.
pub async fn suspend_tenant(h: Handles<'_>, tenant: &TenantId) -> Result<Suspension, ApiError> {
    let suspended = gofer_tenants::set_suspended(h.pool, tenant, true).await?;
    h.token_cache.evict(Some(tenant));
    let cancelled_runs = h.runs.cancel_everything(tenant, None).await?;
    Ok(Suspension { tenant: suspended, cancelled_runs })
}

/// Ends a trial whose time is up: it is suspended like any tenant (it can no longer be used), and
/// kept until the removal grace has passed, so that it can still be converted.
pub async fn end_trial(h: Handles<'_>, tenant: &TenantId) -> Result<Suspension, ApiError> {
    suspend_tenant(h, tenant).await
}

/// Removes a tenant and everything it owns. It is suspended first (its tokens refused, its runs
/// cancelled) so nothing new appears while it goes; the rows go next (namespaces, pipelines,
/// runs, events, tokens cascade), then what they pointed to in the stores. `tenant_not_found`
/// when it does not exist (or no longer does: another replica removed it first).
pub async fn remove_tenant(h: Handles<'_>, tenant: &TenantId) -> Result<(), ApiError> {
    suspend_tenant(h, tenant).await?;
    gofer_tenants::delete_tenant(h.pool, tenant).await?;
    h.complete_runs.forget(tenant);
    h.logs.remove_tenant(tenant).await.map_err(ApiError::internal)?;
    h.secrets.purge(tenant, &SecretPrefix::Tenant).await?;
    h.objects.remove_tenant(tenant).await?;
    Ok(())
}

/// Removes a namespace with its pipelines, runs, logs, secrets and objects. Live runs make it
/// `namespace_busy` unless `force`, which cancels them first: deleting the rows under a running
/// task would leave it writing logs and objects nobody can reach. The check and the deletion
/// are one transaction holding the namespace and its pipelines, so no run can start in between;
/// what the rows pointed to in the stores goes after the commit.
pub async fn remove_namespace(
    h: Handles<'_>,
    tenant: &TenantId,
    namespace: &NamespaceId,
    force: bool,
) -> Result<(), ApiError> {
    if force {
        // Nothing to check: the cancelled runs' tasks are still being stopped, and holding the
        // namespace's pipelines first would deadlock with their engines (`namespaces::delete`
        // retries a deletion Postgres picks as a deadlock's victim).
        h.runs.cancel_everything(tenant, Some(namespace)).await?;
        gofer_tenants::namespaces::delete(h.pool, tenant, namespace).await?;
    } else {
        let mut tx = gofer_db::scoped(h.pool, tenant).await.map_err(|e| ApiError::internal(&e))?;
        // A missing namespace answers not found, not busy.
        gofer_tenants::namespaces::lock_for_removal(&mut tx, namespace).await?;
        let live = gofer_engine::runs::unfinished_runs_in(&mut tx, Some(namespace)).await?;
        if !live.is_empty() {
            return Err(ApiError::Conflict {
                code: "namespace_busy",
                detail: format!(
                    "namespace {namespace} has {} live runs; delete with ?force=true to cancel them",
                    live.len()
                ),
            });
        }
        gofer_tenants::namespaces::delete_in(&mut tx, namespace).await?;
        tx.commit().await.map_err(|e| ApiError::internal(&e))?;
    }
    h.complete_runs.forget(tenant);
    h.logs.remove_namespace(tenant, namespace).await.map_err(ApiError::internal)?;
    h.secrets.purge(tenant, &SecretPrefix::Namespace(namespace.clone())).await?;
    h.objects.remove_namespace(tenant, namespace).await?;
    Ok(())
}

/// Removes a pipeline with its config versions, deployments, runs and logs (the engine refuses a
/// pipeline with unfinished runs, or with runs unless `delete_runs`), then the secret values and
/// objects its rows pointed to.
pub async fn remove_pipeline(h: Handles<'_>, key: &PipelineKey, delete_runs: bool) -> Result<(), ApiError> {
    h.pipelines.delete(key, delete_runs).await?;
    h.complete_runs.forget(&key.tenant);
    let prefix = SecretPrefix::Pipeline(key.namespace.clone(), key.pipeline.clone());
    h.secrets.purge(&key.tenant, &prefix).await?;
    h.objects.remove_pipeline(key).await?;
    Ok(())
}
