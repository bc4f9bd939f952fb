//! Cancelling runs: by a user, or by the run's deadline. Unstarted tasks end at once; running ones
//! are stopped by whichever replica watches them, told through NOTIFY (and a heartbeat check).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gofer_core::model::Run;
use gofer_core::{EventKind, RunId};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Notify;

use super::release;
use crate::events::{self, EventScope};
use crate::{EngineError, db};
use gofer_core::keys::{PipelineKey, RunKey};

pub use super::cancel_reason::CancelReason;

/// The text identifying a run in cancel notifications and the signal registry.
pub(crate) fn run_signal_key(run: &RunKey) -> String {
    format!("{}/{}/{}/{}", run.pipeline.tenant, run.pipeline.namespace, run.pipeline.pipeline, run.run)
}

/// Monitors of this replica waiting to hear that their run is cancelled.
#[derive(Default)]
pub(crate) struct Signals {
    by_run: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
}

impl Signals {
    /// Registers a monitor of `run`; keep the returned guard for as long as it watches.
    pub(crate) fn subscribe(self: &Arc<Self>, run: &RunKey) -> SignalGuard {
        let notify = Arc::new(Notify::new());
        let key = run_signal_key(run);
        if let Ok(mut map) = self.by_run.lock() {
            map.entry(key.clone()).or_default().push(notify.clone());
        }
        SignalGuard { signals: self.clone(), key, notify }
    }

    /// Wakes every monitor of the run named by `key`.
    pub(crate) fn fire(&self, key: &str) {
        if let Ok(map) = self.by_run.lock() {
            for notify in map.get(key).into_iter().flatten() {
                notify.notify_one();
            }
        }
    }
}

/// Unregisters a monitor when dropped.
pub(crate) struct SignalGuard {
    signals: Arc<Signals>,
    key: String,
    notify: Arc<Notify>,
}

impl SignalGuard {
    /// Resolves when the run is cancelled (a permit is stored if it happened already).
    pub(crate) async fn cancelled(&self) {
        self.notify.notified().await;
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.signals.by_run.lock()
            && let Some(list) = map.get_mut(&self.key)
        {
            list.retain(|n| !Arc::ptr_eq(n, &self.notify));
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

/// Stops a run: unstarted tasks end now, running ones are stopped by their watchers, and the run
/// completes when the last one ends. Cancelling a complete run changes nothing and answers it.
#[tracing::instrument(skip_all, fields(tenant = %run.pipeline.tenant, namespace = %run.pipeline.namespace,
    pipeline = %run.pipeline.pipeline, run = %run.run))]
pub(crate) async fn stop_run(pool: &PgPool, run: &RunKey, reason: CancelReason) -> Result<Run, EngineError> {
    let mut tx = db::scoped(pool, &run.pipeline.tenant).await?;
    let row = db::get_run(&mut tx, run, true).await?.ok_or(EngineError::RunNotFound(run.run))?;
    if db::queue::request_cancel(&mut tx, run, reason.as_str()).await? {
        let tenant = &run.pipeline.tenant;
        let payload = json!({"reason": reason.as_str()});
        events::record(&mut tx, tenant, EventKind::RunCancelling, EventScope::run(run), payload).await?;
        let (status, task_reason) = reason.task_outcome(false);
        for task in db::queue::complete_unstarted(&mut tx, run, status, &task_reason).await? {
            let task = task.parse().map_err(db::corrupt)?;
            let payload = json!({"status": status, "status_reason": task_reason});
            events::record(&mut tx, tenant, EventKind::TaskCompleted, EventScope::task(run, &task), payload).await?;
        }
        if db::queue::has_running_tasks(&mut tx, run).await? {
            db::queue::notify_cancel(&mut tx, run).await?;
        } else {
            let config = db::get_config(&mut tx, &run.pipeline, row.config_version).await?;
            release::release_ready_tasks(&mut tx, run, Some(reason), row.config_version, &config).await?;
        }
    }
    let run = db::get_run(&mut tx, run, false).await?.ok_or(EngineError::RunNotFound(run.run))?.into_run()?;
    tx.commit().await?;
    Ok(run)
}

/// Cancels every unfinished run of a pipeline; answers the runs it cancelled.
pub(crate) async fn stop_all(pool: &PgPool, key: &PipelineKey) -> Result<Vec<RunId>, EngineError> {
    let ids = {
        let mut conn = db::scoped(pool, &key.tenant).await?;
        db::queue::unfinished_runs(&mut conn, key).await?
    };
    for id in &ids {
        stop_run(pool, &RunKey { pipeline: key.clone(), run: *id }, CancelReason::User).await?;
    }
    Ok(ids)
}
