//! Namespaces: groups of pipelines inside a tenant.

use gofer_core::model::{Namespace, PageRequest};
use gofer_core::{NamespaceId, TenantId};
use gofer_db::TenantTx;
use sqlx::PgPool;

use crate::db;
use crate::error::TenantsError;

/// Creates a namespace in `tenant`.
#[tracing::instrument(skip_all, fields(tenant = %tenant, namespace = %id))]
pub async fn create(
    pool: &PgPool,
    tenant: &TenantId,
    id: &NamespaceId,
    name: &str,
    description: &str,
) -> Result<Namespace, TenantsError> {
    let mut tx = db::scoped(pool, tenant).await?;
    let namespace = db::insert_namespace(&mut tx, tenant, id, name, description).await.map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => TenantsError::NamespaceExists(id.clone()),
        other => TenantsError::Database(other),
    })?;
    tx.commit().await?;
    Ok(namespace)
}

/// Lists `tenant`'s namespaces that `globs` allow, ordered by id.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    globs: &crate::token::NamespaceGlobs,
    page: &PageRequest<NamespaceId>,
) -> Result<(Vec<Namespace>, Option<NamespaceId>), TenantsError> {
    let patterns = globs.like_patterns();
    let mut tx = db::scoped(pool, tenant).await?;
    let rows = db::list_namespaces(&mut tx, tenant, &patterns, page.after.as_ref(), i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |n| n.id.clone()))
}

/// Reads one namespace.
pub async fn get(pool: &PgPool, tenant: &TenantId, id: &NamespaceId) -> Result<Namespace, TenantsError> {
    let mut tx = db::scoped(pool, tenant).await?;
    db::get_namespace(&mut tx, tenant, id).await?.ok_or_else(|| TenantsError::NamespaceNotFound(id.clone()))
}

/// Changes a namespace's name or description; a change to nothing answers it unchanged.
pub async fn update(
    pool: &PgPool,
    tenant: &TenantId,
    id: &NamespaceId,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<Namespace, TenantsError> {
    let mut tx = db::scoped(pool, tenant).await?;
    if !db::update_namespace(&mut tx, tenant, id, name, description).await? {
        return Err(TenantsError::NamespaceNotFound(id.clone()));
    }
    let namespace =
        db::get_namespace(&mut tx, tenant, id).await?.ok_or_else(|| TenantsError::NamespaceNotFound(id.clone()))?;
    tx.commit().await?;
    Ok(namespace)
}

/// Deletes a namespace with its pipelines and runs (the caller stops live runs first).
///
/// A namespace whose runs were just cancelled is deleted while their engines still stop them; an
/// engine locks a run, then rows around it, in another order than the cascade, and Postgres breaks
/// such a deadlock by failing one side. When that side is this deletion it runs again: the
/// engine's transaction has committed by then.
pub async fn delete(pool: &PgPool, tenant: &TenantId, id: &NamespaceId) -> Result<(), TenantsError> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        let mut tx = db::scoped(pool, tenant).await?;
        match delete_in(&mut tx, id).await {
            Err(TenantsError::Database(sqlx::Error::Database(e)))
                if e.code().as_deref() == Some("40P01") && attempt < ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(tx.commit().await?),
        }
    }
}

/// Locks a namespace for its removal in `tx` (a removal that checks something first, such as
/// its live runs, in the same transaction): until `tx` ends, no pipeline is created in it and no
/// run of its pipelines starts. `namespace_not_found` when it does not exist.
pub async fn lock_for_removal(tx: &mut TenantTx, id: &NamespaceId) -> Result<(), TenantsError> {
    let tenant = tx.tenant().clone();
    if !db::lock_namespace(tx, &tenant, id).await? {
        return Err(TenantsError::NamespaceNotFound(id.clone()));
    }
    Ok(())
}

/// Deletes a namespace's rows (pipelines, runs, events and secrets' metadata cascade) in `tx`.
pub async fn delete_in(tx: &mut TenantTx, id: &NamespaceId) -> Result<(), TenantsError> {
    let tenant = tx.tenant().clone();
    if !db::delete_namespace(tx, &tenant, id).await? {
        return Err(TenantsError::NamespaceNotFound(id.clone()));
    }
    Ok(())
}
