//! Tenants (operator routes).

use actix_web::{HttpResponse, post, web};
use gofer_core::TenantId;
use gofer_core::model::Tenant;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Operator;
use crate::error::ApiError;
use crate::startup::AppState;

/// Body of `POST /api/v1/tenants`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// `^[a-z][a-z0-9_-]{2,63}$`
    pub id: String,
    /// Display name.
    pub name: String,
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
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TenantCreated),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
#[post("/api/v1/tenants")]
pub(crate) async fn create(
    _: Operator,
    state: web::Data<AppState>,
    body: web::Json<CreateTenant>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let id = TenantId::parse(body.id)?;
    let name = super::namespaces::display_name(&body.name)?;
    let (tenant, secret) = gofer_tenants::create_tenant(&state.pool, &id, name).await?;
    Ok(HttpResponse::Created().json(TenantCreated { tenant, token: secret.expose().to_owned() }))
}
