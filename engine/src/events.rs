//! Events: every state change writes one tenant-scoped row in the same transaction as the change,
//! and notifies listeners on commit. The writer is the database floor's (`gofer_db::events`,
//! re-exported here); this module reads.
//!
//! Readers page through a tenant's events in **stream order**: by the writing transaction's id
//! (`xact_id`), then by event id, and only up to the visibility horizon, the oldest transaction
//! still in flight. Everything below the horizon is final (committed or rolled back), and any
//! transaction that commits later has an id at or above it, so its events sort after everything
//! already handed out: a reader resuming after the last event it received misses nothing and sees
//! nothing twice. Plain id order would not do: ids come from a sequence when the row is inserted,
//! so a transaction holding id 5 can commit after another one's id 6 was handed out. Stream order
//! is id order except between transactions that overlapped.

use gofer_core::TenantId;
use gofer_core::model::PageRequest;
use sqlx::PgPool;

pub use gofer_db::events::{EventScope, NewEvent, record, record_batch};
pub use stored::{EventFilter, Position, StoredEvent};

pub(crate) mod stored;

use crate::EngineError;

/// Lists a tenant's events after the event whose `seq` is `after` (0: from the start) in stream
/// order, only up to the visibility horizon (see the module docs), so a later call resuming from
/// the last `seq` misses nothing.
pub async fn list_after(
    pool: &PgPool,
    tenant: &TenantId,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, EngineError> {
    list(pool, tenant, &EventFilter::All, after, limit).await
}

/// Lists a tenant's events that pass `filter`, after the event whose `seq` is `after` (0: from the
/// start), in stream order up to the visibility horizon. `after` should be the `seq` of an event
/// of this tenant (the API only lets through ids it made for the tenant); another number resumes
/// after the tenant's last event with a lower `seq`.
pub async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &EventFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, EngineError> {
    let mut conn = crate::db::scoped(pool, tenant).await?;
    crate::db::events::list(&mut conn, tenant, filter, after, limit).await
}

/// One page of a tenant's events in stream order; the key of the next page is the last event's
/// `seq`.
pub async fn page(
    pool: &PgPool,
    tenant: &TenantId,
    filter: &EventFilter,
    request: &PageRequest<i64>,
) -> Result<(Vec<StoredEvent>, Option<i64>), EngineError> {
    let after = request.after.unwrap_or(0);
    let rows = list(pool, tenant, filter, after, i64::from(request.limit) + 1).await?;
    Ok(request.finish(rows, |e| e.seq))
}

/// Where a reader resuming after the event whose `seq` is `after` stands in stream order, as
/// [`list`] resolves it ([`Position::START`] for 0).
pub async fn position_of(pool: &PgPool, tenant: &TenantId, after: i64) -> Result<Position, EngineError> {
    let mut conn = crate::db::scoped(pool, tenant).await?;
    crate::db::events::position_of(&mut conn, tenant, after).await
}

/// The `seq` of the tenant's last event visible now, in stream order (0 when it has none): a
/// reader listing after it gets only events that become visible from now on.
pub async fn tail(pool: &PgPool, tenant: &TenantId) -> Result<i64, EngineError> {
    let mut conn = crate::db::scoped(pool, tenant).await?;
    crate::db::events::tail(&mut conn, tenant).await
}

/// The key of the event ids tenants see (api/src/event_ids.rs), kept in the database's
/// `metadata` table: created from `candidate` on the first start, then the same for every replica
/// and every restart. It guards nothing the database does not already hold (how many events each
/// tenant has), and the tenant role cannot read `metadata`.
pub async fn id_key(pool: &PgPool, candidate: &str) -> Result<String, EngineError> {
    crate::db::events::id_key(pool, candidate).await
}
