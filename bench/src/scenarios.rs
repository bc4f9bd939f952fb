//! The scenarios: dispatch latency, queue throughput (instant scheduler), the whole path with
//! the local sandbox, and API load (concurrent clients starting and reading runs). Each creates its own databases and replicas and cleans them up.

pub mod dispatch;
pub mod load;
pub mod objects;
pub mod sandbox;
pub mod throughput;

use std::time::Instant;

use crate::Options;
use throughput::{Backend, Shape, ThroughputResult};

/// The tenant every scenario works in.
pub const TENANT: &str = "bench";
/// The namespace every scenario works in.
pub const NAMESPACE: &str = "bench";

/// The monitor interval of the instant-scheduler scenarios unless `--monitor-interval-ms` says
/// otherwise: short, so that a job ending at once is noticed at once and the engine's own work is
/// what gets measured (the service default, 200 ms, would cap a replica at 16 / 0.2 s = 80 tasks/s).
pub const FAST_MONITOR_INTERVAL_MS: u64 = 10;

/// Throughput with the instant scheduler, once per replica count in `--replicas` (default 1 and 2).
pub async fn throughput(options: &Options) -> anyhow::Result<Vec<ThroughputResult>> {
    let deadline = Instant::now() + options.time_limit();
    let counts = if options.replicas.is_empty() { vec![1, 2] } else { options.replicas.clone() };
    let mut results = Vec::new();
    for (i, replicas) in counts.iter().copied().enumerate() {
        // An equal share of what is left of the time limit for each replica count.
        let share = deadline.saturating_duration_since(Instant::now()) / u32::try_from(counts.len() - i)?;
        let shape = Shape {
            backend: Backend::Instant,
            runs: options.runs.unwrap_or(200),
            tasks_per_run: options.tasks_per_run.unwrap_or(10),
            replicas,
            monitor_interval_ms: Some(options.monitor_interval_ms.unwrap_or(FAST_MONITOR_INTERVAL_MS)),
            max_parallel_tasks: options.max_parallel_tasks,
        };
        results.push(throughput::run(options, shape, Instant::now() + share).await?);
    }
    Ok(results)
}
