//! Tracing setup: JSON lines for machines, pretty output on a terminal, and OpenTelemetry traces
//! over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (off otherwise).
//!
//! The exporter runs behind the SDK's batch processor, on its own thread with a bounded queue:
//! a slow or dead collector drops spans, it never blocks a request.

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

static PROVIDER: OnceLock<Option<SdkTracerProvider>> = OnceLock::new();

/// Builds the OTLP trace pipeline when the standard variables ask for one. The endpoint, protocol
/// (`http/protobuf` by default, or `http/json`), headers and timeout come from the standard
/// `OTEL_EXPORTER_OTLP_*` variables; the batch processor from `OTEL_BSP_*`.
fn otlp_provider() -> Option<SdkTracerProvider> {
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !configured {
        return None;
    }
    // The blocking HTTP client owns a runtime of its own, which may not be created (or dropped)
    // inside tokio's: build it on a plain thread.
    let built = std::thread::spawn(|| opentelemetry_otlp::SpanExporter::builder().with_http().build())
        .join()
        .map_err(|_| "the exporter's builder panicked".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match built {
        Ok(exporter) => {
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("gofer").build();
            Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
        Err(e) => {
            eprintln!("gofer: OpenTelemetry export disabled: {e}");
            None
        }
    }
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

/// Sends the spans still queued (at shutdown).
pub fn flush() {
    if let Some(Some(provider)) = PROVIDER.get() {
        let _ = provider.force_flush();
    }
}
