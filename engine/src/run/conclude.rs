//! Concluding an attempt: recording how it ended, in one transaction fenced by the lease, as the
//! verdict of `outcome.rs` says (complete the task execution and release its dependants, or queue
//! its next attempt). Successes go through the replica's batching `finisher.rs`.

use std::sync::Arc;

use gofer_core::scheduler::TaskObservation;
use gofer_core::{EventKind, PipelineConfig, TaskConfig, TaskStatus};
use serde_json::json;

use super::cancel_reason::CancelReason;
use super::claim::ClaimedTask;
use super::context::EngineCtx;
use super::finisher::{self, Recorded};
use super::outcome::{Ending, RetryPolicy, Verdict, verdict};
use super::release;
use crate::events::{self, EventScope};
use crate::{EngineError, db, measure};

/// A run's pipeline config and its version.
pub(crate) struct VersionedConfig {
    pub version: i64,
    pub config: Arc<PipelineConfig>,
}

/// Records how the attempt ended, in one transaction fenced by this replica's lease: either the
/// task execution completes (and its dependants are released), or it goes back to the queue for
/// its next attempt.
pub(super) async fn conclude(
    ctx: &EngineCtx,
    claimed: &ClaimedTask,
    config: &VersionedConfig,
    task: &TaskConfig,
    job_id: &str,
    ending: Ending,
) -> Result<(), EngineError> {
    conclude_on(ctx, claimed, config, task, job_id, ending, None).await
}

/// [`conclude`], recording the node the attempt ran on when it was learned only at its end.
///
/// The run's row lock serializes a run's transitions (two finishing parents must not both release
/// a child; exactly one finisher must complete the run), but siblings finishing together queue on
/// it, so it is taken as late as possible: when the verdict cannot depend on the run being stopped
/// (a success, a failure without retries left), the task's own rows are written first and the run
/// is locked only to release dependants and see whether the run is complete. That stays correct
/// because each transaction updates its task before it waits for the lock, and reads the run's
/// task states after it holds it: the last sibling to take the lock sees every other one complete.
pub(super) async fn conclude_on(
    ctx: &EngineCtx,
    claimed: &ClaimedTask,
    config: &VersionedConfig,
    task: &TaskConfig,
    job_id: &str,
    ending: Ending,
    node: Option<&str>,
) -> Result<(), EngineError> {
    let key = &claimed.key;
    let requested = (
        task.cpu.unwrap_or(ctx.config.settings.default_cpu_millis),
        task.memory_mb.unwrap_or(ctx.config.settings.default_memory_mb),
    );
    // A success completes the task whatever else holds (a cancel, earlier failures): it is
    // recorded in a batch with the replica's other successes.
    if let Ending::Observed(TaskObservation::Exited { exit_code: 0 }) = ending {
        let status = TaskStatus::Successful;
        let success = finisher::Success {
            key: key.clone(),
            attempt: claimed.attempt,
            exit_code: Some(0),
            requested,
            node: node.map(str::to_owned),
            event: json!({"status": status, "status_reason": null, "exit_code": 0, "attempt": claimed.attempt,
                          "job_id": job_id}),
            config_version: config.version,
            config: config.config.clone(),
        };
        match ctx.finisher.record(success).await {
            Recorded::Finished => {
                measure::task_completed(status);
                tracing::info!(%status, exit_code = 0, "task execution finished");
                return Ok(());
            }
            Recorded::AlreadyFinished => {
                tracing::warn!("the task execution was already finished elsewhere; leaving it");
                return Ok(());
            }
            // Recorded alone below.
            Recorded::BatchFailed => {}
        }
    }
    let owner = ctx.config.replica_id;
    let mut tx = ctx.pool.begin().await?;
    // A success needs no failure counts: it completes whatever came before.
    let failures = match ending {
        Ending::Observed(TaskObservation::Exited { exit_code: 0 }) => (0, 0),
        _ => {
            let (infra, own) = db::queue::failure_counts(&mut tx, key).await?;
            (u32::try_from(infra).unwrap_or(0), u32::try_from(own).unwrap_or(0))
        }
    };
    let policy = RetryPolicy {
        infra_limit: ctx.config.settings.infra_retries,
        own_limit: task.retries,
        backoff_base: ctx.config.settings.retry_backoff(),
    };
    let timeout_s = task.timeout_s.map(u64::from).unwrap_or(ctx.config.settings.default_task_timeout().as_secs());
    let decide = |cancelling| verdict(&ending, cancelling, timeout_s, failures, policy);
    let unaffected_by_cancel = [Some(CancelReason::User), Some(CancelReason::Timeout), Some(CancelReason::Quota)]
        .into_iter()
        .all(|cancelling| decide(cancelling) == decide(None));
    // `Some(cancelling)` once the run's row is locked.
    let mut locked: Option<Option<CancelReason>> = None;
    if !unaffected_by_cancel {
        locked = Some(db::lock_run(&mut tx, &key.run).await?.ok_or(EngineError::RunNotFound(key.run.run))?);
    }
    let tenant = &key.run.pipeline.tenant;
    let scope = EventScope::task(&key.run, &key.task);
    let closed = |status, reason, exit_code, retried| db::queue::ClosedAttempt {
        attempt: claimed.attempt,
        status,
        reason,
        exit_code,
        retried,
        requested,
        node,
    };
    match decide(locked.flatten()) {
        Verdict::Complete { status, reason, exit_code } => {
            let payload = json!({"status": status, "status_reason": reason, "exit_code": exit_code,
                                 "attempt": claimed.attempt, "job_id": job_id});
            let finished = db::queue::Finished {
                key,
                attempt: claimed.attempt,
                status,
                attempt_status: if status == TaskStatus::Skipped { TaskStatus::Cancelled } else { status },
                reason: reason.as_ref(),
                exit_code,
                requested,
                node,
                event: &payload,
            };
            if db::queue::finish_tasks(&mut tx, owner, std::slice::from_ref(&finished)).await? != [true] {
                tracing::warn!("the task execution was already finished elsewhere; leaving it");
                return Ok(());
            }
            // Then lock the run (already locked when the cancel mattered) and read its states.
            let states = db::queue::lock_runs_states(&mut tx, &[&key.run]).await?.pop().flatten();
            let (cancelling, states) = states.ok_or(EngineError::RunNotFound(key.run.run))?;
            release::release_with_states(&mut tx, &key.run, cancelling, config.version, &config.config, states).await?;
            tx.commit().await?;
            measure::task_completed(status);
            tracing::info!(%status, ?exit_code, "task execution finished");
        }
        Verdict::Retry { infra, reason, exit_code, backoff } => {
            if !db::queue::requeue_for_retry(&mut tx, key, owner, backoff.as_secs_f64(), infra).await? {
                tracing::warn!("the task execution was already finished elsewhere; leaving it");
                return Ok(());
            }
            let attempt = closed(TaskStatus::Failed, Some(&reason), exit_code, true);
            db::queue::close_attempt(&mut tx, key, &attempt).await?;
            let payload = json!({"attempt": claimed.attempt, "status_reason": reason, "exit_code": exit_code,
                                 "infrastructure": infra, "backoff_ms": backoff.as_millis() as u64});
            events::record(&mut tx, tenant, EventKind::TaskRetrying, scope, payload).await?;
            tx.commit().await?;
            measure::task_retried(infra);
            tracing::warn!(reason = %reason.reason, backoff_ms = backoff.as_millis() as u64, "attempt failed; retrying");
        }
    }
    Ok(())
}
