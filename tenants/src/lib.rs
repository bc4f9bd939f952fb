//! Tenants, API tokens and bootstrap. Tokens are random secrets shown once and stored as SHA-256.

mod auth;
pub mod cache;
mod db;
mod error;
mod handle;
pub mod memo;
pub mod namespaces;
pub mod run_tokens;
mod settings;
mod tenant;
pub mod token;
pub mod tokens;

pub use auth::{Authentication, BOOTSTRAP_ISSUED_KEY, authenticate, bootstrap, metadata};
pub use db::NewTenant;
pub use error::TenantsError;
pub use handle::Tenants;
pub use settings::{RunTokenSettings, TokenSettings};
pub use tenant::{
    convert_trial, create_tenant, create_tenant_in, delete_tenant, get_tenant, list_tenants, set_suspended,
    tenant_suspended,
};
pub use token::{NamespaceGlobs, Principal, Role, TokenSecret};
