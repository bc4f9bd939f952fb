//! Gofer's secrets: the two [`SecretStore`] backends (Vault/OpenBao KV v2 and an encrypted
//! Postgres store) and [`Secrets`], which keeps metadata in Postgres next to the values in the
//! store and resolves `secret{{ key }}` references for the engine.
//!
//! Metadata (key, scope, grants, who set it and when) lives in the tenant-owned `secrets` table
//! in both backends, so lists paginate in Postgres and never call the store.

pub mod keyring;
pub mod postgres;
mod settings;
pub mod vault;

mod db;

use std::sync::Arc;

use gofer_core::model::PageRequest;
use gofer_core::scheduler::BoxFuture;
use gofer_core::secrets::{
    ResolveError, SecretKey, SecretMetadata, SecretPrefix, SecretResolver, SecretScope, SecretStore, SecretStoreError,
    SecretValue,
};
use gofer_core::{NamespaceId, PipelineId, TenantId};
use sqlx::PgPool;

pub use keyring::{Keyring, KeyringError};
pub use postgres::PostgresStore;
pub use settings::VaultAuth;
pub use settings::{PostgresStoreSettings, SecretStoreSettings, VaultSettings};
pub use vault::VaultStore;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// No such secret in the scope.
    #[error("secret {0} does not exist")]
    SecretNotFound(SecretKey),
    /// The pipeline of a pipeline secret does not exist.
    #[error("pipeline {0} does not exist")]
    PipelineNotFound(PipelineId),
    /// The namespace of a pipeline secret does not exist.
    #[error("namespace {0} does not exist")]
    NamespaceNotFound(NamespaceId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] SecretStoreError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl gofer_core::Classify for SecretsError {
    fn kind(&self) -> gofer_core::ErrorKind {
        use gofer_core::ErrorKind as K;
        match self {
            SecretsError::SecretNotFound(_)
            | SecretsError::PipelineNotFound(_)
            | SecretsError::NamespaceNotFound(_) => K::NotFound,
            SecretsError::Store(SecretStoreError::Unavailable(_)) => K::Unavailable("secret store"),
            SecretsError::Store(SecretStoreError::Corrupt(_)) => K::Internal,
            SecretsError::Database(e) => gofer_db::kind_of(e),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            SecretsError::SecretNotFound(_) => "secret_not_found",
            SecretsError::PipelineNotFound(_) => "pipeline_not_found",
            SecretsError::NamespaceNotFound(_) => "namespace_not_found",
            SecretsError::Store(_) | SecretsError::Database(_) => "internal",
        }
    }
}

/// Secret metadata in Postgres plus values in a [`SecretStore`].
#[derive(Clone)]
pub struct Secrets {
    pool: PgPool,
    store: Arc<dyn SecretStore>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("store", &self.store.name()).finish()
    }
}

fn metadata(tenant: &TenantId, row: db::MetaRow) -> Result<SecretMetadata, SecretsError> {
    let corrupt = |what: String| SecretsError::Store(SecretStoreError::Corrupt(what));
    let key = SecretKey::parse(row.key).map_err(|e| corrupt(e.to_string()))?;
    let (namespace_id, pipeline_id) =
        match row.scope.strip_prefix("namespaces/").and_then(|r| r.split_once("/pipelines/")) {
            Some((ns, p)) => (
                Some(NamespaceId::parse(ns).map_err(|e| corrupt(e.to_string()))?),
                Some(PipelineId::parse(p).map_err(|e| corrupt(e.to_string()))?),
            ),
            None if row.scope == "global" => (None, None),
            None => return Err(corrupt(format!("secret scope {:?} of tenant {tenant}", row.scope))),
        };
    Ok(SecretMetadata {
        key,
        namespace_id,
        pipeline_id,
        namespaces: row.namespaces,
        created: row.created_at,
        updated: row.updated_at,
        updated_by: row.updated_by.map(|u| u.to_string()),
    })
}

/// Whether a global secret granted to `globs` may be used by `namespace` (no globs: by none).
pub fn granted(globs: &[String], namespace: &NamespaceId) -> bool {
    globs.iter().any(|g| wildmatch::WildMatch::new(g).matches(namespace.as_str()))
}

impl Secrets {
    /// Metadata in `pool`, values in `store`.
    pub fn new(pool: PgPool, store: Arc<dyn SecretStore>) -> Self {
        Self { pool, store }
    }

    /// The store holding the values.
    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.store
    }

    /// Checks that a pipeline scope's pipeline exists (global scopes always do).
    async fn require_scope(&self, tenant: &TenantId, scope: &SecretScope) -> Result<(), SecretsError> {
        if let SecretScope::Pipeline { namespace, pipeline } = scope {
            let mut tx = db::scoped(&self.pool, tenant).await?;
            match db::pipeline_exists(&mut tx, tenant, namespace.as_str(), pipeline.as_str()).await? {
                (false, _) => return Err(SecretsError::NamespaceNotFound(namespace.clone())),
                (true, false) => return Err(SecretsError::PipelineNotFound(pipeline.clone())),
                (true, true) => {}
            }
        }
        Ok(())
    }

    /// Sets a secret (creating or replacing it); `namespaces` are a global secret's grants.
    /// Answers its metadata and whether it was created. The value goes to the store first, then
    /// the metadata: a value without metadata is never used, and setting it again overwrites it.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, scope = %scope.path(), key = %key, store = self.store.name()), err)]
    pub async fn put(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        key: &SecretKey,
        value: &SecretValue,
        namespaces: &[String],
        by: Option<uuid::Uuid>,
    ) -> Result<(SecretMetadata, bool), SecretsError> {
        self.require_scope(tenant, scope).await?;
        self.store.put(tenant, scope, key, value).await?;
        let pipeline = match scope {
            SecretScope::Pipeline { namespace, pipeline } => Some((namespace.as_str(), pipeline.as_str())),
            SecretScope::Global => None,
        };
        let mut tx = db::scoped(&self.pool, tenant).await?;
        let upserted = db::upsert_meta(&mut tx, tenant, &scope.path(), key.as_str(), pipeline, namespaces, by).await;
        let (row, created) = match upserted {
            Ok(r) => r,
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                // The pipeline was deleted meanwhile: take the value back out.
                drop(tx);
                self.store.delete(tenant, scope, key).await?;
                if let SecretScope::Pipeline { pipeline, .. } = scope {
                    return Err(SecretsError::PipelineNotFound(pipeline.clone()));
                }
                return Err(SecretsError::Database(sqlx::Error::Database(d)));
            }
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        Ok((metadata(tenant, row)?, created))
    }

    /// A secret's metadata (never its value).
    pub async fn get(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        key: &SecretKey,
    ) -> Result<SecretMetadata, SecretsError> {
        self.require_scope(tenant, scope).await?;
        let mut tx = db::scoped(&self.pool, tenant).await?;
        let row = db::get_meta(&mut tx, tenant, &scope.path(), key.as_str())
            .await?
            .ok_or_else(|| SecretsError::SecretNotFound(key.clone()))?;
        metadata(tenant, row)
    }

    /// A page of a scope's secrets' metadata, by key.
    pub async fn list(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        page: &PageRequest<SecretKey>,
    ) -> Result<(Vec<SecretMetadata>, Option<SecretKey>), SecretsError> {
        self.require_scope(tenant, scope).await?;
        let mut tx = db::scoped(&self.pool, tenant).await?;
        let after = page.after.as_ref().map(SecretKey::as_str);
        let rows = db::list_meta(&mut tx, tenant, &scope.path(), after, i64::from(page.limit) + 1).await?;
        let items = rows.into_iter().map(|r| metadata(tenant, r)).collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(items, |m| m.key.clone()))
    }

    /// Deletes a secret: its value from the store, then its metadata (so a failed store delete
    /// can be retried).
    #[tracing::instrument(skip_all, fields(tenant = %tenant, scope = %scope.path(), key = %key, store = self.store.name()), err)]
    pub async fn delete(&self, tenant: &TenantId, scope: &SecretScope, key: &SecretKey) -> Result<(), SecretsError> {
        self.get(tenant, scope, key).await?;
        self.store.delete(tenant, scope, key).await?;
        let mut tx = db::scoped(&self.pool, tenant).await?;
        db::delete_meta(&mut tx, tenant, &scope.path(), key.as_str()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes every value under a prefix from the store (a deleted tenant, namespace or
    /// pipeline; their metadata rows go with the database rows they belong to).
    pub async fn purge(&self, tenant: &TenantId, prefix: &SecretPrefix) -> Result<(), SecretsError> {
        self.store.purge(tenant, prefix).await?;
        Ok(())
    }

    async fn resolve_value(
        &self,
        tenant: &TenantId,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        key: &SecretKey,
    ) -> Result<Option<SecretValue>, SecretsError> {
        let own = SecretScope::Pipeline { namespace: namespace.clone(), pipeline: pipeline.clone() };
        let candidates = {
            let mut tx = db::scoped(&self.pool, tenant).await?;
            db::resolution_candidates(&mut tx, tenant, &own.path(), key.as_str()).await?
        };
        let has_own = candidates.iter().any(|r| r.scope != "global");
        let global_granted = candidates.iter().any(|r| r.scope == "global" && granted(&r.namespaces, namespace));
        if has_own && let Some(value) = self.store.get(tenant, &own, key).await? {
            return Ok(Some(value));
        }
        if global_granted {
            return Ok(self.store.get(tenant, &SecretScope::Global, key).await?);
        }
        Ok(None)
    }
}

impl SecretResolver for Secrets {
    fn resolve<'a>(
        &'a self,
        tenant: &'a TenantId,
        namespace: &'a NamespaceId,
        pipeline: &'a PipelineId,
        key: &'a SecretKey,
    ) -> BoxFuture<'a, Result<SecretValue, ResolveError>> {
        Box::pin(async move {
            match self.resolve_value(tenant, namespace, pipeline, key).await {
                Ok(Some(value)) => Ok(value),
                Ok(None) => Err(ResolveError::NotFound { key: key.clone(), namespace: namespace.clone() }),
                Err(e) => Err(ResolveError::Unavailable(e.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_globs_and_none_grants_nothing() {
        let ns = NamespaceId::parse("team-a").unwrap();
        assert!(granted(&["team-*".into()], &ns));
        assert!(granted(&["other".into(), "team-?".into()], &ns));
        assert!(!granted(&["team-b".into()], &ns));
        assert!(!granted(&[], &ns));
    }
}
