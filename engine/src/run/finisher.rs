//! Recording successful task executions in batches, one transaction per batch.
//!
//! Successes are by far the most frequent conclusion, and recorded one per transaction they were
//! the engine's largest cost: a transaction, a round trip and the run's row lock per task, and
//! siblings finishing together queued on that lock one after another (docs/benchmarks.md). Monitors
//! hand their successes to one loop per replica, which takes every success waiting, records them in
//! one statement, locks each run concerned once (in key order, so two batches never wait on each
//! other), releases dependants and completes runs, and commits once. A batch forms on its own
//! under load and is a single task otherwise: nothing waits to fill it.
//!
//! Should a batch fail (a deadlock, a lost connection), it is rolled back whole and every monitor
//! in it records its success alone, as failures are always recorded.

use std::sync::Arc;

use gofer_core::{PipelineConfig, TaskStatus};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::release;
use crate::{EngineError, db};
use gofer_core::keys::{RunKey, TaskKey};

/// Successes recorded in one transaction at most.
const MAX_BATCH: usize = 64;

/// A successful attempt, as a monitor hands it over.
pub(crate) struct Success {
    pub key: TaskKey,
    pub attempt: i32,
    pub exit_code: Option<i32>,
    /// (CPU millicores, memory MiB) asked for, metered with the time.
    pub requested: (u32, u32),
    pub node: Option<String>,
    /// The `task_completed` event's payload.
    pub event: serde_json::Value,
    /// The run's config version and config, to release its dependants.
    pub config_version: i64,
    pub config: Arc<PipelineConfig>,
}

/// How recording a success went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Recorded, with its dependants released and its run completed if it was the last.
    Finished,
    /// The task execution was finished elsewhere (its lease was lost): nothing written.
    AlreadyFinished,
    /// The batch failed and was rolled back: the monitor records the success alone.
    BatchFailed,
}

struct Request {
    success: Success,
    reply: oneshot::Sender<Recorded>,
}

/// The monitors' side of the loop.
pub(crate) struct Finisher {
    sender: mpsc::UnboundedSender<Request>,
    receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Request>>>,
}

impl Finisher {
    pub(crate) fn new() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self { sender, receiver: std::sync::Mutex::new(Some(receiver)) }
    }

    /// Starts the loop recording this replica's successes as `owner` (once; later calls do
    /// nothing). It ends when the handle is aborted.
    pub(crate) fn spawn(&self, pool: PgPool, owner: uuid::Uuid) -> Option<tokio::task::JoinHandle<()>> {
        let receiver = self.receiver.lock().ok()?.take()?;
        Some(tokio::spawn(record_batches(pool, owner, receiver)))
    }

    /// Records a success with whatever else is waiting. `BatchFailed` also when the loop is not
    /// running.
    pub(crate) async fn record(&self, success: Success) -> Recorded {
        let (reply, answer) = oneshot::channel();
        if self.sender.send(Request { success, reply }).is_err() {
            return Recorded::BatchFailed;
        }
        answer.await.unwrap_or(Recorded::BatchFailed)
    }
}

async fn record_batches(pool: PgPool, owner: uuid::Uuid, mut receiver: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let successes: Vec<&Success> = batch.iter().map(|r| &r.success).collect();
        let answers = match record_batch(&pool, owner, &successes).await {
            Ok(finished) => finished
                .into_iter()
                .map(|finished| if finished { Recorded::Finished } else { Recorded::AlreadyFinished })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, tasks = batch.len(), "recording a batch of successes failed; recording each alone");
                vec![Recorded::BatchFailed; batch.len()]
            }
        };
        for (request, answer) in batch.drain(..).zip(answers) {
            let _ = request.reply.send(answer);
        }
    }
}

/// Records `successes` in one transaction; answers, per success, whether its fence held.
async fn record_batch(pool: &PgPool, owner: uuid::Uuid, successes: &[&Success]) -> Result<Vec<bool>, EngineError> {
    let mut tx = pool.begin().await?;
    let rows: Vec<db::queue::Finished<'_>> = successes
        .iter()
        .map(|s| db::queue::Finished {
            key: &s.key,
            attempt: s.attempt,
            status: TaskStatus::Successful,
            attempt_status: TaskStatus::Successful,
            reason: None,
            exit_code: s.exit_code,
            requested: s.requested,
            node: s.node.as_deref(),
            event: &s.event,
        })
        .collect();
    let finished = db::queue::finish_tasks(&mut tx, owner, &rows).await?;
    // Each run once, in key order, with the config of one of its successes (a run has one version).
    let mut runs: Vec<(&RunKey, &Success)> =
        successes.iter().zip(&finished).filter(|(_, finished)| **finished).map(|(s, _)| (&s.key.run, *s)).collect();
    runs.sort_by(|(a, _), (b, _)| run_order(a).cmp(&run_order(b)));
    runs.dedup_by(|(a, _), (b, _)| a == b);
    let keys: Vec<&RunKey> = runs.iter().map(|(run, _)| *run).collect();
    let states = db::queue::lock_runs_states(&mut tx, &keys).await?;
    for ((run, success), states) in runs.into_iter().zip(states) {
        let (cancelling, states) = states.ok_or(EngineError::RunNotFound(run.run))?;
        release::release_with_states(&mut tx, run, cancelling, success.config_version, &success.config, states).await?;
    }
    tx.commit().await?;
    crate::measure::success_batch(successes.len());
    Ok(finished)
}

/// The order runs are locked in by every batch.
fn run_order(run: &RunKey) -> (&str, &str, &str, i64) {
    (run.pipeline.tenant.as_str(), run.pipeline.namespace.as_str(), run.pipeline.pipeline.as_str(), run.run.get())
}
