//! Run inspection: the timeline (queue wait and run time per task, critical path; computed by
//! `gofer_core::timeline`) and the debug document. Both only gather what the engine stores.

use actix_web::{HttpResponse, get, web};
use gofer_core::debug::{QuotaState, RunDebug, TaskDebug};
use gofer_core::keys::{RunKey, TaskKey};
use gofer_core::model::{ConfigDetail, MAX_PAGE_LIMIT, PageRequest, Run};
use gofer_core::timeline::{RunTimeline, TimelineTask, timeline};
use gofer_core::{Version, WaitingReason};
use gofer_engine::events::EventFilter;

use crate::auth::{Read, ReadRuns, TenantAccess};
use crate::error::ApiError;
use crate::routes::runs::RunPath;
use crate::state::AppState;

/// A run, its config version, and every task execution with its attempts and parents.
async fn gather(state: &AppState, key: &RunKey) -> Result<(Run, ConfigDetail, Vec<TimelineTask>), ApiError> {
    let run = state.runs.get(key).await?;
    let config = state.pipelines.get_config(&key.pipeline, Version::from_i64(run.config_version)).await?;
    // A config holds at most MAX_TASKS (200) tasks: one page of the largest size has them all.
    let page = PageRequest { limit: MAX_PAGE_LIMIT, after: None };
    let (executions, _) = state.runs.list_tasks(key, &page).await?;
    let mut tasks = Vec::with_capacity(executions.len());
    for execution in executions {
        let task_key = TaskKey { run: key.clone(), task: execution.task_id.clone() };
        let attempts = state.runs.list_attempts(&task_key).await?;
        let depends_on = config
            .config
            .tasks
            .iter()
            .find(|t| t.id == execution.task_id)
            .map(|t| t.depends_on.keys().cloned().collect())
            .unwrap_or_default();
        tasks.push(TimelineTask { execution, attempts, depends_on });
    }
    Ok((run, config, tasks))
}

/// Answers a run's timeline: for each task, when it was ready, dispatched and ended, its queue wait
/// and run time (retries included), and the critical path through the DAG.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RunTimeline),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/timeline")]
pub(crate) async fn timeline_of(
    access: TenantAccess<ReadRuns>,
    state: web::Data<AppState>,
    path: web::Path<RunPath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let (run, _, tasks) = gather(&state, &key).await?;
    let now = time::OffsetDateTime::now_utc();
    Ok(HttpResponse::Ok().json(timeline(run.id, run.status, run.created, run.ended, tasks, now)))
}

/// Answers everything stored about a run that helps debug it: the run, its config version, every
/// task execution with every attempt (scheduler job ids, nodes, reasons), its events, and the
/// tenant's plan with the tasks it holds back. Secrets are never part of it.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RunDebug),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/debug")]
pub(crate) async fn debug(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<RunPath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let (run, config, tasks) = gather(&state, &key).await?;
    let filter = EventFilter::Run(key.pipeline.namespace.clone(), key.pipeline.pipeline.clone(), run.id);
    let mut stored = Vec::new();
    loop {
        let after = stored.last().map_or(0, |e: &gofer_engine::events::StoredEvent| e.seq);
        let batch = gofer_engine::events::list(&state.pool, &access.tenant, &filter, after, 500).await?;
        let done = batch.len() < 500;
        stored.extend(batch);
        if done {
            break;
        }
    }
    let ids = state.event_ids.tenant(&access.tenant);
    let events = stored.into_iter().map(|e| ids.event(e)).collect();
    let plan = state.billing.tenant_plan(&access.tenant).await?;
    let waiting_for_quota = tasks
        .iter()
        .filter(|t| t.execution.waiting_reason == Some(WaitingReason::WaitingForQuota))
        .map(|t| t.execution.task_id.clone())
        .collect();
    let tasks = tasks.into_iter().map(|t| TaskDebug { execution: t.execution, attempts: t.attempts }).collect();
    Ok(HttpResponse::Ok().json(RunDebug { run, config, tasks, events, quota: QuotaState { plan, waiting_for_quota } }))
}
