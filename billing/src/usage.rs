//! Usage reports from the metering ledger (`usage_records`, written by the engine).

use gofer_core::TenantId;
use gofer_core::model::{PageRequest, UsageGroup};
use sqlx::PgPool;
use time::OffsetDateTime;

pub use crate::db::GroupBy;
use crate::error::BillingError;

/// A usage question: whose, which finished attempts (`from <= finished < to`), grouped how.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// The tenant.
    pub tenant: TenantId,
    /// Start of the period (inclusive).
    pub from: OffsetDateTime,
    /// End of the period (exclusive).
    pub to: OffsetDateTime,
    /// Grouping.
    pub group_by: GroupBy,
}

/// One page of usage groups, ordered by key. `scoped`: run as the tenant (row-level security),
/// for tenant routes; operators' reports use the owner role.
pub async fn report(
    pool: &PgPool,
    query: &UsageQuery,
    page: &PageRequest<String>,
    scoped: bool,
) -> Result<(Vec<UsageGroup>, Option<String>), BillingError> {
    if query.to <= query.from {
        return Err(BillingError::Invalid("to must be after from".into()));
    }
    let read = async |conn: &mut sqlx::PgConnection| {
        let (after, limit) = (page.after.as_deref(), i64::from(page.limit) + 1);
        crate::db::usage_groups(conn, &query.tenant, query.from, query.to, query.group_by, after, limit).await
    };
    let rows = if scoped {
        // One read: the transaction only scopes it, so it ends without a commit.
        read(&mut *gofer_db::scoped(pool, &query.tenant).await?).await?
    } else {
        read(&mut *pool.acquire().await?).await?
    };
    Ok(page.finish(rows, |g| g.key.clone()))
}
