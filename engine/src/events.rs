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

use gofer_core::id::EventId;
use gofer_core::model::{Event, PageRequest};
use gofer_core::{EventKind, NamespaceId, PipelineId, RunId, TaskId, TenantId};
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;

pub use gofer_db::events::{EventScope, NewEvent, record, record_batch};

use crate::EngineError;

/// Which of a tenant's events to read: all, or those inside one namespace, pipeline or run.
/// A narrower scope always names its parents, so a filter is valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventFilter {
    /// Every event of the tenant.
    #[default]
    All,
    /// Events inside a namespace.
    Namespace(NamespaceId),
    /// Events of a pipeline (its configs, runs and their tasks).
    Pipeline(NamespaceId, PipelineId),
    /// Events of one run and its tasks.
    Run(NamespaceId, PipelineId, RunId),
}

impl EventFilter {
    /// Whether `event` passes the filter: what the SQL of `list` selects, for readers that filter
    /// events already read (a tenant's shared feed, in the API).
    pub fn matches(&self, event: &StoredEvent) -> bool {
        let ns = |ns: &NamespaceId| event.namespace_id.as_ref() == Some(ns);
        let p = |p: &PipelineId| event.pipeline_id.as_ref() == Some(p);
        match self {
            EventFilter::All => true,
            EventFilter::Namespace(n) => ns(n),
            EventFilter::Pipeline(n, pl) => ns(n) && p(pl),
            EventFilter::Run(n, pl, r) => ns(n) && p(pl) && event.run_id == Some(*r),
        }
    }
}

/// An event's place in stream order: its writing transaction's id, then its `seq`. Readers hand
/// events out in this order (see the module docs); comparing positions tells whether an event
/// comes after the last one a reader handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The writing transaction's id (`events.xact_id`).
    pub xact: i64,
    /// The event's `seq` (`events.id`).
    pub seq: i64,
}

impl Position {
    /// Before every event.
    pub const START: Position = Position { xact: 0, seq: 0 };
}

/// An event as stored. `seq` is its place in the one sequence shared by every tenant's events:
/// the key readers resume from, and never shown to a tenant as it is, since the gaps between a
/// tenant's numbers would count everyone else's events. The API hands out
/// [`StoredEvent::into_event`] with an opaque id of the tenant's own instead (api/src/event_ids.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The id in the events table (`events.id`).
    pub seq: i64,
    /// Its place in stream order.
    pub position: Position,
    /// What happened.
    pub kind: EventKind,
    /// The namespace, when the event is about something inside one.
    pub namespace_id: Option<NamespaceId>,
    /// The pipeline, when the event is about one.
    pub pipeline_id: Option<PipelineId>,
    /// The run, when the event is about one.
    pub run_id: Option<RunId>,
    /// The task, when the event is about one task execution.
    pub task_id: Option<TaskId>,
    /// Details that depend on the kind.
    pub payload: Value,
    /// When it happened.
    pub emitted: OffsetDateTime,
}

impl StoredEvent {
    /// The event as its tenant sees it, under the id `id` made for it.
    pub fn into_event(self, id: EventId) -> Event {
        Event {
            id,
            kind: self.kind,
            namespace_id: self.namespace_id,
            pipeline_id: self.pipeline_id,
            run_id: self.run_id,
            task_id: self.task_id,
            payload: self.payload,
            emitted: self.emitted,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ns: Option<&str>, p: Option<&str>, run: Option<i64>) -> StoredEvent {
        StoredEvent {
            seq: 1,
            position: Position { xact: 1, seq: 1 },
            kind: EventKind::RunCreated,
            namespace_id: ns.map(|n| NamespaceId::parse(n).unwrap()),
            pipeline_id: p.map(|p| PipelineId::parse(p).unwrap()),
            run_id: run.map(RunId::from_i64),
            task_id: None,
            payload: Value::Null,
            emitted: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn filters_match_what_their_sql_selects() {
        let (ns, p) = (|| NamespaceId::parse("builds").unwrap(), || PipelineId::parse("hello").unwrap());
        let filters = [
            EventFilter::All,
            EventFilter::Namespace(ns()),
            EventFilter::Pipeline(ns(), p()),
            EventFilter::Run(ns(), p(), RunId::from_i64(2)),
        ];
        // Each event, and the filters that pass it, in the order above.
        for (e, passes) in [
            (event(None, None, None), [true, false, false, false]),
            (event(Some("builds"), None, None), [true, true, false, false]),
            (event(Some("other"), Some("hello"), Some(2)), [true, false, false, false]),
            (event(Some("builds"), Some("hello"), None), [true, true, true, false]),
            (event(Some("builds"), Some("hellos"), Some(2)), [true, true, false, false]),
            (event(Some("builds"), Some("hello"), Some(1)), [true, true, true, false]),
            (event(Some("builds"), Some("hello"), Some(2)), [true, true, true, true]),
        ] {
            let got: Vec<bool> = filters.iter().map(|f| f.matches(&e)).collect();
            assert_eq!(got, passes, "{e:?}");
        }
    }

    #[test]
    fn positions_order_by_transaction_then_seq() {
        let at = |xact, seq| Position { xact, seq };
        assert!(Position::START < at(1, 1));
        assert!(at(5, 9) < at(6, 2), "a later transaction comes after, whatever its seq");
        assert!(at(6, 2) < at(6, 3));
    }
}
