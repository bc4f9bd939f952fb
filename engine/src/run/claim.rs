//! Claiming task executions for this replica: the oldest queued ones (a batch in one transaction,
//! or one at a time when a batch raced another replica past a limit), and those whose holder
//! stopped renewing its lease. What a claim hands its monitor is a [`Claimed`].

use gofer_core::EventKind;
use serde_json::json;
use sqlx::PgConnection;

use super::context::EngineCtx;
use super::spec;
use crate::events::{self, EventScope};
use crate::{EngineError, db};
use gofer_core::keys::TaskKey;

/// The task execution and attempt a claim holds the lease of, however it was claimed.
pub(crate) struct ClaimedTask {
    pub key: TaskKey,
    pub attempt: i32,
    /// The traceparent of the request that started the run, when tracing was on.
    pub trace_parent: Option<String>,
}

/// A task execution this replica now holds the lease of, and what the way it was claimed leaves
/// its monitor to do.
// A fresh claim carries its run's dispatch context inline: a claim is moved once, into its
// monitor, so boxing the context would only add an allocation per claim.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Claimed {
    /// Claimed from the queue: dispatch it.
    Fresh {
        task: ClaimedTask,
        /// When it was queued (for the dispatch latency).
        queued_at: time::OffsetDateTime,
        /// The run's dispatch context, when the claim's transaction already read it (a batch
        /// claim); otherwise the monitor reads it.
        context: Option<db::DispatchContext>,
        /// Whether the claim's transaction already recorded the attempt's job id and deadline and
        /// opened its attempt row (a batch claim); otherwise the monitor does before dispatching.
        attempt_opened: bool,
    },
    /// Taken over from a replica whose lease expired: find the job and re-attach.
    TakenOver {
        task: ClaimedTask,
        /// The job id the previous holder dispatched; `None` when it died before dispatching, so
        /// the scheduler never got the job.
        scheduler_id: Option<String>,
    },
}

impl Claimed {
    /// The task execution and attempt claimed.
    pub(crate) fn task(&self) -> &ClaimedTask {
        match self {
            Claimed::Fresh { task, .. } | Claimed::TakenOver { task, .. } => task,
        }
    }

    /// The run's dispatch context the claim already read, taken out for the monitor (it is read
    /// once, and then only needed by the monitor's preparation).
    pub(crate) fn take_context(&mut self) -> Option<db::DispatchContext> {
        match self {
            Claimed::Fresh { context, .. } => context.take(),
            Claimed::TakenOver { .. } => None,
        }
    }
}

/// Writes what claiming means in the claim's transaction: the run starts and the events say so.
async fn record_claim(conn: &mut PgConnection, key: &TaskKey, attempt: i32) -> Result<(), EngineError> {
    let tenant = &key.run.pipeline.tenant;
    if db::start_run(conn, &key.run).await? {
        events::record(conn, tenant, EventKind::RunStarted, EventScope::run(&key.run), json!({})).await?;
    }
    let payload = json!({"attempt": attempt});
    events::record(conn, tenant, EventKind::TaskStarted, EventScope::task(&key.run, &key.task), payload).await?;
    Ok(())
}

/// [`record_claim`] for a batch: the events of the runs it started, then one per claimed task,
/// in one statement.
async fn record_claims<'a>(
    conn: &mut PgConnection,
    started_runs: &'a [gofer_core::keys::RunKey],
    claimed: impl Iterator<Item = (&'a TaskKey, i32)>,
) -> Result<(), EngineError> {
    let mut batch: Vec<events::NewEvent<'a>> = started_runs
        .iter()
        .map(|run| events::NewEvent {
            tenant: &run.pipeline.tenant,
            kind: EventKind::RunStarted,
            scope: EventScope::run(run),
            payload: json!({}),
        })
        .collect();
    batch.extend(claimed.map(|(key, attempt)| events::NewEvent {
        tenant: &key.run.pipeline.tenant,
        kind: EventKind::TaskStarted,
        scope: EventScope::task(&key.run, &key.task),
        payload: json!({"attempt": attempt}),
    }));
    events::record_batch(conn, &batch).await?;
    Ok(())
}

/// Claims up to `max` of the oldest claimable task executions and starts their runs, in one
/// transaction. Answers `None` when the batch lost a race with another replica past a tenant's or
/// pipeline's limit (it is rolled back; the caller claims one at a time instead).
pub(super) async fn claim_batch(ctx: &EngineCtx, max: usize) -> Result<Option<Vec<Claimed>>, EngineError> {
    let mut tx = db::queue::begin_claim(&ctx.pool).await?;
    let lease_s = ctx.config.settings.lease().as_secs_f64();
    let limit = i64::from(ctx.config.settings.tenant_max_running_tasks);
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = db::queue::claim_batch(&mut tx, ctx.config.replica_id, lease_s, limit, max).await?;
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
    let mut filled: Vec<(&gofer_core::keys::RunKey, i32)> = Vec::new();
    for (key, row) in keys.iter().zip(&rows) {
        if row.run_pending && row.parallelism > 0 && !filled.iter().any(|(run, _)| run.pipeline == key.run.pipeline) {
            filled.push((&key.run, row.parallelism));
        }
    }
    for (run, parallelism) in filled {
        db::queue::mark_waiting_for_parallelism(&mut tx, run, parallelism).await?;
    }
    record_claims(&mut tx, &started, keys.iter().zip(rows.iter().map(|row| row.attempt))).await?;
    // What each monitor needs to dispatch, for the whole batch in one read (after the runs were
    // started, so they read as running).
    let mut runs: Vec<&gofer_core::keys::RunKey> = Vec::new();
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
            let config = ctx.config_for(&mut tx, &key.run, version, &context.config_hash).await?;
            // A task missing from its config is left to the monitor, which fails it as before.
            timeout = config.tasks.iter().find(|t| t.id == key.task).map(|t| spec::task_timeout(&ctx.config, t));
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
            .map(|((key, row), (context, attempt_opened))| Claimed::Fresh {
                task: ClaimedTask { key, attempt: row.attempt, trace_parent: row.trace_parent },
                queued_at: row.queued_at,
                context,
                attempt_opened,
            })
            .collect(),
    ))
}

/// Claims the oldest claimable task execution and marks its run running, in one transaction.
pub(super) async fn claim_next(ctx: &EngineCtx) -> Result<Option<Claimed>, EngineError> {
    let mut tx = db::queue::begin_claim(&ctx.pool).await?;
    let lease_s = ctx.config.settings.lease().as_secs_f64();
    let limit = i64::from(ctx.config.settings.tenant_max_running_tasks);
    let Some(row) = db::queue::claim_next(&mut tx, ctx.config.replica_id, lease_s, limit).await? else {
        return Ok(None);
    };
    if !db::queue::recheck_limits(&mut tx, &row).await? {
        // Another replica filled the pipeline or tenant first; leave the task queued.
        tx.rollback().await?;
        return Ok(None);
    }
    // The claim locked the run row too (it starts the run).
    let key = row.key()?;
    record_claim(&mut tx, &key, row.attempt).await?;
    if row.run_pending && row.parallelism > 0 {
        db::queue::mark_waiting_for_parallelism(&mut tx, &key.run, row.parallelism).await?;
    }
    tx.commit().await?;
    Ok(Some(Claimed::Fresh {
        task: ClaimedTask { key, attempt: row.attempt, trace_parent: row.trace_parent },
        queued_at: row.queued_at,
        context: None,
        attempt_opened: false,
    }))
}

/// Takes over one task execution whose watcher stopped renewing its lease.
pub(super) async fn take_over_expired(ctx: &EngineCtx) -> Result<Option<Claimed>, EngineError> {
    let mut tx = ctx.pool.begin().await?;
    let lease_s = ctx.config.settings.lease().as_secs_f64();
    let Some(row) = db::queue::claim_expired(&mut tx, ctx.config.replica_id, lease_s).await? else {
        return Ok(None);
    };
    let key = row.key()?;
    tx.commit().await?;
    tracing::warn!(run = %key.run.run, task = %key.task, attempt = row.attempt, "taking over a task execution whose lease expired");
    crate::measure::lease_taken_over();
    Ok(Some(Claimed::TakenOver {
        task: ClaimedTask { key, attempt: row.attempt, trace_parent: row.trace_parent },
        scheduler_id: row.scheduler_id,
    }))
}
