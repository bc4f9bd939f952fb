//! Task execution logs: what is stored so far, or followed live as the task writes it.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use gofer_core::keys::{RunKey, TaskKey};
use gofer_core::{RunId, TaskId, TaskState};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{ReadRuns, TenantAccess};
use crate::error::ApiError;
use crate::live::{FollowTiming, follow_log, follow_param};
use crate::routes::pipelines::PipelinePath;
use crate::state::AppState;

/// The header that answers the raw position after the bytes returned (pass it back as `offset`).
pub(crate) const LOG_OFFSET_HEADER: &str = "Gofer-Log-Offset";

#[derive(Deserialize)]
pub(crate) struct LogPath {
    namespace: String,
    pipeline: String,
    run: String,
    task: String,
}

impl LogPath {
    fn key(self, tenant: &gofer_core::TenantId) -> Result<TaskKey, ApiError> {
        let run = RunId::parse(&self.run)?;
        let pipeline = PipelinePath::from_parts(self.namespace, self.pipeline).key(tenant)?;
        let task = TaskId::parse(self.task)?;
        Ok(TaskKey { run: RunKey { pipeline, run }, task })
    }
}

/// Query parameters of a task log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Start at this byte of the task's output (default 0). Output cut by the log cap is replaced
    /// by a marker line `[gofer: <N> bytes cut]`, so positions keep counting the task's raw bytes.
    #[param(value_type = Option<u64>, minimum = 0)]
    offset: Option<String>,
    /// `true` streams the log as it is written and ends once the task execution is complete and
    /// everything was sent.
    #[param(value_type = Option<bool>)]
    follow: Option<String>,
    /// Which attempt's log (default: the current attempt).
    #[param(value_type = Option<u32>, minimum = 1)]
    attempt: Option<String>,
}

fn offset_param(value: Option<&str>) -> Result<u64, ApiError> {
    value.map_or(Ok(0), |v| {
        v.trim().parse::<u64>().map_err(|_| ApiError::InvalidParameter {
            code: "invalid_offset",
            detail: "offset must be a byte position (an integer from 0)".into(),
        })
    })
}

/// A task execution's combined stdout and stderr: as stored so far, or followed live.
///
/// Each execution keeps at most `logs.max_bytes_per_task` bytes: the first half and the last half
/// of its output, with a line `[gofer: <N> bytes cut]` between them. Without `follow`, the answer
/// is what is stored now and the `Gofer-Log-Offset` header gives the position to resume from. With
/// `follow=true`, the body is streamed (chunked) as the task writes and ends once it is complete;
/// a task that never ran (skipped) ends at once with an empty body.
#[utoipa::path(tag = "runs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("run" = i64, Path, description = "Run number"), ("task" = String, Path, description = "Task id"), LogQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = String, content_type = "text/plain",
            headers(("Gofer-Log-Offset" = u64, description = "Without follow: the raw position after the bytes returned"))),
        (status = 429, body = crate::error::Problem, content_type = "application/problem+json",
            description = "A follow, when the tenant holds its plan's `max_concurrent_streams`: `too_many_streams`, with `Retry-After`"),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs/{run}/tasks/{task}/logs")]
pub(crate) async fn task_logs(
    access: TenantAccess<ReadRuns>,
    state: web::Data<AppState>,
    path: web::Path<LogPath>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let offset = offset_param(query.offset.as_deref())?;
    let attempt = query.attempt.as_deref().map(crate::routes::runs::parse_attempt).transpose()?;
    let follow = follow_param(query.follow.as_deref())?;
    // A complete task's log does not grow: following it is reading it (from wherever it is now,
    // local disk or the object store).
    let complete = follow && state.runs.get_task(&key).await?.state == TaskState::Complete;
    if !follow || complete {
        let slice = gofer_engine::logs::read_task_log(&state.pool, &state.logs, &key, attempt, offset).await?;
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header((LOG_OFFSET_HEADER, slice.next_offset.to_string()))
            .body(slice.data));
    }
    let task = state.runs.get_task(&key).await?;
    let attempt = attempt.unwrap_or(task.attempt);
    if attempt == 0 || attempt > task.attempt {
        return Err(gofer_engine::EngineError::AttemptNotFound(attempt).into());
    }
    let timing = FollowTiming {
        log_poll: Duration::from_millis(state.config.engine.monitor_interval_ms),
        state_poll: Duration::from_millis(state.config.events.poll_interval_ms),
    };
    // An earlier attempt will not grow any more.
    let complete = task.state == TaskState::Complete || attempt < task.attempt;
    let slot = state.streams.take_under_plan(&state.pool, &access.tenant).await?;
    let logs = state.logs.clone();
    let stream = follow_log(&state.hub, state.pool.clone(), logs, (key, attempt), offset, complete, timing, slot);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
