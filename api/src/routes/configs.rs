//! A pipeline's config versions: list, read one, diff two.

use actix_web::{HttpResponse, get, web};
use gofer_core::Version;
use gofer_core::keys::PipelineKey;
use gofer_core::model::{ConfigDetail, ConfigDiff, ConfigSummary, Page};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Read, ReadRuns, TenantAccess};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::routes::pipelines::PipelinePath;
use crate::state::AppState;

/// One config version with its config.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConfigResponse {
    /// The version.
    pub config: ConfigDetail,
}

#[derive(Deserialize)]
pub(crate) struct ConfigPath {
    namespace: String,
    pipeline: String,
    version: String,
}

impl ConfigPath {
    fn key(self, tenant: &gofer_core::TenantId) -> Result<(PipelineKey, Version), ApiError> {
        let version = Version::parse(&self.version)?;
        Ok((PipelinePath::from_parts(self.namespace, self.pipeline).key(tenant)?, version))
    }
}

#[derive(Deserialize)]
pub(crate) struct DiffPath {
    namespace: String,
    pipeline: String,
    from: String,
    to: String,
}

/// Lists a pipeline's config versions, newest first (without the configs).
#[utoipa::path(tag = "configs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<ConfigSummary>),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs")]
pub(crate) async fn list(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<PipelinePath>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner().key(&access.tenant)?;
    let request = query.parse::<Version>()?;
    let result = state.pipelines.list_configs(&key, &request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Reads one config version with its config.
#[utoipa::path(tag = "configs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"), ("version" = i64, Path, description = "Config version")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConfigResponse),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs/{version}")]
pub(crate) async fn get(
    access: TenantAccess<ReadRuns>,
    state: web::Data<AppState>,
    path: web::Path<ConfigPath>,
) -> Result<HttpResponse, ApiError> {
    let (key, version) = path.into_inner().key(&access.tenant)?;
    let config = state.pipelines.get_config(&key, version).await?;
    Ok(HttpResponse::Ok().json(ConfigResponse { config }))
}

/// What changed from version `from` to version `to`: tasks are matched by id, maps compared key
/// by key, everything else value by value.
#[utoipa::path(tag = "configs",
    params(("namespace" = String, Path, description = "Namespace id"), ("pipeline" = String, Path, description = "Pipeline id"),
        ("from" = i64, Path, description = "The old version"), ("to" = i64, Path, description = "The new version")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConfigDiff),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/configs/{from}/diff/{to}")]
pub(crate) async fn diff(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<DiffPath>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    let (from, to) = (Version::parse(&path.from)?, Version::parse(&path.to)?);
    let key = PipelinePath::from_parts(path.namespace, path.pipeline).key(&access.tenant)?;
    let diff = state.pipelines.diff_configs(&key, from, to).await?;
    Ok(HttpResponse::Ok().json(diff))
}
