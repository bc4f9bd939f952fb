//! The root span of every HTTP request, built without the per-request costs of
//! `tracing_actix_web`'s default builder: that one computes `http.route` with
//! `HttpRequest::match_pattern()` before the request is routed, which walks the whole route table
//! a second time (actix matches dynamic routes one regex at a time), and formats every field even
//! when the span is disabled. Here the route is matched once, by [`crate::prometheus`]'s
//! middleware after routing, kept in the request's extensions as a [`MatchedRoute`], and recorded
//! on the span when the request ends. The field names are OpenTelemetry's, as before.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::RootSpanBuilder;

/// The route pattern a request matched (`unmatched` when none did), computed once per request.
#[derive(Debug, Clone)]
pub(crate) struct MatchedRoute(pub(crate) String);

impl MatchedRoute {
    /// The pattern of `req`'s route, from its extensions when already known, else matched now
    /// and kept there.
    pub(crate) fn of(req: &actix_web::HttpRequest) -> String {
        if let Some(known) = req.extensions().get::<MatchedRoute>() {
            return known.0.clone();
        }
        let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        req.extensions_mut().insert(MatchedRoute(route.clone()));
        route
    }
}

/// Builds the `HTTP request` root span; see the module docs.
pub(crate) struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let span = tracing::info_span!(
            "HTTP request",
            http.method = Empty,
            http.route = Empty,
            http.target = Empty,
            http.client_ip = Empty,
            http.status_code = Empty,
            otel.name = Empty,
            otel.kind = "server",
            otel.status_code = Empty,
            exception.message = Empty,
        );
        if !span.is_disabled() {
            span.record("http.method", request.method().as_str());
            span.record("http.target", request.uri().path_and_query().map_or("", |p| p.as_str()));
            if let Some(ip) = request.connection_info().realip_remote_addr() {
                span.record("http.client_ip", ip);
            }
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        if span.is_disabled() {
            return;
        }
        let (status, error) = match outcome {
            Ok(response) => {
                let route = MatchedRoute::of(response.request());
                span.record("http.route", route.as_str());
                span.record("otel.name", format!("{} {route}", response.request().method()));
                (response.status(), response.response().error().map(ToString::to_string))
            }
            Err(error) => (error.as_response_error().status_code(), Some(error.to_string())),
        };
        span.record("http.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
            if let Some(message) = error {
                span.record("exception.message", message);
            }
        } else {
            span.record("otel.status_code", "OK");
        }
    }
}
