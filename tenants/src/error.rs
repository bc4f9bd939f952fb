//! The crate's error type.

use gofer_core::TenantId;

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
