//! SQL of metering: task-seconds used this month, counting attempts still running. The ledger
//! rows (one per finished attempt) are written with the attempt's end, by `queue::close_attempt`.

use gofer_db::TenantTx;
use sqlx::PgConnection;

use crate::EngineError;
use gofer_core::keys::RunKey;

/// Milliseconds a tenant (`$1`) used this calendar month (UTC): finished attempts from the ledger
/// plus the time so far of attempts still running. A macro so queries stay `&'static str`.
macro_rules! used_ms_sql {
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
pub(crate) use used_ms_sql;

/// Milliseconds of task time the tenant used this month, running attempts included.
pub(crate) async fn used_ms(tx: &mut TenantTx, tenant: &gofer_core::TenantId) -> Result<i64, EngineError> {
    Ok(sqlx::query_scalar(concat!("SELECT ", used_ms_sql!("$1"))).bind(tenant.as_str()).fetch_one(&mut **tx).await?)
}

/// Cross-tenant: unfinished runs (not yet being stopped) of tenants that run tasks while their
/// task-seconds for the month are used up; marks those tenants as having run out.
pub(crate) async fn exhausted_runs(conn: &mut PgConnection, limit: i64) -> Result<Vec<RunKey>, EngineError> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(concat!(
        "WITH exhausted AS (
             SELECT n.id FROM tenants n JOIN plans p ON p.id = n.plan_id
             WHERE n.id IN (SELECT DISTINCT tenant_id FROM task_attempts WHERE state = 'running')
               AND ",
        used_ms_sql!("n.id"),
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
