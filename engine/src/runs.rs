//! Runs: starting one (rows in one transaction, then NOTIFY), reading runs, task executions and logs.

use std::collections::BTreeMap;
use std::sync::Arc;

use gofer_core::chain::{self, RunAncestor};
use gofer_core::config::check_env;
use gofer_core::model::{Initiator, PageRequest, Run, TaskAttempt, TaskExecution};
use gofer_core::{NamespaceId, PipelineState, RunId, TaskId, TenantId, WaitingReason};
use gofer_db::TenantTx;
use sqlx::{PgConnection, PgPool};

use crate::catalog::{deployments, pipelines};
use crate::{EngineError, EngineSettings, db};

// The keys are plain data in core; re-exported here, where every caller has found them.
pub use gofer_core::keys::{PipelineKey, RunKey, TaskKey};

/// What starting a run needs besides the pipeline.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Run variables (override the tasks' env).
    pub variables: BTreeMap<String, String>,
    /// Who starts it.
    pub initiator: Initiator,
    /// The run of the same tenant whose run token starts this one (a `kind: gofer` task), `None`
    /// when a user starts it. Its chain plus itself become the new run's `ancestry`.
    pub parent: Option<RunAncestor>,
}

/// The runs of every tenant, as the API and the periodic jobs use them: the pool, and the
/// engine's settings that starting a run needs (a config's unset timeouts and resources, the
/// longest chain of runs), so that no caller passes them along.
#[derive(Clone)]
pub struct Runs {
    pool: PgPool,
    settings: Arc<EngineSettings>,
}

impl Runs {
    /// The handle over `pool`, with the engine's `settings`.
    pub fn new(pool: PgPool, settings: EngineSettings) -> Self {
        Self { pool, settings: Arc::new(settings) }
    }

    /// Starts a run of the pipeline's live version ([`start`]).
    pub async fn start(&self, key: &PipelineKey, request: StartRequest) -> Result<Run, EngineError> {
        start(&self.pool, key, request, &self.settings).await
    }

    /// Reads one run ([`get`]).
    pub async fn get(&self, key: &RunKey) -> Result<Run, EngineError> {
        get(&self.pool, key).await
    }

    /// Reads one task execution ([`get_task`]).
    pub async fn get_task(&self, key: &TaskKey) -> Result<TaskExecution, EngineError> {
        get_task(&self.pool, key).await
    }

    /// Lists a run's task executions ([`list_tasks`]).
    pub async fn list_tasks(
        &self,
        key: &RunKey,
        page: &PageRequest<TaskId>,
    ) -> Result<(Vec<TaskExecution>, Option<TaskId>), EngineError> {
        list_tasks(&self.pool, key, page).await
    }

    /// Lists a task execution's attempts ([`list_attempts`]).
    pub async fn list_attempts(&self, key: &TaskKey) -> Result<Vec<TaskAttempt>, EngineError> {
        list_attempts(&self.pool, key).await
    }

    /// Cancels a run ([`cancel`]).
    pub async fn cancel(&self, key: &RunKey) -> Result<Run, EngineError> {
        cancel(&self.pool, key).await
    }

    /// Cancels every unfinished run of a pipeline ([`cancel_all`]).
    pub async fn cancel_all(&self, key: &PipelineKey) -> Result<Vec<RunId>, EngineError> {
        cancel_all(&self.pool, key).await
    }

    /// The unfinished runs of a tenant or one of its namespaces ([`unfinished_runs`]).
    pub async fn unfinished(
        &self,
        tenant: &TenantId,
        namespace: Option<&NamespaceId>,
    ) -> Result<Vec<RunKey>, EngineError> {
        unfinished_runs(&self.pool, tenant, namespace).await
    }

    /// Cancels every unfinished run of a tenant or one of its namespaces ([`cancel_everything`]).
    pub async fn cancel_everything(
        &self,
        tenant: &TenantId,
        namespace: Option<&NamespaceId>,
    ) -> Result<usize, EngineError> {
        cancel_everything(&self.pool, tenant, namespace).await
    }

    /// Task time the tenant used this month ([`task_ms_this_month`]).
    pub async fn task_ms_this_month(&self, tenant: &TenantId) -> Result<i64, EngineError> {
        task_ms_this_month(&self.pool, tenant).await
    }
}

/// Checks the namespace then the pipeline, answering the first that is missing.
async fn require_pipeline(conn: &mut PgConnection, key: &PipelineKey, lock: bool) -> Result<(), EngineError> {
    pipelines::require(conn, key, lock).await.map(drop)
}

async fn require_run(tx: &mut TenantTx, key: &RunKey) -> Result<Run, EngineError> {
    require_pipeline(tx, &key.pipeline, false).await?;
    db::get_run(tx, key, false).await?.ok_or(EngineError::RunNotFound(key.run))?.into_run()
}

/// The chain of runs that led to a run started by `parent` (empty without one), refused by
/// [`chain::admit`] when it loops back to `key`'s pipeline or is deeper than `max_depth`.
async fn admitted_chain(
    tx: &mut TenantTx,
    key: &PipelineKey,
    parent: Option<RunAncestor>,
    max_depth: u32,
) -> Result<Vec<RunAncestor>, EngineError> {
    let Some(parent) = parent else { return Ok(Vec::new()) };
    let parent_key = RunKey {
        pipeline: PipelineKey {
            tenant: key.tenant.clone(),
            namespace: parent.namespace_id.clone(),
            pipeline: parent.pipeline_id.clone(),
        },
        run: parent.run_id,
    };
    // Its run token was checked live a moment ago; a parent gone since leaves no chain to extend.
    let parent_chain = db::run_ancestry(tx, &parent_key).await?.ok_or(EngineError::RunNotFound(parent.run_id))?;
    let ancestry = chain::extended(&parent_chain, parent);
    chain::admit(&ancestry, &key.namespace, &key.pipeline, max_depth).map_err(EngineError::RunChainRefused)?;
    Ok(ancestry)
}

/// Starts a run of the pipeline's live version: the run and one task execution per task are
/// written in one transaction, tasks whose conditions already hold are queued, and the queue is
/// notified on commit. A run started by a run must pass [`chain::admit`] first.
#[tracing::instrument(skip_all, fields(tenant = %key.tenant, namespace = %key.namespace, pipeline = %key.pipeline))]
/// What the config leaves unset comes from the engine's `settings`.
pub async fn start(
    pool: &PgPool,
    key: &PipelineKey,
    request: StartRequest,
    settings: &EngineSettings,
) -> Result<Run, EngineError> {
    let StartRequest { variables, initiator, parent } = request;
    check_env("variables", &variables).map_err(EngineError::InvalidVariables)?;
    let mut tx = db::scoped(pool, &key.tenant).await?;
    let allocated = db::allocate_run(&mut tx, key).await?;
    let (Some(state), Some(run_id)) = (allocated.state, allocated.run_id) else {
        return Err(if allocated.namespace_exists {
            EngineError::PipelineNotFound(key.pipeline.clone())
        } else {
            EngineError::NamespaceNotFound(key.namespace.clone())
        });
    };
    let ancestry = admitted_chain(&mut tx, key, parent, settings.max_run_chain_depth).await?;
    if state.parse::<PipelineState>().map_err(db::corrupt)? == PipelineState::Disabled {
        return Err(EngineError::PipelineDisabled(key.pipeline.clone()));
    }
    let live_version = allocated.live_version.ok_or_else(|| EngineError::NoLiveVersion(key.pipeline.clone()))?;
    let run_key = RunKey { pipeline: key.clone(), run: RunId::from_i64(run_id) };
    // The plan is read in the run's own transaction, so the run is admitted under the plan the
    // tenant has when it starts, whoever changes it meanwhile.
    let plan = gofer_db::plans::tenant_plan(&mut tx, &key.tenant)
        .await?
        .ok_or_else(|| db::corrupt(format!("tenant {} has no plan", key.tenant)))?;
    let context = db::start_context(&mut tx, key, live_version).await?;
    let mut version = live_version;
    let mut config = context.config.ok_or_else(|| db::corrupt(format!("config version {live_version} is missing")))?.0;
    if context.deploying {
        version = deployments::choose_version(&mut tx, &run_key, live_version).await?;
        if version != live_version {
            config = db::get_config(&mut tx, key, version).await?;
        }
    }
    let timeout_s = config.run_timeout_s.unwrap_or(settings.default_run_timeout_s);
    {
        let demand = gofer_core::model::RunDemand {
            tasks: config
                .tasks
                .iter()
                .map(|t| {
                    (
                        t.id.clone(),
                        t.timeout_s.unwrap_or(settings.default_task_timeout_s),
                        t.cpu.unwrap_or(settings.default_cpu_millis),
                        t.memory_mb.unwrap_or(settings.default_memory_mb),
                    )
                })
                .collect(),
            run_timeout_s: timeout_s,
        };
        plan.admit(&demand).map_err(EngineError::QuotaExceeded)?;
        // Task-seconds of the month, counting tasks still running: none left, no new run.
        let used_ms = u64::try_from(context.used_ms).unwrap_or(0);
        if used_ms >= plan.task_seconds_per_month.saturating_mul(1000) {
            let exceeded = gofer_core::model::QuotaExceeded::task_seconds(used_ms / 1000, plan.task_seconds_per_month);
            return Err(EngineError::QuotaExceeded(exceeded));
        }
    }
    // Why the tasks queued now will wait (the claim clears it): the pipeline's parallelism, the
    // tenant's quota, or capacity.
    let queued_reason =
        if config.parallelism > 0 && db::queue::pipeline_at_parallelism(&mut tx, key, config.parallelism).await? {
            WaitingReason::WaitingForParallelism
        } else if context.tenant_at_capacity {
            WaitingReason::WaitingForQuota
        } else {
            WaitingReason::WaitingForCapacity
        };
    let new_run = db::NewRun {
        config_version: version,
        variables: &variables,
        initiator: &initiator,
        ancestry: &ancestry,
        timeout_s,
        parallelism: config.parallelism,
        // A new run's tasks are all waiting, so those without dependencies are ready, and no
        // other is: the release of a new run, without reading anything back.
        tasks: config.tasks.iter().map(|t| (&t.id, t.image.as_str(), t.depends_on.is_empty())).collect(),
        queued_reason,
    };
    let run = db::insert_started_run(&mut tx, &run_key, &new_run).await?.into_run()?;
    tx.commit().await?;
    tracing::info!(run = %run.id, version, "run started");
    Ok(run)
}

/// Reads one run: one round trip when it exists; a missing one is looked up again in a scoped
/// transaction to say which part of its key is missing.
pub async fn get(pool: &PgPool, key: &RunKey) -> Result<Run, EngineError> {
    if let Some(row) = db::get_run_fast(pool, key).await? {
        return row.into_run();
    }
    let mut conn = db::scoped(pool, &key.pipeline.tenant).await?;
    require_run(&mut conn, key).await
}

/// The ids of one page of a pipeline's runs, newest first (`limit` of them, not `limit + 1`),
/// and the cursor of the next page; with [`runs_by_id`], for callers that remember complete runs
/// and need full rows only for the others (the API's run list). An empty page is read again in a
/// scoped transaction that tells an empty pipeline from a missing one (`PipelineNotFound`, or its
/// namespace's error).
pub async fn list_ids(
    pool: &PgPool,
    key: &PipelineKey,
    page: &PageRequest<RunId>,
) -> Result<(Vec<RunId>, Option<RunId>), EngineError> {
    let ids = db::list_run_ids(pool, key, page.after, i64::from(page.limit) + 1).await?;
    if ids.is_empty() {
        let mut conn = db::scoped(pool, &key.tenant).await?;
        require_pipeline(&mut conn, key, false).await?;
    }
    Ok(page.finish(ids, |id| *id))
}

/// The runs of a pipeline with these ids, newest first; ids of runs that no longer exist are
/// left out.
pub async fn runs_by_id(pool: &PgPool, key: &PipelineKey, ids: &[RunId]) -> Result<Vec<Run>, EngineError> {
    db::runs_by_id(pool, key, ids).await
}

/// Lists a run's task executions, ordered by task id.
pub async fn list_tasks(
    pool: &PgPool,
    key: &RunKey,
    page: &PageRequest<TaskId>,
) -> Result<(Vec<TaskExecution>, Option<TaskId>), EngineError> {
    let mut conn = db::scoped(pool, &key.pipeline.tenant).await?;
    require_run(&mut conn, key).await?;
    let rows = db::list_task_executions(&mut conn, key, page.after.as_ref(), i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |t| t.task_id.clone()))
}

/// Reads one task execution.
pub async fn get_task(pool: &PgPool, key: &TaskKey) -> Result<TaskExecution, EngineError> {
    let mut conn = db::scoped(pool, &key.run.pipeline.tenant).await?;
    require_run(&mut conn, &key.run).await?;
    db::get_task_execution(&mut conn, key).await?.ok_or_else(|| EngineError::TaskNotFound(key.task.clone()))
}

/// Lists every attempt of a task execution, oldest first.
pub async fn list_attempts(pool: &PgPool, key: &TaskKey) -> Result<Vec<TaskAttempt>, EngineError> {
    get_task(pool, key).await?;
    let mut conn = db::scoped(pool, &key.run.pipeline.tenant).await?;
    db::queue::list_attempts(&mut conn, key).await
}

/// Cancels a run: unstarted tasks end at once, running ones are stopped, status `cancelled`.
/// Cancelling a complete run changes nothing.
pub async fn cancel(pool: &PgPool, key: &RunKey) -> Result<Run, EngineError> {
    {
        let mut conn = db::scoped(pool, &key.pipeline.tenant).await?;
        require_run(&mut conn, key).await?;
    }
    crate::run::cancel::stop_run(pool, key, crate::run::cancel::CancelReason::User).await
}

/// Cancels every unfinished run of a pipeline; answers the ids it cancelled.
pub async fn cancel_all(pool: &PgPool, key: &PipelineKey) -> Result<Vec<RunId>, EngineError> {
    {
        let mut conn = db::scoped(pool, &key.tenant).await?;
        require_pipeline(&mut conn, key, false).await?;
    }
    crate::run::cancel::stop_all(pool, key).await
}

/// The unfinished runs of a tenant, or of one of its namespaces.
pub async fn unfinished_runs(
    pool: &PgPool,
    tenant: &TenantId,
    namespace: Option<&NamespaceId>,
) -> Result<Vec<RunKey>, EngineError> {
    let mut conn = db::scoped(pool, tenant).await?;
    db::queue::unfinished_runs_of(&mut conn, tenant, namespace).await
}

/// The unfinished runs of `tx`'s tenant, or of one of its namespaces, read in `tx` (a removal
/// that must see the same rows it deletes).
pub async fn unfinished_runs_in(
    tx: &mut TenantTx,
    namespace: Option<&NamespaceId>,
) -> Result<Vec<RunKey>, EngineError> {
    let tenant = tx.tenant().clone();
    db::queue::unfinished_runs_of(tx, &tenant, namespace).await
}

/// Cancels every unfinished run of a tenant, or of one of its namespaces (suspension, deletion).
pub async fn cancel_everything(
    pool: &PgPool,
    tenant: &TenantId,
    namespace: Option<&NamespaceId>,
) -> Result<usize, EngineError> {
    let runs = unfinished_runs(pool, tenant, namespace).await?;
    for run in &runs {
        crate::run::cancel::stop_run(pool, run, crate::run::cancel::CancelReason::User).await?;
    }
    Ok(runs.len())
}

/// Task time the tenant used this calendar month (UTC), in milliseconds, counting attempts still
/// running: what admission and the quota check compare with the plan's task-seconds.
pub async fn task_ms_this_month(pool: &PgPool, tenant: &TenantId) -> Result<i64, EngineError> {
    let mut tx = db::scoped(pool, tenant).await?;
    db::usage::used_ms(&mut tx, tenant).await
}
