//! Authenticating a presented API token secret, issuing the operator bootstrap token, and the
//! metadata facts that record it.

use sqlx::PgPool;

use crate::db;
use crate::error::TenantsError;
use crate::token::{self, Principal, Role, TokenSecret};

/// Metadata key recording when the bootstrap operator token was issued.
pub const BOOTSTRAP_ISSUED_KEY: &str = "bootstrap_token_issued_at";

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

/// Reads a metadata fact.
pub async fn metadata(pool: &PgPool, key: &str) -> Result<Option<String>, TenantsError> {
    Ok(db::get_metadata(pool, key).await?)
}
