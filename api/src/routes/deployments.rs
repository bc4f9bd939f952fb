//! Deployments of a pipeline: start one (immediate or canary), list, read, roll a canary back.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use gofer_core::json::JsonError;
use gofer_core::model::{Deployment, Page};
use gofer_core::{CanaryPolicy, DeploymentId, Version};
use gofer_engine::DeploymentKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Guarded, Read, TenantAccess, Write};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::routes::pipelines::PipelinePath;
use crate::routes::read_json_body;
use crate::state::AppState;

/// The longest reason a manual rollback may give, in characters.
const MAX_REASON_CHARS: usize = 1024;

/// Body of `POST …/deployments`. Without `canary` the version goes live at once; with it, the
/// version runs as a canary beside the live one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// The config version to deploy.
    #[schema(minimum = 1)]
    pub version: i64,
    /// Deploy as a canary, with this policy.
    #[serde(default)]
    pub canary: Option<CanaryRequest>,
}

/// A canary's policy as a request gives it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryRequest {
    /// Share of new runs sent to the version, 1–99 percent.
    #[schema(minimum = 1, maximum = 99)]
    pub percent: u32,
    /// Highest failure rate of its runs that still promotes it, 0–1 (default 0: any failed canary
    /// run rolls it back).
    #[schema(minimum = 0, maximum = 1)]
    pub max_failure_rate: Option<f64>,
    /// Completed canary runs needed before it is promoted, 1–1000 (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    pub min_runs: Option<u32>,
}

/// Body of `POST …/deployments/{deployment}/rollback` (optional).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RollbackDeployment {
    /// Why, recorded in the deployment's status reason and log (at most 1024 characters, no
    /// control characters).
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub reason: Option<String>,
}

/// One deployment.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DeploymentResponse {
    /// The deployment.
    pub deployment: Deployment,
}

#[derive(Deserialize)]
pub(crate) struct DeploymentPath {
    namespace: String,
    pipeline: String,
    deployment: String,
}

impl DeploymentPath {
    fn key(self, tenant: &gofer_core::TenantId) -> Result<DeploymentKey, ApiError> {
        let deployment = DeploymentId::parse(&self.deployment)?;
        Ok(DeploymentKey { pipeline: PipelinePath::from_parts(self.namespace, self.pipeline).key(tenant)?, deployment })
    }
}

fn body_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidBody(JsonError { code, message: message.into() })
}

impl CreateDeployment {
    /// The version and, for a canary, its validated policy.
    fn parse(&self) -> Result<(Version, Option<CanaryPolicy>), ApiError> {
        let version = Version::new(self.version)
            .map_err(|_| body_error("invalid_field", "version: must be a positive integer"))?;
        let policy = match &self.canary {
            None => None,
            Some(canary) => Some(
                CanaryPolicy::new(
                    canary.percent,
                    canary.max_failure_rate.unwrap_or(gofer_core::deployment::DEFAULT_MAX_FAILURE_RATE),
                    canary.min_runs.unwrap_or(gofer_core::deployment::DEFAULT_MIN_RUNS),
                )
                .map_err(|e| body_error(e.code(), e.to_string()))?,
            ),
        };
        Ok((version, policy))
    }
}

/// Deploys a config version: at once (`immediate`: it goes live, the previous live version is
/// deprecated) or as a `canary` beside the live version. Deploying the live version while no
/// deployment runs changes nothing and answers 200 with the deployment that made it live.
#[utoipa::path(tag = "deployments",
    request_body = CreateDeployment,
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "a deployment started", body = DeploymentResponse),
        (status = 200, description = "the version is live already; nothing changed", body = DeploymentResponse),
        (status = 409, description = "`deployment_in_progress`, or `no_live_version` for a canary",
            body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[post("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/deployments")]
pub(crate) async fn create(
    guarded: Guarded<TenantAccess<Write>, crate::body::JsonBody<CreateDeployment>>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(access, body) = guarded;
    let key = path.into_inner().key(&access.tenant)?;
    let (version, policy) = body.parse()?;
    let (deployment, created) = state.pipelines.deploy(&key, version, policy).await?;
    Ok(if created { HttpResponse::Created() } else { HttpResponse::Ok() }.json(DeploymentResponse { deployment }))
}

/// Lists a pipeline's deployments, newest first, each with its log.
#[utoipa::path(tag = "deployments",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<Deployment>),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/deployments")]
pub(crate) async fn list(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let request = query.parse::<DeploymentId>()?;
    let result = state.pipelines.list_deployments(&key, &request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Reads one deployment with its log.
#[utoipa::path(tag = "deployments",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("deployment" = i64, Path, description = "Deployment number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DeploymentResponse),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/deployments/{deployment}")]
pub(crate) async fn get(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<DeploymentPath>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let deployment = state.pipelines.get_deployment(&key).await?;
    Ok(HttpResponse::Ok().json(DeploymentResponse { deployment }))
}

/// Rolls a running canary back by hand: the live version stays, the canary version is deprecated,
/// the deployment ends `rolled_back` with the reason. A deployment already rolled back answers
/// 200 unchanged.
#[utoipa::path(tag = "deployments",
    request_body(content = Option<RollbackDeployment>, description = "optional"),
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("deployment" = i64, Path, description = "Deployment number")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DeploymentResponse),
        (status = 409, description = "`deployment_not_running`", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[post("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/deployments/{deployment}/rollback")]
pub(crate) async fn rollback(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<DeploymentPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    // The body is optional: no Content-Type, an empty body or `null` means no reason.
    let has_body = req.headers().contains_key(actix_web::http::header::CONTENT_TYPE);
    let body =
        if has_body { read_json_body(&req, payload, state.config.max_body_bytes).await? } else { Default::default() };
    let request: RollbackDeployment = match body.trim_ascii() {
        b"" | b"null" => RollbackDeployment::default(),
        body => gofer_core::json::from_slice(body)?,
    };
    let reason = request.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if let Some(reason) = reason
        && (reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control))
    {
        return Err(body_error(
            "invalid_field",
            format!("reason: at most {MAX_REASON_CHARS} characters, no control characters"),
        ));
    }
    let deployment = state.pipelines.rollback(&key, reason).await?;
    Ok(HttpResponse::Ok().json(DeploymentResponse { deployment }))
}
