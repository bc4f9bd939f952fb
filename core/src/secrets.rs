//! Secrets: validated secret keys, values that never print, where a secret lives (a pipeline, or
//! the tenant as a whole), and the `SecretStore` trait the stores (Vault/OpenBao, encrypted
//! Postgres) implement, plus the `SecretResolver` the engine asks at dispatch.
//!
//! Futures are boxed by hand (as in [`crate::scheduler`]) so the traits stay object-safe without
//! pulling an async runtime into core.

use std::fmt;

use crate::id::{IdError, NamespaceId, PipelineId, TenantId};
use crate::scheduler::BoxFuture;

/// The largest secret value accepted, in bytes.
pub const MAX_SECRET_VALUE_BYTES: usize = 32 * 1024;

/// A secret's key: `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$` (the rule pipeline configs already use
/// for secret names such as `registry_auth`), so a key reads the same in `secret{{ KEY }}`, in API
/// paths and in store paths, and never holds a `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
pub struct SecretKey(String);

impl SecretKey {
    /// The kind of identifier, as named in errors.
    pub const KIND: &'static str = "secret";

    /// Checks `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`.
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let fail = |reason| Err(IdError { kind: Self::KIND, value: value.chars().take(80).collect(), reason });
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            return fail("must not be empty");
        }
        if bytes.len() > 128 {
            return fail("must be at most 128 characters");
        }
        if !(bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_') {
            return fail("must start with a letter, a digit or _");
        }
        if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            return fail("may only contain letters, digits, _, . and -");
        }
        Ok(Self(value))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SecretKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = <String as serde::Deserialize>::deserialize(d)?;
        Self::parse(value).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for SecretKey {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

/// A secret's value. It never prints (`Debug` and `Display` show `***`); [`SecretValue::expose`]
/// is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// What the API shows of a secret: everything but its value, which is write-only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretMetadata {
    /// The key.
    pub key: SecretKey,
    /// The namespace of a pipeline secret; `null` for a global secret.
    pub namespace_id: Option<NamespaceId>,
    /// The pipeline of a pipeline secret; `null` for a global secret.
    pub pipeline_id: Option<PipelineId>,
    /// Global secrets: the namespace globs it is granted to (empty: granted to none). Empty for
    /// pipeline secrets.
    pub namespaces: Vec<String>,
    /// When it was first set (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created: time::OffsetDateTime,
    /// When its value or grants last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated: time::OffsetDateTime,
    /// The id of the token that last set it.
    pub updated_by: Option<String>,
}

/// Where a secret belongs: one pipeline, or the tenant (a global secret, usable by the namespaces
/// it is granted to).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretScope {
    /// A pipeline's own secret.
    Pipeline {
        /// Namespace.
        namespace: NamespaceId,
        /// Pipeline.
        pipeline: PipelineId,
    },
    /// A tenant-wide secret.
    Global,
}

impl SecretScope {
    /// The scope's path inside its tenant: `namespaces/<ns>/pipelines/<p>` or `global`. Every
    /// component was validated, so a path never escapes its tenant.
    pub fn path(&self) -> String {
        match self {
            SecretScope::Pipeline { namespace, pipeline } => format!("namespaces/{namespace}/pipelines/{pipeline}"),
            SecretScope::Global => "global".into(),
        }
    }
}

/// A part of a tenant whose secrets are removed together (when it is deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPrefix {
    /// Everything of the tenant.
    Tenant,
    /// Every pipeline secret of a namespace.
    Namespace(NamespaceId),
    /// Every secret of a pipeline.
    Pipeline(NamespaceId, PipelineId),
}

impl SecretPrefix {
    /// The prefix's path inside its tenant, ending in `/` (empty for the whole tenant).
    pub fn path(&self) -> String {
        match self {
            SecretPrefix::Tenant => String::new(),
            SecretPrefix::Namespace(ns) => format!("namespaces/{ns}/"),
            SecretPrefix::Pipeline(ns, p) => format!("namespaces/{ns}/pipelines/{p}/"),
        }
    }
}

/// A secret store failure.
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// The store could not be reached or failed; a retry may succeed.
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be decrypted or decoded (wrong key, tampering).
    #[error("a stored secret could not be read: {0}")]
    Corrupt(String),
}

/// Keeps secret values, keyed by tenant first. Stores hold values only; metadata (who set it,
/// when, which namespaces a global secret is granted to) lives in Postgres with the rest of the
/// tenant's rows, so listing never calls the store.
pub trait SecretStore: Send + Sync + 'static {
    /// A short name for logs (`postgres`, `vault`).
    fn name(&self) -> &'static str;

    /// Writes (or replaces) a value.
    fn put<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
        value: &'a SecretValue,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>>;

    /// Reads a value; `None` when there is none.
    fn get<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
    ) -> BoxFuture<'a, Result<Option<SecretValue>, SecretStoreError>>;

    /// Deletes a value (with every version the store kept). Deleting a missing value succeeds.
    fn delete<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
        key: &'a SecretKey,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>>;

    /// The keys stored in a scope, sorted.
    fn list<'a>(
        &'a self,
        tenant: &'a TenantId,
        scope: &'a SecretScope,
    ) -> BoxFuture<'a, Result<Vec<SecretKey>, SecretStoreError>>;

    /// Deletes every value under a prefix of the tenant (a deleted tenant, namespace or pipeline).
    fn purge<'a>(
        &'a self,
        tenant: &'a TenantId,
        prefix: &'a SecretPrefix,
    ) -> BoxFuture<'a, Result<(), SecretStoreError>>;
}

/// Why a `secret{{ key }}` reference could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Neither the pipeline nor a global secret granted to its namespace has the key.
    #[error("secret {key} is not set for this pipeline and no global secret {key} is granted to namespace {namespace}")]
    NotFound {
        /// The key asked for.
        key: SecretKey,
        /// The pipeline's namespace.
        namespace: NamespaceId,
    },
    /// The store or the database failed; a retry may succeed.
    #[error("{0}")]
    Unavailable(String),
}

/// Answers `secret{{ key }}` references for a task about to start: the pipeline's own secret
/// first, then a global secret if it is granted to the pipeline's namespace.
pub trait SecretResolver: Send + Sync + 'static {
    /// The value a task of this pipeline sees for `key`.
    fn resolve<'a>(
        &'a self,
        tenant: &'a TenantId,
        namespace: &'a NamespaceId,
        pipeline: &'a PipelineId,
        key: &'a SecretKey,
    ) -> BoxFuture<'a, Result<SecretValue, ResolveError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe_in_references_and_paths() {
        for ok in ["A", "_", "API_KEY", "a1", "1A", "docker-hub", "a.b", "x".repeat(128).as_str()] {
            assert!(SecretKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-A", ".a", "a/b", "..", "é", "x".repeat(129).as_str(), "A B", "a{b"] {
            assert!(SecretKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_never_print() {
        let v = SecretValue::new("hunter2");
        assert_eq!(format!("{v:?}"), "SecretValue(***)");
        assert_eq!(v.expose(), "hunter2");
    }

    #[test]
    fn paths_are_tenant_relative() {
        let ns = NamespaceId::parse("team-a").unwrap();
        let p = PipelineId::parse("build").unwrap();
        let scope = SecretScope::Pipeline { namespace: ns.clone(), pipeline: p.clone() };
        assert_eq!(scope.path(), "namespaces/team-a/pipelines/build");
        assert_eq!(SecretScope::Global.path(), "global");
        assert_eq!(SecretPrefix::Pipeline(ns.clone(), p).path(), "namespaces/team-a/pipelines/build/");
        assert_eq!(SecretPrefix::Namespace(ns).path(), "namespaces/team-a/");
        assert_eq!(SecretPrefix::Tenant.path(), "");
    }
}
