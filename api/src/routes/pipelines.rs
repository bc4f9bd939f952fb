//! Pipelines and their config versions.

use actix_web::{HttpRequest, HttpResponse, post, web};
use gofer_core::{NamespaceId, PipelineConfig, PipelineId, ValidConfig};
use gofer_engine::runs::PipelineKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{TenantAccess, Write};
use crate::error::ApiError;
use crate::routes::read_json_body;
use crate::startup::AppState;

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
    /// The new version, now live.
    pub version: i64,
    /// SHA-256 of the canonical config.
    pub config_hash: String,
}

/// Registers a pipeline config as the next version and makes it live; the first config creates the pipeline.
#[utoipa::path(post, path = "/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs", tag = "pipelines",
    request_body = PipelineConfig,
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id")),
    security(("bearer" = [])),
    responses(
        (status = 201, body = ConfigRegistered),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[post("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs")]
pub(crate) async fn register_config(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let body = read_json_body(&req, payload, state.config.max_config_bytes).await?;
    let config = ValidConfig::parse(&body)?;
    let version = gofer_engine::pipelines::register_config(&state.pool, &key, &config).await?;
    Ok(HttpResponse::Created().json(ConfigRegistered { version, config_hash: config.canonical_hash() }))
}
