//! Object storage for Gofer: the two [`ObjectStore`] backends (S3 and a local
//! content-addressed store), object metadata in Postgres, and the rules on top: size limits,
//! per-plan quotas with eviction of the oldest pipeline objects, and run-object expiry.
//!
//! The store holds content; Postgres holds what exists (key, size, SHA-256, when, expired), so
//! lists paginate and quotas are summed without listing the store. A put streams into the store
//! first and records the row after, so a row always names complete content; a delete removes the
//! row first, so a reader never finds a row whose content is being removed.

mod db;
pub mod local;
mod open;
pub mod s3;
mod settings;

use std::sync::Arc;

use gofer_core::keys::PipelineKey;
use gofer_core::objects::{
    ByteStream, Fetched, ObjectInfo, ObjectKey, ObjectScope, ObjectStore, ObjectStoreError, object_store_key,
};
use gofer_core::{EventKind, NamespaceId, PipelineId, TenantId};
use gofer_db::events::{self, EventScope};
use sqlx::PgPool;

pub use local::LocalStore;
pub use s3::{S3Store, STREAMED_PUT_STALL};
pub use settings::{ObjectSettings, ObjectStoreSettings, OpenStoreError, S3Settings};

/// Everything that can go wrong with objects, as callers need to tell it apart.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// No such pipeline in the tenant.
    #[error("pipeline {0} does not exist")]
    PipelineNotFound(PipelineId),
    /// No such run of the pipeline.
    #[error("run {0} does not exist")]
    RunNotFound(gofer_core::RunId),
    /// No such object.
    #[error("object {0} does not exist")]
    ObjectNotFound(ObjectKey),
    /// The run object's content was removed by expiry.
    #[error("object {0} expired with its run; only its metadata remains")]
    Expired(ObjectKey),
    /// The body is larger than allowed.
    #[error("the object is larger than the {0} bytes allowed")]
    TooLarge(u64),
    /// The store failed.
    #[error(transparent)]
    Store(ObjectStoreError),
    /// A stored row could not be read back.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Recording an event failed.
    #[error(transparent)]
    Events(sqlx::Error),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl gofer_core::Classify for ObjectsError {
    fn kind(&self) -> gofer_core::ErrorKind {
        use gofer_core::ErrorKind as K;
        match self {
            ObjectsError::PipelineNotFound(_) | ObjectsError::RunNotFound(_) | ObjectsError::ObjectNotFound(_) => {
                K::NotFound
            }
            ObjectsError::Expired(_) => K::Gone,
            ObjectsError::TooLarge(limit) | ObjectsError::Store(ObjectStoreError::TooLarge(limit)) => {
                K::TooLarge(*limit)
            }
            ObjectsError::Store(ObjectStoreError::StorageFull) => K::StorageFull,
            // The client went away or sent less than it declared.
            ObjectsError::Store(ObjectStoreError::Body(_)) => K::Invalid,
            ObjectsError::Store(ObjectStoreError::Backend(_)) => K::Unavailable("object store"),
            ObjectsError::Database(e) | ObjectsError::Events(e) => gofer_db::kind_of(e),
            ObjectsError::Corrupt(_) => K::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ObjectsError::PipelineNotFound(_) => "pipeline_not_found",
            ObjectsError::RunNotFound(_) => "run_not_found",
            ObjectsError::ObjectNotFound(_) => "object_not_found",
            ObjectsError::Expired(_) => "object_expired",
            ObjectsError::Store(ObjectStoreError::Body(_)) => "body_incomplete",
            _ => "internal",
        }
    }
}

impl From<ObjectStoreError> for ObjectsError {
    fn from(e: ObjectStoreError) -> Self {
        match e {
            ObjectStoreError::TooLarge(n) => ObjectsError::TooLarge(n),
            other => ObjectsError::Store(other),
        }
    }
}

/// A collection of objects: a pipeline's, or one run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    /// Owner, always from the authenticated token.
    pub tenant: TenantId,
    /// Namespace.
    pub namespace: NamespaceId,
    /// Pipeline.
    pub pipeline: PipelineId,
    /// Pipeline objects or one run's.
    pub scope: ObjectScope,
}

impl Collection {
    fn store_key(&self, key: &ObjectKey) -> String {
        object_store_key(&self.tenant, &self.namespace, &self.pipeline, self.scope, key)
    }
}

/// Objects: the store and the metadata together.
#[derive(Clone)]
pub struct Objects {
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    limits: ObjectSettings,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects({})", self.store.name())
    }
}

impl Objects {
    /// Objects kept in `store`, described in `pool`.
    pub fn new(pool: PgPool, store: Arc<dyn ObjectStore>, limits: ObjectSettings) -> Self {
        Self { pool, store, limits }
    }

    /// The store (the engine keeps finished logs in it too).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The limits in force.
    pub fn limits(&self) -> &ObjectSettings {
        &self.limits
    }

    async fn require(&self, at: &Collection) -> Result<(), ObjectsError> {
        let mut tx = gofer_db::scoped(&self.pool, &at.tenant).await?;
        let (pipeline, run) = db::collection_exists(&mut tx, at).await?;
        tx.commit().await?;
        match at.scope {
            _ if !pipeline => Err(ObjectsError::PipelineNotFound(at.pipeline.clone())),
            ObjectScope::Run(id) if !run => Err(ObjectsError::RunNotFound(id)),
            _ => Ok(()),
        }
    }

    /// Streams `body` into the object `key` of `at` (replacing an older one), then records it.
    /// Pipeline objects past the tenant's plan limits (`max_pipeline_objects` and
    /// `max_pipeline_object_bytes` per pipeline, `object_storage_bytes` over the tenant) evict the
    /// oldest, each with an `object_evicted` event naming the limit.
    /// `length` is the body's length when declared (a request's `Content-Length`), which the body
    /// must then match.
    #[tracing::instrument(skip_all, fields(tenant = %at.tenant, key = %key))]
    pub async fn put(
        &self,
        at: &Collection,
        key: &ObjectKey,
        body: ByteStream,
        length: Option<u64>,
    ) -> Result<ObjectInfo, ObjectsError> {
        self.require(at).await?;
        let mut max = self.limits.max_object_bytes;
        let plan = if at.scope == ObjectScope::Pipeline {
            let mut tx = gofer_db::scoped(&self.pool, &at.tenant).await?;
            let limits = db::plan_object_limits(&mut tx, &at.tenant).await?;
            tx.commit().await?;
            limits
        } else {
            None
        };
        if let Some(plan) = plan {
            let bytes = plan.object_storage_bytes.min(plan.max_pipeline_object_bytes);
            max = max.min(u64::try_from(bytes).unwrap_or(0));
        }
        let store_key = at.store_key(key);
        let stored = self.store.put(&store_key, body, length, max).await?;
        let mut tx = gofer_db::scoped(&self.pool, &at.tenant).await?;
        let row = match db::upsert(&mut tx, at, key, stored.size, &stored.sha256).await {
            Ok(row) => row,
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                // The pipeline was deleted while the body streamed in.
                drop(tx);
                self.store.delete(&store_key).await?;
                return Err(ObjectsError::PipelineNotFound(at.pipeline.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut evicted = Vec::new();
        if let Some(plan) = plan {
            let max_count = i64::from(plan.max_pipeline_objects.max(1));
            for (reason, rows) in [
                ("max_pipeline_objects", db::evict_over_count(&mut tx, at, key, max_count).await?),
                (
                    "max_pipeline_object_bytes",
                    db::evict_over_bytes(&mut tx, at, key, plan.max_pipeline_object_bytes, false).await?,
                ),
                (
                    "object_storage_bytes",
                    db::evict_over_bytes(&mut tx, at, key, plan.object_storage_bytes, true).await?,
                ),
            ] {
                for row in rows {
                    let (namespace, pipeline) = db::ids(&row.namespace_id, &row.pipeline_id)?;
                    let owner = PipelineKey { tenant: at.tenant.clone(), namespace, pipeline };
                    let payload = serde_json::json!({"key": row.key, "size": row.size, "reason": reason});
                    events::record(
                        &mut tx,
                        &at.tenant,
                        EventKind::ObjectEvicted,
                        EventScope::pipeline(&owner),
                        payload,
                    )
                    .await
                    .map_err(ObjectsError::Events)?;
                    evicted.push((owner, row.key));
                }
            }
        }
        tx.commit().await?;
        for (owner, key) in evicted {
            let collection = Collection {
                tenant: owner.tenant,
                namespace: owner.namespace,
                pipeline: owner.pipeline,
                scope: ObjectScope::Pipeline,
            };
            let key = ObjectKey::parse(key).map_err(|e| ObjectsError::Corrupt(e.to_string()))?;
            if let Err(e) = self.store.delete(&collection.store_key(&key)).await {
                tracing::warn!(error = %e, key = %key, "removing an evicted object from the store failed");
            }
        }
        row.into_info()
    }

    /// An object's metadata.
    pub async fn info(&self, at: &Collection, key: &ObjectKey) -> Result<ObjectInfo, ObjectsError> {
        let mut tx = gofer_db::scoped(&self.pool, &at.tenant).await?;
        let row = db::get(&mut tx, at, key).await?;
        tx.commit().await?;
        match row {
            Some(row) => row.into_info(),
            None => {
                self.require(at).await?;
                Err(ObjectsError::ObjectNotFound(key.clone()))
            }
        }
    }

    /// Opens an object for reading.
    pub async fn get(&self, at: &Collection, key: &ObjectKey) -> Result<(ObjectInfo, Fetched), ObjectsError> {
        let info = self.info(at, key).await?;
        if info.expired {
            return Err(ObjectsError::Expired(key.clone()));
        }
        match self.store.get(&at.store_key(key)).await? {
            Some(fetched) => Ok((info, fetched)),
            None => Err(ObjectsError::ObjectNotFound(key.clone())),
        }
    }

    /// Reads a whole small object (at most `max_bytes`), for env references.
    pub async fn read_small(&self, at: &Collection, key: &ObjectKey, max_bytes: u64) -> Result<Vec<u8>, ObjectsError> {
        use futures_util::StreamExt;
        let (info, mut fetched) = self.get(at, key).await?;
        if info.size > max_bytes {
            return Err(ObjectsError::TooLarge(max_bytes));
        }
        let mut out = Vec::with_capacity(usize::try_from(info.size).unwrap_or(0));
        while let Some(chunk) = fetched.body.next().await {
            let chunk = chunk.map_err(|e| ObjectsError::Store(ObjectStoreError::Backend(e.to_string())))?;
            if (out.len() + chunk.len()) as u64 > max_bytes {
                return Err(ObjectsError::TooLarge(max_bytes));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Deletes an object.
    pub async fn delete(&self, at: &Collection, key: &ObjectKey) -> Result<(), ObjectsError> {
        let mut tx = gofer_db::scoped(&self.pool, &at.tenant).await?;
        let existed = db::delete(&mut tx, at, key).await?;
        tx.commit().await?;
        if !existed {
            self.require(at).await?;
            return Err(ObjectsError::ObjectNotFound(key.clone()));
        }
        self.store.delete(&at.store_key(key)).await?;
        Ok(())
    }

    /// A page of a collection, in key order.
    pub async fn list(
        &self,
        at: &Collection,
        page: &gofer_core::model::PageRequest<ObjectKey>,
    ) -> Result<(Vec<ObjectInfo>, Option<ObjectKey>), ObjectsError> {
        self.require(at).await?;
        let mut tx = gofer_db::scoped(&self.pool, &at.tenant).await?;
        let rows = db::list(&mut tx, at, page.after.as_ref(), page.limit + 1).await?;
        tx.commit().await?;
        let mut items = rows.into_iter().map(db::ObjectRow::into_info).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > page.limit as usize {
            items.truncate(page.limit as usize);
            items.last().map(|i| i.key.clone())
        } else {
            None
        };
        Ok((items, next))
    }

    /// Removes a pipeline's content from the store (its rows go with the pipeline's).
    pub async fn remove_pipeline(&self, key: &PipelineKey) -> Result<u64, ObjectsError> {
        let prefix = gofer_core::objects::pipeline_prefix(&key.tenant, &key.namespace, &key.pipeline);
        Ok(self.store.delete_prefix(&prefix).await?)
    }

    /// Removes a namespace's content from the store.
    pub async fn remove_namespace(&self, tenant: &TenantId, namespace: &NamespaceId) -> Result<u64, ObjectsError> {
        Ok(self.store.delete_prefix(&gofer_core::objects::namespace_prefix(tenant, namespace)).await?)
    }

    /// Removes a tenant's content from the store.
    pub async fn remove_tenant(&self, tenant: &TenantId) -> Result<u64, ObjectsError> {
        Ok(self.store.delete_prefix(&gofer_core::objects::tenant_prefix(tenant)).await?)
    }

    /// Expires run objects of complete runs older than each pipeline's last
    /// `keep_run_objects_for_runs` runs: content removed, rows marked, one event per run. Answers
    /// how many objects expired. Cross-tenant work of the periodic job, on the owner role.
    pub async fn expire_run_objects(&self) -> Result<u64, ObjectsError> {
        let keep = i64::from(self.limits.keep_run_objects_for_runs);
        let mut total = 0;
        loop {
            let due = db::due_run_objects(&self.pool, keep, 500).await?;
            if due.is_empty() {
                return Ok(total);
            }
            let mut runs: std::collections::BTreeMap<(String, String, String, i64), u64> = Default::default();
            for object in &due {
                let tenant = TenantId::parse(&object.tenant_id).map_err(|e| ObjectsError::Corrupt(e.to_string()))?;
                let (namespace, pipeline) = db::ids(&object.namespace_id, &object.pipeline_id)?;
                let run = gofer_core::RunId::from_i64(object.run_id);
                let key = ObjectKey::parse(object.key.as_str()).map_err(|e| ObjectsError::Corrupt(e.to_string()))?;
                let at = Collection { tenant, namespace, pipeline, scope: ObjectScope::Run(run) };
                self.store.delete(&at.store_key(&key)).await?;
                db::mark_expired(&self.pool, object).await?;
                *runs
                    .entry((
                        object.tenant_id.clone(),
                        object.namespace_id.clone(),
                        object.pipeline_id.clone(),
                        object.run_id,
                    ))
                    .or_default() += 1;
                total += 1;
            }
            for ((tenant, namespace, pipeline, run), count) in runs {
                let tenant = TenantId::parse(tenant).map_err(|e| ObjectsError::Corrupt(e.to_string()))?;
                let (namespace, pipeline) = db::ids(&namespace, &pipeline)?;
                let run_key = gofer_core::keys::RunKey {
                    pipeline: PipelineKey { tenant: tenant.clone(), namespace, pipeline },
                    run: gofer_core::RunId::from_i64(run),
                };
                let mut conn = self.pool.acquire().await?;
                events::record(
                    &mut conn,
                    &tenant,
                    EventKind::RunObjectsExpired,
                    EventScope::run(&run_key),
                    serde_json::json!({"count": count}),
                )
                .await
                .map_err(ObjectsError::Events)?;
            }
        }
    }
}
