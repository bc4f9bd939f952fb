//! Authentication and authorization in one place: extractors turn the bearer token into a
//! principal and refuse requests whose token lacks the route's declared permission. Handlers
//! declare a permission by the extractor they take (`Operator`, `TenantAccess<Read|Write|Admin>`,
//! `TokenManager`, `Authenticated`) and never check roles themselves. docs/permissions.md lists
//! every route; a test proves the table against the running server.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use gofer_core::{NamespaceId, TenantId};
use gofer_tenants::run_tokens::RunScope;
use gofer_tenants::tokens::TokenOwner;
use gofer_tenants::{NamespaceGlobs, Principal, Role};

use crate::error::ApiError;
use crate::state::AppState;

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// The authenticated principal of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

fn bearer(req: &HttpRequest) -> Option<String> {
    bearer_of(req.headers())
}

/// The bearer token of a request's `Authorization` header.
pub(crate) fn bearer_of(headers: &actix_web::http::header::HeaderMap) -> Option<String> {
    let value = headers.get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

/// What the middleware learned of a request's API token, kept in the request's extensions so
/// the extractors do not look it up again.
#[derive(Clone)]
pub(crate) enum BearerCheck {
    /// It verified.
    Verified(Box<gofer_tenants::Authentication>),
    /// It was looked up and did not verify (unknown, revoked or expired).
    Failed,
}

/// Who presents `token` ([`Caller`]), for blocks and limits. An API token is looked up (from this
/// replica's cache first); from a `blocked` address, the database is asked only within a small
/// budget per address, so a block cannot be turned into a lookup flood, while the people behind
/// it whose tokens are not cached still get through. A run token's signature and expiry are
/// checked here; its tenant and run are checked by the extractor on use.
pub(crate) async fn check_bearer(
    state: &AppState,
    token: &str,
    ip: IpAddr,
    blocked: bool,
) -> (crate::blocks::Caller, Option<BearerCheck>) {
    use crate::blocks::Caller;
    if gofer_tenants::run_tokens::looks_like_jwt(token) {
        let caller = if state.run_tokens.verify(token).is_some() { Caller::Verified } else { Caller::Unverified };
        return (caller, None);
    }
    let found = if blocked && !state.auth_failures.may_look_up_while_blocked(ip) {
        match state.token_cache.cached(token) {
            Some(auth) => Some(auth),
            // Not known here, and not looked up: neither verified nor failed.
            None => return (Caller::Unverified, None),
        }
    } else {
        match state.token_cache.authenticate(&state.pool, token).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "looking up a token failed");
                return (Caller::Unverified, None);
            }
        }
    };
    match found {
        Some(auth) => {
            let caller = if auth.trial { Caller::Trial } else { Caller::Verified };
            (caller, Some(BearerCheck::Verified(Box::new(auth))))
        }
        None => (Caller::Unverified, Some(BearerCheck::Failed)),
    }
}

/// The client's address as the rate-limit middleware resolved it (trusted proxies applied), or
/// the socket peer; canonical either way ([`crate::limits::canonical_ip`]).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    use actix_web::HttpMessage;
    req.extensions()
        .get::<crate::limits::ClientIp>()
        .map(|c| c.0)
        .or_else(|| req.peer_addr().map(|a| crate::limits::canonical_ip(a.ip())))
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let ip = client_ip(req);
        let (rate_key, checked, caller) = {
            use actix_web::HttpMessage;
            let extensions = req.extensions();
            (
                extensions.get::<crate::limits::TokenRateKey>().cloned(),
                extensions.get::<BearerCheck>().cloned(),
                extensions.get::<crate::blocks::Caller>().copied(),
            )
        };
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            // The middleware has applied the blocks to whoever it let through.
            if caller.is_none()
                && let Some(ip) = ip
            {
                state.auth_failures.check_blocked(ip)?;
            }
            let Some(token) = token else { return Err(ApiError::Unauthorized) };
            if gofer_tenants::run_tokens::looks_like_jwt(&token) {
                let authenticated = run_token(&state, &token, ip).await?;
                if let Some(key) = rate_key {
                    // Authenticated: from now on limited in the token's own bucket alone.
                    state.request_limits.learn(&key.0, None, false);
                }
                return Ok(authenticated);
            }
            let found = match checked {
                Some(BearerCheck::Verified(auth)) => Some(*auth),
                Some(BearerCheck::Failed) => None,
                None => state.token_cache.authenticate(&state.pool, &token).await?,
            };
            let Some(auth) = found else {
                // Logged with the client's address, never with the token.
                tracing::warn!(client_ip = ?ip, "authentication failed");
                if let Some(ip) = ip {
                    state.auth_failures.record_failure(ip)?;
                }
                return Err(ApiError::Unauthorized);
            };
            if let Some(key) = rate_key {
                // The next requests of this token are limited at its plan's rate (operators and
                // plans without a rate: the default token rate), in its own bucket alone.
                state.request_limits.learn(&key.0, auth.requests_per_minute, auth.trial);
            }
            refuse_suspended(auth.tenant_suspended)?;
            if !auth.allowed_cidrs.is_empty()
                && !ip
                    .is_some_and(|ip| auth.allowed_cidrs.iter().any(|n| crate::limits::canonical_net(*n).contains(&ip)))
            {
                return Err(ApiError::Forbidden {
                    code: "client_ip_not_allowed",
                    detail: "this token may not be used from this address".into(),
                });
            }
            Ok(Authenticated(auth.principal))
        })
    }
}

/// Every token of a suspended tenant is refused the same way, whatever its kind.
fn refuse_suspended(suspended: bool) -> Result<(), ApiError> {
    if suspended {
        return Err(ApiError::Forbidden { code: "tenant_suspended", detail: "the tenant is suspended".into() });
    }
    Ok(())
}

/// A run token is valid while its signature and expiry hold, its tenant is not suspended and its
/// run is live (both checked on every use, uncached, so it stops working the moment the tenant is
/// suspended or the run completes).
async fn run_token(state: &AppState, token: &str, ip: Option<IpAddr>) -> Result<Authenticated, ApiError> {
    let refuse = |ip: Option<IpAddr>| -> Result<Authenticated, ApiError> {
        tracing::warn!(client_ip = ?ip, "run token refused");
        if let Some(ip) = ip {
            state.auth_failures.record_failure(ip)?;
        }
        Err(ApiError::Unauthorized)
    };
    let Some(scope) = state.run_tokens.verify(token) else { return refuse(ip) };
    match state.tenants.suspended(&scope.tenant).await? {
        Some(suspended) => refuse_suspended(suspended)?,
        None => return refuse(ip),
    }
    let key = gofer_core::keys::RunKey {
        pipeline: gofer_core::keys::PipelineKey {
            tenant: scope.tenant.clone(),
            namespace: scope.namespace.clone(),
            pipeline: scope.pipeline.clone(),
        },
        run: scope.run,
    };
    match state.runs.get(&key).await {
        Ok(run) if run.state != gofer_core::RunState::Complete => Ok(Authenticated(Principal::Run(scope))),
        Ok(_)
        | Err(
            gofer_engine::EngineError::NamespaceNotFound(_)
            | gofer_engine::EngineError::PipelineNotFound(_)
            | gofer_engine::EngineError::RunNotFound(_),
        ) => refuse(ip),
        Err(e) => Err(e.into()),
    }
}

/// An operator of the service.
#[derive(Debug, Clone)]
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = Authenticated::from_request(req, payload);
        Box::pin(async move {
            match auth.await?.0 {
                Principal::Operator { .. } => Ok(Operator),
                Principal::Tenant { .. } | Principal::Run(_) => {
                    Err(ApiError::forbidden("this route needs an operator token"))
                }
            }
        })
    }
}

/// What a run token may reach through a route, besides tenant tokens holding the permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTokenGrant {
    /// Nothing.
    Nothing,
    /// Its own run: the route's `{namespace}`, `{pipeline}` and `{run}` must be the token's.
    OwnRun,
    /// Its own pipeline: the route's `{namespace}` and `{pipeline}` must be the token's.
    OwnPipeline,
    /// Any pipeline and run of its own namespace: the route's `{namespace}` must be the token's.
    /// This is what lets a `kind: gofer` task start and watch other pipelines' runs.
    OwnNamespace,
    /// A route without a `{namespace}` segment that limits itself to [`TenantAccess::namespaces`]
    /// (the events list, where such a token must filter by its namespace).
    NamespaceFiltered,
}

/// What a tenant route needs of the token's role.
pub trait Permission {
    /// Whether `role` grants it.
    fn granted(role: Role) -> bool;
    /// Named in the 403 answer and in docs/permissions.md.
    const NAME: &'static str;
    /// What a run token may reach with it (reading its own run, unless a route says otherwise).
    const RUN_TOKEN: RunTokenGrant = RunTokenGrant::Nothing;
}

/// Read anything in the tenant (within the token's namespaces).
pub struct Read;
/// Create and change namespaces, pipelines and runs.
pub struct Write;
/// Everything, including the tenant's tokens.
pub struct Admin;

impl Permission for Read {
    fn granted(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Write | Role::Read)
    }
    const NAME: &'static str = "read";
    const RUN_TOKEN: RunTokenGrant = RunTokenGrant::OwnRun;
}

/// Declares a permission that tenant tokens hold exactly as `$role` (`Read` or `Write`) and that
/// run tokens hold within `$grant`.
macro_rules! run_token_permission {
    ($(#[$doc:meta])* $name:ident: $role:ident, $grant:ident) => {
        $(#[$doc])*
        pub struct $name;

        impl Permission for $name {
            fn granted(role: Role) -> bool {
                $role::granted(role)
            }
            const NAME: &'static str = $role::NAME;
            const RUN_TOKEN: RunTokenGrant = RunTokenGrant::$grant;
        }
    };
}

run_token_permission!(
    /// `read`, and for run tokens their own pipeline's objects (`GET` of pipeline objects).
    ReadPipelineObjects: Read, OwnPipeline
);
run_token_permission!(
    /// `write`, and for run tokens their own run's objects (`PUT` of run objects).
    WriteRunObjects: Write, OwnRun
);
run_token_permission!(
    /// `read`, and for run tokens the runs (tasks, attempts, logs, timeline) and config versions
    /// of every pipeline of their own namespace: what `gofer run start <p> --watch` reads in a task.
    ReadRuns: Read, OwnNamespace
);
run_token_permission!(
    /// `read`, and for run tokens the events of their own namespace (they must filter by it).
    ReadEvents: Read, NamespaceFiltered
);
run_token_permission!(
    /// `write`, and for run tokens the pipelines of their own namespace but their own (`POST …/runs`).
    StartRuns: Write, OwnNamespace
);

impl Permission for Write {
    fn granted(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Write)
    }
    const NAME: &'static str = "write";
}

/// Attach to a running task (`runs:attach`): the roles that can start runs. Run tokens never can.
pub struct Attach;

impl Permission for Attach {
    fn granted(role: Role) -> bool {
        Write::granted(role)
    }
    const NAME: &'static str = "runs:attach";
}

impl Permission for Admin {
    fn granted(role: Role) -> bool {
        role == Role::Admin
    }
    const NAME: &'static str = "admin";
}

/// A tenant member holding permission `P`. Handlers read the tenant from here, never from the
/// request, so every query is scoped to the token's tenant. When the route has a `{namespace}`
/// segment, the token's namespace globs must allow it.
#[derive(Debug, Clone)]
pub struct TenantAccess<P> {
    /// The tenant of the token.
    pub tenant: TenantId,
    /// The token's id (recorded, for example, as the initiator of runs).
    pub token_id: uuid::Uuid,
    /// The namespaces the token may reach.
    pub namespaces: NamespaceGlobs,
    /// The run whose run token made the request (tenant tokens: `None`).
    pub run: Option<RunScope>,
    _permission: std::marker::PhantomData<P>,
}

impl<P> TenantAccess<P> {
    /// Refuses a namespace named in a body that the token may not reach.
    pub fn check_namespace(&self, namespace: &NamespaceId) -> Result<(), ApiError> {
        if self.namespaces.allows(namespace.as_str()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                code: "namespace_forbidden",
                detail: format!("this token may not reach namespace {namespace}"),
            })
        }
    }
}

impl<P: Permission + 'static> FromRequest for TenantAccess<P> {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = Authenticated::from_request(req, payload);
        let namespace = req.match_info().get("namespace").map(str::to_owned);
        let pipeline = req.match_info().get("pipeline").map(str::to_owned);
        let run = req.match_info().get("run").map(str::to_owned);
        Box::pin(async move {
            match auth.await?.0 {
                // A run token reaches its own run (or pipeline) through the routes that say so.
                Principal::Run(scope) => {
                    let own_pipeline = namespace.as_deref() == Some(scope.namespace.as_str())
                        && pipeline.as_deref() == Some(scope.pipeline.as_str());
                    let own = match P::RUN_TOKEN {
                        RunTokenGrant::Nothing => false,
                        RunTokenGrant::OwnPipeline => own_pipeline && run.is_none(),
                        RunTokenGrant::OwnRun => own_pipeline && run.as_deref() == Some(scope.run.to_string().as_str()),
                        RunTokenGrant::OwnNamespace => namespace.as_deref() == Some(scope.namespace.as_str()),
                        RunTokenGrant::NamespaceFiltered => namespace.is_none(),
                    };
                    if !own {
                        return Err(ApiError::forbidden(
                            "a run token may only read its own run, start and read runs of its namespace's \
                             pipelines, write its run's objects and read its pipeline's objects",
                        ));
                    }
                    // An exact id, never a glob: the token reaches this one namespace.
                    // Failing closed: empty globs would mean every namespace.
                    let namespaces = NamespaceGlobs::parse(vec![scope.namespace.to_string()])
                        .map_err(|_| ApiError::internal("a run token's namespace is not a valid glob"))?;
                    Ok(TenantAccess {
                        tenant: scope.tenant.clone(),
                        token_id: uuid::Uuid::nil(),
                        namespaces,
                        run: Some(scope),
                        _permission: std::marker::PhantomData,
                    })
                }
                Principal::Tenant { tenant, role, token_id, namespaces } if P::granted(role) => {
                    if let Some(ns) = namespace
                        && !namespaces.allows(&ns)
                    {
                        return Err(ApiError::Forbidden {
                            code: "namespace_forbidden",
                            detail: format!("this token may not reach namespace {ns}"),
                        });
                    }
                    Ok(TenantAccess { tenant, token_id, namespaces, run: None, _permission: std::marker::PhantomData })
                }
                Principal::Tenant { .. } => {
                    Err(ApiError::forbidden(format!("this route needs the {} permission", P::NAME)))
                }
                Principal::Operator { .. } => {
                    Err(ApiError::forbidden("operator tokens cannot act inside a tenant; use a tenant token"))
                }
            }
        })
    }
}

/// Whoever manages tokens: an operator (operator tokens) or a tenant admin whose token is not
/// limited to some namespaces (the tenant's tokens).
#[derive(Debug, Clone)]
pub struct TokenManager(pub TokenOwner);

impl FromRequest for TokenManager {
    type Error = ApiError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = Authenticated::from_request(req, payload);
        Box::pin(async move {
            match auth.await?.0 {
                Principal::Operator { .. } => Ok(TokenManager(TokenOwner::Operator)),
                Principal::Tenant { tenant, role: Role::Admin, namespaces, .. } if !namespaces.is_limited() => {
                    Ok(TokenManager(TokenOwner::Tenant(tenant)))
                }
                Principal::Tenant { .. } | Principal::Run(_) => {
                    Err(ApiError::forbidden("managing tokens needs the admin permission on every namespace"))
                }
            }
        })
    }
}

/// Extracts `A` (a permission) and only then `B` (typically the JSON body). actix polls a
/// handler's extractors together, so a body error would otherwise race the permission check and
/// tell an unauthorized caller about the body's shape before saying it may not call the route.
pub struct Guarded<A, B>(pub A, pub B);

impl<A, B> FromRequest for Guarded<A, B>
where
    A: FromRequest<Error = ApiError> + 'static,
    B: FromRequest + 'static,
    B::Error: Into<actix_web::Error>,
{
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        let first = A::from_request(&req, &mut Payload::None);
        Box::pin(async move {
            let a = first.await?;
            let b = B::from_request(&req, &mut payload).await.map_err(Into::into)?;
            Ok(Guarded(a, b))
        })
    }
}
