//! What the engine reports to the process's metrics recorder (see the api crate's `prometheus`
//! module for the exporter), and the queue sample `/metrics` takes from Postgres.

use gofer_core::WaitingReason;
use sqlx::PgPool;

use crate::EngineError;

/// Queued task executions waiting for one reason.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDepth {
    /// The waiting reason (`waiting_for_capacity`, …), or `none`.
    pub reason: String,
    /// How many wait for it.
    pub count: i64,
    /// How long the oldest of them has been queued, in seconds (0 when none).
    pub oldest_age_s: f64,
}

/// Cross-tenant on purpose (operators' view): the queue by waiting reason, every known reason
/// listed even when nothing waits for it, so a gauge drops to 0 instead of keeping its last value.
pub async fn queue_depth(pool: &PgPool) -> Result<Vec<QueueDepth>, EngineError> {
    let rows: Vec<(Option<String>, i64, f64)> = sqlx::query_as(
        "SELECT waiting_reason, count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(queued_at))::float8, 0)
         FROM task_executions WHERE state = 'queued' GROUP BY waiting_reason",
    )
    .fetch_all(pool)
    .await?;
    let mut depths: Vec<QueueDepth> = WaitingReason::ALL
        .iter()
        .map(|r| QueueDepth { reason: r.as_str().to_owned(), count: 0, oldest_age_s: 0.0 })
        .collect();
    for (reason, count, oldest_age_s) in rows {
        let reason = reason.unwrap_or_else(|| "none".to_owned());
        match depths.iter_mut().find(|d| d.reason == reason) {
            Some(d) => (d.count, d.oldest_age_s) = (count, oldest_age_s),
            None => depths.push(QueueDepth { reason, count, oldest_age_s }),
        }
    }
    Ok(depths)
}

/// A task execution was handed to the scheduler `seconds` after it was queued.
pub(crate) fn dispatched(seconds: f64) {
    metrics::histogram!("gofer_dispatch_latency_seconds").record(seconds);
}

/// The finisher recorded `tasks` successes in one transaction (the two counters' ratio is the
/// mean batch size).
pub(crate) fn success_batch(tasks: usize) {
    metrics::counter!("gofer_success_batches_total").increment(1);
    metrics::counter!("gofer_success_batch_tasks_total").increment(tasks as u64);
}

/// A task execution completed with `status`.
pub(crate) fn task_completed(status: gofer_core::TaskStatus) {
    metrics::counter!("gofer_task_outcomes_total", "status" => status.as_str()).increment(1);
}

/// An attempt failed and goes back to the queue.
pub(crate) fn task_retried(infrastructure: bool) {
    let kind = if infrastructure { "infrastructure" } else { "task" };
    metrics::counter!("gofer_task_retries_total", "kind" => kind).increment(1);
}

/// This replica took over a task execution whose lease expired.
pub(crate) fn lease_taken_over() {
    metrics::counter!("gofer_lease_takeovers_total").increment(1);
}

/// A scheduler call failed.
pub(crate) fn scheduler_error(operation: &'static str) {
    metrics::counter!("gofer_scheduler_errors_total", "operation" => operation).increment(1);
}

/// Task output copied to the log store.
pub(crate) fn log_bytes(bytes: usize) {
    metrics::counter!("gofer_log_bytes_total").increment(bytes as u64);
}

/// The W3C `traceparent` of the current span, when OpenTelemetry export is on (stored with a run,
/// so its task executions' spans join the trace of the request that started it). The global
/// propagator is a no-op unless the API's telemetry set one, so this is `None` with tracing off.
pub(crate) fn current_trace_parent() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove("traceparent")
}

/// Makes `span` a child of the span `trace_parent` names.
pub(crate) fn set_parent(span: &tracing::Span, trace_parent: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let carrier = std::collections::HashMap::from([("traceparent".to_owned(), trace_parent.to_owned())]);
    let context = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(context);
}
