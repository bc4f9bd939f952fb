//! Beginning an attempt: dispatching a task claimed from the queue to the scheduler (riding out
//! scheduler outages with the lease renewed meanwhile), or re-attaching to the job that a replica
//! whose lease expired had dispatched.

use std::time::{Duration, Instant};

use gofer_core::EventKind;
use gofer_core::scheduler::{SchedulerError, TaskObservation, TaskSpec};
use serde_json::json;
use tracing::Instrument;

use super::backoff::DoublingDelay;
use super::cancel::SignalGuard;
use super::claim::{Claimed, ClaimedTask};
use super::context::EngineCtx;
use super::object_refs::{has_object_references, resolve_object_references};
use super::outcome::Ending;
use super::prepare::{Prepared, Resolution};
use super::references::ReferenceError;
use crate::events::{self, EventScope};
use crate::{EngineError, db, measure};

/// How an attempt began.
pub(super) enum Begun {
    /// The job runs, or may: follow it from raw output position `offset`, masking `secrets`.
    Following { offset: u64, secrets: Vec<String> },
    /// The attempt ended before its job could be followed: conclude it this way.
    Ended(Ending),
    /// Another replica holds the lease now: leave the task execution to it, writing nothing.
    LeaseLost,
}

/// Begins the claimed attempt as its claim calls for: a fresh claim is dispatched, a takeover
/// re-attached to.
pub(super) async fn dispatch_or_reattach(
    ctx: &EngineCtx,
    claimed: &Claimed,
    prepared: &mut Prepared,
    resolution: Resolution,
    signal: &SignalGuard,
) -> Result<Begun, EngineError> {
    match claimed {
        Claimed::Fresh { task, queued_at, attempt_opened, .. } => {
            dispatch(ctx, task, *queued_at, *attempt_opened, prepared, resolution, signal).await
        }
        Claimed::TakenOver { task, scheduler_id } => {
            reattach(ctx, task, scheduler_id.is_some(), prepared, resolution).await
        }
    }
}

/// Opens the attempt (unless its batch claim did), then starts the job, unless the run is being
/// stopped or the task's references do not resolve.
async fn dispatch(
    ctx: &EngineCtx,
    claimed: &ClaimedTask,
    queued_at: time::OffsetDateTime,
    attempt_opened: bool,
    prepared: &mut Prepared,
    resolution: Resolution,
    signal: &SignalGuard,
) -> Result<Begun, EngineError> {
    let key = &claimed.key;
    let Prepared { run, spec, job_id, .. } = prepared;
    if !attempt_opened {
        let mut conn = ctx.pool.acquire().await?;
        db::queue::open_attempt(&mut conn, key, claimed.attempt, job_id, spec.timeout.as_secs_f64()).await?;
    }
    if run.cancelling().is_some() {
        return Ok(Begun::Ended(Ending::NotStarted));
    }
    let secrets = match resolution {
        Ok(secrets) => secrets,
        Err(ReferenceError::Unresolvable(reason)) => {
            tracing::warn!(reason = %reason.description, "the task's env does not resolve; failing it");
            return Ok(Begun::Ended(Ending::Unresolvable(reason)));
        }
        Err(ReferenceError::Unavailable(detail)) => {
            tracing::warn!(error = %detail, "the secret store is unavailable; the task will be retried");
            return Ok(Begun::Ended(Ending::SecretStoreUnavailable(detail)));
        }
    };
    // Object references in env values, just before the start; a missing one fails the task.
    if let Some(store) = ctx.logs.archive().filter(|_| has_object_references(&spec.env)) {
        let max = ctx.config.max_env_object_bytes;
        if let Err(e) = resolve_object_references(store.as_ref(), &key.run, &mut spec.env, max).await {
            return Ok(Begun::Ended(Ending::StartRejected(e.to_string())));
        }
    }
    tracing::info!(job = %job_id, "dispatching");
    let starting = start_through_outages(ctx, claimed, spec, signal);
    let ending = match starting.instrument(tracing::info_span!("scheduler.start", job = %job_id)).await? {
        Start::Started => {
            measure::dispatched((time::OffsetDateTime::now_utc() - queued_at).as_seconds_f64());
            return Ok(Begun::Following { offset: 0, secrets });
        }
        Start::LeaseLost => return Ok(Begun::LeaseLost),
        Start::Cancelled => {
            // A start that timed out may still have created the job.
            if let Err(e) = ctx.scheduler.stop(job_id, ctx.config.settings.stop_grace()).await {
                tracing::warn!(error = %e, "stopping a job whose start was abandoned failed");
            }
            Ending::NotStarted
        }
        Start::Failed(SchedulerError::Rejected(detail)) => Ending::StartRejected(detail),
        Start::Failed(e) => Ending::StartUnavailable(e.to_string()),
    };
    Ok(Begun::Ended(ending))
}

/// Records the takeover, then picks up where the previous holder stopped: its job's output from
/// the raw position already stored. A job it never dispatched is unknown to the scheduler.
async fn reattach(
    ctx: &EngineCtx,
    claimed: &ClaimedTask,
    was_dispatched: bool,
    prepared: &Prepared,
    resolution: Resolution,
) -> Result<Begun, EngineError> {
    let key = &claimed.key;
    {
        let mut conn = ctx.pool.acquire().await?;
        let payload = json!({"attempt": claimed.attempt, "replica": ctx.config.replica_id});
        let scope = EventScope::task(&key.run, &key.task);
        events::record(&mut conn, &key.run.pipeline.tenant, EventKind::TaskTakenOver, scope, payload).await?;
    }
    if !was_dispatched {
        // The previous holder died before dispatching: the scheduler never got it.
        return Ok(Begun::Ended(Ending::Observed(TaskObservation::Unknown)));
    }
    // The secrets are resolved again only to mask the job's further output.
    let secrets = resolution.unwrap_or_else(|e| {
        tracing::warn!(error = ?e, "cannot resolve the task's secrets again; its further output is not masked");
        Vec::new()
    });
    // The raw offset of the scheduler's output, not the stored length: masking changes it.
    let offset = ctx.logs.resume_offset(&prepared.log_key).await?;
    Ok(Begun::Following { offset, secrets })
}

/// How dispatching went.
enum Start {
    Started,
    /// Refused, or still unavailable after the outage tolerance.
    Failed(SchedulerError),
    /// The run is being stopped; the task was not started.
    Cancelled,
    /// Another replica holds the lease now.
    LeaseLost,
}

/// Starts the job, retrying in place while the scheduler is unavailable (an outage, a slow
/// scheduler) for up to `scheduler_outage_tolerance`: the lease is renewed meanwhile, so the task
/// neither fails nor moves to another replica because the scheduler was briefly away. Starts are
/// idempotent on the job id, so a start that timed out after creating the job is harmless to repeat.
async fn start_through_outages(
    ctx: &EngineCtx,
    claimed: &ClaimedTask,
    spec: &TaskSpec,
    signal: &SignalGuard,
) -> Result<Start, EngineError> {
    let began = Instant::now();
    let mut last_heartbeat = Instant::now();
    // Never sleep through a lease renewal.
    let first = ctx.config.settings.monitor_interval().max(Duration::from_millis(100));
    let mut backoff = DoublingDelay::new(first, Duration::from_secs(5).min(ctx.config.settings.lease() / 4));
    loop {
        let error = match ctx.scheduler.start(spec).await {
            Ok(()) => return Ok(Start::Started),
            Err(e @ SchedulerError::Rejected(_)) => {
                measure::scheduler_error("start");
                return Ok(Start::Failed(e));
            }
            Err(e) => {
                measure::scheduler_error("start");
                e
            }
        };
        if began.elapsed() >= ctx.config.settings.scheduler_outage_tolerance() {
            return Ok(Start::Failed(error));
        }
        tracing::warn!(error = %error, backoff_ms = backoff.current().as_millis() as u64, "the scheduler is unavailable; retrying the start");
        tokio::select! {
            _ = tokio::time::sleep(backoff.current()) => {},
            _ = signal.cancelled() => return Ok(Start::Cancelled),
        }
        backoff.double();
        if last_heartbeat.elapsed() > ctx.config.settings.lease() / 3 {
            last_heartbeat = Instant::now();
            let mut conn = ctx.pool.acquire().await?;
            let key = &claimed.key;
            match db::queue::heartbeat(&mut conn, key, ctx.config.replica_id, ctx.config.settings.lease().as_secs_f64())
                .await?
            {
                None => {
                    tracing::warn!("lease lost while the scheduler was unavailable");
                    return Ok(Start::LeaseLost);
                }
                Some(true) => return Ok(Start::Cancelled),
                Some(false) => {}
            }
        }
    }
}
