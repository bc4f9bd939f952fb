//! Pipelines: registering config versions, reading, disabling and deleting pipelines.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use gofer_core::keys::PipelineKey;
use gofer_core::model::{Page, Pipeline};
use gofer_core::{ConfigState, NamespaceId, PipelineConfig, PipelineId, PipelineState, ValidConfig};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Guarded, Read, TenantAccess, Write};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::routes::read_json_body;
use crate::state::AppState;

/// `{namespace}/{pipeline}` path segments, validated into a key scoped to the caller's tenant.
#[derive(Deserialize)]
pub(crate) struct PipelinePath {
    namespace: String,
    pipeline: String,
}

impl PipelinePath {
    pub(crate) fn from_parts(namespace: String, pipeline: String) -> Self {
        Self { namespace, pipeline }
    }

    pub(crate) fn key(self, tenant: &gofer_core::TenantId) -> Result<PipelineKey, ApiError> {
        Ok(PipelineKey {
            tenant: tenant.clone(),
            namespace: NamespaceId::parse(self.namespace)?,
            pipeline: PipelineId::parse(self.pipeline)?,
        })
    }
}

/// Answer of a config registration.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConfigRegistered {
    /// The version holding the config: new, or the existing version with the same canonical hash.
    pub version: i64,
    /// SHA-256 of the canonical config.
    pub config_hash: String,
    /// Whether a new version was created (201) or an existing one matched (200).
    pub created: bool,
    /// The version's state now: `live` unless `?deploy=false` (or a canary of it is running).
    pub state: ConfigState,
}

/// Query of `POST …/configs`.
#[derive(Deserialize, IntoParams)]
pub(crate) struct RegisterQuery {
    /// Make the version live at once through an immediate deployment (default `true`). With
    /// `false` a new version stays `unreleased` until it is deployed.
    deploy: Option<bool>,
}

/// One pipeline.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PipelineResponse {
    /// The pipeline.
    pub pipeline: Pipeline,
}

/// Body of `PATCH …/pipelines/{pipeline}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePipeline {
    /// `disabled` refuses new runs (`pipeline_disabled`); `active` accepts them again.
    pub state: Option<PipelineState>,
}

/// Query of `DELETE …/pipelines/{pipeline}`.
#[derive(Deserialize, IntoParams)]
pub(crate) struct DeleteQuery {
    /// Delete the pipeline's runs, task executions and logs too (default `false`: a pipeline with
    /// runs is not deleted).
    delete_runs: Option<bool>,
}

/// Registers a pipeline config (the first config creates the pipeline). A config whose canonical
/// hash equals an existing version's creates nothing and answers that version with 200. Unless
/// `?deploy=false`, the version goes live at once through an immediate deployment.
#[utoipa::path(tag = "pipelines",
    request_body = PipelineConfig,
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), RegisterQuery),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "a new version", body = ConfigRegistered),
        (status = 200, description = "an existing version has the same config", body = ConfigRegistered),
        (status = 409, description = "`deployment_in_progress`: a canary is running and the version would have to go live",
            body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[post("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs")]
pub(crate) async fn register_config(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
    query: web::Query<RegisterQuery>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let body = read_json_body(&req, payload, state.config.max_config_bytes).await?;
    let config = ValidConfig::parse(&body)?;
    let deploy = query.deploy.unwrap_or(true);
    let registered = state.pipelines.register_config(&key, &config, deploy).await?;
    let answer = ConfigRegistered {
        version: registered.version,
        config_hash: registered.config_hash,
        created: registered.created,
        state: registered.state,
    };
    Ok(if registered.created { HttpResponse::Created() } else { HttpResponse::Ok() }.json(answer))
}

/// Lists a namespace's pipelines, ordered by id.
#[utoipa::path(tag = "pipelines",
    params(("namespace" = String, Path, description = "Namespace id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<Pipeline>),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines")]
pub(crate) async fn list(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let namespace = NamespaceId::parse(path.into_inner())?;
    let request = query.parse::<PipelineId>()?;
    let result = state.pipelines.list(&access.tenant, &namespace, &request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Reads one pipeline.
#[utoipa::path(tag = "pipelines",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PipelineResponse),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}")]
pub(crate) async fn get(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let pipeline = state.pipelines.get(&key).await?;
    Ok(HttpResponse::Ok().json(PipelineResponse { pipeline }))
}

/// A pipeline's run statistics.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PipelineStatsResponse {
    /// Success rate and durations over the last 7 and 30 days.
    pub stats: gofer_core::model::PipelineStats,
}

/// Success rate and run durations of a pipeline over the last 7 and 30 days (UTC days), read
/// from a per-day rollup kept as runs complete: as fast with a million runs as with ten.
#[utoipa::path(tag = "pipelines",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PipelineStatsResponse),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/stats")]
pub(crate) async fn stats(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let stats = state.pipelines.stats(&key).await?;
    Ok(HttpResponse::Ok().json(PipelineStatsResponse { stats }))
}

/// Disables or enables a pipeline. Setting the state it already has changes nothing (200).
#[utoipa::path(tag = "pipelines",
    request_body = UpdatePipeline,
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PipelineResponse),
    ))]
#[patch("/api/v1/namespaces/{namespace}/pipelines/{pipeline}")]
pub(crate) async fn update(
    guarded: Guarded<TenantAccess<Write>, crate::body::JsonBody<UpdatePipeline>>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(access, body) = guarded;
    let key = path.into_inner().key(&access.tenant)?;
    let pipeline = match body.into_inner().state {
        Some(wanted) => state.pipelines.set_state(&key, wanted).await?,
        None => state.pipelines.get(&key).await?,
    };
    Ok(HttpResponse::Ok().json(PipelineResponse { pipeline }))
}

/// Deletes a pipeline with its config versions, deployments, runs, task executions, logs and secrets.
#[utoipa::path(tag = "pipelines",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), DeleteQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 409, description = "`pipeline_busy` (a run is in progress) or `pipeline_has_runs` (without `?delete_runs=true`)",
            body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[delete("/api/v1/namespaces/{namespace}/pipelines/{pipeline}")]
pub(crate) async fn remove(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let delete_runs = query.delete_runs.unwrap_or(false);
    crate::usecases::remove_pipeline(state.handles(), &key, delete_runs).await?;
    Ok(HttpResponse::NoContent().finish())
}
