//! Plans (operator routes) and a tenant's plan.

use actix_web::{HttpResponse, delete, get, post, put, web};
use gofer_core::TenantId;
use gofer_core::model::{Page, Plan};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Guarded, Operator};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// One plan.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct PlanResponse {
    /// The plan.
    pub plan: Plan,
}

/// Body of `PUT /api/v1/tenants/{tenant}/plan`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignPlan {
    /// The plan's id.
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,63}$", min_length = 1, max_length = 64)]
    pub plan: String,
}

/// Creates a plan.
#[utoipa::path(tag = "plans", request_body = Plan,
    security(("bearer" = [])),
    responses(
        (status = 201, body = PlanResponse),
        (status = 409, description = "`plan_exists`", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
#[post("/api/v1/plans")]
pub(crate) async fn create(
    guarded: Guarded<Operator, crate::body::JsonBody<Plan>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(_, body) = guarded;
    let plan = state.billing.create_plan(&body.into_inner()).await?;
    Ok(HttpResponse::Created().json(PlanResponse { plan }))
}

/// Lists plans by id.
#[utoipa::path(tag = "plans", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Plan>)))]
#[get("/api/v1/plans")]
pub(crate) async fn list(
    _: Operator,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.parse::<String>()?;
    if let Some(after) = &request.after {
        gofer_core::id::validate_identifier("plan", after)?;
    }
    let result = state.billing.list_plans(&request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Reads a plan.
#[utoipa::path(tag = "plans",
    params(("plan" = String, Path, description = "Plan id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PlanResponse),
    ))]
#[get("/api/v1/plans/{plan}")]
pub(crate) async fn get(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let plan = state.billing.get_plan(&path).await?;
    Ok(HttpResponse::Ok().json(PlanResponse { plan }))
}

/// Replaces a plan's limits; every tenant on it gets them at once. The body's id must be the path's.
#[utoipa::path(tag = "plans", request_body = Plan,
    params(("plan" = String, Path, description = "Plan id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PlanResponse),
    ))]
#[put("/api/v1/plans/{plan}")]
pub(crate) async fn update(
    guarded: Guarded<Operator, crate::body::JsonBody<Plan>>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(_, body) = guarded;
    let body = body.into_inner();
    if body.id != *path {
        return Err(ApiError::Unprocessable {
            code: "invalid_field",
            detail: "id: must be the plan in the path".into(),
        });
    }
    let plan = state.billing.update_plan(&body).await?;
    state.forget_tokens(None);
    Ok(HttpResponse::Ok().json(PlanResponse { plan }))
}

/// Deletes a plan that no tenant uses.
#[utoipa::path(tag = "plans",
    params(("plan" = String, Path, description = "Plan id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "`plan_in_use`: tenants are on the plan; move them first", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
#[delete("/api/v1/plans/{plan}")]
pub(crate) async fn remove(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.billing.delete_plan(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Moves a tenant to a plan, effective at once.
#[utoipa::path(tag = "plans", request_body = AssignPlan,
    params(("tenant" = String, Path, description = "Tenant id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PlanResponse),
    ))]
#[put("/api/v1/tenants/{tenant}/plan")]
pub(crate) async fn assign(
    guarded: Guarded<Operator, crate::body::JsonBody<AssignPlan>>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(_, body) = guarded;
    let tenant = TenantId::parse(path.into_inner())?;
    gofer_core::id::validate_identifier("plan", &body.plan)?;
    let plan = state.billing.assign_plan(&tenant, &body.plan).await?;
    state.forget_tokens(Some(&tenant));
    Ok(HttpResponse::Ok().json(PlanResponse { plan }))
}
