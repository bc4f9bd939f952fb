//! Runs, their task executions and logs.

use std::collections::BTreeMap;

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, get, post, web};
use gofer_core::chain::RunAncestor;
use gofer_core::keys::{RunKey, TaskKey};
use gofer_core::model::QuotaExceeded;
use gofer_core::model::{Initiator, Page, Run, TaskAttempt, TaskExecution};
use gofer_core::{RunId, TaskId};
use gofer_engine::runs::StartRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Guarded, ReadRuns, StartRuns, TenantAccess, Write};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::routes::pipelines::PipelinePath;
use crate::state::AppState;

/// Body of `POST …/runs`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// Environment variables for every task of the run (they override the tasks' own env). Names
    /// starting with `GOFER_` and the dynamic loader's (`LD_*` but `LD_LIBRARY_PATH` and
    /// `LD_RUN_PATH`, `MALLOC_*`, `GCONV_PATH`, …) are refused too.
    #[serde(default)]
    #[schema(value_type = BTreeMap<EnvName, String>)]
    pub variables: BTreeMap<String, String>,
}

/// An environment variable's name, as the document describes it (`gofer_core::config::check_env_key`).
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
#[allow(dead_code)] // a schema only: the names are read as strings and checked by core
pub struct EnvName(String);

/// One run.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct RunResponse {
    /// The run.
    pub run: Run,
}

/// One task execution.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TaskResponse {
    /// The task execution.
    pub task: TaskExecution,
}

#[derive(Deserialize)]
pub(crate) struct RunPath {
    namespace: String,
    pipeline: String,
    run: String,
}

impl RunPath {
    pub(crate) fn key(self, tenant: &gofer_core::TenantId) -> Result<RunKey, ApiError> {
        let run = RunId::parse(&self.run)?;
        let pipeline = PipelinePath::from_parts(self.namespace, self.pipeline).key(tenant)?;
        Ok(RunKey { pipeline, run })
    }
}

#[derive(Deserialize)]
pub(crate) struct TaskPath {
    namespace: String,
    pipeline: String,
    run: String,
    task: String,
}

impl TaskPath {
    pub(crate) fn key(self, tenant: &gofer_core::TenantId) -> Result<TaskKey, ApiError> {
        let task = TaskId::parse(self.task)?;
        let run = RunPath { namespace: self.namespace, pipeline: self.pipeline, run: self.run }.key(tenant)?;
        Ok(TaskKey { run, task })
    }
}

/// Starts a run of the pipeline's live config version.
#[utoipa::path(tag = "runs",
    request_body = StartRun,
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id")),
    security(("bearer" = [])),
    responses(
        (status = 201, body = RunResponse),
        (status = 409, description = "`pipeline_disabled`, `no_live_version`; for a run token, `run_chain_loop` (the pipeline is already in the chain of runs that led here) or `run_chain_too_deep` (`engine.max_run_chain_depth`)", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[post("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs")]
pub(crate) async fn start(
    guarded: Guarded<TenantAccess<StartRuns>, crate::body::JsonBody<StartRun>>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(access, body) = guarded;
    let key = path.into_inner().key(&access.tenant)?;
    // A task (`kind: gofer`) starting a pipeline of its namespace: the engine refuses a start
    // that loops back to a pipeline of its chain (its own included) or goes too deep.
    let (initiator, parent) = match &access.run {
        Some(parent) => (
            Initiator::run(&parent.namespace, &parent.pipeline, parent.run),
            Some(RunAncestor {
                namespace_id: parent.namespace.clone(),
                pipeline_id: parent.pipeline.clone(),
                run_id: parent.run,
            }),
        ),
        None => (Initiator::token(access.token_id), None),
    };
    let request = StartRequest { variables: body.into_inner().variables, initiator, parent };
    let run = match state.runs.start(&key, request).await {
        Ok(run) => run,
        Err(gofer_engine::EngineError::QuotaExceeded(e)) if e.limit == QuotaExceeded::TASK_SECONDS => {
            // Out of task-seconds: a trial's address is refused new trials for a while.
            state.billing.mark_trial_exhausted(&access.tenant).await?;
            return Err(gofer_engine::EngineError::QuotaExceeded(e).into());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(HttpResponse::Created().json(RunResponse { run }))
}

/// Lists a pipeline's runs, newest first.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<Run>),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs")]
pub(crate) async fn list(
    access: TenantAccess<ReadRuns>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let request = query.parse::<RunId>()?;
    let (runs, next) = state.complete_runs.list(&state.pool, &key, &request).await?;
    let body = crate::pagination::page_json(runs.iter().map(|run| &run.json[..]), next);
    Ok(HttpResponse::Ok().content_type(ContentType::json()).body(body))
}

/// Reads one run.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RunResponse),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}")]
pub(crate) async fn get(
    access: TenantAccess<ReadRuns>,
    state: web::Data<AppState>,
    path: web::Path<RunPath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    // `{"run": …}` around the run's JSON, serialized once when it was read (see `run_cache`).
    let run = state.complete_runs.get(&state.pool, key).await?;
    let mut body = Vec::with_capacity(run.json.len() + 8);
    body.extend_from_slice(b"{\"run\":");
    body.extend_from_slice(&run.json);
    body.push(b'}');
    Ok(HttpResponse::Ok().content_type(ContentType::json()).body(body))
}

/// Lists a run's task executions, ordered by task id.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<TaskExecution>),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks")]
pub(crate) async fn list_tasks(
    access: TenantAccess<ReadRuns>,
    state: web::Data<AppState>,
    path: web::Path<RunPath>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let request = query.parse::<TaskId>()?;
    let result = state.runs.list_tasks(&key, &request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Reads one task execution.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), ("task" = String, Path, description = "Task id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TaskResponse),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}")]
pub(crate) async fn get_task(
    access: TenantAccess<ReadRuns>,
    state: web::Data<AppState>,
    path: web::Path<TaskPath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let task = state.runs.get_task(&key).await?;
    Ok(HttpResponse::Ok().json(TaskResponse { task }))
}

/// Parses `?attempt=`: a positive integer.
pub(crate) fn parse_attempt(text: &str) -> Result<u32, ApiError> {
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ApiError::InvalidParameter {
            code: "invalid_attempt",
            detail: "attempt must be a positive integer".into(),
        }),
    }
}

/// Every attempt of a task execution.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AttemptList {
    /// Attempts, oldest first (a task execution has at most a few, so this list is never paged).
    pub items: Vec<TaskAttempt>,
    /// Always null: the list is complete.
    pub next_cursor: Option<String>,
}

/// Lists the attempts of a task execution: each infrastructure retry or `retries` re-run is one.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), ("task" = String, Path, description = "Task id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AttemptList),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}/attempts")]
pub(crate) async fn list_attempts(
    access: TenantAccess<ReadRuns>,
    state: web::Data<AppState>,
    path: web::Path<TaskPath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let items = state.runs.list_attempts(&key).await?;
    Ok(HttpResponse::Ok().json(AttemptList { items, next_cursor: None }))
}

/// Cancels a run: running tasks are stopped, the rest never start, status `cancelled`.
/// Cancelling a complete run changes nothing and answers it.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RunResponse),
    ))]
#[post("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/cancel")]
pub(crate) async fn cancel(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<RunPath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let run = state.runs.cancel(&key).await?;
    Ok(HttpResponse::Ok().json(RunResponse { run }))
}

/// Runs cancelled by cancel-all.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CancelledRuns {
    /// The runs that were unfinished and are now being cancelled.
    pub cancelled: Vec<RunId>,
}

/// Cancels every unfinished run of a pipeline.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = CancelledRuns),
    ))]
#[post("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/cancel-all")]
pub(crate) async fn cancel_all(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let cancelled = state.runs.cancel_all(&key).await?;
    Ok(HttpResponse::Ok().json(CancelledRuns { cancelled }))
}
