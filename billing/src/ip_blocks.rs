//! IP blocks: client addresses refused with 403 `ip_blocked` until the block expires. Replicas
//! keep the active blocks in memory, reloaded on [`gofer_db::channels::IP_BLOCKS`] notifications.

use gofer_core::model::{BlockScope, IpBlock, PageRequest};
use sqlx::PgPool;

use crate::error::BillingError;

/// Blocks `address` until now + `duration` with `scope` (an existing block is only ever extended,
/// and its scope only ever widened).
pub async fn block(
    pool: &PgPool,
    address: &str,
    reason: &str,
    duration: time::Duration,
    scope: BlockScope,
) -> Result<IpBlock, BillingError> {
    Ok(crate::db::upsert_block(pool, address, reason, duration, scope).await?)
}

/// Removes a block.
pub async fn unblock(pool: &PgPool, address: &str) -> Result<(), BillingError> {
    if !crate::db::delete_block(pool, address).await? {
        return Err(BillingError::IpBlockNotFound(address.to_owned()));
    }
    Ok(())
}

/// Active blocks, by address.
pub async fn list(pool: &PgPool, page: &PageRequest<String>) -> Result<(Vec<IpBlock>, Option<String>), BillingError> {
    let rows = crate::db::list_blocks(pool, page.after.as_deref(), i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |b| b.address.clone()))
}

/// Every active block, for the in-memory cache.
pub async fn active(pool: &PgPool) -> Result<Vec<IpBlock>, BillingError> {
    Ok(crate::db::active_blocks(pool).await?)
}

/// Deletes blocks that ended.
pub async fn purge_expired(pool: &PgPool) -> Result<u64, BillingError> {
    Ok(crate::db::purge_blocks(pool).await?)
}
