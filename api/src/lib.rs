//! Gofer's HTTP API: configuration, wiring of the stores, scheduler and engine, routes, auth,
//! errors as RFC 9457 problem details, pagination and the OpenAPI document.

pub mod admission;
pub mod auth;
pub mod blocks;
pub mod body;
pub mod config;
pub mod contract;
pub mod error;
pub mod event_ids;
pub mod jobs;
pub mod limits;
pub mod live;
pub mod openapi;
mod otel_metrics;
pub mod pagination;
mod prometheus;
mod request_span;
mod routes;
pub mod run_cache;
pub mod state;
pub mod streams;
pub mod telemetry;
pub mod usecases;
pub mod wiring;

pub use config::Config;
pub use live::EventHub;
/// The secret type of the config's secret values, for callers building a [`Config`].
pub use secrecy;
pub use wiring::Application;
