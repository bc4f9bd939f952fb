//! SQL of the run queue: claims, leases, attempts, retries, takeovers, cancellation, deadlines.
//! Functions marked "cross-tenant" serve the engine's own work across tenants on purpose.

use gofer_core::model::{Reason, TaskAttempt};
use gofer_core::{RunId, TaskState, TaskStatus};
use gofer_db::{BindKey, TenantTx, channels};
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::corrupt;

use crate::EngineError;
use gofer_core::keys::{PipelineKey, RunKey, TaskKey};

/// A task execution taken from the queue (or over from a dead replica).
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimedRow {
    tenant_id: String,
    namespace_id: String,
    pipeline_id: String,
    run_id: i64,
    task_id: String,
    pub attempt: i32,
    pub scheduler_id: Option<String>,
    pub queued_at: OffsetDateTime,
    /// The traceparent of the request that started the run, when tracing was on.
    pub trace_parent: Option<String>,
    pub run_pending: bool,
    pub parallelism: i32,
    /// The tenant's running-task limit: its plan's, or the config's when that is lower.
    pub tenant_limit: i32,
}

impl ClaimedRow {
    pub(crate) fn key(&self) -> Result<TaskKey, EngineError> {
        Ok(TaskKey {
            run: run_key(&self.tenant_id, &self.namespace_id, &self.pipeline_id, self.run_id)?,
            task: self.task_id.parse().map_err(corrupt)?,
        })
    }
}

fn run_key(tenant: &str, namespace: &str, pipeline: &str, run: i64) -> Result<RunKey, EngineError> {
    Ok(RunKey {
        pipeline: PipelineKey {
            tenant: tenant.parse().map_err(corrupt)?,
            namespace: namespace.parse().map_err(corrupt)?,
            pipeline: pipeline.parse().map_err(corrupt)?,
        },
        run: RunId::from_i64(run),
    })
}

/// Cross-tenant: claims the oldest claimable queued task execution for `owner`, leasing it until
/// `now + lease_s` ([`claim_batch`] of one). The limits are checked again under locks by
/// [`recheck_limits`], because two replicas can pass the claim's filter together.
pub(crate) async fn claim_next(
    conn: &mut PgConnection,
    owner: uuid::Uuid,
    lease_s: f64,
    tenant_limit: i64,
) -> Result<Option<ClaimedRow>, EngineError> {
    Ok(claim_batch(conn, owner, lease_s, tenant_limit, 1).await?.pop())
}

/// Begins a claim's transaction (for [`claim_batch`] and [`claim_next`]), in which the claim is
/// planned once per connection, not per call: Postgres would otherwise re-plan it on every claim
/// (a custom plan: ~2.7 ms of planning against ~1 ms of execution, two thirds of all the planning
/// a task cost; docs/benchmarks.md). Its parameters do not change which plan is good (the states
/// it filters on are literals, so the partial indexes still apply). `SET LOCAL` holds for this
/// transaction only, and goes with `BEGIN` in one round trip (a simple query).
pub(crate) async fn begin_claim(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, EngineError> {
    Ok(pool.begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan").await?)
}

/// Cross-tenant: claims up to `max` claimable queued task executions for `owner` in one
/// statement, oldest first, leasing them until `now + lease_s`. Claimable: past its retry backoff,
/// its run not being cancelled, its pipeline under its `parallelism` (unless the run already
/// runs), its tenant under `tenant_limit` running tasks (0: the plan's limit alone). The same
/// limits then hold within the batch: a tenant gets no more rows than its free capacity, and a
/// pipeline no more pending runs than it has room for. Each row's run is locked with it (`SKIP LOCKED`, never
/// waiting: cancel and finish lock the run before its tasks, so waiting could deadlock), because
/// claiming starts the run. The limits hold against this replica's own batch; against other
/// replicas they are checked again by [`recheck_batch`].
pub(crate) async fn claim_batch(
    conn: &mut PgConnection,
    owner: uuid::Uuid,
    lease_s: f64,
    tenant_limit: i64,
    max: i64,
) -> Result<Vec<ClaimedRow>, EngineError> {
    // Planned once per connection when the transaction was begun by `begin_claim`.
    Ok(sqlx::query_as::<_, ClaimedRow>(
        "WITH candidates AS (
             SELECT t.tenant_id, t.namespace_id, t.pipeline_id, t.run_id, t.task_id, t.queued_at,
                    r.state = 'pending' AS run_pending, r.parallelism, lim.tenant_limit, r.trace_parent
             FROM task_executions t
             JOIN runs r ON (r.tenant_id, r.namespace_id, r.pipeline_id, r.id)
                          = (t.tenant_id, t.namespace_id, t.pipeline_id, t.run_id)
             CROSS JOIN LATERAL (
                 SELECT CASE WHEN $3 = 0 THEN p.max_concurrent_tasks ELSE LEAST(p.max_concurrent_tasks, $3::int) END
                        AS tenant_limit
                 FROM tenants n JOIN plans p ON p.id = n.plan_id WHERE n.id = t.tenant_id
             ) lim
             WHERE t.state = 'queued' AND t.run_after <= now() AND r.cancel_requested_at IS NULL
               AND (r.state = 'running' OR r.parallelism = 0
                    OR (SELECT count(*) FROM runs r2
                        WHERE (r2.tenant_id, r2.namespace_id, r2.pipeline_id) = (r.tenant_id, r.namespace_id, r.pipeline_id)
                          AND r2.state = 'running') < r.parallelism)
               AND (SELECT count(*) FROM task_executions t2
                    WHERE t2.tenant_id = t.tenant_id AND t2.state = 'running') < lim.tenant_limit
             ORDER BY t.queued_at
             LIMIT $4
             FOR UPDATE OF t SKIP LOCKED
             FOR NO KEY UPDATE OF r SKIP LOCKED
         ),
         ranked AS (
             SELECT cd.*,
                    row_number() OVER (PARTITION BY cd.tenant_id ORDER BY cd.queued_at) AS tenant_rank,
                    (SELECT count(*) FROM task_executions t2
                     WHERE t2.tenant_id = cd.tenant_id AND t2.state = 'running') AS tenant_running,
                    dense_rank() OVER (PARTITION BY cd.tenant_id, cd.namespace_id, cd.pipeline_id,
                                                    cd.run_pending AND cd.parallelism > 0
                                       ORDER BY cd.run_id) AS run_rank,
                    CASE WHEN cd.run_pending AND cd.parallelism > 0 THEN
                        (SELECT count(*) FROM runs r2
                         WHERE (r2.tenant_id, r2.namespace_id, r2.pipeline_id) = (cd.tenant_id, cd.namespace_id, cd.pipeline_id)
                           AND r2.state = 'running')
                    ELSE 0 END AS pipeline_running
             FROM candidates cd
         ),
         next AS (
             SELECT * FROM ranked
             WHERE tenant_running + tenant_rank <= tenant_limit
               AND (NOT (run_pending AND parallelism > 0) OR pipeline_running + run_rank <= parallelism)
         )
         -- statement_timestamp(): the claim happens now, not when its transaction began.
         UPDATE task_executions te SET state = 'running', started_at = statement_timestamp(), lease_owner = $1,
             lease_until = now() + make_interval(secs => $2), waiting_reason = 'waiting_for_scheduler'
         FROM next
         WHERE (te.tenant_id, te.namespace_id, te.pipeline_id, te.run_id, te.task_id)
             = (next.tenant_id, next.namespace_id, next.pipeline_id, next.run_id, next.task_id)
         RETURNING te.tenant_id, te.namespace_id, te.pipeline_id, te.run_id, te.task_id, te.attempt,
                   te.scheduler_id, te.queued_at, next.run_pending, next.parallelism, next.tenant_limit,
                   next.trace_parent",
    )
    .bind(owner)
    .bind(lease_s)
    .bind(tenant_limit)
    .bind(max)
    .fetch_all(conn)
    .await?)
}

/// Checks a batch from [`claim_batch`] against what other replicas claimed meanwhile, under row
/// locks on its tenants and pipelines (taken in id order, so two batches cannot deadlock):
/// answers false when a tenant or a pipeline would now be over its limit, and the caller rolls the
/// batch back. Tenants the batch fills get their other queued tasks marked `waiting_for_quota`.
pub(crate) async fn recheck_batch(conn: &mut PgConnection, batch: &[ClaimedRow]) -> Result<bool, EngineError> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut limits: BTreeMap<&str, i64> = BTreeMap::new();
    // Pending runs being started, per pipeline with a parallelism.
    let mut starting: BTreeMap<(&str, &str, &str), (i64, BTreeSet<i64>)> = BTreeMap::new();
    for row in batch {
        limits.insert(&row.tenant_id, i64::from(row.tenant_limit));
        if row.run_pending && row.parallelism > 0 {
            let entry = starting
                .entry((&row.tenant_id, &row.namespace_id, &row.pipeline_id))
                .or_insert_with(|| (i64::from(row.parallelism), BTreeSet::new()));
            entry.1.insert(row.run_id);
        }
    }
    let tenants: Vec<&str> = limits.keys().copied().collect();
    // Lock first, count in a later statement: in READ COMMITTED each statement reads from a
    // snapshot taken when it starts, so a count in the statement that waited for the lock would
    // miss the claims of the transaction it waited for.
    sqlx::query("SELECT 1 FROM tenants WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(&tenants)
        .execute(&mut *conn)
        .await?;
    // Counts this transaction's own claims as well.
    let running: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tenant_id, count(*) FROM task_executions WHERE tenant_id = ANY($1) AND state = 'running'
         GROUP BY tenant_id",
    )
    .bind(&tenants)
    .fetch_all(&mut *conn)
    .await?;
    let mut full = Vec::new();
    for (tenant, count) in &running {
        let limit = limits.get(tenant.as_str()).copied().unwrap_or(0);
        if *count > limit {
            return Ok(false);
        }
        if *count == limit {
            full.push(tenant.as_str());
        }
    }
    for ((tenant, namespace, pipeline), (parallelism, runs)) in &starting {
        // The runs of this batch are still pending here: they start after this check. Lock, then
        // count in a statement of its own (see above).
        sqlx::query("SELECT 1 FROM pipelines WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3 FOR NO KEY UPDATE")
            .bind(tenant)
            .bind(namespace)
            .bind(pipeline)
            .execute(&mut *conn)
            .await?;
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs
             WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND state = 'running'",
        )
        .bind(tenant)
        .bind(namespace)
        .bind(pipeline)
        .fetch_one(&mut *conn)
        .await?;
        if running + i64::try_from(runs.len()).unwrap_or(i64::MAX) > *parallelism {
            return Ok(false);
        }
    }
    if !full.is_empty() {
        sqlx::query(
            // Rows another claimer holds are skipped, not waited for: that claimer locked its rows
            // before the tenant, this one the tenant before them, and waiting would deadlock. The
            // reason is only informative, and the reaper refreshes reasons anyway.
            "UPDATE task_executions SET waiting_reason = 'waiting_for_quota'
             WHERE (tenant_id, namespace_id, pipeline_id, run_id, task_id) IN (
                 SELECT tenant_id, namespace_id, pipeline_id, run_id, task_id FROM task_executions
                 WHERE tenant_id = ANY($1) AND state = 'queued' AND waiting_reason = 'waiting_for_capacity'
                 FOR UPDATE SKIP LOCKED
             )",
        )
        .bind(&full)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// Starts the pending runs among `runs` (locked by the claim); answers the ones it started.
pub(crate) async fn start_runs(conn: &mut PgConnection, runs: &[&ClaimedRow]) -> Result<Vec<RunKey>, EngineError> {
    let tenants: Vec<&str> = runs.iter().map(|r| r.tenant_id.as_str()).collect();
    let namespaces: Vec<&str> = runs.iter().map(|r| r.namespace_id.as_str()).collect();
    let pipelines: Vec<&str> = runs.iter().map(|r| r.pipeline_id.as_str()).collect();
    let ids: Vec<i64> = runs.iter().map(|r| r.run_id).collect();
    let started: Vec<ClaimedRunRow> = sqlx::query_as(
        "UPDATE runs SET state = 'running', started_at = now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS k(tenant_id, namespace_id, pipeline_id, id)
         WHERE (runs.tenant_id, runs.namespace_id, runs.pipeline_id, runs.id)
             = (k.tenant_id, k.namespace_id, k.pipeline_id, k.id)
           AND runs.state = 'pending'
         RETURNING runs.tenant_id, runs.namespace_id, runs.pipeline_id, runs.id",
    )
    .bind(&tenants)
    .bind(&namespaces)
    .bind(&pipelines)
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    started.into_iter().map(ClaimedRunRow::key).collect()
}

#[derive(sqlx::FromRow)]
struct ClaimedRunRow {
    tenant_id: String,
    namespace_id: String,
    pipeline_id: String,
    id: i64,
}

impl ClaimedRunRow {
    fn key(self) -> Result<RunKey, EngineError> {
        run_key(&self.tenant_id, &self.namespace_id, &self.pipeline_id, self.id)
    }
}

/// Checks the pipeline's parallelism and the tenant's limit again for one claim, under row locks
/// that serialise claimers of the same pipeline and tenant (`FOR NO KEY UPDATE` does not block
/// inserts that reference the rows): [`recheck_batch`] of one. Answers whether the claim may stand.
pub(crate) async fn recheck_limits(conn: &mut PgConnection, claimed: &ClaimedRow) -> Result<bool, EngineError> {
    recheck_batch(conn, std::slice::from_ref(claimed)).await
}

/// Binds a [`TaskKey`] as `$1`..`$5` ([`BindKey`]) and a [`ClosedAttempt`] as `$6`..`$14` (attempt, status,
/// reason code and description, exit code, retried, cpu, memory, node).
macro_rules! bind_closed_attempt {
    ($query:expr, $key:expr, $attempt:expr) => {
        $query
            .bind_key($key)
            .bind($attempt.attempt)
            .bind($attempt.status.as_str())
            .bind($attempt.reason.map(|r| r.reason.as_str()))
            .bind($attempt.reason.map(|r| r.description.as_str()))
            .bind($attempt.exit_code)
            .bind($attempt.retried)
            .bind(i32::try_from($attempt.requested.0).unwrap_or(i32::MAX))
            .bind(i32::try_from($attempt.requested.1).unwrap_or(i32::MAX))
            .bind($attempt.node)
    };
}

/// Records the job id and deadline of the attempt being dispatched and opens its attempt row.
pub(crate) async fn open_attempt(
    conn: &mut PgConnection,
    key: &TaskKey,
    attempt: i32,
    scheduler_id: &str,
    timeout_s: f64,
) -> Result<(), EngineError> {
    // One statement: both parts always run (data-modifying CTEs execute whatever the outer query reads).
    sqlx::query(
        "WITH execution AS (
             UPDATE task_executions
             SET scheduler_id = $7, node = NULL, deadline_at = now() + make_interval(secs => $8)
             WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
         )
         INSERT INTO task_attempts (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, scheduler_id,
                                    state, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', 'unknown') ON CONFLICT DO NOTHING",
    )
    .bind_key(key)
    .bind(attempt)
    .bind(scheduler_id)
    .bind(timeout_s)
    .execute(conn)
    .await?;
    Ok(())
}

/// One attempt to open with [`open_attempts`]: the task, its attempt, its job id and timeout.
pub(crate) struct AttemptToOpen<'a> {
    pub key: &'a TaskKey,
    pub attempt: i32,
    pub scheduler_id: String,
    pub timeout_s: f64,
}

/// [`open_attempt`] for a claimed batch, in one statement (inside the claim's transaction).
pub(crate) async fn open_attempts(conn: &mut PgConnection, attempts: &[AttemptToOpen<'_>]) -> Result<(), EngineError> {
    fn column<'a>(attempts: &'a [AttemptToOpen<'_>], f: impl Fn(&'a AttemptToOpen<'_>) -> &'a str) -> Vec<&'a str> {
        attempts.iter().map(f).collect()
    }
    sqlx::query(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::int[], $7::text[],
                                  $8::float8[])
                 AS i (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, scheduler_id, timeout_s)
         ),
         execution AS (
             UPDATE task_executions t
             SET scheduler_id = i.scheduler_id, node = NULL, deadline_at = now() + make_interval(secs => i.timeout_s)
             FROM input i
             WHERE (t.tenant_id, t.namespace_id, t.pipeline_id, t.run_id, t.task_id)
                 = (i.tenant_id, i.namespace_id, i.pipeline_id, i.run_id, i.task_id)
         )
         INSERT INTO task_attempts (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, scheduler_id,
                                    state, status)
         SELECT tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, scheduler_id, 'running', 'unknown'
         FROM input ON CONFLICT DO NOTHING",
    )
    .bind(column(attempts, |a| a.key.run.pipeline.tenant.as_str()))
    .bind(column(attempts, |a| a.key.run.pipeline.namespace.as_str()))
    .bind(column(attempts, |a| a.key.run.pipeline.pipeline.as_str()))
    .bind(attempts.iter().map(|a| a.key.run.run.get()).collect::<Vec<i64>>())
    .bind(column(attempts, |a| a.key.task.as_str()))
    .bind(attempts.iter().map(|a| a.attempt).collect::<Vec<i32>>())
    .bind(column(attempts, |a| a.scheduler_id.as_str()))
    .bind(attempts.iter().map(|a| a.timeout_s).collect::<Vec<f64>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// The scheduler started the task: it no longer waits, and we know its node.
pub(crate) async fn mark_started(
    conn: &mut PgConnection,
    key: &TaskKey,
    attempt: i32,
    node: Option<&str>,
) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE task_executions SET waiting_reason = NULL, node = COALESCE($6, node)
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
           AND state = 'running'",
    )
    .bind_key(key)
    .bind(node)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE task_attempts SET node = COALESCE($7, node)
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
           AND attempt = $6",
    )
    .bind_key(key)
    .bind(attempt)
    .bind(node)
    .execute(conn)
    .await?;
    Ok(())
}

/// Extends this replica's lease. Answers `None` when the lease was lost, otherwise whether the
/// run is being cancelled (a safety net for a missed cancel notification).
pub(crate) async fn heartbeat(
    conn: &mut PgConnection,
    key: &TaskKey,
    owner: uuid::Uuid,
    lease_s: f64,
) -> Result<Option<bool>, EngineError> {
    Ok(sqlx::query_scalar::<_, bool>(
        "UPDATE task_executions te SET lease_until = now() + make_interval(secs => $7)
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
           AND state = 'running' AND lease_owner = $6
         RETURNING (SELECT r.cancel_requested_at IS NOT NULL FROM runs r
                    WHERE (r.tenant_id, r.namespace_id, r.pipeline_id, r.id)
                        = (te.tenant_id, te.namespace_id, te.pipeline_id, te.run_id))",
    )
    .bind_key(key)
    .bind(owner)
    .bind(lease_s)
    .fetch_optional(conn)
    .await?)
}

/// Closes an attempt row with its outcome and meters it: `requested` is the task's (cpu
/// millicores, memory MiB), written to the usage ledger in the same transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn close_attempt(
    conn: &mut PgConnection,
    key: &TaskKey,
    attempt: &ClosedAttempt<'_>,
) -> Result<(), EngineError> {
    // The attempt's end and its usage ledger row in one statement. The ledger row's key is the
    // attempt's: writing it again (a takeover concluding the same attempt) adds nothing.
    bind_closed_attempt!(
        sqlx::query(
            "WITH closed AS (
                 UPDATE task_attempts SET state = 'complete', status = $7, status_reason = $8, status_description = $9,
                     exit_code = $10, retried = $11, ended_at = now(), node = COALESCE($14, node)
                 WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
                   AND attempt = $6
                 RETURNING tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, started_at, ended_at
             )
             INSERT INTO usage_records (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, plan_id, task_ms,
                                        cpu_millis, memory_mb, started_at, finished_at)
             SELECT c.tenant_id, c.namespace_id, c.pipeline_id, c.run_id, c.task_id, c.attempt, n.plan_id,
                    GREATEST(0, (extract(epoch FROM c.ended_at - c.started_at) * 1000)::bigint), $12, $13,
                    c.started_at, c.ended_at
             FROM closed c JOIN tenants n ON n.id = c.tenant_id
             ON CONFLICT DO NOTHING"
        ),
        key,
        attempt
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One attempt that completes its task execution, to record with [`finish_tasks`].
pub(crate) struct Finished<'a> {
    pub key: &'a TaskKey,
    pub attempt: i32,
    /// The task execution's status, and the attempt's (a skipped task's attempt is `cancelled`).
    pub status: TaskStatus,
    pub attempt_status: TaskStatus,
    pub reason: Option<&'a Reason>,
    pub exit_code: Option<i32>,
    /// What the task asked for: (CPU millicores, memory MiB), metered with the time.
    pub requested: (u32, u32),
    /// The node it ran on, when learned only at its end.
    pub node: Option<&'a str>,
    /// The `task_completed` event's payload.
    pub event: &'a serde_json::Value,
}

/// Completes task executions held by `owner` with how their last attempts ended, in one statement
/// (one task, or a batch of successes): each completes only if it still runs under `owner`'s lease
/// (the fence), with its attempt, its usage ledger row and its `task_completed` event (one
/// notification per tenant, on commit). Answers, per attempt in order, whether its fence held
/// (false: another transition got there first, and nothing of it was written). The caller then
/// locks the runs with [`lock_runs_states`], in a statement of its own: the lock must come after
/// the completions, so that the last of several siblings finishing together sees every other one
/// complete.
pub(crate) async fn finish_tasks(
    conn: &mut PgConnection,
    owner: uuid::Uuid,
    tasks: &[Finished<'_>],
) -> Result<Vec<bool>, EngineError> {
    fn column<'a, T>(tasks: &'a [Finished<'_>], f: impl Fn(&'a Finished<'_>) -> T) -> Vec<T> {
        tasks.iter().map(f).collect()
    }
    let finished: Vec<i64> = sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::int[], $7::int[],
                                  $8::int[], $9::int[], $10::text[], $11::jsonb[], $15::text[], $16::text[],
                                  $17::text[], $18::text[]) WITH ORDINALITY
                 AS i (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, exit_code, cpu_millis,
                       memory_mb, node, payload, status, attempt_status, reason, description, position)
         ), done AS (
             UPDATE task_executions t SET state = 'complete', status = i.status, status_reason = i.reason,
                 status_description = i.description, exit_code = i.exit_code, ended_at = now(), lease_owner = NULL,
                 lease_until = NULL, waiting_reason = NULL, node = COALESCE(i.node, t.node)
             FROM input i
             WHERE (t.tenant_id, t.namespace_id, t.pipeline_id, t.run_id, t.task_id)
                 = (i.tenant_id, i.namespace_id, i.pipeline_id, i.run_id, i.task_id)
               AND t.state = 'running' AND t.lease_owner = $12
             RETURNING i.position
         ), closed AS (
             UPDATE task_attempts a SET state = 'complete', status = i.attempt_status, status_reason = i.reason,
                 status_description = i.description, exit_code = i.exit_code, retried = false, ended_at = now(),
                 node = COALESCE(i.node, a.node)
             FROM input i JOIN done d ON d.position = i.position
             WHERE (a.tenant_id, a.namespace_id, a.pipeline_id, a.run_id, a.task_id, a.attempt)
                 = (i.tenant_id, i.namespace_id, i.pipeline_id, i.run_id, i.task_id, i.attempt)
             RETURNING a.tenant_id, a.namespace_id, a.pipeline_id, a.run_id, a.task_id, a.attempt, a.started_at,
                       a.ended_at, i.cpu_millis, i.memory_mb
         ), metered AS (
             INSERT INTO usage_records (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, plan_id,
                                        task_ms, cpu_millis, memory_mb, started_at, finished_at)
             SELECT c.tenant_id, c.namespace_id, c.pipeline_id, c.run_id, c.task_id, c.attempt, n.plan_id,
                    GREATEST(0, (extract(epoch FROM c.ended_at - c.started_at) * 1000)::bigint), c.cpu_millis,
                    c.memory_mb, c.started_at, c.ended_at
             FROM closed c JOIN tenants n ON n.id = c.tenant_id
             ON CONFLICT DO NOTHING
         ), recorded AS (
             INSERT INTO events (tenant_id, kind, namespace_id, pipeline_id, run_id, task_id, payload)
             SELECT i.tenant_id, $13, i.namespace_id, i.pipeline_id, i.run_id, i.task_id, i.payload
             FROM input i JOIN done d ON d.position = i.position
             ORDER BY i.position
             RETURNING tenant_id
         ), notified AS (
             SELECT pg_notify($14, tenant_id) FROM (SELECT DISTINCT tenant_id FROM recorded) tenants
         )
         -- Referencing `notified` makes it run; the data-modifying CTEs run in any case.
         SELECT position FROM done WHERE (SELECT count(*) FROM notified) >= 0",
    )
    .bind(column(tasks, |t| t.key.run.pipeline.tenant.as_str()))
    .bind(column(tasks, |t| t.key.run.pipeline.namespace.as_str()))
    .bind(column(tasks, |t| t.key.run.pipeline.pipeline.as_str()))
    .bind(column(tasks, |t| t.key.run.run.get()))
    .bind(column(tasks, |t| t.key.task.as_str()))
    .bind(column(tasks, |t| t.attempt))
    .bind(column(tasks, |t| t.exit_code))
    .bind(column(tasks, |t| i32::try_from(t.requested.0).unwrap_or(i32::MAX)))
    .bind(column(tasks, |t| i32::try_from(t.requested.1).unwrap_or(i32::MAX)))
    .bind(column(tasks, |t| t.node))
    .bind(column(tasks, |t| sqlx::types::Json(t.event)))
    .bind(owner)
    .bind(gofer_core::EventKind::TaskCompleted.as_str())
    .bind(channels::EVENTS)
    .bind(column(tasks, |t| t.status.as_str()))
    .bind(column(tasks, |t| t.attempt_status.as_str()))
    .bind(column(tasks, |t| t.reason.map(|r| r.reason.as_str())))
    .bind(column(tasks, |t| t.reason.map(|r| r.description.as_str())))
    .fetch_all(&mut *conn)
    .await?;
    // Positions count from 1.
    Ok((1..=tasks.len() as i64).map(|position| finished.contains(&position)).collect())
}

/// Locks each run in `runs`, in the order given, and reads its task states after its lock was
/// granted (`gofer_lock_run_states` per run, in one round trip). Callers that lock several runs
/// pass them sorted, so two of them never wait on each other. Answers the runs' states in the same
/// order, `None` for a missing run.
pub(crate) async fn lock_runs_states(
    conn: &mut PgConnection,
    runs: &[&RunKey],
) -> Result<Vec<Option<crate::db::RunStates>>, EngineError> {
    type Row = (i64, Option<String>, String, String, String);
    /// (cancel reason, task, state, status), as [`crate::db::run_states`] reads them.
    type StateRow = (Option<String>, String, String, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT k.position, l.cancel_reason, l.task_id, l.state, l.status
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY
                  AS k (tenant_id, namespace_id, pipeline_id, run_id, position)
         CROSS JOIN LATERAL gofer_lock_run_states(k.tenant_id, k.namespace_id, k.pipeline_id, k.run_id) l",
    )
    .bind(runs.iter().map(|r| r.pipeline.tenant.as_str()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.pipeline.namespace.as_str()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.pipeline.pipeline.as_str()).collect::<Vec<_>>())
    .bind(runs.iter().map(|r| r.run.get()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let mut per_run: Vec<Vec<StateRow>> = vec![Vec::new(); runs.len()];
    for (position, reason, task, state, status) in rows {
        let index = usize::try_from(position - 1).ok().filter(|i| *i < runs.len());
        let index = index.ok_or_else(|| crate::db::corrupt("a run state row outside the runs asked for"))?;
        per_run[index].push((reason, task, state, status));
    }
    per_run.into_iter().map(crate::db::run_states).collect()
}

/// How an attempt ended, for [`close_attempt`].
pub(crate) struct ClosedAttempt<'a> {
    pub attempt: i32,
    pub status: TaskStatus,
    pub reason: Option<&'a Reason>,
    pub exit_code: Option<i32>,
    /// Whether the engine runs the task again.
    pub retried: bool,
    /// What the task asked for: (CPU millicores, memory MiB), metered with the time.
    pub requested: (u32, u32),
    /// The node it ran on, when learned only at its end (a task quicker than one observation).
    pub node: Option<&'a str>,
}

/// Puts a running task execution held by `owner` back in the queue for its next attempt after
/// `backoff_s`, counting the failure. Answers false when another transition got there first.
pub(crate) async fn requeue_for_retry(
    conn: &mut PgConnection,
    key: &TaskKey,
    owner: uuid::Uuid,
    backoff_s: f64,
    infra_failure: bool,
) -> Result<bool, EngineError> {
    let done = sqlx::query(
        "UPDATE task_executions SET state = 'queued', attempt = attempt + 1, queued_at = now(),
             run_after = now() + make_interval(secs => $7), waiting_reason = 'waiting_for_retry',
             lease_owner = NULL, lease_until = NULL, scheduler_id = NULL, node = NULL, started_at = NULL,
             deadline_at = NULL,
             infra_failures = infra_failures + CASE WHEN $8 THEN 1 ELSE 0 END,
             own_failures = own_failures + CASE WHEN $8 THEN 0 ELSE 1 END
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
           AND state = 'running' AND lease_owner = $6",
    )
    .bind_key(key)
    .bind(owner)
    .bind(backoff_s)
    .bind(infra_failure)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// How many failures of each kind a task execution has had.
pub(crate) async fn failure_counts(conn: &mut PgConnection, key: &TaskKey) -> Result<(i32, i32), EngineError> {
    Ok(sqlx::query_as::<_, (i32, i32)>(
        "SELECT infra_failures, own_failures FROM task_executions
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5",
    )
    .bind_key(key)
    .fetch_one(conn)
    .await?)
}

/// Cross-tenant: takes over the running task execution whose lease expired longest ago.
pub(crate) async fn claim_expired(
    conn: &mut PgConnection,
    owner: uuid::Uuid,
    lease_s: f64,
) -> Result<Option<ClaimedRow>, EngineError> {
    Ok(sqlx::query_as::<_, ClaimedRow>(
        "WITH expired AS (
             SELECT tenant_id, namespace_id, pipeline_id, run_id, task_id FROM task_executions
             WHERE state = 'running' AND lease_until < now()
             ORDER BY lease_until LIMIT 1 FOR UPDATE SKIP LOCKED
         )
         UPDATE task_executions te SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
         FROM expired
         WHERE (te.tenant_id, te.namespace_id, te.pipeline_id, te.run_id, te.task_id)
             = (expired.tenant_id, expired.namespace_id, expired.pipeline_id, expired.run_id, expired.task_id)
         RETURNING te.tenant_id, te.namespace_id, te.pipeline_id, te.run_id, te.task_id, te.attempt,
                   te.scheduler_id, te.queued_at, false AS run_pending, 0 AS parallelism, 0 AS tenant_limit,
                   (SELECT r.trace_parent FROM runs r
                    WHERE (r.tenant_id, r.namespace_id, r.pipeline_id, r.id) = (te.tenant_id, te.namespace_id, te.pipeline_id, te.run_id))
                   AS trace_parent",
    )
    .bind(owner)
    .bind(lease_s)
    .fetch_optional(conn)
    .await?)
}

/// Cross-tenant: unfinished runs past their deadline that nobody is stopping yet.
pub(crate) async fn overdue_runs(conn: &mut PgConnection, limit: i64) -> Result<Vec<RunKey>, EngineError> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT tenant_id, namespace_id, pipeline_id, id FROM runs
         WHERE state <> 'complete' AND deadline_at < now() AND cancel_requested_at IS NULL
         ORDER BY deadline_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    run_keys(rows)
}

/// Run keys from (tenant, namespace, pipeline, run) rows of cross-tenant queries.
pub(crate) fn run_keys(rows: Vec<(String, String, String, i64)>) -> Result<Vec<RunKey>, EngineError> {
    rows.into_iter().map(|(tenant, namespace, pipeline, run)| run_key(&tenant, &namespace, &pipeline, run)).collect()
}

/// Marks an unfinished run as being stopped; answers false when it is complete or already stopping.
pub(crate) async fn request_cancel(tx: &mut TenantTx, run: &RunKey, reason: &str) -> Result<bool, EngineError> {
    let done = sqlx::query(
        "UPDATE runs SET cancel_requested_at = now(), cancel_reason = $5
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4
           AND state <> 'complete' AND cancel_requested_at IS NULL",
    )
    .bind_key(run)
    .bind(reason)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Completes every task execution of the run that has not started (waiting or queued) with
/// `status`; answers their task ids.
pub(crate) async fn complete_unstarted(
    tx: &mut TenantTx,
    run: &RunKey,
    status: TaskStatus,
    reason: &Reason,
) -> Result<Vec<String>, EngineError> {
    Ok(sqlx::query_scalar(
        "UPDATE task_executions SET state = 'complete', status = $5, status_reason = $6, status_description = $7,
             ended_at = now(), waiting_reason = NULL
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4
           AND state IN ('waiting', 'queued')
         RETURNING task_id",
    )
    .bind_key(run)
    .bind(status.as_str())
    .bind(reason.reason.as_str())
    .bind(&reason.description)
    .fetch_all(&mut **tx)
    .await?)
}

/// Whether any task execution of the run is still running.
pub(crate) async fn has_running_tasks(tx: &mut TenantTx, run: &RunKey) -> Result<bool, EngineError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_executions
                        WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4
                          AND state = 'running')",
    )
    .bind_key(run)
    .fetch_one(&mut **tx)
    .await?)
}

/// The unfinished runs of a pipeline, oldest first.
pub(crate) async fn unfinished_runs(tx: &mut TenantTx, key: &PipelineKey) -> Result<Vec<RunId>, EngineError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND state <> 'complete'
         ORDER BY id",
    )
    .bind_key(key)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(RunId::from_i64).collect())
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    attempt: i32,
    scheduler_id: String,
    node: Option<String>,
    state: String,
    status: String,
    status_reason: Option<String>,
    status_description: Option<String>,
    exit_code: Option<i32>,
    retried: bool,
    started_at: OffsetDateTime,
    ended_at: Option<OffsetDateTime>,
}

/// Every attempt of a task execution, oldest first.
pub(crate) async fn list_attempts(tx: &mut TenantTx, key: &TaskKey) -> Result<Vec<TaskAttempt>, EngineError> {
    let rows: Vec<AttemptRow> = sqlx::query_as(
        "SELECT attempt, scheduler_id, node, state, status, status_reason, status_description, exit_code, retried,
                started_at, ended_at
         FROM task_attempts
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
         ORDER BY attempt",
    )
    .bind_key(key)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(TaskAttempt {
                attempt: u32::try_from(r.attempt).map_err(corrupt)?,
                scheduler_id: r.scheduler_id,
                node: r.node,
                state: r.state.parse::<TaskState>().map_err(corrupt)?,
                status: r.status.parse::<TaskStatus>().map_err(corrupt)?,
                status_reason: super::reason(r.status_reason, r.status_description)?,
                exit_code: r.exit_code,
                retried: r.retried,
                started: r.started_at,
                ended: r.ended_at,
            })
        })
        .collect()
}

/// Announces a cancelled run to every replica (payload: the run's key).
pub(crate) async fn notify_cancel(tx: &mut TenantTx, run: &RunKey) -> Result<(), EngineError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channels::CANCEL)
        .bind(crate::run::cancel::run_signal_key(run))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// After a claim started `run`: when its pipeline now runs `parallelism` runs, the queued tasks
/// of its other pending runs wait for parallelism, and say so (they were queued before the
/// pipeline filled up, as `waiting_for_capacity`).
pub(crate) async fn mark_waiting_for_parallelism(
    conn: &mut PgConnection,
    run: &RunKey,
    parallelism: i32,
) -> Result<(), EngineError> {
    sqlx::query(
        // Rows another claimer holds are skipped, not waited for: that claimer may be waiting for
        // this transaction's locks, and the reason is only informative (the reaper refreshes it).
        "UPDATE task_executions SET waiting_reason = 'waiting_for_parallelism'
         WHERE (tenant_id, namespace_id, pipeline_id, run_id, task_id) IN (
             SELECT t.tenant_id, t.namespace_id, t.pipeline_id, t.run_id, t.task_id
             FROM task_executions t
             JOIN runs r ON (r.tenant_id, r.namespace_id, r.pipeline_id, r.id) = (t.tenant_id, t.namespace_id, t.pipeline_id, t.run_id)
             WHERE t.tenant_id = $1 AND t.namespace_id = $2 AND t.pipeline_id = $3
               AND r.state = 'pending' AND t.state = 'queued' AND t.waiting_reason = 'waiting_for_capacity'
               AND (SELECT count(*) FROM runs r2 WHERE r2.tenant_id = $1 AND r2.namespace_id = $2 AND r2.pipeline_id = $3
                      AND r2.state = 'running') >= $4
             FOR UPDATE OF t SKIP LOCKED
         )",
    )
    .bind_key(&run.pipeline)
    .bind(i64::from(parallelism))
    .execute(conn)
    .await?;
    Ok(())
}

/// Cross-tenant: tasks queued as `waiting_for_capacity` in pending runs of pipelines that are
/// full now wait for parallelism, and say so. Claims mark these when they fill a pipeline; this
/// catches runs queued while such a claim was committing (each saw the other's state as before).
pub(crate) async fn refresh_parallelism_reasons(conn: &mut PgConnection) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE task_executions t SET waiting_reason = 'waiting_for_parallelism'
         FROM runs r
         WHERE (r.tenant_id, r.namespace_id, r.pipeline_id, r.id) = (t.tenant_id, t.namespace_id, t.pipeline_id, t.run_id)
           AND t.state = 'queued' AND t.waiting_reason = 'waiting_for_capacity' AND r.state = 'pending'
           AND r.parallelism > 0
           AND (SELECT count(*) FROM runs r2
                WHERE (r2.tenant_id, r2.namespace_id, r2.pipeline_id) = (r.tenant_id, r.namespace_id, r.pipeline_id)
                  AND r2.state = 'running') >= r.parallelism",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `run` has not started while its pipeline already runs `parallelism` runs.
pub(crate) async fn pipeline_full(
    conn: &mut PgConnection,
    run: &RunKey,
    parallelism: u32,
) -> Result<bool, EngineError> {
    Ok(sqlx::query_scalar(
        "SELECT (SELECT state FROM runs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4)
                    = 'pending'
            AND (SELECT count(*) FROM runs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3
                    AND state = 'running') >= $5",
    )
    .bind_key(run)
    .bind(i64::from(parallelism))
    .fetch_one(conn)
    .await?)
}

/// Whether the pipeline already runs `parallelism` runs, so a run starting now waits for one.
pub(crate) async fn pipeline_at_parallelism(
    tx: &mut TenantTx,
    pipeline: &gofer_core::keys::PipelineKey,
    parallelism: u32,
) -> Result<bool, EngineError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) >= $4 FROM runs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3
                AND state = 'running'",
    )
    .bind_key(pipeline)
    .bind(i64::from(parallelism))
    .fetch_one(&mut **tx)
    .await?)
}

/// The unfinished runs of a tenant, or of one of its namespaces.
pub(crate) async fn unfinished_runs_of(
    tx: &mut TenantTx,
    tenant: &gofer_core::TenantId,
    namespace: Option<&gofer_core::NamespaceId>,
) -> Result<Vec<RunKey>, EngineError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT namespace_id, pipeline_id, id FROM runs
         WHERE tenant_id = $1 AND ($2::text IS NULL OR namespace_id = $2) AND state <> 'complete' ORDER BY id",
    )
    .bind(tenant.as_str())
    .bind(namespace.map(gofer_core::NamespaceId::as_str))
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|(namespace, pipeline, run)| {
            Ok(RunKey {
                pipeline: PipelineKey {
                    tenant: tenant.clone(),
                    namespace: namespace.parse().map_err(corrupt)?,
                    pipeline: pipeline.parse().map_err(corrupt)?,
                },
                run: RunId::from_i64(run),
            })
        })
        .collect()
}

/// Whether the tenant already runs as many task executions as its plan (or the config) allows.
pub(crate) async fn tenant_at_capacity(
    conn: &mut PgConnection,
    tenant: &gofer_core::TenantId,
) -> Result<bool, EngineError> {
    Ok(sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM task_executions WHERE tenant_id = $1 AND state = 'running')
                >= (SELECT p.max_concurrent_tasks FROM tenants n JOIN plans p ON p.id = n.plan_id WHERE n.id = $1)",
    )
    .bind(tenant.as_str())
    .fetch_optional(conn)
    .await?
    .flatten()
    .unwrap_or(false))
}
