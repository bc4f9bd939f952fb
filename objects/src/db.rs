//! Every SQL statement of the objects crate: object metadata rows, plan limits, expiry and eviction.

use gofer_core::objects::{ObjectInfo, ObjectKey};
use gofer_core::{NamespaceId, PipelineId, TenantId};
use gofer_db::{BindKey, KeyColumns, TenantTx};
use sqlx::{FromRow, PgPool};
use time::OffsetDateTime;

use crate::{Collection, ObjectsError};

macro_rules! object_columns {
    () => {
        "key, size, sha256, created_at, expired_at IS NOT NULL AS expired"
    };
}

#[derive(FromRow)]
pub(crate) struct ObjectRow {
    key: String,
    size: i64,
    sha256: String,
    created_at: OffsetDateTime,
    expired: bool,
}

impl ObjectRow {
    pub(crate) fn into_info(self) -> Result<ObjectInfo, ObjectsError> {
        Ok(ObjectInfo {
            key: ObjectKey::parse(self.key).map_err(|e| ObjectsError::Corrupt(e.to_string()))?,
            size: u64::try_from(self.size).unwrap_or(0),
            sha256: self.sha256,
            created: self.created_at,
            expired: self.expired,
        })
    }
}

/// A collection's columns: its pipeline's, then `run_id` (0 for pipeline objects).
impl KeyColumns for Collection {
    fn bind_columns<'q, Q: BindKey<'q>>(&'q self, query: Q) -> Q {
        let run_id = match self.scope {
            gofer_core::objects::ObjectScope::Pipeline => 0,
            gofer_core::objects::ObjectScope::Run(run) => run.get(),
        };
        query
            .bind_value(self.tenant.as_str())
            .bind_value(self.namespace.as_str())
            .bind_value(self.pipeline.as_str())
            .bind_value(run_id)
    }
}

/// Whether the collection's pipeline (and run) exists in the tenant.
pub(crate) async fn collection_exists(tx: &mut TenantTx, at: &Collection) -> Result<(bool, bool), sqlx::Error> {
    let (pipeline, run): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pipelines WHERE tenant_id = $1 AND namespace_id = $2 AND id = $3),
                $4 = 0 OR EXISTS (SELECT 1 FROM runs
                                  WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND id = $4)",
    )
    .bind_key(at)
    .fetch_one(&mut **tx)
    .await?;
    Ok((pipeline, run))
}

/// The pipeline-object limits of the tenant's plan.
#[derive(FromRow, Debug, Clone, Copy)]
pub(crate) struct PlanObjectLimits {
    /// All the tenant's pipeline objects together, in bytes.
    pub(crate) object_storage_bytes: i64,
    /// Pipeline objects per pipeline.
    pub(crate) max_pipeline_objects: i32,
    /// One pipeline's pipeline objects together, in bytes.
    pub(crate) max_pipeline_object_bytes: i64,
}

/// The tenant's plan's pipeline-object limits.
pub(crate) async fn plan_object_limits(
    tx: &mut TenantTx,
    tenant: &TenantId,
) -> Result<Option<PlanObjectLimits>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.object_storage_bytes, p.max_pipeline_objects, p.max_pipeline_object_bytes
         FROM tenants t JOIN plans p ON p.id = t.plan_id WHERE t.id = $1",
    )
    .bind(tenant.as_str())
    .fetch_optional(&mut **tx)
    .await
}

/// Records a written object (replacing the row of an earlier write of the same key).
pub(crate) async fn upsert(
    tx: &mut TenantTx,
    at: &Collection,
    key: &ObjectKey,
    size: u64,
    sha256: &str,
) -> Result<ObjectRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO objects (tenant_id, namespace_id, pipeline_id, run_id, key, size, sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, namespace_id, pipeline_id, run_id, key)
         DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256, created_at = now(), expired_at = NULL
         RETURNING ",
        object_columns!()
    ))
    .bind_key(at)
    .bind(key.as_str())
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .bind(sha256)
    .fetch_one(&mut **tx)
    .await
}

/// One object's metadata.
pub(crate) async fn get(tx: &mut TenantTx, at: &Collection, key: &ObjectKey) -> Result<Option<ObjectRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        object_columns!(),
        " FROM objects WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND key = $5"
    ))
    .bind_key(at)
    .bind(key.as_str())
    .fetch_optional(&mut **tx)
    .await
}

/// Deletes one object's row; whether there was one.
pub(crate) async fn delete(tx: &mut TenantTx, at: &Collection, key: &ObjectKey) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM objects WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND key = $5",
    )
    .bind_key(at)
    .bind(key.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A page of a collection, in key order, after `after`.
pub(crate) async fn list(
    tx: &mut TenantTx,
    at: &Collection,
    after: Option<&ObjectKey>,
    limit: u32,
) -> Result<Vec<ObjectRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        object_columns!(),
        " FROM objects WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4
            AND ($5::text IS NULL OR key > $5) ORDER BY key LIMIT $6"
    ))
    .bind_key(at)
    .bind(after.map(ObjectKey::as_str))
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await
}

/// A pipeline object chosen for eviction.
#[derive(FromRow)]
pub(crate) struct Evicted {
    pub(crate) namespace_id: String,
    pub(crate) pipeline_id: String,
    pub(crate) key: String,
    pub(crate) size: i64,
}

/// Deletes the pipeline's oldest pipeline objects past `max_count`, never `keep`.
pub(crate) async fn evict_over_count(
    tx: &mut TenantTx,
    at: &Collection,
    keep: &ObjectKey,
    max_count: i64,
) -> Result<Vec<Evicted>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM objects o USING (
             SELECT key FROM objects
             WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = 0 AND key <> $4
             ORDER BY created_at DESC, key DESC OFFSET GREATEST($5 - 1, 0)
         ) old
         WHERE o.tenant_id = $1 AND o.namespace_id = $2 AND o.pipeline_id = $3 AND o.run_id = 0 AND o.key = old.key
         RETURNING o.namespace_id, o.pipeline_id, o.key, o.size",
    )
    .bind(at.tenant.as_str())
    .bind(at.namespace.as_str())
    .bind(at.pipeline.as_str())
    .bind(keep.as_str())
    .bind(max_count)
    .fetch_all(&mut **tx)
    .await
}

/// Deletes the oldest pipeline objects until their total size is at most `max_bytes`, never the
/// object just written (`keep`): over the whole tenant with `whole_tenant`, else over `at`'s pipeline.
pub(crate) async fn evict_over_bytes(
    tx: &mut TenantTx,
    at: &Collection,
    keep: &ObjectKey,
    max_bytes: i64,
    whole_tenant: bool,
) -> Result<Vec<Evicted>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM objects o USING (
             SELECT namespace_id, pipeline_id, key FROM (
                 SELECT namespace_id, pipeline_id, key,
                        SUM(size) OVER (ORDER BY keep DESC, created_at DESC, namespace_id, pipeline_id, key) AS newer_total
                 FROM (SELECT *, (namespace_id = $2 AND pipeline_id = $3 AND key = $4) AS keep
                       FROM objects WHERE tenant_id = $1 AND run_id = 0
                         AND ($6 OR (namespace_id = $2 AND pipeline_id = $3))) all_objects
             ) ranked WHERE newer_total > $5 AND NOT (namespace_id = $2 AND pipeline_id = $3 AND key = $4)
         ) old
         WHERE o.tenant_id = $1 AND o.run_id = 0 AND o.namespace_id = old.namespace_id
           AND o.pipeline_id = old.pipeline_id AND o.key = old.key
         RETURNING o.namespace_id, o.pipeline_id, o.key, o.size",
    )
    .bind(at.tenant.as_str())
    .bind(at.namespace.as_str())
    .bind(at.pipeline.as_str())
    .bind(keep.as_str())
    .bind(max_bytes)
    .bind(whole_tenant)
    .fetch_all(&mut **tx)
    .await
}

/// A run object due to expire.
#[derive(FromRow)]
pub(crate) struct Expiring {
    pub(crate) tenant_id: String,
    pub(crate) namespace_id: String,
    pub(crate) pipeline_id: String,
    pub(crate) run_id: i64,
    pub(crate) key: String,
}

/// Unexpired objects of complete runs that are not among their pipeline's last `keep_runs` runs,
/// across tenants (the expiry job's own work: the owner role, which RLS does not restrict).
pub(crate) async fn due_run_objects(pool: &PgPool, keep_runs: i64, limit: i64) -> Result<Vec<Expiring>, sqlx::Error> {
    sqlx::query_as(
        "SELECT o.tenant_id, o.namespace_id, o.pipeline_id, o.run_id, o.key
         FROM objects o
         JOIN pipelines p ON p.tenant_id = o.tenant_id AND p.namespace_id = o.namespace_id AND p.id = o.pipeline_id
         JOIN runs r ON r.tenant_id = o.tenant_id AND r.namespace_id = o.namespace_id
                    AND r.pipeline_id = o.pipeline_id AND r.id = o.run_id
         WHERE o.run_id > 0 AND o.expired_at IS NULL AND r.state = 'complete'
           AND o.run_id <= p.next_run_id - 1 - $1
         ORDER BY o.tenant_id, o.namespace_id, o.pipeline_id, o.run_id
         LIMIT $2",
    )
    .bind(keep_runs)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Marks a run object expired (its content is gone from the store).
pub(crate) async fn mark_expired(pool: &PgPool, o: &Expiring) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE objects SET expired_at = now()
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND key = $5",
    )
    .bind(&o.tenant_id)
    .bind(&o.namespace_id)
    .bind(&o.pipeline_id)
    .bind(o.run_id)
    .bind(&o.key)
    .execute(pool)
    .await?;
    Ok(())
}

/// Parses the ids of a stored row.
pub(crate) fn ids(namespace: &str, pipeline: &str) -> Result<(NamespaceId, PipelineId), ObjectsError> {
    let corrupt = |e: gofer_core::IdError| ObjectsError::Corrupt(e.to_string());
    Ok((NamespaceId::parse(namespace).map_err(corrupt)?, PipelineId::parse(pipeline).map_err(corrupt)?))
}
