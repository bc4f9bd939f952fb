//! Tenants, API tokens and bootstrap. Tokens are random secrets shown once and stored as SHA-256.

pub mod cache;
mod db;
pub mod memo;
pub mod namespaces;
pub mod run_tokens;
mod settings;
pub mod token;
pub mod tokens;

use gofer_core::TenantId;
use gofer_core::model::Tenant;
use sqlx::PgPool;

pub use settings::{RunTokenSettings, TokenSettings};
pub use token::{NamespaceGlobs, Principal, Role, TokenSecret};

/// Metadata key recording when the bootstrap operator token was issued.
pub const BOOTSTRAP_ISSUED_KEY: &str = "bootstrap_token_issued_at";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    /// A tenant with this id exists already.
    #[error("tenant {0} already exists")]
    TenantExists(TenantId),
    /// A namespace with this id exists already in the tenant.
    #[error("namespace {0} already exists")]
    NamespaceExists(gofer_core::NamespaceId),
    /// No such namespace in the tenant.
    #[error("namespace {0} does not exist")]
    NamespaceNotFound(gofer_core::NamespaceId),
    /// No such tenant.
    #[error("tenant {0} does not exist")]
    TenantNotFound(TenantId),
    /// No such plan.
    #[error("plan {0} does not exist")]
    PlanNotFound(String),
    /// No such token (among the caller's).
    #[error("token {0} does not exist")]
    TokenNotFound(uuid::Uuid),
    /// A preset bootstrap token is too weak to accept.
    #[error("the preset bootstrap token must be at least 32 characters")]
    WeakBootstrapToken,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl gofer_core::Classify for TenantsError {
    fn kind(&self) -> gofer_core::ErrorKind {
        use gofer_core::ErrorKind as K;
        match self {
            TenantsError::TenantExists(_) | TenantsError::NamespaceExists(_) => K::Conflict,
            TenantsError::NamespaceNotFound(_)
            | TenantsError::TenantNotFound(_)
            | TenantsError::PlanNotFound(_)
            | TenantsError::TokenNotFound(_) => K::NotFound,
            // Only a start-up check refuses a weak preset; no request can cause it.
            TenantsError::WeakBootstrapToken => K::Internal,
            TenantsError::Database(e) => gofer_db::kind_of(e),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            TenantsError::TenantExists(_) => "tenant_exists",
            TenantsError::NamespaceExists(_) => "namespace_exists",
            TenantsError::NamespaceNotFound(_) => "namespace_not_found",
            TenantsError::TenantNotFound(_) => "tenant_not_found",
            TenantsError::PlanNotFound(_) => "plan_not_found",
            TenantsError::TokenNotFound(_) => "token_not_found",
            TenantsError::WeakBootstrapToken | TenantsError::Database(_) => "internal",
        }
    }
}

/// A tenant to create.
#[derive(Debug, Clone)]
pub struct NewTenant<'a> {
    /// Its id.
    pub id: &'a TenantId,
    /// Display name.
    pub name: &'a str,
    /// Its plan; `None` is the default plan.
    pub plan: Option<&'a str>,
    /// For a trial: when it ends (its first token is a `trial` token expiring then).
    pub trial_expires: Option<time::OffsetDateTime>,
}

/// Creates a tenant and its first admin token; answers the tenant and the token's secret (shown once).
pub async fn create_tenant(pool: &PgPool, new: &NewTenant<'_>) -> Result<(Tenant, TokenSecret), TenantsError> {
    let mut tx = pool.begin().await?;
    let created = create_tenant_in(&mut tx, new).await?;
    tx.commit().await?;
    Ok(created)
}

/// [`create_tenant`] inside the caller's transaction (trial signups record the trial with it).
#[tracing::instrument(skip_all, fields(tenant = %new.id))]
pub async fn create_tenant_in(
    conn: &mut sqlx::PgConnection,
    new: &NewTenant<'_>,
) -> Result<(Tenant, TokenSecret), TenantsError> {
    let tenant = db::insert_tenant(&mut *conn, new).await.map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => TenantsError::TenantExists(new.id.clone()),
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            TenantsError::PlanNotFound(new.plan.unwrap_or("default").to_owned())
        }
        other => TenantsError::Database(other),
    })?;
    let secret = TokenSecret::generate();
    let description = if new.trial_expires.is_some() { "trial token" } else { "initial tenant admin token" };
    db::insert_token(conn, &secret, Some(new.id), Role::Admin, description, new.trial_expires).await?;
    Ok((tenant, secret))
}

/// Operator scope: makes a trial tenant a regular tenant on `plan`, keeping everything it has;
/// its trial tokens become tenant tokens valid for `token_days` more days.
pub async fn convert_trial(pool: &PgPool, id: &TenantId, plan: &str, token_days: u32) -> Result<Tenant, TenantsError> {
    let mut tx = pool.begin().await?;
    let converted = db::convert_trial(&mut tx, id, plan, token_days).await.map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => TenantsError::PlanNotFound(plan.to_owned()),
        other => TenantsError::Database(other),
    })?;
    if !converted {
        return Err(TenantsError::TenantNotFound(id.clone()));
    }
    tx.commit().await?;
    get_tenant(pool, id).await
}

/// A presented token that exists, is not revoked and has not expired.
#[derive(Debug, Clone)]
pub struct Authentication {
    /// Who it acts as.
    pub principal: Principal,
    /// Client networks it may be used from; empty means anywhere.
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// Its tenant is suspended: the caller must refuse it.
    pub tenant_suspended: bool,
    /// Requests per minute its tenant's plan allows (tenant tokens).
    pub requests_per_minute: Option<u32>,
    /// A trial tenant's token: rate limited per client address, not per token.
    pub trial: bool,
    /// When the token expires (a cached verification never outlives it).
    pub expires: Option<time::OffsetDateTime>,
}

/// Resolves a presented bearer secret; `None` for unknown, revoked or expired tokens.
pub async fn authenticate(pool: &PgPool, presented: &str) -> Result<Option<Authentication>, TenantsError> {
    let Some(live) = db::find_live_token(pool, &token::hash_secret(presented)).await? else { return Ok(None) };
    // CIDRs were validated when the token was created; a stored one that no longer parses makes
    // the token unusable rather than unrestricted.
    let Ok(allowed_cidrs) = live.allowed_cidrs.iter().map(|c| c.parse::<ipnet::IpNet>()).collect::<Result<Vec<_>, _>>()
    else {
        tracing::error!("a token has an unparsable client network; refusing it");
        return Ok(None);
    };
    Ok(Some(Authentication {
        principal: live.principal,
        allowed_cidrs,
        tenant_suspended: live.tenant_suspended,
        requests_per_minute: live.requests_per_minute.and_then(|r| u32::try_from(r).ok()),
        trial: live.trial,
        expires: live.expires_at,
    }))
}

/// On a database that has never issued one, creates the operator bootstrap token (from `preset`
/// when given) and answers its secret. Answers `None` once one was ever issued, so restarts and
/// concurrent replicas never issue a second.
#[tracing::instrument(skip_all)]
pub async fn bootstrap(pool: &PgPool, preset: Option<&str>) -> Result<Option<TokenSecret>, TenantsError> {
    let secret = match preset {
        Some(p) if p.len() < 32 => return Err(TenantsError::WeakBootstrapToken),
        Some(p) => TokenSecret::from_preset(p),
        None => TokenSecret::generate(),
    };
    let mut tx = pool.begin().await?;
    // The metadata row is the fact "a bootstrap token was issued"; inserting it first, with
    // ON CONFLICT DO NOTHING, makes exactly one replica win.
    if !db::insert_metadata_once(&mut tx, BOOTSTRAP_ISSUED_KEY).await? {
        return Ok(None);
    }
    db::insert_token(&mut tx, &secret, None, Role::Operator, "bootstrap operator token", None).await?;
    tx.commit().await?;
    Ok(Some(secret))
}

/// Whether a tenant is suspended (`None`: no such tenant). Run tokens are verified by signature,
/// not looked up, so their requests ask here every time: a suspension takes effect at once.
pub async fn tenant_suspended(pool: &PgPool, id: &TenantId) -> Result<Option<bool>, TenantsError> {
    Ok(db::tenant_suspended(pool, id).await?)
}

/// Operator scope: lists tenants by id.
pub async fn list_tenants(
    pool: &PgPool,
    page: &gofer_core::model::PageRequest<TenantId>,
) -> Result<(Vec<Tenant>, Option<TenantId>), TenantsError> {
    let rows = db::list_tenants(pool, page.after.as_ref(), i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |t| t.id.clone()))
}

/// Operator scope: reads one tenant.
pub async fn get_tenant(pool: &PgPool, id: &TenantId) -> Result<Tenant, TenantsError> {
    db::get_tenant(pool, id).await?.ok_or_else(|| TenantsError::TenantNotFound(id.clone()))
}

/// Operator scope: suspends or resumes a tenant (its tokens are refused while it is suspended).
pub async fn set_suspended(pool: &PgPool, id: &TenantId, suspended: bool) -> Result<Tenant, TenantsError> {
    if !db::set_suspended(pool, id, suspended).await? {
        return Err(TenantsError::TenantNotFound(id.clone()));
    }
    get_tenant(pool, id).await
}

/// Operator scope: deletes a tenant and every row it owns.
pub async fn delete_tenant(pool: &PgPool, id: &TenantId) -> Result<(), TenantsError> {
    if !db::delete_tenant(pool, id).await? {
        return Err(TenantsError::TenantNotFound(id.clone()));
    }
    Ok(())
}

/// Reads a metadata fact.
pub async fn metadata(pool: &PgPool, key: &str) -> Result<Option<String>, TenantsError> {
    Ok(db::get_metadata(pool, key).await?)
}
