//! Tenants: creating them with their first token, converting trials, suspending, listing and deleting.

use gofer_core::TenantId;
use gofer_core::model::Tenant;
use sqlx::PgPool;

use crate::db::{self, NewTenant};
use crate::error::TenantsError;
use crate::token::{Role, TokenSecret};

/// Creates a tenant and its first admin token; answers the tenant and the token's secret (shown once).
pub async fn create_tenant(pool: &PgPool, new: &NewTenant<'_>) -> Result<(Tenant, TokenSecret), TenantsError> {
    let mut tx = pool.begin().await?;
    let created = create_tenant_in(&mut tx, new).await?;
    tx.commit().await?;
    Ok(created)
}

/// [`create_tenant`] inside the caller's transaction (trial signups record the trial with it).
#[tracing::instrument(skip_all, fields(tenant = %new.id))]
pub async fn create_tenant_in(
    conn: &mut sqlx::PgConnection,
    new: &NewTenant<'_>,
) -> Result<(Tenant, TokenSecret), TenantsError> {
    let tenant = db::insert_tenant(&mut *conn, new).await.map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => TenantsError::TenantExists(new.id.clone()),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            TenantsError::PlanNotFound(new.plan.unwrap_or("default").to_owned())
        }
        other => TenantsError::Database(other),
    })?;
    let secret = TokenSecret::generate();
    let description = if new.trial_expires.is_some() { "trial token" } else { "initial tenant admin token" };
    db::insert_token(conn, &secret, Some(new.id), Role::Admin, description, new.trial_expires).await?;
    Ok((tenant, secret))
}

/// Operator scope: makes a trial tenant a regular tenant on `plan`, keeping everything it has;
/// its trial tokens become tenant tokens valid for `token_days` more days.
pub async fn convert_trial(pool: &PgPool, id: &TenantId, plan: &str, token_days: u32) -> Result<Tenant, TenantsError> {
    let mut tx = pool.begin().await?;
    let converted = db::convert_trial(&mut tx, id, plan, token_days).await.map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => TenantsError::PlanNotFound(plan.to_owned()),
        other => TenantsError::Database(other),
    })?;
    if !converted {
        return Err(TenantsError::TenantNotFound(id.clone()));
    }
    tx.commit().await?;
    get_tenant(pool, id).await
}

/// Whether a tenant is suspended (`None`: no such tenant). Run tokens are verified by signature,
/// not looked up, so their requests ask here every time: a suspension takes effect at once.
pub async fn tenant_suspended(pool: &PgPool, id: &TenantId) -> Result<Option<bool>, TenantsError> {
    Ok(db::tenant_suspended(pool, id).await?)
}

/// Operator scope: lists tenants by id.
pub async fn list_tenants(
    pool: &PgPool,
    page: &gofer_core::model::PageRequest<TenantId>,
) -> Result<(Vec<Tenant>, Option<TenantId>), TenantsError> {
    let rows = db::list_tenants(pool, page.after.as_ref(), i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |t| t.id.clone()))
}

/// Operator scope: reads one tenant.
pub async fn get_tenant(pool: &PgPool, id: &TenantId) -> Result<Tenant, TenantsError> {
    db::get_tenant(pool, id).await?.ok_or_else(|| TenantsError::TenantNotFound(id.clone()))
}

/// Operator scope: suspends or resumes a tenant (its tokens are refused while it is suspended).
pub async fn set_suspended(pool: &PgPool, id: &TenantId, suspended: bool) -> Result<Tenant, TenantsError> {
    if !db::set_suspended(pool, id, suspended).await? {
        return Err(TenantsError::TenantNotFound(id.clone()));
    }
    get_tenant(pool, id).await
}

/// Operator scope: deletes a tenant and every row it owns.
pub async fn delete_tenant(pool: &PgPool, id: &TenantId) -> Result<(), TenantsError> {
    if !db::delete_tenant(pool, id).await? {
        return Err(TenantsError::TenantNotFound(id.clone()));
    }
    Ok(())
}
