//! The object store's settings (`object_store` and `[objects]` in the server config;
//! docs/config.md).

use gofer_core::objects::ObjectStoreError;
use gofer_core::settings::{SettingError, expose_optional_secret};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Where objects and finished task logs are kept (docs/objects.md).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ObjectStoreSettings {
    /// Content-addressed files under `<state_dir>/objects`.
    Local {},
    /// An S3 bucket (AWS, MinIO, SeaweedFS, s3s-fs…).
    S3(S3Settings),
}

impl Default for ObjectStoreSettings {
    fn default() -> Self {
        Self::Local {}
    }
}

impl ObjectStoreSettings {
    /// Refuses settings that cannot work together, naming the key.
    pub fn validate(&self) -> Result<(), SettingError> {
        match self {
            Self::Local {} => Ok(()),
            Self::S3(s3) => s3.validate(),
        }
    }
}

/// Why the configured object store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    /// The settings cannot work.
    #[error(transparent)]
    Settings(#[from] SettingError),
    /// The S3 bucket could not be reached or created.
    #[error("reaching the S3 bucket: {0}")]
    Unreachable(ObjectStoreError),
}

/// An S3 bucket as the object store (`object_store = { kind = "s3", … }`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    /// S3 endpoint URL (MinIO, SeaweedFS, s3s-fs…); unset: AWS's endpoint for the region.
    ///
    /// Production: with a non-AWS S3
    pub endpoint: Option<String>,
    /// The bucket (created at start-up when missing).
    ///
    /// Production: set
    pub bucket: String,
    /// The region.
    ///
    /// Production: set
    pub region: String,
    /// Path-style addressing (`<endpoint>/<bucket>/<key>`), which most non-AWS servers need; AWS
    /// itself also takes virtual-hosted style (`false`).
    pub path_style: bool,
    /// Static credentials, with `secret_access_key` (both or neither); unset: the default AWS
    /// chain (environment, profile, instance role).
    ///
    /// Production: from a secret store, or the chain
    pub access_key_id: Option<String>,
    /// The secret access key of `access_key_id`.
    #[serde(serialize_with = "expose_optional_secret")]
    #[schemars(with = "Option<String>")]
    pub secret_access_key: Option<SecretString>,
    /// Multipart part size in bytes (at least 5 MiB); also the memory one upload holds.
    ///
    /// Production: tune (bigger: fewer requests)
    pub part_size_bytes: u64,
    /// Parts of one object uploaded at once while the request body is read on into the next, and
    /// ranges of one object (one part each) read ahead on downloads; at least 1. Memory per
    /// transfer is at most `(part_concurrency + 1) × part_size_bytes`.
    ///
    /// Production: raise with bandwidth-delay product, lower to save memory
    pub part_concurrency: usize,
    /// Longest object sent as one streamed `PutObject` when the request declares its
    /// `Content-Length` (nothing buffered; a body that breaks off, differs from its declared
    /// length or sends nothing for 15 s is refused and S3 keeps nothing); longer ones, and chunked
    /// bodies, go up as multipart uploads. Capped at 5 GiB, S3's limit for one `PutObject`.
    ///
    /// Production: lower where uploads often break off over long links (a multipart upload
    /// retries a failed part; a streamed put cannot be retried)
    pub single_put_max_bytes: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            bucket: "gofer".into(),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            part_size_bytes: 8 * 1024 * 1024,
            part_concurrency: 4,
            single_put_max_bytes: 100 * 1024 * 1024,
        }
    }
}

impl S3Settings {
    /// Refuses half a pair of static credentials.
    pub fn validate(&self) -> Result<(), SettingError> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => Err(SettingError::new(
                "object_store.secret_access_key",
                "required with object_store.access_key_id (set both, or neither for the AWS chain)",
            )),
            (None, Some(_)) => Err(SettingError::new(
                "object_store.access_key_id",
                "required with object_store.secret_access_key (set both, or neither for the AWS chain)",
            )),
            _ => Ok(()),
        }
    }
}

/// Object limits and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectSettings {
    /// Largest object, in bytes; pipeline objects are also bounded by the plan's
    /// `object_storage_bytes` and `max_pipeline_object_bytes` (how many a pipeline keeps is the
    /// plan's `max_pipeline_objects`, [billing.md](billing.md)).
    pub max_object_bytes: u64,
    /// Run objects of each pipeline's last this many runs are kept; older complete runs' objects
    /// expire (410 `object_expired`).
    pub keep_run_objects_for_runs: u32,
    /// How often the store job runs (log archiving, log retention, run-object expiry), in seconds.
    pub expiry_interval_s: u64,
    /// Largest object an env value may reference with `pipeline_object{{ key }}` or
    /// `run_object{{ key }}`, in bytes.
    pub max_env_object_bytes: u64,
}

impl Default for ObjectSettings {
    fn default() -> Self {
        Self {
            max_object_bytes: 5 * 1024 * 1024 * 1024,
            keep_run_objects_for_runs: 10,
            expiry_interval_s: 600,
            max_env_object_bytes: 64 * 1024,
        }
    }
}
