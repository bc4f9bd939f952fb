//! The tenant's events: history in pages, or a live Server-Sent Events stream.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use gofer_core::id::EventId;
use gofer_core::model::{Event, Page, PageRequest};
use gofer_core::{NamespaceId, PipelineId, RunId};
use gofer_engine::events::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{ReadEvents, TenantAccess};
use crate::error::ApiError;
use crate::event_ids::TenantEventIds;
use crate::live::{EventStreamTiming, event_stream, follow_param};
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// Query parameters of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Start after this event (its `id`); absent: at the first event. Not with `cursor`.
    #[param(value_type = Option<String>, pattern = "^[A-Za-z0-9_-]{22}$")]
    after: Option<String>,
    /// Items per page, 1 to 500 (default 50); history only.
    limit: Option<String>,
    /// The `next_cursor` of the previous page. Not with `after`.
    cursor: Option<String>,
    /// Only events inside this namespace.
    namespace: Option<String>,
    /// Only events of this pipeline; needs `namespace`.
    pipeline: Option<String>,
    /// Only events of this run; needs `namespace` and `pipeline`.
    #[param(value_type = Option<i64>, minimum = 1)]
    run: Option<String>,
    /// `true` answers a Server-Sent Events stream, as `Accept: text/event-stream` does.
    #[param(value_type = Option<bool>)]
    follow: Option<String>,
}

/// What the request asks for, validated.
#[derive(Debug, PartialEq)]
enum EventsRequest {
    History { filter: EventFilter, page: PageRequest<i64> },
    Stream { filter: EventFilter, after: i64 },
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter { code, detail: detail.into() }
}

/// The place of the event a client names by its id: only an id made for this tenant opens, so a
/// made-up id, or another tenant's, is refused here (as `name`, under `code`).
fn event_seq(ids: &TenantEventIds, value: &str, code: &'static str, name: &str) -> Result<i64, ApiError> {
    let id = EventId::parse(value.trim()).map_err(|e| invalid(code, format!("{name}: {}", e.reason)))?;
    ids.seq(&id).ok_or_else(|| unknown_event(code, name))
}

/// An id of the right shape that this tenant was never given (422: no schema can tell).
fn unknown_event(code: &'static str, name: &str) -> ApiError {
    ApiError::Unprocessable { code, detail: format!("{name}: not the id of an event of this tenant") }
}

impl EventsQuery {
    fn filter(&self) -> Result<EventFilter, ApiError> {
        let namespace = self.namespace.as_deref().map(NamespaceId::parse).transpose()?;
        let pipeline = self.pipeline.as_deref().map(PipelineId::parse).transpose()?;
        let run = self.run.as_deref().map(RunId::parse).transpose()?;
        match (namespace, pipeline, run) {
            (None, None, None) => Ok(EventFilter::All),
            (Some(ns), None, None) => Ok(EventFilter::Namespace(ns)),
            (Some(ns), Some(p), None) => Ok(EventFilter::Pipeline(ns, p)),
            (Some(ns), Some(p), Some(r)) => Ok(EventFilter::Run(ns, p, r)),
            (_, None, Some(_)) | (None, Some(_), Some(_)) => Err(ApiError::Unprocessable {
                code: "invalid_filter",
                detail: "run: a run filter needs namespace and pipeline".into(),
            }),
            (None, Some(_), None) => Err(ApiError::Unprocessable {
                code: "invalid_filter",
                detail: "pipeline: a pipeline filter needs namespace".into(),
            }),
        }
    }

    /// `accept_stream`: the client accepts `text/event-stream`; `last_event_id`: the header a
    /// reconnecting EventSource sends, which wins over `after`. Every id (`after`, the cursor's,
    /// `Last-Event-ID`) is read back with the tenant's `ids` into the place it stands for.
    fn parse(
        self,
        ids: &TenantEventIds,
        accept_stream: bool,
        last_event_id: Option<&str>,
    ) -> Result<EventsRequest, ApiError> {
        let filter = self.filter()?;
        let stream = follow_param(self.follow.as_deref())? || accept_stream;
        let after = self.after.as_deref().map(|a| event_seq(ids, a, "invalid_after", "after")).transpose()?;
        if after.is_some() && self.cursor.is_some() {
            return Err(ApiError::Unprocessable {
                code: "invalid_cursor",
                detail: "cursor: give after or cursor, not both".into(),
            });
        }
        let page = PageQuery::from_parts(self.limit, self.cursor).parse::<EventId>()?;
        let cursor = match &page.after {
            Some(id) => Some(ids.seq(id).ok_or_else(|| unknown_event("invalid_cursor", "cursor"))?),
            None => None,
        };
        let page = PageRequest { limit: page.limit, after: cursor.or(after) };
        // Checked whether or not it is used (history ignores it): an empty one is none, as
        // EventSource sends it before its first event.
        let resume = last_event_id
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| event_seq(ids, id, "invalid_last_event_id", "Last-Event-ID"))
            .transpose()?;
        if stream {
            Ok(EventsRequest::Stream { filter, after: resume.or(page.after).unwrap_or(0) })
        } else {
            Ok(EventsRequest::History { filter, page })
        }
    }
}

/// One event of the live stream as Server-Sent Events frame it (the document describes each
/// event of a `text/event-stream`, as OpenAPI before 3.2 does); keep-alive comments carry none.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct SseEvent {
    /// The event's id (resume after it with `Last-Event-ID`).
    #[schema(pattern = "^[A-Za-z0-9_-]{22}$")]
    id: String,
    /// The event's kind.
    event: String,
    /// The event, as the JSON of an `Event`.
    data: String,
}

fn accepts_event_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|m| m.trim().starts_with("text/event-stream")))
}

/// A token limited to some namespaces sees only their events: it must filter by one of them.
fn check_scope(access: &TenantAccess<ReadEvents>, filter: &EventFilter) -> Result<(), ApiError> {
    if !access.namespaces.is_limited() {
        return Ok(());
    }
    match filter {
        EventFilter::All => Err(ApiError::Forbidden {
            code: "namespace_forbidden",
            detail: "this token is limited to some namespaces: filter events with ?namespace=".into(),
        }),
        EventFilter::Namespace(ns) | EventFilter::Pipeline(ns, _) | EventFilter::Run(ns, _, _) => {
            access.check_namespace(ns)
        }
    }
}

/// The tenant's events, oldest first (in stream order: see the API docs).
///
/// As JSON, a page of history: `after` (or `cursor`) picks where it starts, `next_cursor` is null
/// on the last page available now. With `Accept: text/event-stream` or `follow=true`, a
/// Server-Sent Events stream that does not end: each event is a frame `id: <id>`,
/// `event: <kind>`, `data: <Event JSON>`, an idle stream sends a `: keepalive` comment every 15 s,
/// and a reconnecting client resumes after its `Last-Event-ID` (or `after`) with no gap and no
/// duplicate. The filters apply to both.
#[utoipa::path(tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Streams: resume after this event (its `id`; wins over `after`)"),
        ("Accept" = Option<String>, Header, description = "`text/event-stream` asks for the live stream"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of history (JSON), or the live stream (SSE)",
            content((Page<Event> = "application/json"), (SseEvent = "text/event-stream"))),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json",
            description = "A stream, when the tenant holds its plan's `max_concurrent_streams`: `too_many_streams`, with `Retry-After`"),
    ))]
#[get("/api/v1/events")]
pub(crate) async fn list(
    access: TenantAccess<ReadEvents>,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let last_event_id = req.headers().get("Last-Event-ID").map(|v| v.to_str().unwrap_or("invalid"));
    let ids = state.event_ids.tenant(&access.tenant);
    let request = query.into_inner().parse(&ids, accepts_event_stream(&req), last_event_id)?;
    let filter = match &request {
        EventsRequest::History { filter, .. } | EventsRequest::Stream { filter, .. } => filter,
    };
    check_scope(&access, filter)?;
    match request {
        EventsRequest::History { filter, page: request } => {
            let (events, next) = gofer_engine::events::page(&state.pool, &access.tenant, &filter, &request).await?;
            let events: Vec<Event> = events.into_iter().map(|e| ids.event(e)).collect();
            Ok(HttpResponse::Ok().json(page((events, next.map(|seq| ids.id(seq))))))
        }
        EventsRequest::Stream { filter, after } => {
            let timing = EventStreamTiming {
                poll: Duration::from_millis(state.config.events.poll_interval_ms),
                keepalive: Duration::from_secs(state.config.events.keepalive_s),
            };
            let slot = state.streams.take_under_plan(&state.pool, &access.tenant).await?;
            let stream =
                event_stream(&state.hub, state.pool.clone(), (access.tenant, ids, slot), filter, after, timing);
            Ok(HttpResponse::Ok()
                .content_type("text/event-stream")
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .insert_header(("X-Accel-Buffering", "no"))
                .streaming(stream))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_ids::EventIds;
    use gofer_core::TenantId;

    fn ids() -> TenantEventIds {
        EventIds::new([3; 32]).tenant(&TenantId::parse("acme").unwrap())
    }

    fn id(seq: i64) -> String {
        ids().id(seq).to_string()
    }

    fn query(pairs: &str) -> EventsQuery {
        web::Query::<EventsQuery>::from_query(pairs).unwrap().into_inner()
    }

    fn parse(pairs: &str, accept_stream: bool, last_event_id: Option<&str>) -> Result<EventsRequest, ApiError> {
        query(pairs).parse(&ids(), accept_stream, last_event_id)
    }

    fn code(result: Result<EventsRequest, ApiError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[test]
    fn history_is_the_default_and_after_or_cursor_picks_the_start() {
        assert_eq!(
            parse("", false, None).unwrap(),
            EventsRequest::History { filter: EventFilter::All, page: PageRequest { limit: 50, after: None } }
        );
        assert_eq!(
            parse(&format!("after={}&limit=2", id(7)), false, None).unwrap(),
            EventsRequest::History { filter: EventFilter::All, page: PageRequest { limit: 2, after: Some(7) } }
        );
        let cursor = crate::pagination::page((vec![()], Some(ids().id(9)))).next_cursor.unwrap();
        assert_eq!(
            parse(&format!("cursor={cursor}"), false, None).unwrap(),
            EventsRequest::History { filter: EventFilter::All, page: PageRequest { limit: 50, after: Some(9) } }
        );
    }

    #[test]
    fn streams_resume_from_last_event_id_then_after() {
        assert_eq!(
            parse("follow=true", false, None).unwrap(),
            EventsRequest::Stream { filter: EventFilter::All, after: 0 }
        );
        let after5 = format!("after={}", id(5));
        assert_eq!(parse(&after5, true, None).unwrap(), EventsRequest::Stream { filter: EventFilter::All, after: 5 });
        assert_eq!(
            parse(&after5, true, Some(&id(12))).unwrap(),
            EventsRequest::Stream { filter: EventFilter::All, after: 12 }
        );
        assert_eq!(parse("follow=false", false, Some(&id(12))).unwrap(), parse("", false, None).unwrap());
    }

    #[test]
    fn filters_name_their_parents() {
        let ns = || NamespaceId::parse("builds").unwrap();
        let p = || PipelineId::parse("hello").unwrap();
        assert_eq!(query("namespace=builds").filter().unwrap(), EventFilter::Namespace(ns()));
        assert_eq!(query("namespace=builds&pipeline=hello").filter().unwrap(), EventFilter::Pipeline(ns(), p()));
        assert_eq!(
            query("namespace=builds&pipeline=hello&run=3").filter().unwrap(),
            EventFilter::Run(ns(), p(), RunId::from_i64(3))
        );
        for bad in ["run=3", "pipeline=hello", "namespace=builds&run=3", "pipeline=hello&run=3"] {
            assert_eq!(query(bad).filter().unwrap_err().code(), "invalid_filter", "{bad}");
        }
    }

    #[test]
    fn bad_parameters_are_refused_with_their_codes() {
        assert_eq!(code(parse("after=-1", false, None)), "invalid_after");
        assert_eq!(code(parse("after=x", false, None)), "invalid_after");
        assert_eq!(code(parse(&format!("after={}&cursor=abc", id(1)), false, None)), "invalid_cursor");
        assert_eq!(code(parse("cursor=!!", false, None)), "invalid_cursor");
        assert_eq!(code(parse("limit=0", false, None)), "invalid_limit");
        assert_eq!(code(parse("follow=yes", false, None)), "invalid_follow");
        assert_eq!(code(parse("namespace=Bad", false, None)), "invalid_identifier");
        assert_eq!(code(parse("namespace=builds&pipeline=hello&run=0", false, None)), "invalid_identifier");
        assert_eq!(code(parse("", true, Some("abc"))), "invalid_last_event_id");
    }

    #[test]
    fn plain_numbers_made_up_ids_and_another_tenants_ids_are_refused_naming_the_parameter() {
        let umbrella = EventIds::new([3; 32]).tenant(&TenantId::parse("umbrella").unwrap());
        let theirs = umbrella.id(7).to_string();
        let theirs_cursor = crate::pagination::page((vec![()], Some(umbrella.id(7)))).next_cursor.unwrap();
        let forged_cursor = crate::pagination::page((vec![()], Some("AAAAAAAAAAAAAAAAAAAAAA"))).next_cursor.unwrap();
        for (pairs, last_event_id, code, name) in [
            ("after=7".to_owned(), None, "invalid_after", "after"),
            (format!("after={theirs}"), None, "invalid_after", "after"),
            ("after=AAAAAAAAAAAAAAAAAAAAAA".to_owned(), None, "invalid_after", "after"),
            (format!("cursor={theirs_cursor}"), None, "invalid_cursor", "cursor"),
            (format!("cursor={forged_cursor}"), None, "invalid_cursor", "cursor"),
            ("follow=true".to_owned(), Some("7"), "invalid_last_event_id", "Last-Event-ID"),
            ("follow=true".to_owned(), Some(theirs.as_str()), "invalid_last_event_id", "Last-Event-ID"),
        ] {
            let err = parse(&pairs, false, last_event_id).unwrap_err();
            assert_eq!(err.code(), code, "{pairs} {last_event_id:?}");
            assert!(err.to_string().contains(name), "{pairs}: {err}");
        }
    }
}
