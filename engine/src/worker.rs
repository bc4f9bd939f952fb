//! The engine loop of one replica: claim queued task executions, take over those whose lease
//! expired, stop overdue runs, and hand each task to a monitor (see `monitor.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gofer_core::scheduler::Scheduler;
use gofer_notify::{Notice, Notifications};
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::cancel::{CANCEL_CHANNEL, CancelReason, Signals};
use crate::logs::LogStore;
use crate::monitor::{self, Claimed, Mode};
use crate::{EngineError, QUEUE_CHANNEL, db};

/// Claims one pass of the loop makes before it looks at stop signals and notifications again.
const CLAIMS_PER_PASS: usize = 32;

/// Tuning of one replica's engine. Defaults are the documented production values.
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
    /// How long a claim holds without a heartbeat; a dead replica's tasks are taken over after it.
    pub lease: Duration,
    /// How long past its timeout a task may run before the engine stops it itself.
    pub timeout_grace: Duration,
    /// How long a stopped task gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Timeout of a task that sets none.
    pub default_task_timeout: Duration,
    /// The longest a task may run, whatever it asks.
    pub max_task_timeout: Duration,
    /// Timeout of a run whose pipeline sets none.
    pub default_run_timeout: Duration,
    /// CPU of a task that sets none, in millicores.
    pub default_cpu_millis: u32,
    /// Memory of a task that sets none, in MiB.
    pub default_memory_mb: u32,
    /// Infrastructure failures (scheduler errors, lost tasks) retried per task execution.
    pub infra_retries: u32,
    /// First retry backoff, doubled per failure (capped at a minute).
    pub retry_backoff: Duration,
    /// How long a dispatch keeps retrying a start while the scheduler is unavailable (holding the
    /// lease) before the attempt counts as an infrastructure failure.
    pub scheduler_outage_tolerance: Duration,
    /// Running task executions per tenant; 0 means no limit (plans set it per tenant later).
    pub tenant_max_running_tasks: u32,
    /// How often to look for tenants whose task-seconds ran out while their tasks run.
    pub quota_check_interval: Duration,
    /// The API's URL as tasks reach it, given to them as `GOFER_API_URL`.
    pub api_url: String,
    /// Largest object an env value may reference (`pipeline_object{{ key }}`, `run_object{{ key }}`).
    pub max_env_object_bytes: u64,
    /// The image `kind: gofer` tasks run in (the gofer CLI, `infra/images/gofer-cli`).
    pub gofer_cli_image: String,
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
            stop_grace: Duration::from_secs(10),
            default_task_timeout: Duration::from_secs(3600),
            max_task_timeout: Duration::from_secs(24 * 3600),
            default_run_timeout: Duration::from_secs(24 * 3600),
            default_cpu_millis: 1000,
            default_memory_mb: 2048,
            infra_retries: 3,
            retry_backoff: Duration::from_secs(1),
            scheduler_outage_tolerance: Duration::from_secs(300),
            tenant_max_running_tasks: 0,
            quota_check_interval: Duration::from_secs(5),
            api_url: "http://127.0.0.1:8080".into(),
            max_env_object_bytes: 64 * 1024,
            gofer_cli_image: gofer_core::config::GOFER_CLI_IMAGE.into(),
        }
    }
}

pub(crate) struct Inner {
    pub pool: PgPool,
    pub scheduler: Arc<dyn Scheduler>,
    pub logs: LogStore,
    pub config: EngineConfig,
    pub signals: Arc<Signals>,
    /// Mints run tokens for tasks that ask for one.
    pub run_tokens: Option<Arc<dyn gofer_core::tokens::RunTokenMinter>>,
    /// Resolve references (`secret{{ key }}`) in env values before a task starts.
    pub resolvers: crate::references::Resolvers,
    /// Wakes the loop when a slot frees up.
    slot_freed: Notify,
    /// Pipeline configs by content hash: versions never change, so a monitor reads and parses
    /// each one once per replica instead of once per task.
    configs: std::sync::Mutex<lru::LruCache<String, Arc<gofer_core::PipelineConfig>>>,
    /// The replica's shared LISTEN connection, when it has one; else the engine opens its own.
    notifications: Option<Notifications>,
    /// Records the monitors' successes in batches (see `finisher.rs`).
    pub finisher: crate::finisher::Finisher,
}

/// Configs a replica keeps parsed (see `Inner::configs`).
const CACHED_CONFIGS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(1024).unwrap();

impl Inner {
    /// The config of `run`'s version `version`, whose content hash is `hash`, from the cache or
    /// the database.
    pub(crate) async fn config_for(
        &self,
        conn: &mut sqlx::PgConnection,
        run: &crate::runs::RunKey,
        version: i64,
        hash: &str,
    ) -> Result<Arc<gofer_core::PipelineConfig>, EngineError> {
        if let Some(config) = self.configs.lock().ok().and_then(|mut cache| cache.get(hash).cloned()) {
            return Ok(config);
        }
        let config = Arc::new(db::get_config(conn, &run.pipeline, version).await?);
        if let Ok(mut cache) = self.configs.lock() {
            cache.put(hash.to_owned(), config.clone());
        }
        Ok(config)
    }
}

/// One replica's engine, ready to be spawned.
pub struct Engine {
    inner: Arc<Inner>,
}

/// A running engine.
pub struct EngineHandle {
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
}

impl EngineHandle {
    /// Stops claiming and watching, and waits for the loop to end. Tasks being watched are left
    /// to the scheduler; their leases expire and another replica takes them over.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }
}

impl Engine {
    /// Builds an engine over a pool, a scheduler and a log store.
    pub fn new(pool: PgPool, scheduler: Arc<dyn Scheduler>, logs: LogStore, config: EngineConfig) -> Self {
        let signals = Arc::new(Signals::default());
        Self {
            inner: Arc::new(Inner {
                pool,
                scheduler,
                logs,
                config,
                signals,
                run_tokens: None,
                resolvers: crate::references::Resolvers::default(),
                slot_freed: Notify::new(),
                configs: std::sync::Mutex::new(lru::LruCache::new(CACHED_CONFIGS)),
                notifications: None,
                finisher: crate::finisher::Finisher::new(),
            }),
        }
    }

    /// Lets tasks that set `inject_api_token` get a run token as `GOFER_API_TOKEN`.
    pub fn with_run_tokens(self, minter: Arc<dyn gofer_core::tokens::RunTokenMinter>) -> Self {
        self.configure(|inner| inner.run_tokens = Some(minter))
    }

    /// Lets tasks reference secrets in env values as `secret{{ key }}`.
    pub fn with_secrets(self, resolver: Arc<dyn gofer_core::secrets::SecretResolver>) -> Self {
        self.configure(|inner| inner.resolvers.secrets = Some(resolver))
    }

    /// Hears the queue and cancel channels through the replica's shared LISTEN connection
    /// (started with [`QUEUE_CHANNEL`] and [`CANCEL_CHANNEL`] among its channels) instead of a
    /// connection of its own.
    pub fn with_notifications(self, notifications: Notifications) -> Self {
        self.configure(|inner| inner.notifications = Some(notifications))
    }

    fn configure(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::into_inner(self.inner).expect("an engine is configured before it is spawned");
        change(&mut inner);
        Self { inner: Arc::new(inner) }
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
    let mut monitors = JoinSet::new();
    const CHANNELS: [&str; 2] = [QUEUE_CHANNEL, CANCEL_CHANNEL];
    // An engine without the replica's shared listener opens its own, and stops it when it ends.
    let notifications =
        inner.notifications.clone().unwrap_or_else(|| Notifications::start(inner.pool.clone(), &CHANNELS));
    let mut notices = notifications.subscribe(&CHANNELS);
    // Check for expired leases and overdue runs a few times per lease period.
    let reap_every = (inner.config.lease / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
    let mut last_reap = Instant::now() - reap_every;
    let quota_every = inner.config.quota_check_interval.max(Duration::from_millis(50));
    let mut last_quota_check = Instant::now() - quota_every;
    let finisher = inner.finisher.spawn(inner.pool.clone(), inner.config.replica_id);
    tracing::info!(replica = %inner.config.replica_id, scheduler = inner.scheduler.name(), "engine started");
    loop {
        if last_reap.elapsed() >= reap_every {
            last_reap = Instant::now();
            if let Err(e) = stop_overdue_runs(&inner).await {
                tracing::error!(error = %e, "stopping overdue runs failed");
            }
            while let Ok(slot) = slots.clone().try_acquire_owned() {
                match take_over_expired(&inner).await {
                    Ok(Some(claimed)) => spawn_monitor(&inner, &mut monitors, claimed, slot),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "taking over expired leases failed");
                        break;
                    }
                }
            }
        }
        if last_quota_check.elapsed() >= quota_every {
            last_quota_check = Instant::now();
            if let Err(e) = stop_exhausted_tenants(&inner).await {
                tracing::error!(error = %e, "stopping runs of tenants out of task-seconds failed");
            }
        }
        // Claim in bounded passes: under a backlog with quick tasks, slots free up as fast as they
        // are filled, and an unbounded loop would never get back to the stop signal, cancel
        // notifications, takeovers or deadlines.
        let mut more_work = false;
        let mut claimed_this_pass = 0;
        let wanted = slots.available_permits().min(CLAIMS_PER_PASS);
        let mut contended = false;
        if wanted > 0 {
            match claim_batch(&inner, wanted).await {
                Ok(Some(batch)) => {
                    claimed_this_pass = batch.len();
                    for claimed in batch {
                        match slots.clone().try_acquire_owned() {
                            Ok(slot) => spawn_monitor(&inner, &mut monitors, claimed, slot),
                            // Only this loop takes slots, so the batch fits; should it not, the
                            // lease expires and the task is taken over.
                            Err(_) => tracing::error!("no slot left for a claimed task execution"),
                        }
                    }
                    more_work = claimed_this_pass == CLAIMS_PER_PASS && slots.available_permits() > 0;
                }
                Ok(None) => contended = true,
                Err(e) => tracing::error!(error = %e, "claiming a batch from the queue failed"),
            }
        }
        // Another replica raced this batch past a limit: claim one at a time, each checked alone.
        while contended && let Ok(slot) = slots.clone().try_acquire_owned() {
            if claimed_this_pass == CLAIMS_PER_PASS {
                more_work = true;
                break;
            }
            match claim(&inner).await {
                Ok(Some(claimed)) => {
                    claimed_this_pass += 1;
                    spawn_monitor(&inner, &mut monitors, claimed, slot);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "claiming from the queue failed");
                    break;
                }
            }
        }
        if *stopped.borrow() {
            break;
        }
        // Any notice wakes the loop to claim: queued work, or a (re)connection after which some
        // may have been missed. Cancels missed meanwhile are caught by the monitors' heartbeat.
        let notified = async {
            if let Notice::Message { channel: CANCEL_CHANNEL, payload } = notices.recv().await {
                inner.signals.fire(&payload);
            }
        };
        tokio::select! {
            _ = stopped.changed() => break,
            _ = notified => {},
            _ = inner.slot_freed.notified() => {},
            Some(_) = monitors.join_next(), if !monitors.is_empty() => {},
            // With work left over, only look at what is pending and go on claiming.
            _ = tokio::time::sleep(if more_work { Duration::ZERO } else { inner.config.poll_interval.min(reap_every).min(quota_every) }) => {},
        }
    }
    // Leave running tasks to the scheduler: their leases expire and another replica takes over.
    monitors.abort_all();
    if let Some(finisher) = finisher {
        finisher.abort();
    }
    if inner.notifications.is_none() {
        notifications.stop();
    }
    tracing::info!("engine stopped");
}

fn spawn_monitor(
    inner: &Arc<Inner>,
    monitors: &mut JoinSet<()>,
    claimed: Claimed,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let inner = inner.clone();
    let span = tracing::info_span!(
        "task_execution",
        tenant = %claimed.key.run.pipeline.tenant,
        namespace = %claimed.key.run.pipeline.namespace,
        pipeline = %claimed.key.run.pipeline.pipeline,
        run = %claimed.key.run.run,
        task = %claimed.key.task,
        attempt = claimed.attempt,
    );
    if let Some(parent) = &claimed.trace_parent {
        crate::measure::set_parent(&span, parent);
    }
    let mut claimed = claimed;
    let context = claimed.context.take();
    monitors.spawn(
        async move {
            if let Err(e) = monitor::watch(&inner, &claimed, context).await {
                tracing::error!(error = %e, "watching the task execution failed; its lease will expire and be taken over");
            }
            drop(slot);
            inner.slot_freed.notify_one();
        }
        .instrument(span),
    );
}

/// Claims up to `max` of the oldest claimable task executions and starts their runs, in one
/// transaction. Answers `None` when the batch lost a race with another replica past a tenant's or
/// pipeline's limit (it is rolled back; the caller claims one at a time instead).
async fn claim_batch(inner: &Inner, max: usize) -> Result<Option<Vec<Claimed>>, EngineError> {
    let mut tx = db::queue::begin_claim(&inner.pool).await?;
    let lease_s = inner.config.lease.as_secs_f64();
    let limit = i64::from(inner.config.tenant_max_running_tasks);
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = db::queue::claim_batch(&mut tx, inner.config.replica_id, lease_s, limit, max).await?;
    if rows.is_empty() {
        return Ok(Some(Vec::new()));
    }
    if !db::queue::recheck_batch(&mut tx, &rows).await? {
        tx.rollback().await?;
        return Ok(None);
    }
    let keys = rows.iter().map(|row| row.key()).collect::<Result<Vec<_>, _>>()?;
    let pending: Vec<_> = rows.iter().filter(|row| row.run_pending).collect();
    let started = if pending.is_empty() { Vec::new() } else { db::queue::start_runs(&mut tx, &pending).await? };
    let mut filled: Vec<(&crate::runs::RunKey, i32)> = Vec::new();
    for (key, row) in keys.iter().zip(&rows) {
        if row.run_pending && row.parallelism > 0 && !filled.iter().any(|(run, _)| run.pipeline == key.run.pipeline) {
            filled.push((&key.run, row.parallelism));
        }
    }
    for (run, parallelism) in filled {
        db::queue::mark_waiting_for_parallelism(&mut tx, run, parallelism).await?;
    }
    monitor::record_claims(&mut tx, &started, keys.iter().zip(rows.iter().map(|row| row.attempt))).await?;
    // What each monitor needs to dispatch, for the whole batch in one read (after the runs were
    // started, so they read as running).
    let mut runs: Vec<&crate::runs::RunKey> = Vec::new();
    for key in &keys {
        if !runs.contains(&&key.run) {
            runs.push(&key.run);
        }
    }
    let contexts = db::dispatch_contexts(&mut tx, &runs).await?;
    // Each task's job id and deadline and its attempt row, for the batch in one statement too.
    // Per claimed task, in order: its run's context, and whether its attempt is opened here.
    let mut prepared: Vec<(Option<db::DispatchContext>, bool)> = Vec::with_capacity(keys.len());
    let mut attempts = Vec::new();
    for (key, row) in keys.iter().zip(&rows) {
        let context = contexts.iter().find(|(run, _)| *run == key.run).map(|(_, context)| context);
        let mut timeout = None;
        if let Some(context) = context {
            let version = context.run.config_version;
            let config = inner.config_for(&mut tx, &key.run, version, &context.config_hash).await?;
            // A task missing from its config is left to the monitor, which fails it as before.
            timeout = config.tasks.iter().find(|t| t.id == key.task).map(|t| monitor::task_timeout(&inner.config, t));
        }
        if let Some(timeout) = timeout {
            let p = &key.run.pipeline;
            let attempt = u32::try_from(row.attempt).unwrap_or(1);
            attempts.push(db::queue::AttemptToOpen {
                key,
                attempt: row.attempt,
                scheduler_id: gofer_core::scheduler::TaskSpec::job_id_for(
                    &p.tenant,
                    &p.namespace,
                    &p.pipeline,
                    key.run.run,
                    &key.task,
                    attempt,
                ),
                timeout_s: timeout.as_secs_f64(),
            });
        }
        prepared.push((context.cloned(), timeout.is_some()));
    }
    db::queue::open_attempts(&mut tx, &attempts).await?;
    drop(attempts);
    tx.commit().await?;
    Ok(Some(
        keys.into_iter()
            .zip(rows)
            .zip(prepared)
            .map(|((key, row), (context, attempt_opened))| Claimed {
                context,
                attempt_opened,
                key,
                attempt: row.attempt,
                scheduler_id: None,
                mode: Mode::Dispatch,
                queued_at: Some(row.queued_at),
                trace_parent: row.trace_parent,
            })
            .collect(),
    ))
}

/// Claims the oldest claimable task execution and marks its run running, in one transaction.
async fn claim(inner: &Inner) -> Result<Option<Claimed>, EngineError> {
    let mut tx = db::queue::begin_claim(&inner.pool).await?;
    let lease_s = inner.config.lease.as_secs_f64();
    let limit = i64::from(inner.config.tenant_max_running_tasks);
    let Some(row) = db::queue::claim_next(&mut tx, inner.config.replica_id, lease_s, limit).await? else {
        return Ok(None);
    };
    if !db::queue::recheck_limits(&mut tx, &row).await? {
        // Another replica filled the pipeline or tenant first; leave the task queued.
        tx.rollback().await?;
        return Ok(None);
    }
    // The claim locked the run row too (it starts the run).
    let key = row.key()?;
    monitor::record_claim(&mut tx, &key, row.attempt).await?;
    if row.run_pending && row.parallelism > 0 {
        db::queue::mark_waiting_for_parallelism(&mut tx, &key.run, row.parallelism).await?;
    }
    tx.commit().await?;
    Ok(Some(Claimed {
        key,
        attempt: row.attempt,
        scheduler_id: None,
        mode: Mode::Dispatch,
        queued_at: Some(row.queued_at),
        trace_parent: row.trace_parent,
        context: None,
        attempt_opened: false,
    }))
}

/// Takes over one task execution whose watcher stopped renewing its lease.
async fn take_over_expired(inner: &Inner) -> Result<Option<Claimed>, EngineError> {
    let mut tx = inner.pool.begin().await?;
    let lease_s = inner.config.lease.as_secs_f64();
    let Some(row) = db::queue::claim_expired(&mut tx, inner.config.replica_id, lease_s).await? else {
        return Ok(None);
    };
    let key = row.key()?;
    tx.commit().await?;
    tracing::warn!(run = %key.run.run, task = %key.task, attempt = row.attempt, "taking over a task execution whose lease expired");
    crate::measure::lease_taken_over();
    Ok(Some(Claimed {
        key,
        attempt: row.attempt,
        scheduler_id: row.scheduler_id,
        mode: Mode::Takeover,
        queued_at: None,
        trace_parent: row.trace_parent,
        context: None,
        attempt_opened: false,
    }))
}

/// Stops runs that passed their deadline (and corrects waiting reasons on the way).
async fn stop_overdue_runs(inner: &Inner) -> Result<(), EngineError> {
    let overdue = {
        let mut conn = inner.pool.acquire().await?;
        db::queue::refresh_parallelism_reasons(&mut conn).await?;
        db::queue::overdue_runs(&mut conn, 20).await?
    };
    for run in overdue {
        tracing::warn!(run = %run.run, pipeline = %run.pipeline.pipeline, "run passed its deadline; stopping it");
        crate::cancel::stop_run(&inner.pool, &run, CancelReason::Timeout).await?;
    }
    Ok(())
}

/// Stops the runs of tenants whose task-seconds for the month ran out while their tasks run:
/// running tasks are stopped and end `failed` with reason `quota_exhausted`.
async fn stop_exhausted_tenants(inner: &Inner) -> Result<(), EngineError> {
    let runs = {
        // Cross-tenant on purpose: the engine watches every tenant's usage.
        let mut conn = inner.pool.acquire().await?;
        db::usage::exhausted_runs(&mut conn, 20).await?
    };
    for run in runs {
        tracing::warn!(tenant = %run.pipeline.tenant, run = %run.run, "the tenant's task-seconds ran out; stopping the run");
        crate::cancel::stop_run(&inner.pool, &run, CancelReason::Quota).await?;
    }
    Ok(())
}
