//! The whole path with the real local sandbox (`Application::build`, bubblewrap): latency from
//! `POST …/runs` to the run complete for a one-task `true` pipeline, then a throughput run.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::throughput::{self, Backend, Shape, ThroughputResult};
use super::{NAMESPACE, TENANT};
use crate::Options;
use crate::harness::{Database, Replica, RunWatcher, TenantClient, operator_token, replica_config};
use crate::stats::Summary;

const PIPELINE: &str = "latency";

/// The longest one run may take before the scenario fails.
const PER_RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// What the sandbox scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxResult {
    /// Runs measured (after the warm-up).
    pub runs: usize,
    /// Runs started and finished first, not measured.
    pub warmup: usize,
    /// The engine's `monitor_interval_ms`.
    pub monitor_interval_ms: u64,
    /// True when the time limit stopped the latency part before `runs` were measured.
    pub truncated: bool,
    /// POST sent → 201 received.
    pub answered: Summary,
    /// POST sent → the run seen complete.
    pub completed: Summary,
    /// Several runs of several tasks through the sandbox.
    pub throughput: ThroughputResult,
}

/// Runs the sandbox scenario: the latency part, then the throughput part.
pub async fn run(options: &Options) -> anyhow::Result<SandboxResult> {
    let deadline = Instant::now() + options.time_limit();
    // Half the time for each part.
    let latency_deadline = Instant::now() + options.time_limit() / 2;
    let runs = options.runs.unwrap_or(50);
    let warmup = options.warmup.min(5);
    let database = Database::create(&options.database_url).await?;
    let measured = latency(options, &database.url, runs, warmup, latency_deadline).await;
    database.drop_now().await?;
    let (answered, completed) = measured?;
    let shape = Shape {
        backend: Backend::Sandbox,
        runs: options.runs.unwrap_or(20),
        tasks_per_run: options.tasks_per_run.unwrap_or(5),
        replicas: options.replicas.first().copied().unwrap_or(1),
        monitor_interval_ms: options.monitor_interval_ms,
        max_parallel_tasks: options.max_parallel_tasks,
    };
    let throughput = throughput::run(options, shape, deadline).await?;
    Ok(SandboxResult {
        runs: completed.len(),
        warmup,
        monitor_interval_ms: throughput.monitor_interval_ms,
        truncated: completed.len() < runs,
        answered: Summary::of(&answered).context("no run was measured")?,
        completed: Summary::of(&completed).context("no run was measured")?,
        throughput,
    })
}

async fn latency(
    options: &Options,
    url: &str,
    runs: usize,
    warmup: usize,
    deadline: Instant,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let operator = operator_token();
    let replica =
        Replica::start(None, |dir| replica_config(url, dir, &operator, options.monitor_interval_ms, None)).await?;
    let measured = async {
        let client = TenantClient::create(&replica.address, &operator, TENANT).await?;
        client.namespace(NAMESPACE).await?;
        client.pipeline(NAMESPACE, PIPELINE, 1, &["true"]).await?;
        let mut watcher = RunWatcher::connect(url).await?;
        let (mut answered, mut completed) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for i in 0..warmup + runs {
            if Instant::now() >= deadline {
                break;
            }
            let sent = Instant::now();
            let run = client.start_run(NAMESPACE, PIPELINE).await?;
            let answer = sent.elapsed();
            let done = watcher.wait_complete(PIPELINE, run, run, Instant::now() + PER_RUN_TIMEOUT).await?;
            if i >= warmup {
                answered.push(answer);
                completed.push(done.saturating_duration_since(sent));
            }
        }
        let (successful, all) = watcher.successful_runs(PIPELINE).await?;
        watcher.close().await;
        anyhow::ensure!(successful == all, "only {successful} of {all} sandbox runs succeeded");
        Ok((answered, completed))
    }
    .await;
    replica.stop().await?;
    measured
}
