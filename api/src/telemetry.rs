//! Tracing setup: JSON lines for machines, pretty output on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`. Safe to call twice
/// (tests start many apps in one process): later calls do nothing.
pub fn init(format: LogFormat, default_filter: &str) {
    // vaultrs and rustify log every non-2xx answer as an error, including the 404s that mean "no
    // such secret" to the Vault store; the store reports real failures itself.
    let quiet = format!("{default_filter},vaultrs=off,rustify=off");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(quiet));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        // Span fields (tenant, namespace, pipeline, run, task) ride along on every line.
        builder.json().with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.try_init()
    };
}
