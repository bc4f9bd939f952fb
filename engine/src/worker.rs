//! The engine loop of one replica: claim queued task executions, dispatch them to the scheduler,
//! watch them, capture their logs, record how they ended and release their dependants.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gofer_core::model::Reason;
use gofer_core::scheduler::{KillReason, Scheduler, TaskObservation, TaskSpec};
use gofer_core::{RunId, StatusReason, TaskState, TaskStatus, TenantId};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::Instrument;

use crate::events::{self, EventScope};
use crate::logs::LogStore;
use crate::runs::{PipelineKey, RunKey, TaskKey};
use crate::{EngineError, QUEUE_CHANNEL, db, release};
use gofer_core::EventKind;
use serde_json::json;

/// How much log to read from the scheduler per call.
const LOG_READ_BYTES: usize = 256 * 1024;

/// Tuning of one replica's engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This replica's identity, written as the lease owner of what it dispatches.
    pub replica_id: uuid::Uuid,
    /// Task executions this replica watches at once.
    pub max_parallel_tasks: usize,
    /// How often to look for queued work when no NOTIFY arrives (NOTIFY can be missed while reconnecting).
    pub poll_interval: Duration,
    /// How often to read a running task's state and logs.
    pub monitor_interval: Duration,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How long past its timeout a task may run before the engine stops it itself.
    pub timeout_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            replica_id: uuid::Uuid::new_v4(),
            max_parallel_tasks: 16,
            poll_interval: Duration::from_secs(2),
            monitor_interval: Duration::from_millis(200),
            lease: Duration::from_secs(60),
            timeout_grace: Duration::from_secs(30),
        }
    }
}

struct Inner {
    pool: PgPool,
    scheduler: Arc<dyn Scheduler>,
    logs: LogStore,
    config: EngineConfig,
    /// Wakes the loop when a slot frees up.
    slot_freed: Notify,
}

/// One replica's engine, ready to be spawned.
pub struct Engine {
    inner: Arc<Inner>,
}

/// A running engine; dropping it does not stop it, [`EngineHandle::shutdown`] does.
pub struct EngineHandle {
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
}

impl EngineHandle {
    /// Stops claiming new work and waits for the loop to end. Tasks being watched keep their
    /// leases until they expire, when another replica takes them over.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }
}

/// A claimed task execution and what it needs to run.
struct Claimed {
    key: TaskKey,
    attempt: u32,
}

impl Engine {
    /// Builds an engine over a pool, a scheduler and a log store.
    pub fn new(pool: PgPool, scheduler: Arc<dyn Scheduler>, logs: LogStore, config: EngineConfig) -> Self {
        Self { inner: Arc::new(Inner { pool, scheduler, logs, config, slot_freed: Notify::new() }) }
    }

    /// Starts the loop on the current tokio runtime.
    pub fn spawn(self) -> EngineHandle {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(run_loop(self.inner, stopped));
        EngineHandle { stop, join }
    }
}

async fn run_loop(inner: Arc<Inner>, mut stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(inner.config.max_parallel_tasks));
    let mut listener = match PgListener::connect_with(&inner.pool).await {
        Ok(mut l) => match l.listen(QUEUE_CHANNEL).await {
            Ok(()) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN failed; polling only");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a LISTEN connection; polling only");
            None
        }
    };
    tracing::info!(replica = %inner.config.replica_id, scheduler = inner.scheduler.name(), "engine started");
    loop {
        // Claim while there is room.
        while let Ok(slot) = slots.clone().try_acquire_owned() {
            match claim(&inner).await {
                Ok(Some(claimed)) => {
                    let inner = inner.clone();
                    let span = tracing::info_span!(
                        "task_execution",
                        tenant = %claimed.key.run.pipeline.tenant,
                        namespace = %claimed.key.run.pipeline.namespace,
                        pipeline = %claimed.key.run.pipeline.pipeline,
                        run = %claimed.key.run.run,
                        task = %claimed.key.task,
                    );
                    tokio::spawn(
                        async move {
                            if let Err(e) = execute(&inner, &claimed).await {
                                tracing::error!(error = %e, "task execution failed inside the engine");
                            }
                            drop(slot);
                            inner.slot_freed.notify_one();
                        }
                        .instrument(span),
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "claiming from the queue failed");
                    break;
                }
            }
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => {
                    if let Err(e) = l.recv().await {
                        tracing::warn!(error = %e, "LISTEN connection failed; it reconnects on the next receive");
                        tokio::time::sleep(inner.config.poll_interval).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stopped.changed() => break,
            _ = notified => {},
            _ = inner.slot_freed.notified() => {},
            _ = tokio::time::sleep(inner.config.poll_interval) => {},
        }
    }
    tracing::info!("engine stopped");
}

/// Claims the oldest queued task execution and marks its run running, in one transaction.
async fn claim(inner: &Inner) -> Result<Option<Claimed>, EngineError> {
    let mut tx = inner.pool.begin().await?;
    let lease_s = inner.config.lease.as_secs_f64();
    let Some(row) = db::claim_next(&mut tx, inner.config.replica_id, lease_s).await? else {
        return Ok(None);
    };
    let corrupt = |e: gofer_core::IdError| EngineError::Corrupt(e.to_string());
    let key = TaskKey {
        run: RunKey {
            pipeline: PipelineKey {
                tenant: TenantId::parse(row.tenant_id).map_err(corrupt)?,
                namespace: row.namespace_id.parse().map_err(corrupt)?,
                pipeline: row.pipeline_id.parse().map_err(corrupt)?,
            },
            run: RunId::from_i64(row.run_id),
        },
        task: row.task_id.parse().map_err(corrupt)?,
    };
    let tenant = key.run.pipeline.tenant.clone();
    if db::start_run(&mut tx, &key.run).await? {
        events::record(&mut tx, &tenant, EventKind::RunStarted, EventScope::run(&key.run), json!({})).await?;
    }
    let payload = json!({"attempt": row.attempt});
    events::record(&mut tx, &tenant, EventKind::TaskStarted, EventScope::task(&key.run, &key.task), payload).await?;
    tx.commit().await?;
    Ok(Some(Claimed { key, attempt: u32::try_from(row.attempt).unwrap_or(1) }))
}

/// The environment a task sees: its own env, then run variables, then Gofer's own variables
/// (last, so nothing can shadow them; config validation already refuses the GOFER_ prefix).
fn task_env(
    key: &TaskKey,
    image: &str,
    task_env: &BTreeMap<String, String>,
    run_variables: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = task_env.clone();
    env.extend(run_variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert("GOFER_NAMESPACE_ID".into(), key.run.pipeline.namespace.to_string());
    env.insert("GOFER_PIPELINE_ID".into(), key.run.pipeline.pipeline.to_string());
    env.insert("GOFER_RUN_ID".into(), key.run.run.to_string());
    env.insert("GOFER_TASK_ID".into(), key.task.to_string());
    env.insert("GOFER_TASK_IMAGE".into(), image.to_owned());
    env
}

/// How an observation that will not change any more ends the task execution.
fn outcome(observation: &TaskObservation, timeout_s: u64) -> (TaskStatus, Option<Reason>, Option<i32>) {
    let reason = |reason, description: String| Some(Reason { reason, description });
    match observation {
        TaskObservation::Exited { exit_code: 0 } => (TaskStatus::Successful, None, Some(0)),
        TaskObservation::Exited { exit_code } => (
            TaskStatus::Failed,
            reason(StatusReason::AbnormalExit, format!("exited with code {exit_code}")),
            Some(*exit_code),
        ),
        TaskObservation::Killed { reason: KillReason::Timeout } => (
            TaskStatus::Failed,
            reason(StatusReason::Timeout, format!("ran longer than its timeout of {timeout_s}s")),
            None,
        ),
        TaskObservation::Killed { reason: KillReason::OutOfMemory } => {
            (TaskStatus::Failed, reason(StatusReason::OutOfMemory, "used more memory than allowed".into()), None)
        }
        TaskObservation::Killed { reason: KillReason::Stopped } => {
            (TaskStatus::Cancelled, reason(StatusReason::Cancelled, "stopped".into()), None)
        }
        TaskObservation::Failed { detail } => {
            (TaskStatus::Failed, reason(StatusReason::SchedulerError, detail.clone()), None)
        }
        TaskObservation::Unknown | TaskObservation::Pending | TaskObservation::Running => {
            (TaskStatus::Failed, reason(StatusReason::Orphaned, "the scheduler lost track of the task".into()), None)
        }
    }
}

/// Dispatches a claimed task execution and watches it to the end.
async fn execute(inner: &Inner, claimed: &Claimed) -> Result<(), EngineError> {
    let key = &claimed.key;
    let (run, config) = {
        let mut conn = inner.pool.acquire().await?;
        let run = db::get_run(&mut conn, &key.run, false).await?.ok_or(EngineError::RunNotFound(key.run.run))?;
        let config = db::get_config(&mut conn, &key.run.pipeline, run.config_version).await?;
        (run.into_run()?, config)
    };
    let Some(task) = config.tasks.iter().find(|t| t.id == key.task) else {
        return Err(EngineError::TaskNotFound(key.task.clone()));
    };
    let p = &key.run.pipeline;
    let spec = TaskSpec {
        job_id: TaskSpec::job_id_for(&p.tenant, &p.namespace, &p.pipeline, key.run.run, &key.task, claimed.attempt),
        tenant: p.tenant.clone(),
        namespace: p.namespace.clone(),
        pipeline: p.pipeline.clone(),
        run: key.run.run,
        task: key.task.clone(),
        attempt: claimed.attempt,
        image: task.image.clone(),
        command: task.command.clone(),
        env: task_env(key, &task.image, &task.env, &run.variables),
        timeout: Duration::from_secs(u64::from(task.timeout_s)),
    };
    {
        let mut conn = inner.pool.acquire().await?;
        db::set_scheduler_id(&mut conn, key, &spec.job_id).await?;
    }
    tracing::info!(job = %spec.job_id, "dispatching");
    if let Err(e) = inner.scheduler.start(&spec).await {
        let reason = Reason { reason: StatusReason::SchedulerError, description: e.to_string() };
        return finish(inner, key, TaskStatus::Failed, Some(reason), None).await;
    }

    let started = Instant::now();
    let deadline = spec.timeout + inner.config.timeout_grace;
    let mut offset = 0u64;
    let mut last_heartbeat = Instant::now();
    let observation = loop {
        tokio::time::sleep(inner.config.monitor_interval).await;
        offset = copy_logs(inner, key, &spec.job_id, offset).await;
        let observation = match inner.scheduler.observe(&spec.job_id).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "observing the task failed; trying again");
                continue;
            }
        };
        if observation.is_final() {
            break observation;
        }
        if started.elapsed() > deadline {
            // The scheduler should have stopped it; do it ourselves and say why.
            tracing::warn!("task outlived its timeout in the scheduler; stopping it");
            let _ = inner.scheduler.stop(&spec.job_id, Duration::from_secs(5)).await;
            break TaskObservation::Killed { reason: KillReason::Timeout };
        }
        if last_heartbeat.elapsed() > inner.config.lease / 3 {
            last_heartbeat = Instant::now();
            if !db::heartbeat(&inner.pool, key, inner.config.replica_id, inner.config.lease.as_secs_f64()).await? {
                tracing::warn!("lease lost; another replica owns this task execution now");
                return Ok(());
            }
        }
    };
    copy_logs(inner, key, &spec.job_id, offset).await;
    let (status, reason, exit_code) = outcome(&observation, u64::from(task.timeout_s));
    finish(inner, key, status, reason, exit_code).await?;
    if let Err(e) = inner.scheduler.purge(&spec.job_id).await {
        tracing::warn!(error = %e, "purging the finished job failed");
    }
    Ok(())
}

/// Copies everything new in the scheduler's output to the log store; answers the next offset.
/// Failures are logged and retried on the next call: a log hiccup must not fail the task.
async fn copy_logs(inner: &Inner, key: &TaskKey, job_id: &str, mut offset: u64) -> u64 {
    let log_key = key.log_key();
    loop {
        match inner.scheduler.read_logs(job_id, offset, LOG_READ_BYTES).await {
            Ok(chunk) if chunk.data.is_empty() => return offset,
            Ok(chunk) => {
                if let Err(e) = inner.logs.append(&log_key, &chunk.data).await {
                    tracing::warn!(error = %e, "writing the task log failed");
                    return offset;
                }
                offset = chunk.next_offset;
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading task output failed");
                return offset;
            }
        }
    }
}

/// Records how a running task execution ended and releases its dependants, in one transaction
/// fenced by this replica's lease.
async fn finish(
    inner: &Inner,
    key: &TaskKey,
    status: TaskStatus,
    reason: Option<Reason>,
    exit_code: Option<i32>,
) -> Result<(), EngineError> {
    let mut tx = inner.pool.begin().await?;
    let run = db::get_run(&mut tx, &key.run, true).await?.ok_or(EngineError::RunNotFound(key.run.run))?;
    let owner = Some(inner.config.replica_id);
    if !db::complete_task(&mut tx, key, TaskState::Running, owner, status, reason.as_ref(), exit_code).await? {
        tracing::warn!("the task execution was already finished elsewhere; leaving it");
        return Ok(());
    }
    let payload = json!({"status": status, "status_reason": reason, "exit_code": exit_code});
    let scope = EventScope::task(&key.run, &key.task);
    events::record(&mut tx, &key.run.pipeline.tenant, EventKind::TaskCompleted, scope, payload).await?;
    let config = db::get_config(&mut tx, &key.run.pipeline, run.config_version).await?;
    release::release_ready_tasks(&mut tx, &key.run, run.config_version, &config).await?;
    tx.commit().await?;
    tracing::info!(%status, ?exit_code, "task execution finished");
    Ok(())
}
