//! Throughput: enqueue many task executions first, then start the replicas and measure how fast
//! they drain the queue, with the instant scheduler (the engine alone) or the local sandbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde::Serialize;

use super::{NAMESPACE, TENANT};
use crate::Options;
use crate::harness::{self, Database, Replica, RunWatcher, TenantClient, operator_token, replica_config};
use crate::instant::InstantScheduler;
use crate::machine::{self, CpuTimes};
use crate::profile::{Profiler, SqlProfile};
use crate::stats::Summary;

const PIPELINE: &str = "throughput";

/// What runs the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// [`InstantScheduler`]: jobs exit 0 at once, one instance shared by every replica.
    Instant,
    /// The real local bubblewrap sandbox (one per replica, as configured by default).
    Sandbox,
}

/// One throughput measurement.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputResult {
    /// What ran the tasks.
    pub backend: Backend,
    /// Replicas sharing the database.
    pub replicas: usize,
    /// Runs enqueued before the replicas started.
    pub runs: usize,
    /// Independent tasks per run.
    pub tasks_per_run: usize,
    /// Task executions in all.
    pub tasks: usize,
    /// Task executions finished (all of them unless `timed_out`).
    pub completed_tasks: usize,
    /// True when the time limit stopped the measurement before every task finished; the rates
    /// are then those of the tasks that did.
    pub timed_out: bool,
    /// The engine's `monitor_interval_ms`.
    pub monitor_interval_ms: u64,
    /// The engine's `max_parallel_tasks` per replica.
    pub max_parallel_tasks: usize,
    /// Time to start every run through the API beforehand (no engine was claiming), in seconds.
    pub enqueue_s: f64,
    /// From building the replicas to the first `start` call (instant backend only), in ms.
    pub startup_ms: Option<f64>,
    /// From the first `start` call to the last outcome committed (instant backend only), in s.
    pub busy_s: Option<f64>,
    /// From building the replicas to every run complete, in seconds.
    pub total_s: f64,
    /// Tasks per second over `busy_s` (instant backend), else over `total_s`.
    pub tasks_per_s: f64,
    /// Tasks per second over `total_s`.
    pub tasks_per_s_total: f64,
    /// Tasks started by each replica (instant backend only).
    pub starts_per_replica: Vec<usize>,
    /// CPU time of this process (the replicas and the driver) per task, in ms.
    pub cpu_ms_per_task_gofer: f64,
    /// CPU time of the Postgres cluster per task, in ms (when it runs on this host; on a shared
    /// cluster it includes other databases' work).
    pub cpu_ms_per_task_postgres: Option<f64>,
    /// CPU time of the whole host per task (Postgres, Gofer, the sandboxes, anything else), in ms.
    pub cpu_ms_per_task_host: f64,
    /// Per task, from the scheduler's `start` to its outcome committed (instant backend only):
    /// how long a dispatched task keeps its slot, monitor interval included.
    pub start_to_committed: Option<Summary>,
    /// Tasks between `start` and outcome committed at once, averaged over `busy_s` (instant
    /// backend only): compared with the replicas' slots it tells whether slots were the limit.
    pub mean_in_flight: Option<f64>,
    /// The SQL the replicas ran (with `--profile-sql`).
    pub sql: Option<SqlProfile>,
}

/// The shape of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// What runs the tasks.
    pub backend: Backend,
    /// Runs to enqueue.
    pub runs: usize,
    /// Independent tasks per run.
    pub tasks_per_run: usize,
    /// Replicas to start.
    pub replicas: usize,
    /// The engine's monitor interval (`None`: the service default).
    pub monitor_interval_ms: Option<u64>,
    /// The engine's slots per replica (`None`: the service default).
    pub max_parallel_tasks: Option<usize>,
}

/// Enqueues `shape.runs` runs, then starts the replicas and waits until every run completed.
pub async fn run(options: &Options, shape: Shape, deadline: Instant) -> anyhow::Result<ThroughputResult> {
    let database = Database::create(&options.database_url).await?;
    let result = measure(options, &database.url, shape, deadline).await;
    database.drop_now().await?;
    result
}

async fn measure(options: &Options, url: &str, shape: Shape, deadline: Instant) -> anyhow::Result<ThroughputResult> {
    let operator = operator_token();
    let defaults = gofer_api::Config::default().engine;
    let monitor_interval_ms = shape.monitor_interval_ms.unwrap_or(defaults.monitor_interval_ms);
    let tasks = shape.runs * shape.tasks_per_run;

    // A replica whose engine has no slots serves the API while the queue fills, so nothing is
    // claimed before the measured replicas start.
    let setup = Replica::start(Some(Arc::new(InstantScheduler::default()).view(0)), |dir| {
        replica_config(url, dir, &operator, None, Some(0))
    })
    .await?;
    let client = TenantClient::create(&setup.address, &operator, TENANT).await?;
    client.namespace(NAMESPACE).await?;
    let command = ["true"];
    client.pipeline(NAMESPACE, PIPELINE, shape.tasks_per_run, &command).await?;
    let enqueue = Instant::now();
    for _ in 0..shape.runs {
        client.start_run(NAMESPACE, PIPELINE).await?;
    }
    let enqueue_s = enqueue.elapsed().as_secs_f64();
    setup.stop().await?;
    harness::analyze(options, url).await?;

    let instant = Arc::new(InstantScheduler::default());
    let mut watcher = RunWatcher::connect(url).await?;
    let profiler = Profiler::start(url, options.profile_sql).await?;
    let postmaster = machine::postmaster_pid(watcher.pool()).await;
    let cpu_before = CpuTimes::now(postmaster);
    let began = Instant::now();
    let starting = (0..shape.replicas).map(|i| {
        let scheduler = (shape.backend == Backend::Instant).then(|| instant.view(i));
        let operator = &operator;
        Replica::start(scheduler, move |dir| {
            replica_config(url, dir, operator, shape.monitor_interval_ms, shape.max_parallel_tasks)
        })
    });
    let replicas = futures_util::future::try_join_all(starting).await?;

    let finished = match shape.backend {
        Backend::Instant => {
            let left = deadline.saturating_duration_since(Instant::now());
            // Past the time limit the measurement stops and reports what got done.
            instant.wait_for(left, |r| (r.purged.len() >= tasks).then_some(r.last_purge).flatten()).await.ok()
        }
        Backend::Sandbox => Some(watcher.wait_complete(PIPELINE, 1, i64::try_from(shape.runs)?, deadline).await?),
    };
    let timed_out = finished.is_none();
    let finished = finished.unwrap_or_else(Instant::now);
    let cpu = CpuTimes::now(postmaster).since(&cpu_before);
    let sql = match profiler {
        Some(profiler) => Some(profiler.finish().await?),
        None => None,
    };
    let completed_tasks = match shape.backend {
        Backend::Instant => instant.record()?.purged.len(),
        Backend::Sandbox => tasks,
    };
    if timed_out {
        // An engine keeps claiming while claims succeed, even when asked to stop, so park what
        // is left. (Cancelling the runs instead can deadlock with a concurrent claim.)
        sqlx::query("UPDATE task_executions SET run_after = 'infinity' WHERE state = 'queued'")
            .execute(watcher.pool())
            .await?;
    }
    for replica in replicas {
        replica.stop().await?;
    }
    let (successful, all) = watcher.successful_runs(PIPELINE).await?;
    watcher.close().await;
    let runs = i64::try_from(shape.runs)?;
    ensure!(timed_out || (successful == all && all == runs), "{successful} of {all} runs succeeded");

    let record = instant.record()?;
    let (startup, busy) = match (shape.backend, record.first_start) {
        (Backend::Instant, Some(first)) => {
            ensure!(
                timed_out || record.started.len() == tasks,
                "{} jobs started for {tasks} tasks",
                record.started.len()
            );
            (Some(first.saturating_duration_since(began)), Some(finished.saturating_duration_since(first)))
        }
        _ => (None, None),
    };
    let total = finished.saturating_duration_since(began);
    let held: Vec<Duration> = record
        .started
        .iter()
        .filter_map(|(job, start)| record.purged.get(job).map(|end| end.saturating_duration_since(*start)))
        .collect();
    let per_task = |d: Duration| d.as_secs_f64() * 1000.0 / completed_tasks.max(1) as f64;
    Ok(ThroughputResult {
        backend: shape.backend,
        replicas: shape.replicas,
        runs: shape.runs,
        tasks_per_run: shape.tasks_per_run,
        tasks,
        monitor_interval_ms,
        // Unset, the scheduler's default: the instant scheduler stands for a cluster.
        max_parallel_tasks: shape.max_parallel_tasks.unwrap_or(match shape.backend {
            Backend::Instant => gofer_core::scheduler::CLUSTER_PARALLEL_TASKS,
            Backend::Sandbox => gofer_scheduler_local::LOCAL_PARALLEL_TASKS,
        }),
        enqueue_s,
        startup_ms: startup.map(|d| d.as_secs_f64() * 1000.0),
        busy_s: busy.map(|d| d.as_secs_f64()),
        total_s: total.as_secs_f64(),
        completed_tasks,
        timed_out,
        tasks_per_s: completed_tasks as f64 / busy.unwrap_or(total).as_secs_f64(),
        tasks_per_s_total: completed_tasks as f64 / total.as_secs_f64(),
        starts_per_replica: record.starts_per_replica.clone(),
        cpu_ms_per_task_gofer: per_task(cpu.this_process),
        cpu_ms_per_task_postgres: cpu.postgres.map(per_task),
        cpu_ms_per_task_host: per_task(cpu.host_busy),
        start_to_committed: Summary::of(&held),
        mean_in_flight: busy.map(|b| held.iter().sum::<Duration>().as_secs_f64() / b.as_secs_f64()),
        sql,
    })
}
