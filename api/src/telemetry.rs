//! Tracing setup: JSON lines for machines, pretty output on a terminal, and OpenTelemetry traces
//! and metrics over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (off otherwise).
//!
//! The span exporter runs behind the SDK's batch processor, on its own thread with a bounded
//! queue: a slow or dead collector drops spans, it never blocks a request. Metrics are aggregated
//! in memory and pushed by the periodic reader's own thread (see `otel_metrics`).

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

static PROVIDER: OnceLock<Option<SdkTracerProvider>> = OnceLock::new();
static METER_PROVIDER: OnceLock<Option<SdkMeterProvider>> = OnceLock::new();

/// Whether the standard variables ask for OTLP export of `signal` (`TRACES`, `METRICS`): the
/// shared endpoint or the signal's own.
fn configured(signal: &str) -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// Builds an OTLP exporter. The blocking HTTP client owns a runtime of its own, which may not be
/// created (or dropped) inside tokio's: build it on a plain thread.
fn build_exporter<E: Send + 'static>(
    build: impl FnOnce() -> Result<E, opentelemetry_otlp::ExporterBuildError> + Send + 'static,
) -> Option<E> {
    let built = std::thread::spawn(build)
        .join()
        .map_err(|_| "the exporter's builder panicked".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()));
    built.map_err(|e| eprintln!("gofer: OpenTelemetry export disabled: {e}")).ok()
}

fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder().with_service_name("gofer").build()
}

/// Builds the OTLP trace pipeline when the standard variables ask for one. The endpoint, protocol
/// (`http/protobuf` by default, or `http/json`), headers and timeout come from the standard
/// `OTEL_EXPORTER_OTLP_*` variables; the batch processor from `OTEL_BSP_*`.
fn otlp_provider() -> Option<SdkTracerProvider> {
    if !configured("TRACES") {
        return None;
    }
    let exporter = build_exporter(|| opentelemetry_otlp::SpanExporter::builder().with_http().build())?;
    Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource()).build())
}

/// The OTLP meter provider, when the standard variables ask for metrics export: a periodic reader
/// (its own thread; `OTEL_METRIC_EXPORT_INTERVAL`, default 60 s) pushing cumulative sums over
/// OTLP/HTTP, configured like the traces (`OTEL_EXPORTER_OTLP_METRICS_*` override the shared
/// variables). `None` when export is off.
pub(crate) fn meter_provider() -> Option<&'static SdkMeterProvider> {
    METER_PROVIDER
        .get_or_init(|| {
            if !configured("METRICS") {
                return None;
            }
            let exporter = build_exporter(|| opentelemetry_otlp::MetricExporter::builder().with_http().build())?;
            let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build();
            Some(SdkMeterProvider::builder().with_reader(reader).with_resource(resource()).build())
        })
        .as_ref()
}

/// How often the periodic reader exports (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds).
pub(crate) fn metric_export_interval() -> std::time::Duration {
    let ms = std::env::var("OTEL_METRIC_EXPORT_INTERVAL").ok().and_then(|v| v.parse::<u64>().ok());
    std::time::Duration::from_millis(ms.filter(|ms| *ms > 0).unwrap_or(60_000))
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`. Safe to call twice
/// (tests start many apps in one process): later calls do nothing.
pub fn init(format: LogFormat, default_filter: &str) {
    let provider = PROVIDER.get_or_init(otlp_provider);
    // vaultrs and rustify log every non-2xx answer as an error, including the 404s that mean "no
    // such secret" to the Vault store; the store reports real failures itself.
    let quiet = format!("{default_filter},vaultrs=off,rustify=off");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(quiet));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let otel = provider.as_ref().map(|provider| {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer().with_tracer(provider.tracer("gofer"))
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if json {
        // Span fields (tenant, namespace, pipeline, run, task) ride along on every line.
        registry.with(fmt.json().with_current_span(true).with_span_list(false)).try_init()
    } else {
        registry.with(fmt).try_init()
    };
}

/// Sends the spans still queued and the metrics recorded since the last export (at shutdown).
pub fn flush() {
    if let Some(Some(provider)) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
    if let Some(Some(provider)) = METER_PROVIDER.get() {
        let _ = provider.force_flush();
    }
}
