//! The `Tenants` handle: tenants, their namespaces and API tokens, as the API uses them, with the
//! token settings their work needs, so that no caller passes the pool or the settings along.

use gofer_core::model::{Namespace, PageRequest, Tenant, TokenMetadata};
use gofer_core::{NamespaceId, TenantId};
use sqlx::PgPool;

use crate::token::{NamespaceGlobs, NewToken, TokenOwner, TokenSecret};
use crate::{NewTenant, TenantsError, TokenSettings, namespaces, tenant, tokens};

/// Tenants, namespaces and tokens over one pool, with the token settings.
#[derive(Clone)]
pub struct Tenants {
    pool: PgPool,
    tokens: TokenSettings,
}

impl Tenants {
    /// The handle over `pool`, with the token `settings`.
    pub fn new(pool: PgPool, tokens: TokenSettings) -> Self {
        Self { pool, tokens }
    }

    /// The lifetime in days of a new token asking for `requested` days (the default when
    /// `None`); `Err` with the longest allowed when it is 0 or over it.
    pub fn token_days(&self, requested: Option<u32>) -> Result<u32, u32> {
        let days = requested.unwrap_or(self.tokens.default_expiry_days);
        if days == 0 || days > self.tokens.max_expiry_days { Err(self.tokens.max_expiry_days) } else { Ok(days) }
    }

    /// Creates a tenant with its first admin token ([`tenant::create_tenant`]).
    pub async fn create(&self, new: &NewTenant<'_>) -> Result<(Tenant, TokenSecret), TenantsError> {
        tenant::create_tenant(&self.pool, new).await
    }

    /// Lists tenants ([`tenant::list_tenants`]).
    pub async fn list(&self, page: &PageRequest<TenantId>) -> Result<(Vec<Tenant>, Option<TenantId>), TenantsError> {
        tenant::list_tenants(&self.pool, page).await
    }

    /// Reads a tenant ([`tenant::get_tenant`]).
    pub async fn get(&self, id: &TenantId) -> Result<Tenant, TenantsError> {
        tenant::get_tenant(&self.pool, id).await
    }

    /// Whether a tenant is suspended; `None` when it does not exist ([`tenant::tenant_suspended`]).
    pub async fn suspended(&self, id: &TenantId) -> Result<Option<bool>, TenantsError> {
        tenant::tenant_suspended(&self.pool, id).await
    }

    /// Suspends or resumes a tenant ([`tenant::set_suspended`]).
    pub async fn set_suspended(&self, id: &TenantId, suspended: bool) -> Result<Tenant, TenantsError> {
        tenant::set_suspended(&self.pool, id, suspended).await
    }

    /// Converts a trial to a paying tenant on `plan`; its tokens get the default token lifetime
    /// ([`tenant::convert_trial`]).
    pub async fn convert_trial(&self, id: &TenantId, plan: &str) -> Result<Tenant, TenantsError> {
        tenant::convert_trial(&self.pool, id, plan, self.tokens.default_expiry_days).await
    }

    /// Creates a namespace ([`namespaces::create`]).
    pub async fn create_namespace(
        &self,
        tenant: &TenantId,
        id: &NamespaceId,
        name: &str,
        description: &str,
    ) -> Result<Namespace, TenantsError> {
        namespaces::create(&self.pool, tenant, id, name, description).await
    }

    /// Lists the namespaces `globs` allows ([`namespaces::list`]).
    pub async fn list_namespaces(
        &self,
        tenant: &TenantId,
        globs: &NamespaceGlobs,
        page: &PageRequest<NamespaceId>,
    ) -> Result<(Vec<Namespace>, Option<NamespaceId>), TenantsError> {
        namespaces::list(&self.pool, tenant, globs, page).await
    }

    /// Reads a namespace ([`namespaces::get`]).
    pub async fn get_namespace(&self, tenant: &TenantId, id: &NamespaceId) -> Result<Namespace, TenantsError> {
        namespaces::get(&self.pool, tenant, id).await
    }

    /// Renames or redescribes a namespace ([`namespaces::update`]).
    pub async fn update_namespace(
        &self,
        tenant: &TenantId,
        id: &NamespaceId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Namespace, TenantsError> {
        namespaces::update(&self.pool, tenant, id, name, description).await
    }

    /// Creates an API token ([`tokens::create`]).
    pub async fn create_token(
        &self,
        owner: &TokenOwner,
        new: &NewToken,
    ) -> Result<(TokenMetadata, TokenSecret), TenantsError> {
        tokens::create(&self.pool, owner, new).await
    }

    /// Lists an owner's tokens ([`tokens::list`]).
    pub async fn list_tokens(
        &self,
        owner: &TokenOwner,
        page: &PageRequest<String>,
    ) -> Result<(Vec<TokenMetadata>, Option<String>), TenantsError> {
        tokens::list(&self.pool, owner, page).await
    }

    /// Reads one of an owner's tokens ([`tokens::get`]).
    pub async fn get_token(&self, owner: &TokenOwner, id: uuid::Uuid) -> Result<TokenMetadata, TenantsError> {
        tokens::get(&self.pool, owner, id).await
    }

    /// Revokes one of an owner's tokens ([`tokens::revoke`]).
    pub async fn revoke_token(&self, owner: &TokenOwner, id: uuid::Uuid) -> Result<TokenMetadata, TenantsError> {
        tokens::revoke(&self.pool, owner, id).await
    }
}
