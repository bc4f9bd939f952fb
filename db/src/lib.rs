//! The database floor (issue 21): what every crate that stores tenant data shares, written once.
//! Today: the tenant-scoped transaction, which four crates had copied. Next: the scoped
//! transaction as a type of its own (`TenantTx`), key-binding helpers, the events writer and the
//! migrations.

mod error;

pub use error::kind_of;
use gofer_core::TenantId;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// Scopes an open transaction to one tenant: it runs as the role `gofer_tenant`, with
/// `app.tenant_id` set, until it ends. Row-level security (migration
/// `enable_row_level_security`) then lets it see and change only that tenant's rows, so a query
/// that forgets its tenant filter finds nothing instead of another tenant's rows.
pub async fn scope_to(conn: &mut PgConnection, tenant: &TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', $1, true)")
        .bind(tenant.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Begins a transaction scoped to one tenant ([`scope_to`]). Tenant-facing work goes through
/// here; only work that is cross-tenant by design takes a bare connection.
pub async fn scoped(pool: &PgPool, tenant: &TenantId) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    scope_to(&mut tx, tenant).await?;
    Ok(tx)
}
