//! Secrets of the caller's tenant: a pipeline's own secrets, and tenant-global secrets granted to
//! namespaces by glob. Values are write-only: every answer carries metadata, never a value.

use actix_web::{HttpResponse, delete, get, put, web};
use gofer_core::model::Page;
use gofer_core::secrets::{SecretKey, SecretMetadata, SecretScope, SecretValue};
use gofer_core::{NamespaceId, PipelineId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Admin, Guarded, Read, TenantAccess, Write};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// Body of `PUT …/pipelines/{pipeline}/secrets/{key}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value: 1 to 8192 characters and at most `secret_max_value_bytes` (32 KiB by default),
    /// no NUL. Never shown again.
    #[schema(min_length = 1, max_length = 8192, pattern = "^[^\\u0000]+$")]
    pub value: String,
}

/// Body of `PUT /api/v1/secrets/{key}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGlobalSecret {
    /// The value: 1 to 8192 characters and at most `secret_max_value_bytes` (32 KiB by default),
    /// no NUL. Never shown again.
    #[schema(min_length = 1, max_length = 8192, pattern = "^[^\\u0000]+$")]
    pub value: String,
    /// Namespace globs (`team-*`) whose pipelines may use the secret; none: no namespace may.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// One secret's metadata.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct SecretResponse {
    /// The secret, without its value.
    pub secret: SecretMetadata,
    /// What in the request is allowed but probably not meant (a global secret no namespace may
    /// use); absent when there is nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The warning for a global secret granted to no namespace.
const NO_NAMESPACE_MAY_USE: &str = "namespaces: empty, so no namespace may use this secret yet; \
     grant some with `namespaces` globs (`[\"builds\", \"team-*\"]`; gofer: --namespace-glob)";

/// `{namespace}/{pipeline}/{key}` path segments.
#[derive(Deserialize)]
pub(crate) struct PipelineSecretPath {
    namespace: String,
    pipeline: String,
    key: String,
}

/// `{namespace}/{pipeline}` path segments.
#[derive(Deserialize)]
pub(crate) struct PipelineSecretsPath {
    namespace: String,
    pipeline: String,
}

fn pipeline_scope(namespace: String, pipeline: String) -> Result<SecretScope, ApiError> {
    Ok(SecretScope::Pipeline { namespace: NamespaceId::parse(namespace)?, pipeline: PipelineId::parse(pipeline)? })
}

impl PipelineSecretPath {
    fn parse(self) -> Result<(SecretScope, SecretKey), ApiError> {
        Ok((pipeline_scope(self.namespace, self.pipeline)?, SecretKey::parse(self.key)?))
    }
}

/// The most characters a secret value may have, as the document says: 8192 characters are at
/// most 32 KiB, the default `secret_max_value_bytes`, so a value the document allows fits the
/// default store bound (an operator may lower the bound).
const MAX_VALUE_CHARS: usize = 8192;

fn value(state: &AppState, value: String) -> Result<SecretValue, ApiError> {
    let max = state.config.secret_max_value_bytes;
    if value.is_empty() || value.chars().count() > MAX_VALUE_CHARS || value.len() > max || value.contains('\0') {
        return Err(ApiError::InvalidParameter {
            code: "invalid_field",
            detail: format!("value: 1 to {MAX_VALUE_CHARS} characters and at most {max} bytes, no NUL character"),
        });
    }
    Ok(SecretValue::new(value))
}

fn answer(secret: SecretMetadata, created: bool, warnings: Vec<String>) -> HttpResponse {
    let mut response = if created { HttpResponse::Created() } else { HttpResponse::Ok() };
    response.json(SecretResponse { secret, warnings })
}

/// Sets a pipeline secret (creates or replaces it). Answers 201 when created, 200 when replaced.
#[utoipa::path(tag = "secrets",
    request_body = PutSecret,
    params(("namespace" = String, Path, description = "Namespace id"),
           ("pipeline" = String, Path, description = "Pipeline id"),
           ("key" = String, Path, description = "Secret key, `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SecretResponse),
        (status = 201, body = SecretResponse),
    ))]
#[put("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/secrets/{key}")]
pub(crate) async fn put_pipeline_secret(
    guarded: Guarded<TenantAccess<Write>, crate::body::JsonBody<PutSecret>>,
    state: web::Data<AppState>,
    path: web::Path<PipelineSecretPath>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(access, body) = guarded;
    let (scope, key) = path.into_inner().parse()?;
    let value = value(&state, body.into_inner().value)?;
    let (secret, created) = state.secrets.put(&access.tenant, &scope, &key, &value, &[], Some(access.token_id)).await?;
    Ok(answer(secret, created, Vec::new()))
}

/// Reads a pipeline secret's metadata (never its value).
#[utoipa::path(tag = "secrets",
    params(("namespace" = String, Path, description = "Namespace id"),
           ("pipeline" = String, Path, description = "Pipeline id"),
           ("key" = String, Path, description = "Secret key")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SecretResponse),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/secrets/{key}")]
pub(crate) async fn get_pipeline_secret(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<PipelineSecretPath>,
) -> Result<HttpResponse, ApiError> {
    let (scope, key) = path.into_inner().parse()?;
    let secret = state.secrets.get(&access.tenant, &scope, &key).await?;
    Ok(HttpResponse::Ok().json(SecretResponse { secret, warnings: Vec::new() }))
}

/// Deletes a pipeline secret and its value.
#[utoipa::path(tag = "secrets",
    params(("namespace" = String, Path, description = "Namespace id"),
           ("pipeline" = String, Path, description = "Pipeline id"),
           ("key" = String, Path, description = "Secret key")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
    ))]
#[delete("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/secrets/{key}")]
pub(crate) async fn delete_pipeline_secret(
    access: TenantAccess<Write>,
    state: web::Data<AppState>,
    path: web::Path<PipelineSecretPath>,
) -> Result<HttpResponse, ApiError> {
    let (scope, key) = path.into_inner().parse()?;
    state.secrets.delete(&access.tenant, &scope, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Lists a pipeline's secrets (metadata only), by key.
#[utoipa::path(tag = "secrets",
    params(("namespace" = String, Path, description = "Namespace id"),
           ("pipeline" = String, Path, description = "Pipeline id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Page<SecretMetadata>),
    ))]
#[get("/api/v1/namespaces/{namespace}/pipelines/{pipeline}/secrets")]
pub(crate) async fn list_pipeline_secrets(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<PipelineSecretsPath>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    let scope = pipeline_scope(path.namespace, path.pipeline)?;
    let request = query.parse::<SecretKey>()?;
    let result = state.secrets.list(&access.tenant, &scope, &request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// A global secret reaches pipelines in every namespace it is granted to, so a token limited to
/// some namespaces may not change global secrets.
fn require_unlimited<P>(access: &TenantAccess<P>) -> Result<(), ApiError> {
    if access.namespaces.is_limited() {
        return Err(ApiError::Forbidden {
            code: "namespace_forbidden",
            detail: "global secrets need a token that is not limited to some namespaces".into(),
        });
    }
    Ok(())
}

/// Sets a tenant-global secret (creates or replaces it, with its grants). Answers 201 when
/// created, 200 when replaced.
#[utoipa::path(tag = "secrets", request_body = PutGlobalSecret,
    params(("key" = String, Path, description = "Secret key, `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SecretResponse),
        (status = 201, body = SecretResponse),
    ))]
#[put("/api/v1/secrets/{key}")]
pub(crate) async fn put_global_secret(
    guarded: Guarded<TenantAccess<Admin>, crate::body::JsonBody<PutGlobalSecret>>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(access, body) = guarded;
    require_unlimited(&access)?;
    let key = SecretKey::parse(path.into_inner())?;
    let body = body.into_inner();
    let globs = gofer_tenants::NamespaceGlobs::parse(body.namespaces)
        .map_err(|detail| ApiError::InvalidParameter { code: "invalid_field", detail })?;
    let value = value(&state, body.value)?;
    let (secret, created) = state
        .secrets
        .put(&access.tenant, &SecretScope::Global, &key, &value, globs.as_slice(), Some(access.token_id))
        .await?;
    let warnings = if globs.as_slice().is_empty() { vec![NO_NAMESPACE_MAY_USE.to_owned()] } else { Vec::new() };
    Ok(answer(secret, created, warnings))
}

/// Reads a global secret's metadata and grants (never its value).
#[utoipa::path(tag = "secrets",
    params(("key" = String, Path, description = "Secret key")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = SecretResponse),
    ))]
#[get("/api/v1/secrets/{key}")]
pub(crate) async fn get_global_secret(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = SecretKey::parse(path.into_inner())?;
    let secret = state.secrets.get(&access.tenant, &SecretScope::Global, &key).await?;
    Ok(HttpResponse::Ok().json(SecretResponse { secret, warnings: Vec::new() }))
}

/// Deletes a global secret and its value.
#[utoipa::path(tag = "secrets",
    params(("key" = String, Path, description = "Secret key")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
    ))]
#[delete("/api/v1/secrets/{key}")]
pub(crate) async fn delete_global_secret(
    access: TenantAccess<Admin>,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_unlimited(&access)?;
    let key = SecretKey::parse(path.into_inner())?;
    state.secrets.delete(&access.tenant, &SecretScope::Global, &key).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Lists the tenant's global secrets (metadata and grants only), by key.
#[utoipa::path(tag = "secrets", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<SecretMetadata>)))]
#[get("/api/v1/secrets")]
pub(crate) async fn list_global_secrets(
    access: TenantAccess<Read>,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.parse::<SecretKey>()?;
    let result = state.secrets.list(&access.tenant, &SecretScope::Global, &request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}
