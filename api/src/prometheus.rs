//! Prometheus metrics: one process-wide recorder (the `metrics` facade, which the engine records
//! into as well), a middleware that counts and times every request by route pattern, and the
//! `/metrics` route, which also samples the queue from Postgres when it is scraped. When OTLP
//! export is configured the recorder fans out to the OpenTelemetry meter too (`otel_metrics`).

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, get, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::auth::Operator;
use crate::error::ApiError;
use crate::state::AppState;

/// Latency buckets in seconds: sub-millisecond reads up to slow uploads.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process's recorder, installed on first use. Several replicas in one process (tests) share
/// it, as they would share a Prometheus scrape target.
pub(crate) fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        // With OTLP export on, every metric goes to the OpenTelemetry meter as well: the same
        // call sites feed both, so /metrics and the collector always agree.
        let installed = match crate::telemetry::meter_provider() {
            Some(provider) => {
                use opentelemetry::metrics::MeterProvider as _;
                let otel = crate::otel_metrics::OtelRecorder::new(provider.meter("gofer"), LATENCY_BUCKETS);
                let fanout = metrics_util::layers::FanoutBuilder::default().add_recorder(recorder).add_recorder(otel);
                metrics::set_global_recorder(fanout.build()).is_ok()
            }
            None => metrics::set_global_recorder(recorder).is_ok(),
        };
        // Fails only when another recorder was installed first (an embedding program's own):
        // then this handle renders nothing, and that program's recorder gets the metrics.
        if !installed {
            tracing::warn!("a metrics recorder was already installed; /metrics answers empty");
        }
        handle
    })
}

/// Counts and times every request by method, route pattern (never the concrete path: ids would
/// make the label set unbounded) and status.
pub(crate) async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let response = next.call(req).await?;
    let route = crate::request_span::MatchedRoute::of(response.request());
    let status = response.status().as_u16().to_string();
    metrics::counter!("gofer_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("gofer_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// Prometheus text exposition of this replica's metrics, plus the queue as Postgres sees it now.
#[utoipa::path(tag = "system", security(("bearer" = [])), responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain"),
))]
#[get("/metrics")]
pub(crate) async fn scrape(_operator: Operator, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    sample_queue(&state.pool).await?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(handle().render()))
}

/// Sets the queue gauges from Postgres: on every scrape, and periodically when OTLP metrics are
/// exported (`jobs::SampleQueue`). Cross-tenant on purpose: operators watch the whole queue.
pub(crate) async fn sample_queue(pool: &sqlx::PgPool) -> Result<(), gofer_engine::EngineError> {
    for depth in gofer_engine::queue_depth(pool).await? {
        let reason = depth.reason;
        metrics::gauge!("gofer_queue_depth", "reason" => reason.clone()).set(depth.count as f64);
        metrics::gauge!("gofer_queue_oldest_age_seconds", "reason" => reason).set(depth.oldest_age_s);
    }
    Ok(())
}
