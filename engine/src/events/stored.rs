//! What a reader of the event history gets and asks for: stored events, their place in stream
//! order, and filters. Plain data, shared by the readers (`crate::events`) and their SQL
//! (`crate::db::events`).

use gofer_core::id::EventId;
use gofer_core::model::Event;
use gofer_core::{EventKind, NamespaceId, PipelineId, RunId, TaskId};
use serde_json::Value;
use time::OffsetDateTime;

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
