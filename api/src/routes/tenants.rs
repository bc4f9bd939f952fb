//! Tenants (operator routes).

use actix_web::{HttpResponse, delete, get, post, web};
use gofer_core::TenantId;
use gofer_core::model::{Page, Tenant};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Guarded, Operator};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// Body of `POST /api/v1/tenants`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// `^[a-z][a-z0-9_-]{0,63}$`
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,63}$", min_length = 1, max_length = 64)]
    pub id: String,
    /// Display name: 1 to 128 characters, not only spaces, no control characters.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 128)]
    pub name: String,
    /// The tenant's plan (default: `default`).
    #[serde(default)]
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,63}$", min_length = 1, max_length = 64)]
    pub plan: Option<String>,
}

/// Body of `POST /api/v1/tenants/{tenant}/convert`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertTrial {
    /// The plan the tenant moves to.
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,63}$", min_length = 1, max_length = 64)]
    pub plan: String,
}

/// A new tenant and its first admin token (shown once).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: Tenant,
    /// Secret of the tenant's first admin token; store it now, it is never shown again.
    pub token: String,
}

/// Creates a tenant and its first admin token.
#[utoipa::path(tag = "tenants", request_body = CreateTenant,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TenantCreated),
        (status = 404, description = "`plan_not_found`: the plan named in the body does not exist", body = crate::error::Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "`tenant_exists`", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
#[post("/api/v1/tenants")]
pub(crate) async fn create(
    guarded: Guarded<Operator, crate::body::JsonBody<CreateTenant>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(_, body) = guarded;
    let body = body.into_inner();
    let id = TenantId::parse(body.id)?;
    let name = super::namespaces::display_name(&body.name)?;
    if let Some(plan) = &body.plan {
        gofer_core::id::validate_identifier("plan", plan)?;
    }
    let new = gofer_tenants::NewTenant { id: &id, name, plan: body.plan.as_deref(), trial_expires: None };
    let (tenant, secret) = state.tenants.create(&new).await?;
    Ok(HttpResponse::Created().json(TenantCreated { tenant, token: secret.expose().to_owned() }))
}

/// One tenant.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TenantResponse {
    /// The tenant.
    pub tenant: Tenant,
}

/// Lists tenants, by id.
#[utoipa::path(tag = "tenants", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Tenant>)))]
#[get("/api/v1/tenants")]
pub(crate) async fn list(
    _: Operator,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.parse::<TenantId>()?;
    let result = state.tenants.list(&request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Reads one tenant.
#[utoipa::path(tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TenantResponse),
    ))]
#[get("/api/v1/tenants/{tenant}")]
pub(crate) async fn get(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = TenantId::parse(path.into_inner())?;
    let tenant = state.tenants.get(&id).await?;
    Ok(HttpResponse::Ok().json(TenantResponse { tenant }))
}

/// Suspends a tenant: its tokens are refused (`tenant_suspended`) and its unfinished runs are
/// cancelled. Suspending a suspended tenant changes nothing.
#[utoipa::path(tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TenantResponse),
    ))]
#[post("/api/v1/tenants/{tenant}/suspend")]
pub(crate) async fn suspend(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = TenantId::parse(path.into_inner())?;
    let suspension = crate::usecases::suspend_tenant(state.handles(), &id).await?;
    tracing::warn!(tenant = %id, cancelled = suspension.cancelled_runs, "tenant suspended");
    Ok(HttpResponse::Ok().json(TenantResponse { tenant: suspension.tenant }))
}

/// Resumes a suspended tenant.
#[utoipa::path(tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TenantResponse),
    ))]
#[post("/api/v1/tenants/{tenant}/resume")]
pub(crate) async fn resume(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = TenantId::parse(path.into_inner())?;
    let tenant = state.tenants.set_suspended(&id, false).await?;
    state.forget_tokens(Some(&id));
    Ok(HttpResponse::Ok().json(TenantResponse { tenant }))
}

/// Deletes a tenant and everything it owns: its unfinished runs are cancelled, then its tokens,
/// namespaces, pipelines, runs, events, logs and secrets are removed.
#[utoipa::path(tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
    ))]
#[delete("/api/v1/tenants/{tenant}")]
pub(crate) async fn remove(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = TenantId::parse(path.into_inner())?;
    crate::usecases::remove_tenant(state.handles(), &id).await?;
    tracing::warn!(tenant = %id, "tenant deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Makes a trial tenant a paying one on `plan`: the trial no longer ends, its tokens become
/// ordinary tenant tokens, and everything it made stays. A suspended (expired, not yet removed)
/// trial is resumed.
#[utoipa::path(tag = "tenants", request_body = ConvertTrial,
    params(("tenant" = String, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TenantResponse),
    ))]
#[post("/api/v1/tenants/{tenant}/convert")]
pub(crate) async fn convert(
    guarded: Guarded<Operator, crate::body::JsonBody<ConvertTrial>>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(_, body) = guarded;
    let id = TenantId::parse(path.into_inner())?;
    gofer_core::id::validate_identifier("plan", &body.plan)?;
    let tenant = state.tenants.convert_trial(&id, &body.plan).await?;
    state.forget_tokens(Some(&id));
    state.billing.mark_trial_converted(&id).await?;
    tracing::info!(tenant = %id, plan = %body.plan, "trial converted");
    Ok(HttpResponse::Ok().json(TenantResponse { tenant }))
}
