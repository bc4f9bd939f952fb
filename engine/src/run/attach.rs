//! Attach: what the API needs to run a command inside a running task execution (its scheduler job
//! and its non-secret environment), and the audit event that records who attached.

use std::collections::BTreeMap;

use gofer_core::{EventKind, TaskState};
use sqlx::PgPool;

use super::{references, spec};
use crate::EngineError;
use crate::events::EventScope;
use crate::{db, events};
use gofer_core::keys::TaskKey;

/// A running task execution, ready to be entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachTarget {
    /// The scheduler's job id of the current attempt.
    pub job_id: String,
    /// The current attempt.
    pub attempt: u32,
    /// The task's environment without anything secret: env values holding references
    /// (`secret{{ … }}`) are left out, and so is the run token.
    pub env: BTreeMap<String, String>,
    /// The replica watching the task, as registered with [`register_replica`].
    pub owner: Option<Replica>,
}

/// A replica and how the others reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its engine's lease-owner id.
    pub id: uuid::Uuid,
    /// Its base URL (`http://10.0.0.5:8080`).
    pub url: String,
}

/// Records how the other replicas reach this one (`url`), so that an attach arriving elsewhere can
/// be forwarded to it. Called at start-up and every minute after: replicas not seen for ten
/// minutes that watch no task are forgotten.
pub async fn register_replica(pool: &PgPool, id: uuid::Uuid, url: &str) -> Result<(), EngineError> {
    db::register_replica(pool, id, url).await
}

/// Finds the running attempt of a task execution; [`EngineError::TaskNotRunning`] when it is not
/// running (waiting, queued or complete).
pub async fn target(pool: &PgPool, key: &TaskKey, api_url: &str) -> Result<AttachTarget, EngineError> {
    let task = crate::runs::get_task(pool, key).await?;
    let job_id = match (task.state, task.scheduler_id) {
        (TaskState::Running, Some(job_id)) => job_id,
        (state, _) => return Err(EngineError::TaskNotRunning { task: key.task.clone(), state }),
    };
    let mut conn = db::scoped(pool, &key.run.pipeline.tenant).await?;
    let run = db::get_run(&mut conn, &key.run, false).await?.ok_or(EngineError::RunNotFound(key.run.run))?;
    let config = db::get_config(&mut conn, &key.run.pipeline, run.config_version).await?;
    let task_config =
        config.tasks.iter().find(|t| t.id == key.task).ok_or_else(|| EngineError::TaskNotFound(key.task.clone()))?;
    let mut env = spec::task_env(api_url, key, task.attempt, task_config, run.variables());
    env.retain(|_, value| references::find_references(value).is_empty());
    let owner = db::lease_owner_url(pool, key).await?.map(|(id, url)| Replica { id, url });
    Ok(AttachTarget { job_id, attempt: task.attempt, env, owner })
}

/// Records `task_attached` (who, which attempt, which command, with a tty or not; never any input).
pub async fn record(
    pool: &PgPool,
    key: &TaskKey,
    attempt: u32,
    token_id: uuid::Uuid,
    command: &[String],
    tty: bool,
) -> Result<(), EngineError> {
    let mut tx = db::scoped(pool, &key.run.pipeline.tenant).await?;
    let payload = serde_json::json!({
        "token_id": token_id.to_string(),
        "attempt": attempt,
        "command": command,
        "tty": tty,
    });
    events::record(
        &mut tx,
        &key.run.pipeline.tenant,
        EventKind::TaskAttached,
        EventScope::task(&key.run, &key.task),
        payload,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
