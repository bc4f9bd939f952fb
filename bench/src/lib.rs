//! Benchmarks of Gofer's engine against a real Postgres and the real server started in-process:
//! dispatch latency and queue throughput with an instant scheduler, and the whole path with the
//! local sandbox. `cargo run --release -p gofer-bench --bin engine -- --help`; see docs/benchmarks.md.
//!
//! This crate is a tool, not a library others call, so it reports errors with `anyhow`.

pub mod harness;
pub mod instant;
pub mod machine;
pub mod profile;
pub mod report;
pub mod scenarios;
pub mod stats;

use std::time::Duration;

use serde::Serialize;

use machine::{Machine, PostgresSettings};
use scenarios::dispatch::DispatchResult;
use scenarios::objects::ObjectsResult;
use scenarios::sandbox::SandboxResult;
use scenarios::throughput::ThroughputResult;

/// The cluster of `infra/test.sh`-style setups on this machine, used when nothing else is given.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:54399/postgres";

/// Which scenarios to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Dispatch latency with the instant scheduler.
    Dispatch,
    /// Queue throughput with the instant scheduler, with 1 and 2 replicas.
    Throughput,
    /// Latency and throughput through the real local sandbox.
    Sandbox,
    /// Concurrent clients starting runs and reading their state for a fixed time (not part of `all`).
    Load,
    /// Dispatch, throughput and sandbox, in that order.
    All,
    /// Object upload and download throughput through the API (S3 and local stores) against
    /// aws-sdk-s3 straight to the S3 server; not part of `all`.
    Objects,
}

/// Command-line options.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "engine", about = "Benchmarks Gofer's engine against real Postgres and the real server")]
pub struct Options {
    /// Admin URL of the Postgres cluster; a fresh database is created (and dropped) per measurement.
    #[arg(long, env = "GOFER_TEST_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Runs per measurement [default: dispatch 500; throughput 200; sandbox 50 for latency, 20 for throughput].
    #[arg(long)]
    pub runs: Option<usize>,
    /// Independent tasks per run in the throughput measurements [default: throughput 10, sandbox 5].
    #[arg(long)]
    pub tasks_per_run: Option<usize>,
    /// Replica counts to measure throughput with, comma-separated [default: 1,2; sandbox: the first, or 1].
    #[arg(long, value_delimiter = ',')]
    pub replicas: Vec<usize>,
    /// Which scenario to run.
    #[arg(long, value_enum, default_value = "all")]
    pub scenario: Scenario,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The engine's monitor interval [default: 10 with the instant scheduler; the service default (200) with the sandbox].
    #[arg(long)]
    pub monitor_interval_ms: Option<u64>,
    /// The engine's `max_parallel_tasks` per replica in the throughput measurements [default: the service default].
    #[arg(long)]
    pub max_parallel_tasks: Option<usize>,
    /// Runs started and finished before measuring latency (at most 5 in the sandbox scenario).
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Report which SQL ran (needs pg_stat_statements in the cluster's shared_preload_libraries).
    #[arg(long)]
    pub profile_sql: bool,
    /// Skip the `ANALYZE` run once the queue is filled (or the warm-up done): the engine then
    /// meets a freshly filled queue with the planner statistics of an empty database.
    #[arg(long)]
    pub no_analyze: bool,
    /// Object size of the objects scenario, in MiB.
    #[arg(long, default_value_t = 64)]
    pub object_mib: usize,
    /// Uploads and downloads per target in the objects scenario (after one warm-up round).
    #[arg(long, default_value_t = 5)]
    pub object_repeats: usize,
    /// S3 endpoint of the objects scenario [default: GOFER_TEST_S3_ENDPOINT; none: the local store only].
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// Concurrent clients of the load scenario.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long the load scenario runs, in seconds.
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    /// Time limit of each scenario, in seconds.
    #[arg(long, default_value_t = 110)]
    pub time_limit_s: u64,
}

impl Options {
    /// The time limit of one scenario.
    pub fn time_limit(&self) -> Duration {
        Duration::from_secs(self.time_limit_s)
    }
}

/// Everything one invocation measured, and on what.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The host.
    pub machine: Machine,
    /// The Postgres cluster.
    pub postgres: PostgresSettings,
    /// Load averages (1, 5, 15 min) before the first scenario.
    pub load_before: Vec<f64>,
    /// Load averages after the last scenario.
    pub load_after: Vec<f64>,
    /// The dispatch scenario.
    pub dispatch: Option<DispatchResult>,
    /// The throughput scenario, one entry per replica count.
    pub throughput: Vec<ThroughputResult>,
    /// The sandbox scenario.
    pub sandbox: Option<SandboxResult>,
    /// The objects scenario.
    pub objects: Option<ObjectsResult>,
    /// The load scenario.
    pub load: Option<scenarios::load::LoadResult>,
}

/// Runs the chosen scenarios.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    // sqlx warns when a replica's HTTP workers stop while their connections are being returned
    // to the pool; that is how every replica here ends, so only its errors are shown.
    gofer_api::telemetry::init(gofer_api::config::LogFormat::Pretty, "warn,sqlx_core::pool::connection=error");
    let postgres = PostgresSettings::read(&options.database_url).await?;
    let load_before = machine::load_average();
    let wants = |s: Scenario| options.scenario == s || options.scenario == Scenario::All;
    let dispatch = if wants(Scenario::Dispatch) { Some(scenarios::dispatch::run(options).await?) } else { None };
    let throughput = if wants(Scenario::Throughput) { scenarios::throughput(options).await? } else { Vec::new() };
    let sandbox = if wants(Scenario::Sandbox) { Some(scenarios::sandbox::run(options).await?) } else { None };
    let objects =
        if options.scenario == Scenario::Objects { Some(scenarios::objects::run(options).await?) } else { None };
    let load = if options.scenario == Scenario::Load { Some(scenarios::load::run(options).await?) } else { None };
    Ok(Report {
        machine: Machine::describe(),
        postgres,
        load_before,
        load_after: machine::load_average(),
        dispatch,
        throughput,
        sandbox,
        objects,
        load,
    })
}
