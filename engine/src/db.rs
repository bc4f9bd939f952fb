//! SQL of the engine. Every function takes the tenant first and filters on it, except the queue
//! functions marked "cross-tenant": the engine's own work spans tenants on purpose. Functions only
//! tenant-facing work calls take a [`TenantTx`]; those the engine's cross-tenant work calls take a
//! bare connection, and those both call say so.

pub(crate) mod events;
pub(crate) mod logs;

use std::collections::BTreeMap;

use gofer_core::chain::RunAncestor;
use gofer_core::model::{Initiator, Reason, Run, TaskExecution};
use gofer_core::{
    PipelineConfig, RunId, RunState, RunStatus, StatusReason, TaskId, TaskState, TaskStatus, WaitingReason,
};
use gofer_db::{BindKey, TenantTx, channels};
use sqlx::PgConnection;
use sqlx::types::Json;
use time::OffsetDateTime;

use crate::EngineError;
use gofer_core::keys::{PipelineKey, RunKey, TaskKey};

pub(crate) mod deployments;
pub(crate) mod pipelines;
pub(crate) mod queue;
pub(crate) mod stats;
pub(crate) mod usage;

/// Begins a transaction scoped to one tenant (`gofer_db::scoped`): row-level security lets it
/// reach only that tenant's rows. Tenant-facing work goes through here.
pub(crate) async fn scoped(pool: &sqlx::PgPool, tenant: &gofer_core::TenantId) -> Result<TenantTx, EngineError> {
    Ok(gofer_db::scoped(pool, tenant).await?)
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> EngineError {
    EngineError::Corrupt(what.to_string())
}

pub(crate) fn reason(code: Option<String>, description: Option<String>) -> Result<Option<Reason>, EngineError> {
    code.map(|c| {
        Ok(Reason { reason: c.parse::<StatusReason>().map_err(corrupt)?, description: description.unwrap_or_default() })
    })
    .transpose()
}

/// Whether the namespace exists, and the pipeline's row when it does.
pub(crate) struct PipelineLookup {
    pub namespace_exists: bool,
    pub pipeline: Option<PipelineRow>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct PipelineRow {
    pub live_version: Option<i64>,
}

/// Finds a pipeline, telling a missing namespace apart from a missing pipeline.
/// With `lock`, the pipeline row stays locked until the transaction ends.
/// A bare connection: `pipelines::require` runs in tenant transactions and in the cross-tenant
/// completion of a canary run (`deployments::on_run_completed`).
pub(crate) async fn lookup_pipeline(
    conn: &mut PgConnection,
    key: &PipelineKey,
    lock: bool,
) -> Result<PipelineLookup, EngineError> {
    let namespace_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM namespaces WHERE tenant_id = $1 AND id = $2)")
            .bind(key.tenant.as_str())
            .bind(key.namespace.as_str())
            .fetch_one(&mut *conn)
            .await?;
    if !namespace_exists {
        return Ok(PipelineLookup { namespace_exists, pipeline: None });
    }
    let sql = if lock {
        "SELECT live_version FROM pipelines WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3 FOR UPDATE"
    } else {
        "SELECT live_version FROM pipelines WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3"
    };
    let pipeline = sqlx::query_as::<_, PipelineRow>(sql).bind_key(key).fetch_optional(&mut *conn).await?;
    Ok(PipelineLookup { namespace_exists, pipeline })
}

pub(crate) async fn insert_pipeline(tx: &mut TenantTx, key: &PipelineKey) -> Result<(), EngineError> {
    sqlx::query("INSERT INTO pipelines (tenant_id, namespace_id, id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind_key(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A bare connection: tenant transactions read it (start, cancel, attach), and so does the engine's
/// cross-tenant dispatch of claimed tasks.
pub(crate) async fn get_config(
    conn: &mut PgConnection,
    key: &PipelineKey,
    version: i64,
) -> Result<PipelineConfig, EngineError> {
    let Json(config): Json<PipelineConfig> = sqlx::query_scalar(
        "SELECT config FROM pipeline_configs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND version = $4",
    )
    .bind_key(key)
    .bind(version)
    .fetch_one(conn)
    .await?;
    Ok(config)
}

#[derive(sqlx::FromRow, Clone)]
pub(crate) struct RunRow {
    namespace_id: String,
    pipeline_id: String,
    id: i64,
    pub config_version: i64,
    state: String,
    status: String,
    status_reason: Option<String>,
    status_description: Option<String>,
    variables: Json<BTreeMap<String, String>>,
    initiator: Json<Initiator>,
    ancestry: Json<Vec<RunAncestor>>,
    deadline_at: Option<OffsetDateTime>,
    pub cancel_reason: Option<String>,
    created_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    ended_at: Option<OffsetDateTime>,
}

impl RunRow {
    /// Why the run is being stopped, when it is.
    pub(crate) fn cancelling(&self) -> Option<crate::run::cancel_reason::CancelReason> {
        self.cancel_reason.as_deref().and_then(crate::run::cancel_reason::CancelReason::parse)
    }

    /// The run's variables.
    pub(crate) fn variables(&self) -> &BTreeMap<String, String> {
        &self.variables.0
    }

    /// When the run will be stopped if still unfinished.
    pub(crate) fn deadline(&self) -> Option<OffsetDateTime> {
        self.deadline_at
    }

    pub(crate) fn into_run(self) -> Result<Run, EngineError> {
        Ok(Run {
            id: RunId::from_i64(self.id),
            namespace_id: self.namespace_id.parse().map_err(corrupt)?,
            pipeline_id: self.pipeline_id.parse().map_err(corrupt)?,
            config_version: self.config_version,
            state: self.state.parse::<RunState>().map_err(corrupt)?,
            status: self.status.parse::<RunStatus>().map_err(corrupt)?,
            status_reason: reason(self.status_reason, self.status_description)?,
            variables: self.variables.0,
            initiator: self.initiator.0,
            ancestry: self.ancestry.0,
            deadline: self.deadline_at,
            created: self.created_at,
            started: self.started_at,
            ended: self.ended_at,
        })
    }
}

/// The columns [`RunRow`] reads; a macro so queries stay `&'static str` (sqlx refuses built strings).
macro_rules! run_columns {
    () => {
        run_columns!("")
    };
    ($p:literal) => {
        concat!(
            $p,
            "namespace_id, ",
            $p,
            "pipeline_id, ",
            $p,
            "id, ",
            $p,
            "config_version, ",
            $p,
            "state, ",
            $p,
            "status, ",
            $p,
            "status_reason, ",
            $p,
            "status_description, ",
            $p,
            "variables, ",
            $p,
            "initiator, ",
            $p,
            "ancestry, ",
            $p,
            "deadline_at, ",
            $p,
            "cancel_reason, ",
            $p,
            "created_at, ",
            $p,
            "started_at, ",
            $p,
            "ended_at"
        )
    };
}

/// A pipeline locked for a new run, with the run number taken: `None` fields when the pipeline
/// does not exist.
#[derive(sqlx::FromRow)]
pub(crate) struct Allocated {
    pub namespace_exists: bool,
    pub live_version: Option<i64>,
    pub state: Option<String>,
    pub run_id: Option<i64>,
}

/// Locks the pipeline's row and takes its next run number in one statement (the transaction
/// rolls back if the pipeline turns out disabled, returning the number). The row lock orders this
/// run against registrations and deployments, which take it first too.
pub(crate) async fn allocate_run(tx: &mut TenantTx, key: &PipelineKey) -> Result<Allocated, EngineError> {
    Ok(sqlx::query_as::<_, Allocated>(
        "WITH allocated AS (
             UPDATE pipelines SET next_run_id = next_run_id + 1
             WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3
             RETURNING live_version, state, next_run_id - 1 AS run_id
         )
         SELECT EXISTS (SELECT 1 FROM namespaces WHERE tenant_id = $1 AND id = $2) AS namespace_exists,
                a.live_version, a.state, a.run_id
         FROM (SELECT 1) one LEFT JOIN allocated a ON true",
    )
    .bind_key(key)
    .fetch_one(&mut **tx)
    .await?)
}

/// What starting a run reads once its pipeline is locked, in one round trip. A separate
/// statement from [`allocate_run`] on purpose: its snapshot is taken after the lock was granted,
/// so a deployment or registration that committed while this run waited for the lock is seen.
#[derive(sqlx::FromRow)]
pub(crate) struct StartContext {
    /// The config of the live version.
    pub config: Option<Json<PipelineConfig>>,
    /// Whether a deployment (a canary) is running, which may route this run to another version.
    pub deploying: bool,
    /// Task time used this month, when asked for (0 otherwise).
    pub used_ms: i64,
    /// Whether the tenant runs as many tasks as its plan allows (new tasks wait for quota).
    pub tenant_at_capacity: bool,
}

pub(crate) async fn start_context(
    tx: &mut TenantTx,
    key: &PipelineKey,
    live_version: i64,
) -> Result<StartContext, EngineError> {
    Ok(sqlx::query_as::<_, StartContext>(concat!(
        "SELECT (SELECT config FROM pipeline_configs
                 WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND version = $4) AS config,
                EXISTS (SELECT 1 FROM deployments
                        WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND state = 'running') AS deploying,
                ",
        usage::used_ms_sql!("$1"),
        " AS used_ms,
                COALESCE((SELECT count(*) FROM task_executions WHERE tenant_id = $1 AND state = 'running')
                         >= (SELECT p.max_concurrent_tasks FROM tenants n JOIN plans p ON p.id = n.plan_id
                             WHERE n.id = $1), false) AS tenant_at_capacity"
    ))
    .bind_key(key)
    .bind(live_version)
    .fetch_one(&mut **tx)
    .await?)
}

/// A run to insert.
pub(crate) struct NewRun<'a> {
    pub config_version: i64,
    pub variables: &'a BTreeMap<String, String>,
    pub initiator: &'a Initiator,
    /// The runs that led to it, oldest first (empty when a user started it).
    pub ancestry: &'a [RunAncestor],
    /// Seconds until the run's deadline.
    pub timeout_s: u32,
    /// The config's `parallelism`, kept on the run for the claim.
    pub parallelism: u32,
    /// Every task of the config: id, image, and whether it depends on nothing (then it is queued
    /// at once, with `queued_reason`; the others wait for their dependencies).
    pub tasks: Vec<(&'a TaskId, &'a str, bool)>,
    pub queued_reason: WaitingReason,
}

/// Inserts a new run with its task executions, queues the tasks that depend on nothing, records
/// `run_created` and their `task_queued` events (in that order) and notifies the queue and the
/// event listeners (on commit), in one round trip. Returns the run as inserted.
pub(crate) async fn insert_started_run(
    tx: &mut TenantTx,
    key: &RunKey,
    run: &NewRun<'_>,
) -> Result<RunRow, EngineError> {
    const SQL: &str = concat!(
        "WITH run AS (
             INSERT INTO runs (tenant_id, namespace_id, pipeline_id, id, config_version, state, status, variables,
                               initiator, ancestry, deadline_at, trace_parent, parallelism)
             VALUES ($1, $2, $3, $4, $5, 'pending', 'unknown', $6, $7, $20, now() + make_interval(secs => $8), $9,
                     $10)
             RETURNING ",
        run_columns!(),
        "
         ), tasks AS (
             INSERT INTO task_executions (tenant_id, namespace_id, pipeline_id, run_id, task_id, image, state, status,
                                          waiting_reason, queued_at)
             SELECT $1, $2, $3, $4, t.task_id, t.image, CASE WHEN t.root THEN 'queued' ELSE 'waiting' END, 'unknown',
                    CASE WHEN t.root THEN $11 ELSE 'waiting_for_dependencies' END, CASE WHEN t.root THEN now() END
             FROM unnest($12::text[], $13::text[], $14::bool[]) AS t(task_id, image, root)
         ), created AS (
             INSERT INTO events (tenant_id, kind, namespace_id, pipeline_id, run_id, task_id, payload)
             SELECT $1, e.kind, $2, $3, $4, e.task_id, e.payload
             FROM (SELECT $15::text AS kind, NULL::text AS task_id, $16::jsonb AS payload, 0::bigint AS position
                   UNION ALL
                   SELECT $17::text, t.task_id, '{}'::jsonb, t.position
                   FROM unnest($12::text[], $14::bool[]) WITH ORDINALITY AS t(task_id, root, position)
                   WHERE t.root) e
             ORDER BY e.position
         )
         SELECT ",
        run_columns!("run."),
        " FROM run, (SELECT pg_notify($18, $1), pg_notify($19, '')) notified"
    );
    let task_ids: Vec<&str> = run.tasks.iter().map(|(id, _, _)| id.as_str()).collect();
    let images: Vec<&str> = run.tasks.iter().map(|(_, image, _)| *image).collect();
    let roots: Vec<bool> = run.tasks.iter().map(|(_, _, root)| *root).collect();
    Ok(sqlx::query_as::<_, RunRow>(SQL)
        .bind_key(key)
        .bind(run.config_version)
        .bind(Json(run.variables))
        .bind(Json(run.initiator))
        .bind(f64::from(run.timeout_s))
        .bind(crate::measure::current_trace_parent())
        .bind(i32::try_from(run.parallelism).unwrap_or(i32::MAX))
        .bind(run.queued_reason.as_str())
        .bind(&task_ids)
        .bind(&images)
        .bind(&roots)
        .bind(gofer_core::EventKind::RunCreated.as_str())
        .bind(Json(serde_json::json!({"config_version": run.config_version})))
        .bind(gofer_core::EventKind::TaskQueued.as_str())
        .bind(channels::EVENTS)
        .bind(channels::QUEUE)
        .bind(Json(run.ancestry))
        .fetch_one(&mut **tx)
        .await?)
}

/// The chain of runs that led to a run (`None`: no such run), to extend for the run it starts.
/// A chain never changes once written, so nothing is locked.
pub(crate) async fn run_ancestry(tx: &mut TenantTx, key: &RunKey) -> Result<Option<Vec<RunAncestor>>, EngineError> {
    let query = sqlx::query_scalar(
        "SELECT ancestry FROM runs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4",
    );
    let ancestry: Option<Json<Vec<RunAncestor>>> = query.bind_key(key).fetch_optional(&mut **tx).await?;
    Ok(ancestry.map(|Json(chain)| chain))
}

/// Reads a run; with `lock`, the row stays locked until the transaction ends, which serializes
/// every transition of one run.
pub(crate) async fn get_run(tx: &mut TenantTx, key: &RunKey, lock: bool) -> Result<Option<RunRow>, EngineError> {
    const BY_KEY: &str = concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4"
    );
    const BY_KEY_LOCKED: &str = concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4 FOR UPDATE"
    );
    Ok(sqlx::query_as::<_, RunRow>(if lock { BY_KEY_LOCKED } else { BY_KEY })
        .bind_key(key)
        .fetch_optional(&mut **tx)
        .await?)
}

/// What a monitor needs before dispatching, in one round trip: the run, the content hash of its
/// config version (the key of the replica's config cache) and the tenant's plan placement
/// (node pool, network allowed), as the plan is at dispatch.
#[derive(sqlx::FromRow, Clone)]
pub(crate) struct DispatchContext {
    #[sqlx(flatten)]
    pub run: RunRow,
    pub config_hash: String,
    pub node_pool: Option<String>,
    pub allow_network: bool,
    pub max_disk_mb: i32,
    pub untrusted: bool,
}

/// The SELECT list and joins of a dispatch context; the caller adds its `WHERE`.
macro_rules! dispatch_context_sql {
    ($where:literal) => {
        concat!(
            "SELECT r.tenant_id AS context_tenant, ",
            run_columns!("r."),
            ", c.config_hash, p.node_pool, COALESCE(p.allow_network, true) AS allow_network,
                    COALESCE(p.max_disk_mb, 10240) AS max_disk_mb, COALESCE(p.untrusted, false) AS untrusted
             FROM runs r
             JOIN pipeline_configs c ON c.tenant_id = r.tenant_id AND c.namespace_id = r.namespace_id
                                     AND c.pipeline_id = r.pipeline_id AND c.version = r.config_version
             LEFT JOIN tenants t ON t.id = r.tenant_id LEFT JOIN plans p ON p.id = t.plan_id
             WHERE ",
            $where
        )
    };
}

#[derive(sqlx::FromRow)]
struct DispatchContextRow {
    context_tenant: String,
    #[sqlx(flatten)]
    context: DispatchContext,
}

pub(crate) async fn dispatch_context(
    conn: &mut PgConnection,
    key: &RunKey,
) -> Result<Option<DispatchContext>, EngineError> {
    const SQL: &str =
        dispatch_context_sql!("r.tenant_id = $1 AND r.namespace_id = $2 AND r.pipeline_id = $3 AND r.id = $4");
    let row = sqlx::query_as::<_, DispatchContextRow>(SQL).bind_key(key).fetch_optional(conn).await?;
    Ok(row.map(|row| row.context))
}

/// [`dispatch_context`] of several runs (of any tenants) in one statement: for a claimed batch,
/// inside the claim's transaction, so that each task's monitor starts without a read of its own.
/// Runs that do not exist are left out.
pub(crate) async fn dispatch_contexts(
    conn: &mut PgConnection,
    keys: &[&RunKey],
) -> Result<Vec<(RunKey, DispatchContext)>, EngineError> {
    const SQL: &str = dispatch_context_sql!(
        "(r.tenant_id, r.namespace_id, r.pipeline_id, r.id) IN
             (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]))"
    );
    let rows = sqlx::query_as::<_, DispatchContextRow>(SQL)
        .bind(keys.iter().map(|k| k.pipeline.tenant.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.pipeline.namespace.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.pipeline.pipeline.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|k| k.run.get()).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
    rows.into_iter()
        .map(|row| {
            let key = keys
                .iter()
                .find(|k| {
                    k.pipeline.tenant.as_str() == row.context_tenant
                        && k.pipeline.namespace.as_str() == row.context.run.namespace_id
                        && k.pipeline.pipeline.as_str() == row.context.run.pipeline_id
                        && k.run.get() == row.context.run.id
                })
                .ok_or_else(|| corrupt("a dispatch context of a run that was not asked for"))?;
            Ok(((*key).clone(), row.context))
        })
        .collect()
}

/// Locks a run's row until the transaction ends and answers why it is being stopped, if it is;
/// `None` when the run does not exist. The short form of `get_run(.., true)` for `conclude`.
pub(crate) async fn lock_run(
    conn: &mut PgConnection,
    key: &RunKey,
) -> Result<Option<Option<crate::run::cancel_reason::CancelReason>>, EngineError> {
    let query = sqlx::query_as(
        "SELECT cancel_reason FROM runs WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4
         FOR NO KEY UPDATE",
    );
    let row: Option<(Option<String>,)> = query.bind_key(key).fetch_optional(conn).await?;
    Ok(row.map(|(reason,)| reason.as_deref().and_then(crate::run::cancel_reason::CancelReason::parse)))
}

/// Reads a run in one round trip, tenant-scoped by the function `gofer_tenant_run` (row-level
/// security as in [`scoped`], without a transaction of its own; see the migration
/// `create_tenant_read_functions`). `None` says nothing about which part of the key is missing.
pub(crate) async fn get_run_fast(pool: &sqlx::PgPool, key: &RunKey) -> Result<Option<RunRow>, EngineError> {
    Ok(sqlx::query_as::<_, RunRow>(concat!("SELECT ", run_columns!(), " FROM gofer_tenant_run($1, $2, $3, $4)"))
        .bind_key(key)
        .fetch_optional(pool)
        .await?)
}

/// The ids of one page of a pipeline's runs, newest first, in one light round trip (function
/// `gofer_tenant_run_ids`). An empty page says nothing about whether the pipeline exists.
pub(crate) async fn list_run_ids(
    pool: &sqlx::PgPool,
    key: &PipelineKey,
    before: Option<RunId>,
    limit: i64,
) -> Result<Vec<RunId>, EngineError> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM gofer_tenant_run_ids($1, $2, $3, $4, $5) AS id")
        .bind_key(key)
        .bind(before.map(RunId::get))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(ids.into_iter().map(RunId::from_i64).collect())
}

/// The runs of a pipeline with these ids (the missing ones left out), newest first, in one round
/// trip (function `gofer_tenant_runs_by_id`).
pub(crate) async fn runs_by_id(pool: &sqlx::PgPool, key: &PipelineKey, ids: &[RunId]) -> Result<Vec<Run>, EngineError> {
    let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
    let rows = sqlx::query_as::<_, RunRow>(concat!(
        "SELECT ",
        run_columns!(),
        " FROM gofer_tenant_runs_by_id($1, $2, $3, $4)"
    ))
    .bind_key(key)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(RunRow::into_run).collect()
}

/// Marks a pending run running; answers whether it was pending.
pub(crate) async fn start_run(conn: &mut PgConnection, key: &RunKey) -> Result<bool, EngineError> {
    let changed = sqlx::query(
        "UPDATE runs SET state = 'running', started_at = now()
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4 AND state = 'pending'",
    )
    .bind_key(key)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

pub(crate) async fn complete_run(
    conn: &mut PgConnection,
    key: &RunKey,
    status: RunStatus,
    reason: Option<&Reason>,
) -> Result<(), EngineError> {
    // The run's day in the pipeline's stats is counted in the same statement (see the
    // pipeline_daily_stats migration for the buckets).
    sqlx::query(
        "WITH done AS (
             UPDATE runs SET state = 'complete', status = $5, status_reason = $6, status_description = $7,
                 started_at = COALESCE(started_at, now()), ended_at = now()
             WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4 AND state <> 'complete'
             RETURNING tenant_id, namespace_id, pipeline_id, status, (ended_at AT TIME ZONE 'UTC')::date AS day,
                       EXTRACT(EPOCH FROM ended_at - started_at)::float8 AS seconds
         )
         INSERT INTO pipeline_daily_stats AS s (tenant_id, namespace_id, pipeline_id, day, runs, successful, failed,
                                                cancelled, duration_sum_s, duration_max_s, duration_buckets)
         SELECT tenant_id, namespace_id, pipeline_id, day, 1, (status = 'successful')::int, (status = 'failed')::int,
                (status = 'cancelled')::int, seconds, seconds,
                (SELECT array_agg((g = width_bucket(seconds, ARRAY[1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200]::float8[]))::int::bigint
                                  ORDER BY g)
                 FROM generate_series(0, 12) g)
         FROM done
         ON CONFLICT (tenant_id, namespace_id, pipeline_id, day) DO UPDATE SET
             runs = s.runs + 1, successful = s.successful + EXCLUDED.successful, failed = s.failed + EXCLUDED.failed,
             cancelled = s.cancelled + EXCLUDED.cancelled, duration_sum_s = s.duration_sum_s + EXCLUDED.duration_sum_s,
             duration_max_s = greatest(s.duration_max_s, EXCLUDED.duration_max_s),
             duration_buckets = (SELECT array_agg(a + b ORDER BY i)
                                 FROM unnest(s.duration_buckets, EXCLUDED.duration_buckets) WITH ORDINALITY AS u(a, b, i))",
    )
    .bind_key(key)
    .bind(status.as_str())
    .bind(reason.map(|r| r.reason.as_str()))
    .bind(reason.map(|r| r.description.as_str()))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    run_id: i64,
    task_id: String,
    image: String,
    attempt: i32,
    state: String,
    waiting_reason: Option<String>,
    status: String,
    status_reason: Option<String>,
    status_description: Option<String>,
    exit_code: Option<i32>,
    scheduler_id: Option<String>,
    node: Option<String>,
    created_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    ended_at: Option<OffsetDateTime>,
    deadline_at: Option<OffsetDateTime>,
}

impl TaskRow {
    pub(crate) fn into_execution(self) -> Result<TaskExecution, EngineError> {
        Ok(TaskExecution {
            run_id: RunId::from_i64(self.run_id),
            task_id: self.task_id.parse().map_err(corrupt)?,
            image: self.image,
            attempt: u32::try_from(self.attempt).map_err(corrupt)?,
            state: self.state.parse::<TaskState>().map_err(corrupt)?,
            waiting_reason: self.waiting_reason.map(|w| w.parse::<WaitingReason>()).transpose().map_err(corrupt)?,
            status: self.status.parse::<TaskStatus>().map_err(corrupt)?,
            status_reason: reason(self.status_reason, self.status_description)?,
            exit_code: self.exit_code,
            scheduler_id: self.scheduler_id,
            node: self.node,
            deadline: self.deadline_at,
            created: self.created_at,
            started: self.started_at,
            ended: self.ended_at,
        })
    }
}

/// The columns [`TaskRow`] reads.
macro_rules! task_columns {
    () => {
        "run_id, task_id, image, attempt, state, waiting_reason, status, status_reason, status_description, \
         exit_code, scheduler_id, node, created_at, started_at, ended_at, \
         CASE WHEN state = 'complete' THEN NULL ELSE COALESCE(deadline_at, (SELECT r.deadline_at FROM runs r \
             WHERE (r.tenant_id, r.namespace_id, r.pipeline_id, r.id) = \
                   (task_executions.tenant_id, task_executions.namespace_id, task_executions.pipeline_id, \
                    task_executions.run_id))) END AS deadline_at"
    };
}

/// The task executions of a run, ordered by task id, after `after`.
pub(crate) async fn list_task_executions(
    tx: &mut TenantTx,
    key: &RunKey,
    after: Option<&TaskId>,
    limit: i64,
) -> Result<Vec<TaskExecution>, EngineError> {
    let rows = sqlx::query_as::<_, TaskRow>(concat!(
        "SELECT ",
        task_columns!(),
        " FROM task_executions
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4
         AND ($5::text IS NULL OR task_id > $5) ORDER BY task_id LIMIT $6"
    ))
    .bind_key(key)
    .bind(after.map(TaskId::as_str))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(TaskRow::into_execution).collect()
}

pub(crate) async fn get_task_execution(tx: &mut TenantTx, key: &TaskKey) -> Result<Option<TaskExecution>, EngineError> {
    sqlx::query_as::<_, TaskRow>(concat!(
        "SELECT ",
        task_columns!(),
        " FROM task_executions
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5"
    ))
    .bind_key(key)
    .fetch_optional(&mut **tx)
    .await?
    .map(TaskRow::into_execution)
    .transpose()
}

/// The id and URL of the replica holding `key`'s lease, when it registered one. Outside the
/// tenant's scope (the registry is service data): callers have found the task in scope first.
pub(crate) async fn lease_owner_url(
    pool: &sqlx::PgPool,
    key: &TaskKey,
) -> Result<Option<(uuid::Uuid, String)>, EngineError> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.url FROM task_executions te JOIN replicas r ON r.id = te.lease_owner
         WHERE te.tenant_id = $1 AND te.namespace_id = $2 AND te.pipeline_id = $3 AND te.run_id = $4
           AND te.task_id = $5",
    )
    .bind_key(key)
    .fetch_optional(pool)
    .await?)
}

/// Records how other replicas reach this one (and that it is alive), and forgets replicas not
/// seen for ten minutes that watch no task.
pub(crate) async fn register_replica(pool: &sqlx::PgPool, id: uuid::Uuid, url: &str) -> Result<(), EngineError> {
    sqlx::query(
        "WITH gone AS (
             DELETE FROM replicas r WHERE r.id <> $1 AND r.seen_at < now() - interval '10 minutes'
                AND NOT EXISTS (SELECT 1 FROM task_executions te WHERE te.state = 'running' AND te.lease_owner = r.id)
         )
         INSERT INTO replicas (id, url) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, seen_at = now()",
    )
    .bind(id)
    .bind(url)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn queue_task(
    conn: &mut PgConnection,
    key: &TaskKey,
    reason: WaitingReason,
) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE task_executions SET state = 'queued', queued_at = now(), waiting_reason = $6
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5 AND state = 'waiting'",
    )
    .bind_key(key)
    .bind(reason.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Completes a task execution that never ran (skipped, or cancelled before it started); answers
/// false when another transition got there first. A running one completes through
/// [`queue::finish_task`], fenced by its lease.
pub(crate) async fn complete_waiting_task(
    conn: &mut PgConnection,
    key: &TaskKey,
    status: TaskStatus,
    reason: &Reason,
) -> Result<bool, EngineError> {
    let done = sqlx::query(
        "UPDATE task_executions SET state = 'complete', status = $6, status_reason = $7, status_description = $8,
             ended_at = now(), waiting_reason = NULL
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
           AND state = 'waiting'",
    )
    .bind_key(key)
    .bind(status.as_str())
    .bind(reason.reason.as_str())
    .bind(reason.description.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// A locked run's cancel reason (when it is being stopped) and the state and status of each of
/// its task executions.
pub(crate) type RunStates =
    (Option<crate::run::cancel_reason::CancelReason>, BTreeMap<TaskId, (TaskState, TaskStatus)>);

/// [`RunStates`] from rows of (cancel reason, task, state, status), one per task execution, as the
/// locking SQL function `gofer_lock_run_states` answers them;
/// `None` for no row (no such run).
pub(crate) fn run_states(
    rows: Vec<(Option<String>, String, String, String)>,
) -> Result<Option<RunStates>, EngineError> {
    let Some((reason, ..)) = rows.first() else { return Ok(None) };
    let cancelling = reason.as_deref().and_then(crate::run::cancel_reason::CancelReason::parse);
    let states = parse_task_states(rows.into_iter().map(|(_, task, state, status)| (task, state, status)))?;
    Ok(Some((cancelling, states)))
}

/// The state and status of every task execution of a run (the caller holds the run's lock).
pub(crate) async fn task_states(
    conn: &mut PgConnection,
    key: &RunKey,
) -> Result<BTreeMap<TaskId, (TaskState, TaskStatus)>, EngineError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT task_id, state, status FROM task_executions
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4",
    )
    .bind_key(key)
    .fetch_all(conn)
    .await?;
    parse_task_states(rows)
}

/// Task states from (task id, state, status) rows.
fn parse_task_states(
    rows: impl IntoIterator<Item = (String, String, String)>,
) -> Result<BTreeMap<TaskId, (TaskState, TaskStatus)>, EngineError> {
    rows.into_iter()
        .map(|(task, state, status)| {
            Ok((task.parse().map_err(corrupt)?, (state.parse().map_err(corrupt)?, status.parse().map_err(corrupt)?)))
        })
        .collect()
}

pub(crate) async fn notify_queue(conn: &mut PgConnection) -> Result<(), EngineError> {
    sqlx::query("SELECT pg_notify($1, '')").bind(channels::QUEUE).execute(conn).await?;
    Ok(())
}
