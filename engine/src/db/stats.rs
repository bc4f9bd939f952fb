//! SQL of pipeline statistics: the per-day rollup written when runs complete.

use gofer_db::{BindKey, TenantTx};
use time::Date;

use crate::EngineError;
use crate::catalog::stats::DayStats;
use gofer_core::keys::PipelineKey;

/// The pipeline's days from `since` on (at most 30 rows for the 30-day window).
pub(crate) async fn recent_days(
    tx: &mut TenantTx,
    key: &PipelineKey,
    since: Date,
) -> Result<Vec<DayStats>, EngineError> {
    Ok(sqlx::query_as::<_, DayStats>(
        "SELECT day, runs, successful, failed, cancelled, duration_sum_s, duration_max_s, duration_buckets
         FROM pipeline_daily_stats
         WHERE tenant_id = $1 AND namespace_id = $2 AND pipeline_id = $3 AND day >= $4
         ORDER BY day",
    )
    .bind_key(key)
    .bind(since)
    .fetch_all(&mut **tx)
    .await?)
}
