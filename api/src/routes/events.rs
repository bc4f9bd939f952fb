//! The tenant's events: history in pages, or a live Server-Sent Events stream.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use gofer_core::model::{Event, Page, PageRequest};
use gofer_core::{NamespaceId, PipelineId, RunId};
use gofer_engine::events::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{ReadEvents, TenantAccess};
use crate::error::ApiError;
use crate::live::{EventStreamTiming, event_stream, follow_param};
use crate::pagination::{PageQuery, page};
use crate::startup::AppState;

/// Query parameters of `GET /api/v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Start after this event id; 0 (the default) starts at the first event. Not with `cursor`.
    #[param(value_type = Option<i64>, minimum = 0)]
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

fn event_id(value: &str, code: &'static str, name: &str) -> Result<i64, ApiError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| invalid(code, format!("{name} must be an event id (an integer from 0)")))
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
            (_, None, Some(_)) | (None, Some(_), Some(_)) => {
                Err(invalid("invalid_filter", "a run filter needs namespace and pipeline"))
            }
            (None, Some(_), None) => Err(invalid("invalid_filter", "a pipeline filter needs namespace")),
        }
    }

    /// `accept_stream`: the client accepts `text/event-stream`; `last_event_id`: the header a
    /// reconnecting EventSource sends, which wins over `after`.
    fn parse(self, accept_stream: bool, last_event_id: Option<&str>) -> Result<EventsRequest, ApiError> {
        let filter = self.filter()?;
        let stream = follow_param(self.follow.as_deref())? || accept_stream;
        let after = self.after.as_deref().map(|a| event_id(a, "invalid_after", "after")).transpose()?;
        if after.is_some() && self.cursor.is_some() {
            return Err(invalid("invalid_cursor", "give after or cursor, not both"));
        }
        let mut page = PageQuery::from_parts(self.limit, self.cursor).parse::<i64>()?;
        if page.after.is_some_and(|a| a < 0) {
            return Err(invalid("invalid_cursor", "cursor is not one this list handed out"));
        }
        page.after = page.after.or(after);
        if stream {
            let resume = last_event_id.map(|id| event_id(id, "invalid_last_event_id", "Last-Event-ID")).transpose()?;
            Ok(EventsRequest::Stream { filter, after: resume.or(page.after).unwrap_or(0) })
        } else {
            Ok(EventsRequest::History { filter, page })
        }
    }
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
#[utoipa::path(get, path = "/api/v1/events", tag = "events", operation_id = "list_events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Streams: resume after this event id (wins over `after`)"),
        ("Accept" = Option<String>, Header, description = "`text/event-stream` asks for the live stream"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of history (JSON), or the live stream (SSE)",
            content((Page<Event> = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[get("/api/v1/events")]
pub(crate) async fn list(
    access: TenantAccess<ReadEvents>,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let last_event_id = req.headers().get("Last-Event-ID").map(|v| v.to_str().unwrap_or("invalid"));
    let request = query.into_inner().parse(accepts_event_stream(&req), last_event_id)?;
    let filter = match &request {
        EventsRequest::History { filter, .. } | EventsRequest::Stream { filter, .. } => filter,
    };
    check_scope(&access, filter)?;
    match request {
        EventsRequest::History { filter, page: request } => {
            let result = gofer_engine::events::page(&state.pool, &access.tenant, &filter, &request).await?;
            Ok(HttpResponse::Ok().json(page(result)))
        }
        EventsRequest::Stream { filter, after } => {
            let timing = EventStreamTiming {
                poll: Duration::from_millis(state.config.events.poll_interval_ms),
                keepalive: Duration::from_secs(state.config.events.keepalive_s),
            };
            let stream = event_stream(&state.hub, state.pool.clone(), access.tenant, filter, after, timing);
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

    fn query(pairs: &str) -> EventsQuery {
        web::Query::<EventsQuery>::from_query(pairs).unwrap().into_inner()
    }

    fn code(result: Result<EventsRequest, ApiError>) -> &'static str {
        result.unwrap_err().code()
    }

    #[test]
    fn history_is_the_default_and_after_or_cursor_picks_the_start() {
        let plain = query("").parse(false, None).unwrap();
        assert_eq!(
            plain,
            EventsRequest::History { filter: EventFilter::All, page: PageRequest { limit: 50, after: None } }
        );
        let after = query("after=7&limit=2").parse(false, None).unwrap();
        assert_eq!(
            after,
            EventsRequest::History { filter: EventFilter::All, page: PageRequest { limit: 2, after: Some(7) } }
        );
        let cursor = crate::pagination::page((vec![()], Some(9i64))).next_cursor.unwrap();
        let resumed = query(&format!("cursor={cursor}")).parse(false, None).unwrap();
        assert_eq!(
            resumed,
            EventsRequest::History { filter: EventFilter::All, page: PageRequest { limit: 50, after: Some(9) } }
        );
    }

    #[test]
    fn streams_resume_from_last_event_id_then_after() {
        assert_eq!(
            query("follow=true").parse(false, None).unwrap(),
            EventsRequest::Stream { filter: EventFilter::All, after: 0 }
        );
        assert_eq!(
            query("after=5").parse(true, None).unwrap(),
            EventsRequest::Stream { filter: EventFilter::All, after: 5 }
        );
        assert_eq!(
            query("after=5").parse(true, Some("12")).unwrap(),
            EventsRequest::Stream { filter: EventFilter::All, after: 12 }
        );
        assert_eq!(query("follow=false").parse(false, Some("12")).unwrap(), query("").parse(false, None).unwrap());
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
        assert_eq!(code(query("after=-1").parse(false, None)), "invalid_after");
        assert_eq!(code(query("after=x").parse(false, None)), "invalid_after");
        assert_eq!(code(query("after=1&cursor=abc").parse(false, None)), "invalid_cursor");
        assert_eq!(code(query("cursor=!!").parse(false, None)), "invalid_cursor");
        assert_eq!(code(query("limit=0").parse(false, None)), "invalid_limit");
        assert_eq!(code(query("follow=yes").parse(false, None)), "invalid_follow");
        assert_eq!(code(query("namespace=Bad").parse(false, None)), "invalid_identifier");
        assert_eq!(code(query("namespace=builds&pipeline=hello&run=0").parse(false, None)), "invalid_identifier");
        assert_eq!(code(query("").parse(true, Some("abc"))), "invalid_last_event_id");
    }
}
