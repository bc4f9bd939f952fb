//! The `ObjectStore` trait: where pipeline objects, run objects and finished task logs are kept
//! (S3, or a local content-addressed store). Keys, validated object names and the store's errors.
//!
//! Futures and streams are boxed by hand, as in [`crate::scheduler`], so the trait stays
//! object-safe without an async runtime in core.

use std::pin::Pin;

use crate::id::{NamespaceId, PipelineId, RunId, TenantId};
pub use crate::scheduler::BoxFuture;

/// A stream of body chunks; an `Err` item aborts whatever consumes it.
pub type ByteStream = Pin<Box<dyn futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>;

/// What a completed put stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

/// An object being read.
pub struct Fetched {
    /// Its size in bytes.
    pub size: u64,
    /// Its bytes.
    pub body: ByteStream,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetched({} bytes)", self.size)
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    /// The body was longer than the caller allowed; nothing was stored.
    #[error("the object is larger than {0} bytes")]
    TooLarge(u64),
    /// The body stream failed (the client went away); nothing was stored.
    #[error("reading the object body failed: {0}")]
    Body(String),
    /// The local disk is full; nothing was stored.
    #[error("the object store is out of space")]
    StorageFull,
    /// The backend failed (S3 unreachable or refusing, a local IO error).
    #[error("object store failure: {0}")]
    Backend(String),
}

/// Counts a body's bytes as they stream into a store, so that every store refuses the same
/// bodies: one past `max_bytes`, and one whose length differs from the length declared for it.
#[derive(Debug, Clone)]
pub struct BodyLength {
    declared: Option<u64>,
    max_bytes: u64,
    seen: u64,
}

impl BodyLength {
    /// Starts counting; a declared length past `max_bytes` is refused before any byte is read.
    pub fn new(declared: Option<u64>, max_bytes: u64) -> Result<Self, ObjectStoreError> {
        if declared.is_some_and(|n| n > max_bytes) {
            return Err(ObjectStoreError::TooLarge(max_bytes));
        }
        Ok(Self { declared, max_bytes, seen: 0 })
    }

    /// Counts the next `len` bytes.
    pub fn add(&mut self, len: usize) -> Result<(), ObjectStoreError> {
        self.seen = self.seen.saturating_add(len as u64);
        if self.seen > self.max_bytes {
            return Err(ObjectStoreError::TooLarge(self.max_bytes));
        }
        match self.declared {
            Some(declared) if self.seen > declared => Err(self.mismatch(declared)),
            _ => Ok(()),
        }
    }

    /// The body ended: answers its length, unless it is shorter than declared.
    pub fn end(&self) -> Result<u64, ObjectStoreError> {
        match self.declared {
            Some(declared) if self.seen != declared => Err(self.mismatch(declared)),
            _ => Ok(self.seen),
        }
    }

    fn mismatch(&self, declared: u64) -> ObjectStoreError {
        ObjectStoreError::Body(if self.seen > declared {
            format!("the body is longer than the {declared} bytes declared")
        } else {
            format!("the body ended after {} of the {declared} bytes declared", self.seen)
        })
    }
}

/// Stores opaque objects by key. A put either stores the whole body or leaves nothing behind
/// (no partial object, no dangling multipart upload); a put over an existing key replaces it.
pub trait ObjectStore: Send + Sync + 'static {
    /// A short name for logs (`local`, `s3`).
    fn name(&self) -> &'static str;

    /// Streams `body` into `key`, refusing it with [`ObjectStoreError::TooLarge`] past `max_bytes`.
    /// `length` is the body's length when it is known in advance (a request's `Content-Length`):
    /// a store may then send it differently (S3: one streamed `PutObject` instead of a multipart
    /// upload), and a body that turns out to have another length is refused, storing nothing.
    fn put<'a>(
        &'a self,
        key: &'a str,
        body: ByteStream,
        length: Option<u64>,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Stored, ObjectStoreError>>;

    /// Opens `key` for reading; `None` when there is no such object.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Fetched>, ObjectStoreError>>;

    /// Deletes `key`; deleting a missing key succeeds.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), ObjectStoreError>>;

    /// Deletes every object whose key starts with `prefix` (which ends with `/`); answers how many.
    fn delete_prefix<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64, ObjectStoreError>>;
}

/// Why an object key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {value:?}: {reason}")]
pub struct ObjectKeyError {
    /// The refused key, truncated.
    pub value: String,
    /// Why.
    pub reason: &'static str,
}

/// The longest object key, in bytes.
pub const MAX_OBJECT_KEY_LEN: usize = 256;

/// A user's object key: 1 to 256 bytes of `A-Z a-z 0-9 . _ -` in segments separated by single
/// `/`, no segment `.` or `..`, no leading or trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates a key.
    pub fn parse(value: impl Into<String>) -> Result<Self, ObjectKeyError> {
        let value = value.into();
        let fail = |reason| Err(ObjectKeyError { value: value.chars().take(80).collect(), reason });
        if value.is_empty() || value.len() > MAX_OBJECT_KEY_LEN {
            return fail("must be 1 to 256 bytes");
        }
        if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/')) {
            return fail("may only contain letters, digits, '.', '_', '-' and '/'");
        }
        if value.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return fail("segments between '/' must be non-empty and not '.' or '..'");
        }
        Ok(Self(value))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as one path segment of a store key (`/` written `%2F`), so that `a` and `a/b` never
    /// collide as file and directory.
    fn segment(&self) -> String {
        self.0.replace('/', "%2F")
    }
}

impl<'de> serde::Deserialize<'de> for ObjectKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        ObjectKey::parse(value).map_err(serde::de::Error::custom)
    }
}

/// An object's metadata, as lists and `GET` headers show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectInfo {
    /// The key.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// When it was written (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created: time::OffsetDateTime,
    /// Whether its content was removed by run-object expiry (the metadata stays; reads answer
    /// 410 `object_expired`).
    pub expired: bool,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose object: a pipeline's (kept until deleted) or a run's (expires with old runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectScope {
    /// A pipeline object.
    Pipeline,
    /// An object of one run.
    Run(RunId),
}

/// Store key prefix of everything of a tenant.
pub fn tenant_prefix(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/")
}

/// Store key prefix of everything of a namespace.
pub fn namespace_prefix(tenant: &TenantId, namespace: &NamespaceId) -> String {
    format!("tenants/{tenant}/namespaces/{namespace}/")
}

/// Store key prefix of everything of a pipeline (objects, run objects, logs).
pub fn pipeline_prefix(tenant: &TenantId, namespace: &NamespaceId, pipeline: &PipelineId) -> String {
    format!("tenants/{tenant}/namespaces/{namespace}/pipelines/{pipeline}/")
}

/// The store key of an object:
/// `tenants/<t>/namespaces/<ns>/pipelines/<p>/objects/<key>` or `…/runs/<r>/objects/<key>`.
pub fn object_store_key(
    tenant: &TenantId,
    namespace: &NamespaceId,
    pipeline: &PipelineId,
    scope: ObjectScope,
    key: &ObjectKey,
) -> String {
    let base = pipeline_prefix(tenant, namespace, pipeline);
    match scope {
        ObjectScope::Pipeline => format!("{base}objects/{}", key.segment()),
        ObjectScope::Run(run) => format!("{base}runs/{run}/objects/{}", key.segment()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_rule() {
        for good in ["a", "dist/app.tar.gz", "A_b-c.1", &"x".repeat(256)] {
            assert!(ObjectKey::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "a//b", "../x", "a/./b", "a b", "é", &"x".repeat(257), "a\\b"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_body_is_refused_past_the_limit_or_when_its_length_is_not_the_declared_one() {
        assert!(matches!(BodyLength::new(Some(11), 10), Err(ObjectStoreError::TooLarge(10))));

        let mut undeclared = BodyLength::new(None, 10).unwrap();
        undeclared.add(6).unwrap();
        undeclared.add(4).unwrap();
        assert_eq!(undeclared.end().unwrap(), 10);
        assert!(matches!(undeclared.add(1), Err(ObjectStoreError::TooLarge(10))));

        let mut exact = BodyLength::new(Some(5), 10).unwrap();
        exact.add(5).unwrap();
        assert_eq!(exact.end().unwrap(), 5);

        let mut short = BodyLength::new(Some(5), 10).unwrap();
        short.add(4).unwrap();
        assert_eq!(
            short.end().unwrap_err().to_string(),
            "reading the object body failed: the body ended after 4 of the 5 bytes declared"
        );

        let mut long = BodyLength::new(Some(5), 10).unwrap();
        let refused = long.add(6).unwrap_err();
        assert_eq!(refused.to_string(), "reading the object body failed: the body is longer than the 5 bytes declared");
    }

    #[test]
    fn store_keys_keep_a_key_in_one_segment() {
        let (t, n, p) = ("acme".parse().unwrap(), "builds".parse().unwrap(), "hello".parse().unwrap());
        let key = ObjectKey::parse("dist/app").unwrap();
        assert_eq!(
            object_store_key(&t, &n, &p, ObjectScope::Run(RunId::from_i64(3)), &key),
            "tenants/acme/namespaces/builds/pipelines/hello/runs/3/objects/dist%2Fapp"
        );
        assert_eq!(
            object_store_key(&t, &n, &p, ObjectScope::Pipeline, &key),
            "tenants/acme/namespaces/builds/pipelines/hello/objects/dist%2Fapp"
        );
    }
}
