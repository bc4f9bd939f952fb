//! A run's timeline: queue wait and run time per task and the critical path
//! (computed by `gofer_core::timeline`; this route only gathers the timestamps).

use actix_web::{HttpResponse, get, web};
use gofer_core::Version;
use gofer_core::model::PageRequest;
use gofer_core::timeline::{RunTimeline, TimelineTask, timeline};
use gofer_engine::runs::TaskKey;

use crate::auth::{Read, TenantAccess};
use crate::error::ApiError;
use crate::routes::runs::RunPath;
use crate::startup::AppState;

/// Answers a run's timeline: for each task, when it was ready, dispatched and ended, its queue wait
/// and run time (retries included), and the critical path through the DAG.
#[utoipa::path(get, path = "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/timeline", tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RunTimeline),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/timeline")]
pub(crate) async fn get(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<RunPath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let run = gofer_engine::runs::get(&state.pool, &key).await?;
    let config = gofer_engine::pipelines::get_config(&state.pool, &key.pipeline, Version::from_i64(run.config_version))
        .await?
        .config;
    // A config holds at most MAX_TASKS (200) tasks: one page of the largest size has them all.
    let page = PageRequest { limit: gofer_core::model::MAX_PAGE_LIMIT, after: None };
    let (executions, _) = gofer_engine::runs::list_tasks(&state.pool, &key, &page).await?;
    let mut tasks = Vec::with_capacity(executions.len());
    for execution in executions {
        let task_key = TaskKey { run: key.clone(), task: execution.task_id.clone() };
        let attempts = gofer_engine::runs::list_attempts(&state.pool, &task_key).await?;
        let depends_on = config
            .tasks
            .iter()
            .find(|t| t.id == execution.task_id)
            .map(|t| t.depends_on.keys().cloned().collect())
            .unwrap_or_default();
        tasks.push(TimelineTask { execution, attempts, depends_on });
    }
    let now = time::OffsetDateTime::now_utc();
    Ok(HttpResponse::Ok().json(timeline(run.id, run.status, run.created, run.ended, tasks, now)))
}
