//! SQL of log archiving and retention: which finished attempts' logs move to the object store or
//! expire, and what a reader needs to know about an attempt's log.

use gofer_db::{BindKey, TenantTx};
use sqlx::{FromRow, PgPool};

use crate::EngineError;
use gofer_core::keys::TaskKey;

/// Where an attempt's log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub(crate) struct AttemptLog {
    pub(crate) archived: bool,
    pub(crate) expired: bool,
    pub(crate) raw_bytes: Option<i64>,
    pub(crate) head_bytes: Option<i64>,
    pub(crate) tail_start: Option<i64>,
}

pub(crate) async fn attempt_log(
    tx: &mut TenantTx,
    key: &TaskKey,
    attempt: u32,
) -> Result<Option<AttemptLog>, EngineError> {
    let p = &key.run.pipeline;
    Ok(sqlx::query_as(
        "SELECT log_archived_at IS NOT NULL AS archived, log_expired_at IS NOT NULL AS expired,
                log_raw_bytes AS raw_bytes, log_head_bytes AS head_bytes, log_tail_start AS tail_start
         FROM task_attempts
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5
           AND attempt = $6",
    )
    .bind_key(p)
    .bind(key.run.run.get())
    .bind(key.task.as_str())
    .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
    .fetch_optional(&mut **tx)
    .await?)
}

/// A finished attempt whose log is due for archiving or expiry.
#[derive(Debug, FromRow)]
pub(crate) struct DueLog {
    pub(crate) tenant_id: String,
    pub(crate) namespace_id: String,
    pub(crate) pipeline_id: String,
    pub(crate) run_id: i64,
    pub(crate) task_id: String,
    pub(crate) attempt: i32,
}

/// Attempts that ended over `after_s` seconds ago whose logs are still only on local disk, across
/// tenants (the periodic job's own work, on the owner role that row-level security does not limit).
pub(crate) async fn due_for_archive(pool: &PgPool, after_s: f64, limit: i64) -> Result<Vec<DueLog>, EngineError> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt FROM task_attempts
         WHERE state = 'complete' AND log_archived_at IS NULL AND log_expired_at IS NULL
           AND ended_at < now() - make_interval(secs => $1)
         ORDER BY ended_at LIMIT $2",
    )
    .bind(after_s)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Attempts that ended over `retention_s` seconds ago whose logs still exist, across tenants.
pub(crate) async fn due_for_expiry(pool: &PgPool, retention_s: f64, limit: i64) -> Result<Vec<DueLog>, EngineError> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt FROM task_attempts
         WHERE state = 'complete' AND log_expired_at IS NULL AND ended_at < now() - make_interval(secs => $1)
         ORDER BY ended_at LIMIT $2",
    )
    .bind(retention_s)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub(crate) async fn mark_archived(
    pool: &PgPool,
    due: &DueLog,
    raw_bytes: u64,
    head_bytes: u64,
    tail_start: u64,
) -> Result<(), EngineError> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    sqlx::query(
        "UPDATE task_attempts SET log_archived_at = now(), log_raw_bytes = $7, log_head_bytes = $8, log_tail_start = $9
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5 AND attempt = $6",
    )
    .bind(&due.tenant_id)
    .bind(&due.namespace_id)
    .bind(&due.pipeline_id)
    .bind(due.run_id)
    .bind(&due.task_id)
    .bind(due.attempt)
    .bind(n(raw_bytes))
    .bind(n(head_bytes))
    .bind(n(tail_start))
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) async fn mark_expired(pool: &PgPool, due: &DueLog) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE task_attempts SET log_expired_at = now()
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND run_id = $4 AND task_id = $5 AND attempt = $6",
    )
    .bind(&due.tenant_id)
    .bind(&due.namespace_id)
    .bind(&due.pipeline_id)
    .bind(due.run_id)
    .bind(&due.task_id)
    .bind(due.attempt)
    .execute(pool)
    .await?;
    Ok(())
}
