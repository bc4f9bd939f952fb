//! Authentication and authorization in one place: extractors that turn the bearer token into a
//! principal and refuse requests whose token lacks the route's permission.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use gofer_core::TenantId;
use gofer_tenants::{Principal, Role};

use crate::error::ApiError;
use crate::startup::AppState;

/// The authenticated principal of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let token = token.ok_or(ApiError::Unauthorized)?;
            let principal = gofer_tenants::authenticate(&state.pool, &token).await?.ok_or(ApiError::Unauthorized)?;
            Ok(Authenticated(principal))
        })
    }
}

/// An operator of the service.
#[derive(Debug, Clone)]
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = Authenticated::from_request(req, payload);
        Box::pin(async move {
            match auth.await?.0 {
                Principal::Operator { .. } => Ok(Operator),
                Principal::Tenant { .. } => Err(ApiError::Forbidden("this route needs an operator token".into())),
            }
        })
    }
}

/// What a tenant route needs of the token's role.
pub trait Permission {
    /// Whether `role` grants it.
    fn granted(role: Role) -> bool;
    /// Named in the 403 answer.
    const NAME: &'static str;
}

/// Read anything in the tenant.
pub struct Read;
/// Create and change pipelines, runs and namespaces.
pub struct Write;

impl Permission for Read {
    fn granted(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Write | Role::Read)
    }
    const NAME: &'static str = "read";
}

impl Permission for Write {
    fn granted(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Write)
    }
    const NAME: &'static str = "write";
}

/// A tenant member holding permission `P`. Handlers read the tenant from here, never from the
/// request, so every query is scoped to the token's tenant.
#[derive(Debug, Clone)]
pub struct TenantAccess<P> {
    /// The tenant of the token.
    pub tenant: TenantId,
    /// The token's id (recorded, for example, as the initiator of runs).
    pub token_id: uuid::Uuid,
    _permission: std::marker::PhantomData<P>,
}

impl<P: Permission + 'static> FromRequest for TenantAccess<P> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = Authenticated::from_request(req, payload);
        Box::pin(async move {
            match auth.await?.0 {
                Principal::Tenant { tenant, role, token_id } if P::granted(role) => {
                    Ok(TenantAccess { tenant, token_id, _permission: std::marker::PhantomData })
                }
                Principal::Tenant { .. } => {
                    Err(ApiError::Forbidden(format!("this route needs the {} permission", P::NAME)))
                }
                Principal::Operator { .. } => {
                    Err(ApiError::Forbidden("operator tokens cannot act inside a tenant; use a tenant token".into()))
                }
            }
        })
    }
}
