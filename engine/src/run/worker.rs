//! The engine loop of one replica: claim queued task executions and take over those whose lease
//! expired (see `claim.rs`), stop overdue runs and runs out of quota, and hand each claimed task to
//! a monitor (see `monitor.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gofer_core::scheduler::Scheduler;
use gofer_notify::{Notice, Notifications};
use sqlx::PgPool;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::cancel_reason::CancelReason;
use super::claim::{Claimed, claim_batch, claim_next, take_over_expired};
use super::context::EngineCtx;
use super::monitor;
use crate::logs::LogStore;
use crate::{EngineError, db};
use gofer_db::channels;

pub use super::context::EngineConfig;

/// Claims one pass of the loop makes before it looks at stop signals and notifications again.
const CLAIMS_PER_PASS: usize = 32;

/// One replica's engine, ready to be spawned.
pub struct Engine {
    ctx: Arc<EngineCtx>,
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
        Self { ctx: Arc::new(EngineCtx::new(pool, scheduler, logs, config)) }
    }

    /// Lets tasks that set `inject_api_token` get a run token as `GOFER_API_TOKEN`.
    pub fn with_run_tokens(self, minter: Arc<dyn gofer_core::tokens::RunTokenMinter>) -> Self {
        self.configure(|ctx| ctx.run_tokens = Some(minter))
    }

    /// Lets tasks reference secrets in env values as `secret{{ key }}`.
    pub fn with_secrets(self, resolver: Arc<dyn gofer_core::secrets::SecretResolver>) -> Self {
        self.configure(|ctx| ctx.resolvers.secrets = Some(resolver))
    }

    /// Hears the queue and cancel channels through the replica's shared LISTEN connection
    /// (started with [`channels::QUEUE`] and [`channels::CANCEL`] among its channels) instead of a
    /// connection of its own.
    pub fn with_notifications(self, notifications: Notifications) -> Self {
        self.configure(|ctx| ctx.notifications = Some(notifications))
    }

    fn configure(self, change: impl FnOnce(&mut EngineCtx)) -> Self {
        let mut ctx = Arc::into_inner(self.ctx).expect("an engine is configured before it is spawned");
        change(&mut ctx);
        Self { ctx: Arc::new(ctx) }
    }

    /// Starts the loop on the current tokio runtime.
    pub fn spawn(self) -> EngineHandle {
        let (stop, stopped) = watch::channel(false);
        let join = tokio::spawn(run_loop(self.ctx, stopped));
        EngineHandle { stop, join }
    }
}

async fn run_loop(ctx: Arc<EngineCtx>, mut stopped: watch::Receiver<bool>) {
    let parallel = ctx.config.settings.max_parallel_tasks.unwrap_or_else(|| ctx.scheduler.default_parallel_tasks());
    let slots = Arc::new(Semaphore::new(parallel));
    let mut monitors = JoinSet::new();
    const CHANNELS: [&str; 2] = [channels::QUEUE, channels::CANCEL];
    // An engine without the replica's shared listener opens its own, and stops it when it ends.
    let notifications = ctx.notifications.clone().unwrap_or_else(|| Notifications::start(ctx.pool.clone(), &CHANNELS));
    let mut notices = notifications.subscribe(&CHANNELS);
    // Check for expired leases and overdue runs a few times per lease period.
    let reap_every = (ctx.config.settings.lease() / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
    let mut last_reap = Instant::now() - reap_every;
    let quota_every = ctx.config.settings.quota_check_interval().max(Duration::from_millis(50));
    let mut last_quota_check = Instant::now() - quota_every;
    let finisher = ctx.finisher.spawn(ctx.pool.clone(), ctx.config.replica_id);
    tracing::info!(replica = %ctx.config.replica_id, scheduler = ctx.scheduler.name(), "engine started");
    loop {
        if last_reap.elapsed() >= reap_every {
            last_reap = Instant::now();
            if let Err(e) = stop_overdue_runs(&ctx).await {
                tracing::error!(error = %e, "stopping overdue runs failed");
            }
            while let Ok(slot) = slots.clone().try_acquire_owned() {
                match take_over_expired(&ctx).await {
                    Ok(Some(claimed)) => spawn_monitor(&ctx, &mut monitors, claimed, slot),
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
            if let Err(e) = stop_exhausted_tenants(&ctx).await {
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
            match claim_batch(&ctx, wanted).await {
                Ok(Some(batch)) => {
                    claimed_this_pass = batch.len();
                    for claimed in batch {
                        match slots.clone().try_acquire_owned() {
                            Ok(slot) => spawn_monitor(&ctx, &mut monitors, claimed, slot),
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
            match claim_next(&ctx).await {
                Ok(Some(claimed)) => {
                    claimed_this_pass += 1;
                    spawn_monitor(&ctx, &mut monitors, claimed, slot);
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
            if let Notice::Message { channel: channels::CANCEL, payload } = notices.recv().await {
                ctx.signals.fire(&payload);
            }
        };
        tokio::select! {
            _ = stopped.changed() => break,
            _ = notified => {},
            _ = ctx.slot_freed.notified() => {},
            Some(_) = monitors.join_next(), if !monitors.is_empty() => {},
            // With work left over, only look at what is pending and go on claiming.
            _ = tokio::time::sleep(if more_work { Duration::ZERO } else { ctx.config.settings.poll_interval().min(reap_every).min(quota_every) }) => {},
        }
    }
    // Leave running tasks to the scheduler: their leases expire and another replica takes over.
    monitors.abort_all();
    if let Some(finisher) = finisher {
        finisher.abort();
    }
    if ctx.notifications.is_none() {
        notifications.stop();
    }
    tracing::info!("engine stopped");
}

fn spawn_monitor(
    ctx: &Arc<EngineCtx>,
    monitors: &mut JoinSet<()>,
    claimed: Claimed,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let ctx = ctx.clone();
    let task = claimed.task();
    let span = tracing::info_span!(
        "task_execution",
        tenant = %task.key.run.pipeline.tenant,
        namespace = %task.key.run.pipeline.namespace,
        pipeline = %task.key.run.pipeline.pipeline,
        run = %task.key.run.run,
        task = %task.key.task,
        attempt = task.attempt,
    );
    if let Some(parent) = &task.trace_parent {
        crate::measure::set_parent(&span, parent);
    }
    monitors.spawn(
        async move {
            if let Err(e) = monitor::watch(&ctx, claimed).await {
                tracing::error!(error = %e, "watching the task execution failed; its lease will expire and be taken over");
            }
            drop(slot);
            ctx.slot_freed.notify_one();
        }
        .instrument(span),
    );
}

/// Stops runs that passed their deadline (and corrects waiting reasons on the way).
async fn stop_overdue_runs(ctx: &EngineCtx) -> Result<(), EngineError> {
    let overdue = {
        let mut conn = ctx.pool.acquire().await?;
        db::queue::refresh_parallelism_reasons(&mut conn).await?;
        db::queue::overdue_runs(&mut conn, 20).await?
    };
    for run in overdue {
        tracing::warn!(run = %run.run, pipeline = %run.pipeline.pipeline, "run passed its deadline; stopping it");
        crate::run::cancel::stop_run(&ctx.pool, &run, CancelReason::Timeout).await?;
    }
    Ok(())
}

/// Stops the runs of tenants whose task-seconds for the month ran out while their tasks run:
/// running tasks are stopped and end `failed` with reason `quota_exhausted`.
async fn stop_exhausted_tenants(ctx: &EngineCtx) -> Result<(), EngineError> {
    let runs = {
        // Cross-tenant on purpose: the engine watches every tenant's usage.
        let mut conn = ctx.pool.acquire().await?;
        db::usage::exhausted_runs(&mut conn, 20).await?
    };
    for run in runs {
        tracing::warn!(tenant = %run.pipeline.tenant, run = %run.run, "the tenant's task-seconds ran out; stopping the run");
        crate::run::cancel::stop_run(&ctx.pool, &run, CancelReason::Quota).await?;
    }
    Ok(())
}
