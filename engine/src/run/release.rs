//! Releasing a run's waiting tasks once their parents finish, and completing the run.

use gofer_core::dag::{Readiness, readiness};
use gofer_core::model::Reason;
use std::collections::BTreeMap;

use gofer_core::{PipelineConfig, RunStatus, StatusReason, TaskId, TaskState, TaskStatus, WaitingReason};
use sqlx::PgConnection;

use crate::catalog::deployments;
use crate::events::{self, EventScope};
use crate::run::cancel_reason::CancelReason;
use crate::{EngineError, db};
use gofer_core::EventKind;
use gofer_core::keys::{RunKey, TaskKey};
use serde_json::json;

/// Queues every waiting task whose conditions now hold and skips every one whose conditions
/// cannot, repeating until nothing changes (a skip can decide its own dependants); completes the
/// run when every task is complete. The caller holds the run's row lock, so two finishing
/// parents never both release the same child, and passes the run's `cancelling` as read under it.
/// A bare connection: starting and cancelling a run release in its tenant's `TenantTx`, the
/// engine's cross-tenant conclusion of tasks in its own transaction.
pub(crate) async fn release_ready_tasks(
    conn: &mut PgConnection,
    run: &RunKey,
    cancelling: Option<CancelReason>,
    config_version: i64,
    config: &PipelineConfig,
) -> Result<(), EngineError> {
    let states = db::task_states(conn, run).await?;
    release_with_states(conn, run, cancelling, config_version, config, states).await
}

/// [`release_ready_tasks`] with the run's task states as the caller read them under the run's
/// lock (see [`db::queue::lock_runs_states`]).
pub(crate) async fn release_with_states(
    conn: &mut PgConnection,
    run: &RunKey,
    cancelling: Option<CancelReason>,
    config_version: i64,
    config: &PipelineConfig,
    mut states: BTreeMap<TaskId, (TaskState, TaskStatus)>,
) -> Result<(), EngineError> {
    let mut queued_any = false;
    // Asked only when a task is queued: most releases queue nothing (a task without dependants).
    let mut reason_when_queued = None;
    loop {
        let mut changed = false;
        for task in &config.tasks {
            if states.get(&task.id).map(|s| s.0) != Some(TaskState::Waiting) {
                continue;
            }
            let key = TaskKey { run: run.clone(), task: task.id.clone() };
            let decision = match cancelling {
                // A stopping run starts nothing new.
                Some(cancel) => Err(cancel),
                None => Ok(readiness(&task.depends_on, |parent| states.get(parent).copied())),
            };
            match decision {
                Err(cancel) => {
                    let (status, reason) = cancel.task_outcome(false);
                    db::complete_waiting_task(conn, &key, status, &reason).await?;
                    let scope = EventScope::task(run, &task.id);
                    let payload = json!({"status": status, "status_reason": reason});
                    events::record(conn, &run.pipeline.tenant, EventKind::TaskCompleted, scope, payload).await?;
                    states.insert(task.id.clone(), (TaskState::Complete, status));
                    changed = true;
                }
                Ok(readiness) => match readiness {
                    Readiness::Wait => {}
                    Readiness::Ready => {
                        let reason = match reason_when_queued {
                            Some(reason) => reason,
                            None => *reason_when_queued.insert(queue_reason(conn, run, config).await?),
                        };
                        db::queue_task(conn, &key, reason).await?;
                        let scope = EventScope::task(run, &task.id);
                        events::record(conn, &run.pipeline.tenant, EventKind::TaskQueued, scope, json!({})).await?;
                        states.insert(task.id.clone(), (TaskState::Queued, TaskStatus::Unknown));
                        queued_any = true;
                        changed = true;
                    }
                    Readiness::Skip { parent, required, actual } => {
                        let reason = Reason {
                            reason: StatusReason::FailedPrecondition,
                            description: format!("depends on {parent} ending {required}, but it ended {actual}"),
                        };
                        db::complete_waiting_task(conn, &key, TaskStatus::Skipped, &reason).await?;
                        let scope = EventScope::task(run, &task.id);
                        let payload = json!({"status": TaskStatus::Skipped, "status_reason": reason});
                        events::record(conn, &run.pipeline.tenant, EventKind::TaskCompleted, scope, payload).await?;
                        states.insert(task.id.clone(), (TaskState::Complete, TaskStatus::Skipped));
                        changed = true;
                    }
                },
            }
        }
        if !changed {
            break;
        }
    }
    if queued_any {
        db::notify_queue(conn).await?;
    }
    if states.values().all(|(state, _)| *state == TaskState::Complete) {
        let (status, reason) = match cancelling {
            Some(CancelReason::User) => (
                RunStatus::Cancelled,
                Some(Reason { reason: StatusReason::UserCancelled, description: "cancelled by a user".into() }),
            ),
            Some(CancelReason::Timeout) => {
                let timeout = config.run_timeout_s.map(|t| format!(" of {t}s")).unwrap_or_default();
                (
                    RunStatus::Failed,
                    Some(Reason {
                        reason: StatusReason::Timeout,
                        description: format!("the run passed its timeout{timeout}"),
                    }),
                )
            }
            Some(CancelReason::Quota) => (
                RunStatus::Failed,
                Some(Reason {
                    reason: StatusReason::QuotaExhausted,
                    description: "the tenant's task-seconds for this month ran out".into(),
                }),
            ),
            None => {
                let status = TaskStatus::run_status(states.values().map(|(_, status)| status));
                (status, failure_reason(status, &states))
            }
        };
        db::complete_run(conn, run, status, reason.as_ref()).await?;
        deployments::on_run_completed(conn, run, config_version, status).await?;
        let payload = json!({"status": status, "status_reason": reason});
        events::record(conn, &run.pipeline.tenant, EventKind::RunCompleted, EventScope::run(run), payload).await?;
        tracing::info!(run = %run.run, %status, "run complete");
    }
    Ok(())
}

/// The reason of a run that ended `status` on its own: the failed tasks, named.
fn failure_reason(status: RunStatus, states: &BTreeMap<TaskId, (TaskState, TaskStatus)>) -> Option<Reason> {
    if status != RunStatus::Failed {
        return None;
    }
    let failed: Vec<String> =
        states.iter().filter(|(_, (_, s))| *s == TaskStatus::Failed).map(|(id, _)| id.to_string()).collect();
    Some(Reason { reason: StatusReason::TaskFailed, description: format!("failed tasks: {}", failed.join(", ")) })
}

/// Why a task queued now will wait: its pipeline's parallelism when the run has not started and
/// the pipeline is full, otherwise capacity. The claim clears it.
async fn queue_reason(
    conn: &mut PgConnection,
    run: &RunKey,
    config: &PipelineConfig,
) -> Result<WaitingReason, EngineError> {
    if config.parallelism > 0 && db::queue::pipeline_full(conn, run, config.parallelism).await? {
        return Ok(WaitingReason::WaitingForParallelism);
    }
    if db::queue::tenant_at_capacity(conn, &run.pipeline.tenant).await? {
        return Ok(WaitingReason::WaitingForQuota);
    }
    Ok(WaitingReason::WaitingForCapacity)
}
