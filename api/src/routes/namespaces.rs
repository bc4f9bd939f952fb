//! Namespaces of the caller's tenant.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use gofer_core::NamespaceId;
use gofer_core::model::{Namespace, Page};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Guarded, Read, TenantAccess, Write};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// Body of `POST /api/v1/namespaces`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNamespace {
    /// `^[a-z][a-z0-9_-]{0,63}$`
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,63}$", min_length = 1, max_length = 64)]
    pub id: String,
    /// Display name: 1 to 128 characters, not only spaces, no control characters.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 128)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// One namespace.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct NamespaceResponse {
    /// The namespace.
    pub namespace: Namespace,
}

/// Checks a display name: 1 to 128 characters after trimming, no control characters.
pub(crate) fn display_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::InvalidParameter {
            code: "invalid_field",
            detail: "name: 1 to 128 characters, no control characters".into(),
        });
    }
    Ok(name)
}

/// Creates a namespace.
#[utoipa::path(tag = "namespaces", request_body = CreateNamespace,
    security(("bearer" = [])),
    responses(
        (status = 201, body = NamespaceResponse),
        (status = 409, description = "`namespace_exists`", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
#[post("/api/v1/namespaces")]
pub(crate) async fn create(
    guarded: Guarded<TenantAccess<Write>, crate::body::JsonBody<CreateNamespace>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(access, body) = guarded;
    let body = body.into_inner();
    let id = NamespaceId::parse(body.id)?;
    access.check_namespace(&id)?;
    let name = display_name(&body.name)?;
    if body.description.len() > 4096 {
        return Err(ApiError::InvalidParameter {
            code: "invalid_field",
            detail: "description: at most 4096 bytes".into(),
        });
    }
    let namespace = state.tenants.create_namespace(&access.tenant, &id, name, &body.description).await?;
    Ok(HttpResponse::Created().json(NamespaceResponse { namespace }))
}

/// Lists namespaces, ordered by id.
#[utoipa::path(tag = "namespaces", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<Namespace>)))]
#[get("/api/v1/namespaces")]
pub(crate) async fn list(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.parse::<NamespaceId>()?;
    let result = state.tenants.list_namespaces(&access.tenant, &access.namespaces, &request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Reads one namespace.
#[utoipa::path(tag = "namespaces",
    params(("namespace" = String, Path, description = "Namespace id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = NamespaceResponse),
    ))]
#[get("/api/v1/namespaces/{namespace}")]
pub(crate) async fn get(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = NamespaceId::parse(path.into_inner())?;
    let namespace = state.tenants.get_namespace(&access.tenant, &id).await?;
    Ok(HttpResponse::Ok().json(NamespaceResponse { namespace }))
}

/// Body of `PATCH /api/v1/namespaces/{namespace}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNamespace {
    /// New display name: 1 to 128 characters, not only spaces, no control characters.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$", max_length = 128)]
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// Changes a namespace's name or description; a change to nothing answers it unchanged.
#[utoipa::path(tag = "namespaces", request_body = UpdateNamespace,
    params(("namespace" = String, Path, description = "Namespace id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = NamespaceResponse),
    ))]
#[patch("/api/v1/namespaces/{namespace}")]
pub(crate) async fn update(
    guarded: Guarded<TenantAccess<Write>, crate::body::JsonBody<UpdateNamespace>>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(access, body) = guarded;
    let id = NamespaceId::parse(path.into_inner())?;
    let body = body.into_inner();
    let name = body.name.as_deref().map(display_name).transpose()?;
    if body.description.as_ref().is_some_and(|d| d.len() > 4096) {
        return Err(ApiError::InvalidParameter {
            code: "invalid_field",
            detail: "description: at most 4096 bytes".into(),
        });
    }
    let namespace = state.tenants.update_namespace(&access.tenant, &id, name, body.description.as_deref()).await?;
    Ok(HttpResponse::Ok().json(NamespaceResponse { namespace }))
}

/// Query of the namespace delete route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteNamespaceQuery {
    /// Cancel live runs and delete anyway (`true`); without it, a namespace with live runs is refused.
    force: Option<bool>,
}

/// Deletes a namespace with its pipelines, runs, logs and secrets. Refused (409 `namespace_busy`) while
/// runs are live, unless `?force=true`, which cancels them first.
#[utoipa::path(tag = "namespaces",
    params(("namespace" = String, Path, description = "Namespace id"), DeleteNamespaceQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "`namespace_busy`: runs are in progress (`?force=true` cancels them first)", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
#[delete("/api/v1/namespaces/{namespace}")]
pub(crate) async fn remove(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DeleteNamespaceQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = NamespaceId::parse(path.into_inner())?;
    let force = query.force == Some(true);
    crate::usecases::remove_namespace(state.handles(), &access.tenant, &id, force).await?;
    Ok(HttpResponse::NoContent().finish())
}
