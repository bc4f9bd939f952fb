//! API tokens: create (secret shown once), list, read, revoke, and whoami.

use actix_web::{HttpResponse, get, post, web};
use gofer_core::id::IdError;
use gofer_core::model::{Page, TokenMetadata};
use gofer_tenants::tokens::{NewToken, TokenOwner};
use gofer_tenants::{NamespaceGlobs, Principal, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authenticated, Guarded, TokenManager};
use crate::error::ApiError;
use crate::pagination::{PageQuery, page};
use crate::state::AppState;

/// Body of `POST /api/v1/tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `tenant` (a tenant admin creates it) or `operator` (an operator creates it); defaults to
    /// the caller's kind, and any other answers 403.
    #[schema(pattern = "^(tenant|operator)$")]
    pub kind: Option<String>,
    /// `admin`, `write` or `read` for tenant tokens (default `read`); `operator` (the default) for
    /// operator tokens. A role the caller may not grant answers 403.
    #[schema(pattern = "^(admin|write|read|operator)$")]
    pub role: Option<String>,
    /// Namespace globs the token is limited to, e.g. `["team-*"]`; empty means every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Client networks (CIDRs) it may be used from; empty means anywhere.
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Free text, at most 1024 characters.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub description: String,
    /// Lifetime in days (default and maximum from the server's config: 90 and 365 unless set).
    #[schema(minimum = 1, maximum = 365)]
    pub expires_in_days: Option<u32>,
}

/// A new token: the secret is shown this once.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// The secret; store it now.
    pub token: String,
    /// What it is.
    pub metadata: TokenMetadata,
}

/// One token's metadata.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The token (never its secret).
    pub token: TokenMetadata,
}

pub use gofer_core::model::Whoami;

/// Answer of whoami.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct WhoamiResponse {
    /// The caller.
    pub whoami: Whoami,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter { code: "invalid_field", detail: detail.into() }
}

fn parse_token_id(text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|_| {
        ApiError::InvalidIdentifier(IdError {
            kind: "token",
            value: text.chars().take(80).collect(),
            reason: "must be a UUID",
        })
    })
}

/// Checks a creation request against the caller and the server's limits. A trial tenant
/// (`trial`: its trial has not been converted) creates no tokens: a token of its own would have
/// its own rate-limit bucket and a lifetime past the trial's end, escaping the trial's
/// per-address limit; converting the trial to a paid plan lifts the refusal.
fn new_token(owner: &TokenOwner, trial: bool, body: CreateToken, state: &AppState) -> Result<NewToken, ApiError> {
    if trial {
        return Err(ApiError::Forbidden {
            code: "trial_tokens_refused",
            detail: "a trial tenant cannot create tokens (use the trial token); \
                     once the trial is converted to a paid plan, its admins can"
                .into(),
        });
    }
    let kind = match owner {
        TokenOwner::Operator => "operator",
        TokenOwner::Tenant(_) => "tenant",
    };
    let may_not = |detail: String| ApiError::Forbidden { code: "token_not_grantable", detail };
    match body.kind.as_deref() {
        None => {}
        Some(k) if k == kind => {}
        Some(k @ ("tenant" | "operator")) => {
            return Err(may_not(format!("kind: a {kind} token can only create {kind} tokens, not {k} tokens")));
        }
        Some(_) => return Err(invalid("kind: one of tenant, operator")),
    }
    let role = match (owner, body.role.as_deref()) {
        (TokenOwner::Operator, None | Some("operator")) => Role::Operator,
        (TokenOwner::Tenant(_), None) => Role::Read,
        (TokenOwner::Tenant(_), Some(r @ ("admin" | "write" | "read"))) => Role::parse(r).unwrap_or(Role::Read),
        (TokenOwner::Operator, Some(other @ ("admin" | "write" | "read"))) => {
            return Err(may_not(format!(
                "role: operator tokens have role operator, not {other}; a tenant's tokens are made with its admin token"
            )));
        }
        (TokenOwner::Tenant(_), Some("operator")) => {
            return Err(may_not("role: a tenant token cannot grant operator".into()));
        }
        (_, Some(_)) => return Err(invalid("role: one of admin, write, read, operator")),
    };
    if matches!(owner, TokenOwner::Operator) && !body.namespaces.is_empty() {
        return Err(may_not("namespaces: operator tokens are not scoped to namespaces".into()));
    }
    let namespaces = NamespaceGlobs::parse(body.namespaces).map_err(|e| invalid(format!("namespaces: {e}")))?;
    if body.allowed_cidrs.len() > 32 {
        return Err(invalid("allowed_cidrs: at most 32 networks"));
    }
    let allowed_cidrs = body
        .allowed_cidrs
        .iter()
        .map(|c| {
            crate::contract::CIDR
                .is_match(c)
                .then(|| c.parse::<ipnet::IpNet>().ok())
                .flatten()
                .map(crate::limits::canonical_net)
                .ok_or_else(|| {
                    invalid(format!("allowed_cidrs: \"{c}\" is not a network such as 10.0.0.0/8 or 2001:db8::/32"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if body.description.chars().count() > 1024 {
        return Err(invalid("description: at most 1024 characters"));
    }
    let days = state
        .tenants
        .token_days(body.expires_in_days)
        .map_err(|max| invalid(format!("expires_in_days: between 1 and {max}")))?;
    Ok(NewToken {
        role,
        namespaces,
        allowed_cidrs,
        description: body.description,
        lifetime: time::Duration::days(i64::from(days)),
    })
}

/// Creates a token. Operators create operator tokens; tenant admins (not limited to some
/// namespaces) create their tenant's tokens, except on a trial (403 `trial_tokens_refused`
/// until the trial is converted to a paid plan).
#[utoipa::path(tag = "tokens", request_body = CreateToken,
    security(("bearer" = [])),
    responses(
        (status = 201, body = TokenCreated),
    ))]
#[post("/api/v1/tokens")]
pub(crate) async fn create(
    guarded: Guarded<TokenManager, crate::body::JsonBody<CreateToken>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Guarded(manager, body) = guarded;
    let trial = match &manager.0 {
        TokenOwner::Tenant(tenant) => state.tenants.get(tenant).await?.trial_expires.is_some(),
        TokenOwner::Operator => false,
    };
    let new = new_token(&manager.0, trial, body.into_inner(), &state)?;
    let (metadata, secret) = state.tenants.create_token(&manager.0, &new).await?;
    Ok(HttpResponse::Created().json(TokenCreated { token: secret.expose().to_owned(), metadata }))
}

/// Lists the caller's tokens (an operator: operator tokens; a tenant admin: the tenant's), never their secrets.
#[utoipa::path(tag = "tokens", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<TokenMetadata>)))]
#[get("/api/v1/tokens")]
pub(crate) async fn list(
    manager: TokenManager,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.parse::<String>()?;
    if let Some(after) = &request.after {
        parse_token_id(after).map_err(|_| ApiError::InvalidParameter {
            code: "invalid_cursor",
            detail: "cursor: not a key of this list (a token id)".into(),
        })?;
    }
    let result = state.tenants.list_tokens(&manager.0, &request).await?;
    Ok(HttpResponse::Ok().json(page(result)))
}

/// Says who the presented token is.
#[utoipa::path(tag = "tokens",
    security(("bearer" = [])),
    responses((status = 200, body = WhoamiResponse)))]
#[get("/api/v1/tokens/whoami")]
pub(crate) async fn whoami(auth: Authenticated) -> HttpResponse {
    let whoami = match auth.0 {
        Principal::Operator { token_id } => Whoami {
            kind: "operator".into(),
            token_id: token_id.to_string(),
            tenant_id: None,
            role: Role::Operator.as_str().into(),
            namespaces: Vec::new(),
        },
        Principal::Run(scope) => Whoami {
            kind: "run".into(),
            token_id: format!("run:{}/{}/{}/{}", scope.tenant, scope.namespace, scope.pipeline, scope.run),
            tenant_id: Some(scope.tenant.to_string()),
            role: "run".into(),
            namespaces: vec![scope.namespace.to_string()],
        },
        Principal::Tenant { token_id, tenant, role, namespaces } => Whoami {
            kind: "tenant".into(),
            token_id: token_id.to_string(),
            tenant_id: Some(tenant.to_string()),
            role: role.as_str().into(),
            namespaces: namespaces.as_slice().to_vec(),
        },
    };
    HttpResponse::Ok().json(WhoamiResponse { whoami })
}

/// Reads one of the caller's tokens.
#[utoipa::path(tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenResponse),
    ))]
#[get("/api/v1/tokens/{id}")]
pub(crate) async fn get(
    manager: TokenManager,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_token_id(&path)?;
    let token = state.tenants.get_token(&manager.0, id).await?;
    Ok(HttpResponse::Ok().json(TokenResponse { token }))
}

/// Revokes one of the caller's tokens at once. Revoking a revoked token changes nothing. A revoked
/// token stays listed, marked `revoked`, as an audit trail until the purge
/// (`tokens.purge_grace_s`): it is revoked, not deleted, and the route says so.
#[utoipa::path(tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = TokenResponse),
    ))]
#[post("/api/v1/tokens/{id}/revoke")]
pub(crate) async fn revoke(
    manager: TokenManager,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_token_id(&path)?;
    let token = state.tenants.revoke_token(&manager.0, id).await?;
    state.forget_tokens(token.tenant_id.as_ref());
    Ok(HttpResponse::Ok().json(TokenResponse { token }))
}
