//! Dispatch latency: one-task runs started one after another through the API, each measured from
//! sending `POST …/runs` to the scheduler's `start` call for its task, with the instant scheduler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use gofer_core::scheduler::TaskSpec;
use gofer_core::{NamespaceId, PipelineId, RunId, TaskId, TenantId};
use serde::Serialize;

use super::{NAMESPACE, TENANT};
use crate::Options;
use crate::harness::{Database, Replica, TenantClient, operator_token, replica_config};
use crate::instant::InstantScheduler;
use crate::profile::{Profiler, SqlProfile};
use crate::stats::Summary;

/// The longest one run may take to be dispatched and finish before the scenario fails.
const PER_RUN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the dispatch scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct DispatchResult {
    /// Runs measured (after the warm-up).
    pub runs: usize,
    /// Runs started and finished first, not measured.
    pub warmup: usize,
    /// The engine's `monitor_interval_ms`.
    pub monitor_interval_ms: u64,
    /// True when the time limit stopped the scenario before `runs` were measured.
    pub truncated: bool,
    /// POST sent → 201 received.
    pub answered: Summary,
    /// POST sent → the scheduler's `start` called: the dispatch latency.
    pub dispatched: Summary,
    /// POST sent → the task's outcome (and so the run) committed.
    pub completed: Summary,
    /// Wall time of the measured runs, in seconds.
    pub wall_s: f64,
    /// The SQL the measured runs caused (with `--profile-sql`).
    pub sql: Option<SqlProfile>,
}

/// Runs the dispatch scenario.
pub async fn run(options: &Options) -> anyhow::Result<DispatchResult> {
    let runs = options.runs.unwrap_or(500);
    let monitor_interval_ms = options.monitor_interval_ms.unwrap_or(super::FAST_MONITOR_INTERVAL_MS);
    let deadline = Instant::now() + options.time_limit();
    let database = Database::create(&options.database_url).await?;
    let scheduler = Arc::new(InstantScheduler::default());
    let operator = operator_token();
    let replica = Replica::start(Some(scheduler.view(0)), |dir| {
        replica_config(&database.url, dir, &operator, Some(monitor_interval_ms), None)
    })
    .await?;
    let measured = measure(options, &database.url, &scheduler, &replica, &operator, runs, deadline).await;
    replica.stop().await?;
    database.drop_now().await?;
    let (samples, wall, sql) = measured?;
    let summary = |pick: fn(&Sample) -> Duration| {
        Summary::of(&samples.iter().map(pick).collect::<Vec<_>>()).context("no run was measured")
    };
    Ok(DispatchResult {
        runs: samples.len(),
        warmup: options.warmup,
        monitor_interval_ms,
        truncated: samples.len() < runs,
        answered: summary(|s| s.answered)?,
        dispatched: summary(|s| s.dispatched)?,
        completed: summary(|s| s.completed)?,
        wall_s: wall.as_secs_f64(),
        sql,
    })
}

/// The three latencies of one run, from sending the POST.
struct Sample {
    answered: Duration,
    dispatched: Duration,
    completed: Duration,
}

async fn measure(
    options: &Options,
    database_url: &str,
    scheduler: &InstantScheduler,
    replica: &Replica,
    operator: &str,
    runs: usize,
    deadline: Instant,
) -> anyhow::Result<(Vec<Sample>, Duration, Option<SqlProfile>)> {
    let client = TenantClient::create(&replica.address, operator, TENANT).await?;
    client.namespace(NAMESPACE).await?;
    client.pipeline(NAMESPACE, "dispatch", 1, &["true"]).await?;
    let ids = JobIds::new("dispatch")?;
    let mut samples = Vec::with_capacity(runs);
    let mut profiler = None;
    let mut began = Instant::now();
    for i in 0..options.warmup + runs {
        if i == options.warmup {
            crate::harness::analyze(options, database_url).await?;
            profiler = Profiler::start(database_url, options.profile_sql).await?;
            began = Instant::now();
        }
        if Instant::now() >= deadline {
            break;
        }
        let sent = Instant::now();
        let run = client.start_run(NAMESPACE, "dispatch").await?;
        let answered = Instant::now();
        let job = ids.job(run);
        let dispatched = scheduler.started(&job, PER_RUN_TIMEOUT).await?;
        let completed = scheduler.purged(&job, PER_RUN_TIMEOUT).await?;
        if i >= options.warmup {
            samples.push(Sample {
                answered: answered - sent,
                dispatched: dispatched.saturating_duration_since(sent),
                completed: completed.saturating_duration_since(sent),
            });
        }
    }
    let wall = began.elapsed();
    let sql = match profiler {
        Some(profiler) => Some(profiler.finish().await?),
        None => None,
    };
    Ok((samples, wall, sql))
}

/// Job ids of the first attempt of task `task1` of a pipeline's runs.
struct JobIds {
    tenant: TenantId,
    namespace: NamespaceId,
    pipeline: PipelineId,
    task: TaskId,
}

impl JobIds {
    fn new(pipeline: &str) -> anyhow::Result<Self> {
        Ok(Self {
            tenant: TenantId::parse(TENANT)?,
            namespace: NamespaceId::parse(NAMESPACE)?,
            pipeline: PipelineId::parse(pipeline)?,
            task: TaskId::parse("task1")?,
        })
    }

    fn job(&self, run: i64) -> String {
        TaskSpec::job_id_for(&self.tenant, &self.namespace, &self.pipeline, RunId::from_i64(run), &self.task, 1)
    }
}
