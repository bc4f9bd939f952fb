//! The tenant-scoped transaction as a type: holding a [`TenantTx`] means row-level security keeps
//! every statement on it inside one tenant.

use std::ops::{Deref, DerefMut};

use gofer_core::TenantId;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// A transaction scoped to one tenant: it runs as the role `gofer_tenant`, with `app.tenant_id`
/// set, until it ends. Row-level security (migration `enable_row_level_security`) then lets it see
/// and change only that tenant's rows, so a query that forgets its tenant filter finds nothing
/// instead of another tenant's rows.
///
/// It dereferences to the connection, so `&mut *tx` (or `&mut **tx` through a `&mut TenantTx`) is
/// an executor, and a function that is cross-tenant by design, taking `&mut PgConnection`, can run
/// inside it too.
#[derive(Debug)]
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant: TenantId,
}

impl TenantTx {
    /// Begins a transaction scoped to `tenant`.
    pub async fn begin(pool: &PgPool, tenant: &TenantId) -> Result<Self, sqlx::Error> {
        Self::scope(pool.begin().await?, tenant).await
    }

    /// Scopes a transaction already open to `tenant`, for work that decides whether to scope
    /// only after it began (an operator's report runs unscoped in the same code).
    pub async fn scope(mut tx: Transaction<'static, Postgres>, tenant: &TenantId) -> Result<Self, sqlx::Error> {
        sqlx::query("SELECT set_config('role', 'gofer_tenant', true), set_config('app.tenant_id', $1, true)")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?;
        Ok(Self { tx, tenant: tenant.clone() })
    }

    /// The tenant the transaction is scoped to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls the transaction back (dropping it does the same, later).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl Deref for TenantTx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// Begins a transaction scoped to one tenant ([`TenantTx::begin`]). Tenant-facing work goes
/// through here; only work that is cross-tenant by design takes a bare connection.
pub async fn scoped(pool: &PgPool, tenant: &TenantId) -> Result<TenantTx, sqlx::Error> {
    TenantTx::begin(pool, tenant).await
}
