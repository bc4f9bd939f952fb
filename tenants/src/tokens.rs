//! API tokens: creating scoped, expiring tokens, listing and revoking them, and purging expired ones.

use gofer_core::model::{PageRequest, TokenMetadata};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use crate::db;
use crate::error::TenantsError;
use crate::token::TokenSecret;
pub use crate::token::{NewToken, TokenOwner};

/// Creates a token; answers its metadata and its secret (shown once).
#[tracing::instrument(skip_all, fields(owner = ?owner))]
pub async fn create(
    pool: &PgPool,
    owner: &TokenOwner,
    new: &NewToken,
) -> Result<(TokenMetadata, TokenSecret), TenantsError> {
    let secret = TokenSecret::generate();
    let tenant = match owner {
        TokenOwner::Operator => None,
        TokenOwner::Tenant(t) => Some(t),
    };
    let expires = OffsetDateTime::now_utc() + new.lifetime;
    let mut tx = db::begin_for(pool, owner).await?;
    let metadata = db::insert_scoped_token(&mut tx, &secret, tenant, new, expires).await?;
    tx.commit().await?;
    Ok((metadata, secret))
}

/// Lists an owner's tokens, newest first (revoked ones included, marked).
pub async fn list(
    pool: &PgPool,
    owner: &TokenOwner,
    page: &PageRequest<String>,
) -> Result<(Vec<TokenMetadata>, Option<String>), TenantsError> {
    let mut tx = db::begin_for(pool, owner).await?;
    let rows = db::list_tokens(&mut tx, owner, page.after.as_deref(), i64::from(page.limit) + 1).await?;
    Ok(page.finish(rows, |t| t.id.clone()))
}

/// Reads one of an owner's tokens.
pub async fn get(pool: &PgPool, owner: &TokenOwner, id: uuid::Uuid) -> Result<TokenMetadata, TenantsError> {
    let mut tx = db::begin_for(pool, owner).await?;
    db::get_token(&mut tx, owner, id).await?.ok_or(TenantsError::TokenNotFound(id))
}

/// Revokes one of an owner's tokens at once; revoking a revoked token changes nothing.
pub async fn revoke(pool: &PgPool, owner: &TokenOwner, id: uuid::Uuid) -> Result<TokenMetadata, TenantsError> {
    let mut tx = db::begin_for(pool, owner).await?;
    db::revoke_token(&mut tx, owner, id).await?;
    let token = db::get_token(&mut tx, owner, id).await?.ok_or(TenantsError::TokenNotFound(id))?;
    tx.commit().await?;
    Ok(token)
}

/// Deletes tokens that expired (or were revoked) more than `grace` ago; answers how many per
/// tenant (`None`: operator tokens).
pub async fn purge_expired(pool: &PgPool, grace: Duration) -> Result<Vec<(Option<String>, i64)>, TenantsError> {
    Ok(db::purge_tokens(pool, OffsetDateTime::now_utc() - grace).await?)
}
