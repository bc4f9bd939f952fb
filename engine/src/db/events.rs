//! SQL of the event history: a tenant's events in stream order (writing transaction, then id) up
//! to the visibility horizon; see `crate::events` for why that order makes resuming safe.

use gofer_core::{RunId, TenantId};

use gofer_db::TenantTx;
use sqlx::types::Json;
use time::OffsetDateTime;

use super::corrupt;
use crate::EngineError;
use crate::events::stored::{EventFilter, Position, StoredEvent};

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    xact: i64,
    kind: String,
    namespace_id: Option<String>,
    pipeline_id: Option<String>,
    run_id: Option<i64>,
    task_id: Option<String>,
    payload: Json<serde_json::Value>,
    emitted_at: OffsetDateTime,
}

impl EventRow {
    fn into_event(self) -> Result<StoredEvent, EngineError> {
        Ok(StoredEvent {
            seq: self.id,
            position: Position { xact: self.xact, seq: self.id },
            kind: self.kind.parse().map_err(corrupt)?,
            namespace_id: self.namespace_id.map(|v| v.parse()).transpose().map_err(corrupt)?,
            pipeline_id: self.pipeline_id.map(|v| v.parse()).transpose().map_err(corrupt)?,
            run_id: self.run_id.map(RunId::from_i64),
            task_id: self.task_id.map(|v| v.parse()).transpose().map_err(corrupt)?,
            payload: self.payload.0,
            emitted: self.emitted_at,
        })
    }
}

/// The query of one filter shape: `$1` tenant, `$2` the id to resume after, `$3` limit, then the
/// filter's own parameters. The position to resume from is the `(xact_id, id)` of the tenant's
/// event `$2` (or of its last event below `$2`; the start when there is none). One static query
/// per filter shape keeps every plan on an index (`events_by_tenant_position`,
/// `events_by_scope_position`) instead of a generic plan full of `$n IS NULL OR …`.
macro_rules! list_sql {
    ($filter:literal) => {
        concat!(
            "SELECT e.id, e.xact_id::text::bigint AS xact, e.kind, e.namespace_id, e.pipeline_id, e.run_id, e.task_id,
                    e.payload, e.emitted_at
             FROM events e
             WHERE e.tenant_id = $1
               AND (e.xact_id, e.id) > (
                   COALESCE((SELECT s.xact_id FROM events s WHERE s.tenant_id = $1 AND s.id <= $2
                             ORDER BY s.id DESC LIMIT 1), '0'::xid8),
                   COALESCE((SELECT s.id FROM events s WHERE s.tenant_id = $1 AND s.id <= $2
                             ORDER BY s.id DESC LIMIT 1), 0))
               AND e.xact_id < pg_snapshot_xmin(pg_current_snapshot())",
            $filter,
            " ORDER BY e.xact_id, e.id LIMIT $3"
        )
    };
}

/// A tenant's events passing `filter` after the event `after`, in stream order, up to the horizon.
pub(crate) async fn list(
    tx: &mut TenantTx,
    tenant: &TenantId,
    filter: &EventFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, EngineError> {
    const ALL: &str = list_sql!("");
    const NAMESPACE: &str = list_sql!(" AND e.namespace_id = $4");
    const PIPELINE: &str = list_sql!(" AND e.namespace_id = $4 AND e.pipeline_id = $5");
    const RUN: &str = list_sql!(" AND e.namespace_id = $4 AND e.pipeline_id = $5 AND e.run_id = $6");
    let query = |sql| sqlx::query_as::<_, EventRow>(sql).bind(tenant.as_str()).bind(after).bind(limit);
    let rows = match filter {
        EventFilter::All => query(ALL).fetch_all(&mut **tx).await?,
        EventFilter::Namespace(ns) => query(NAMESPACE).bind(ns.as_str()).fetch_all(&mut **tx).await?,
        EventFilter::Pipeline(ns, p) => query(PIPELINE).bind(ns.as_str()).bind(p.as_str()).fetch_all(&mut **tx).await?,
        EventFilter::Run(ns, p, run) => {
            query(RUN).bind(ns.as_str()).bind(p.as_str()).bind(run.get()).fetch_all(&mut **tx).await?
        }
    };
    rows.into_iter().map(EventRow::into_event).collect()
}

/// Where a reader resuming after the tenant's event `after` stands: that event's position (or the
/// position of the tenant's last event below `after`; the start when there is none), exactly as
/// `list` resolves it.
pub(crate) async fn position_of(tx: &mut TenantTx, tenant: &TenantId, after: i64) -> Result<Position, EngineError> {
    let found: Option<(i64, i64)> = sqlx::query_as(
        "SELECT s.xact_id::text::bigint, s.id FROM events s WHERE s.tenant_id = $1 AND s.id <= $2
         ORDER BY s.id DESC LIMIT 1",
    )
    .bind(tenant.as_str())
    .bind(after)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.map_or(Position::START, |(xact, seq)| Position { xact, seq }))
}

/// The tenant's last event below the visibility horizon, in stream order: where a reader that
/// wants only what comes from now on starts (0 when the tenant has none).
pub(crate) async fn tail(tx: &mut TenantTx, tenant: &TenantId) -> Result<i64, EngineError> {
    let last: Option<i64> = sqlx::query_scalar(
        "SELECT e.id FROM events e
         WHERE e.tenant_id = $1 AND e.xact_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY e.xact_id DESC, e.id DESC LIMIT 1",
    )
    .bind(tenant.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(last.unwrap_or(0))
}

/// The `metadata` row holding the key of the event ids tenants see.
const ID_KEY: &str = "event_id_key";

/// The stored key of the tenant-facing event ids, storing `candidate` first when there is none.
/// Replicas starting together agree: one insert wins (the others wait for it and do nothing), and
/// every replica reads back the row that won.
pub(crate) async fn id_key(pool: &sqlx::PgPool, candidate: &str) -> Result<String, EngineError> {
    sqlx::query("INSERT INTO metadata (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(ID_KEY)
        .bind(candidate)
        .execute(pool)
        .await?;
    Ok(sqlx::query_scalar("SELECT value FROM metadata WHERE key = $1").bind(ID_KEY).fetch_one(pool).await?)
}
