//! SQL of metering: the usage ledger (one row per finished attempt) and task-seconds used this
//! month, counting attempts still running.

use sqlx::PgConnection;

use crate::EngineError;
use crate::runs::{RunKey, TaskKey};

/// Milliseconds a tenant (`$1`) used this calendar month (UTC): finished attempts from the ledger
/// plus the time so far of attempts still running. A macro so queries stay `&'static str`.
macro_rules! used_ms {
    ($tenant:literal) => {
        concat!(
            "(COALESCE((SELECT sum(u.task_ms) FROM usage_records u WHERE u.tenant_id = ",
            $tenant,
            " AND u.finished_at >= date_trunc('month', now(), 'UTC')), 0)
             + COALESCE((SELECT sum(extract(epoch FROM now() - a.started_at) * 1000) FROM task_attempts a
                         WHERE a.tenant_id = ",
            $tenant,
            " AND a.state = 'running'), 0))::bigint"
        )
    };
}

/// Writes the ledger row of an attempt that just ended, in the transaction that records its end.
/// The attempt's key is the row's key: writing it again (a retried transaction, a takeover that
/// concludes the same attempt) adds nothing.
pub(crate) async fn record(
    conn: &mut PgConnection,
    key: &TaskKey,
    attempt: i32,
    cpu_millis: u32,
    memory_mb: u32,
) -> Result<(), EngineError> {
    sqlx::query(
        "INSERT INTO usage_records (tenant_id, namespace_id, pipeline_id, run_id, task_id, attempt, plan_id, task_ms,
                                    cpu_millis, memory_mb, started_at, finished_at)
         SELECT a.tenant_id, a.namespace_id, a.pipeline_id, a.run_id, a.task_id, a.attempt, n.plan_id,
                GREATEST(0, (extract(epoch FROM now() - a.started_at) * 1000)::bigint), $7, $8, a.started_at, now()
         FROM task_attempts a JOIN tenants n ON n.id = a.tenant_id
         WHERE a.tenant_id = $1 AND a.namespace_id = $2 AND a.pipeline_id = $3 AND a.run_id = $4 AND a.task_id = $5
           AND a.attempt = $6
         ON CONFLICT DO NOTHING",
    )
    .bind(key.run.pipeline.tenant.as_str())
    .bind(key.run.pipeline.namespace.as_str())
    .bind(key.run.pipeline.pipeline.as_str())
    .bind(key.run.run.get())
    .bind(key.task.as_str())
    .bind(attempt)
    .bind(i32::try_from(cpu_millis).unwrap_or(i32::MAX))
    .bind(i32::try_from(memory_mb).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

/// Milliseconds of task time the tenant used this month, running attempts included.
pub(crate) async fn used_ms(conn: &mut PgConnection, tenant: &gofer_core::TenantId) -> Result<i64, EngineError> {
    Ok(sqlx::query_scalar(concat!("SELECT ", used_ms!("$1"))).bind(tenant.as_str()).fetch_one(conn).await?)
}

/// Cross-tenant: unfinished runs (not yet being stopped) of tenants that run tasks while their
/// task-seconds for the month are used up; marks those tenants as having run out.
pub(crate) async fn exhausted_runs(conn: &mut PgConnection, limit: i64) -> Result<Vec<RunKey>, EngineError> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(concat!(
        "WITH exhausted AS (
             SELECT n.id FROM tenants n JOIN plans p ON p.id = n.plan_id
             WHERE n.id IN (SELECT DISTINCT tenant_id FROM task_attempts WHERE state = 'running')
               AND ",
        used_ms!("n.id"),
        " >= p.task_seconds_per_month * 1000
         ), marked AS (
             UPDATE tenants SET quota_exhausted_at = now() WHERE id IN (SELECT id FROM exhausted)
         )
         SELECT r.tenant_id, r.namespace_id, r.pipeline_id, r.id FROM runs r
         WHERE r.tenant_id IN (SELECT id FROM exhausted) AND r.state <> 'complete' AND r.cancel_requested_at IS NULL
         ORDER BY r.created_at LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    super::queue::run_keys(rows)
}
