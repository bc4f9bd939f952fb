//! Pipeline statistics: success rate and durations over the last 7 and 30 days, read from the
//! per-day rollup that completing a run updates (`pipeline_daily_stats`), so the cost does not
//! grow with the number of runs.

use gofer_core::model::{PipelineStats, RunWindowStats};
use sqlx::PgPool;
use time::{Date, Duration};

use crate::{EngineError, db};
use gofer_core::keys::PipelineKey;

/// Upper bounds of the duration buckets, in seconds; the last bucket is open.
pub const DURATION_BUCKETS_S: [f64; 12] =
    [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0];

/// One day of one pipeline's completed runs.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DayStats {
    /// The UTC day the runs ended.
    pub day: Date,
    /// Runs that ended that day.
    pub runs: i64,
    /// Of which successful.
    pub successful: i64,
    /// Of which failed.
    pub failed: i64,
    /// Of which cancelled.
    pub cancelled: i64,
    /// Sum of their durations, in seconds.
    pub duration_sum_s: f64,
    /// The longest, in seconds.
    pub duration_max_s: f64,
    /// Runs per duration bucket (13: one per bound of [`DURATION_BUCKETS_S`], then the open one).
    pub duration_buckets: Vec<i64>,
}

/// A pipeline's statistics (404s for a missing namespace or pipeline, as every pipeline route).
pub async fn pipeline_stats(pool: &PgPool, key: &PipelineKey) -> Result<PipelineStats, EngineError> {
    let mut conn = db::scoped(pool, &key.tenant).await?;
    super::pipelines::require(&mut conn, key, false).await?;
    let today = time::OffsetDateTime::now_utc().date();
    let days = db::stats::recent_days(&mut conn, key, today - Duration::days(29)).await?;
    Ok(PipelineStats { last_7_days: summarize(&days, today, 7), last_30_days: summarize(&days, today, 30) })
}

/// Sums the days of the `window` days ending `today` (included).
pub fn summarize(days: &[DayStats], today: Date, window: i64) -> RunWindowStats {
    let first = today - Duration::days(window - 1);
    let in_window: Vec<&DayStats> = days.iter().filter(|d| d.day >= first && d.day <= today).collect();
    let total = |f: fn(&DayStats) -> i64| in_window.iter().map(|d| f(d)).sum::<i64>().max(0).unsigned_abs();
    let runs = total(|d| d.runs);
    let successful = total(|d| d.successful);
    let mut buckets = [0u64; DURATION_BUCKETS_S.len() + 1];
    for day in &in_window {
        for (sum, n) in buckets.iter_mut().zip(&day.duration_buckets) {
            *sum += n.max(&0).unsigned_abs();
        }
    }
    let max =
        in_window.iter().map(|d| d.duration_max_s).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let (runs_f, sum) = (runs as f64, in_window.iter().map(|d| d.duration_sum_s).sum::<f64>());
    RunWindowStats {
        runs,
        successful,
        failed: total(|d| d.failed),
        cancelled: total(|d| d.cancelled),
        success_rate: (runs > 0).then(|| successful as f64 / runs_f),
        duration_mean_s: (runs > 0).then(|| sum / runs_f),
        duration_p50_s: percentile(&buckets, 0.50, max),
        duration_p95_s: percentile(&buckets, 0.95, max),
        duration_max_s: if runs > 0 { max } else { None },
    }
}

/// The upper bound of the bucket holding the `q` quantile, never above the longest run.
fn percentile(buckets: &[u64], q: f64, max: Option<f64>) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = DURATION_BUCKETS_S.get(i).copied().unwrap_or(f64::INFINITY);
            return Some(max.map_or(bound, |m| bound.min(m)));
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn day(d: Date, runs: i64, ok: i64, sum: f64, max: f64, buckets: &[(usize, i64)]) -> DayStats {
        let mut b = vec![0; 13];
        for (i, n) in buckets {
            b[*i] = *n;
        }
        DayStats {
            day: d,
            runs,
            successful: ok,
            failed: runs - ok,
            cancelled: 0,
            duration_sum_s: sum,
            duration_max_s: max,
            duration_buckets: b,
        }
    }

    #[test]
    fn windows_count_only_their_days() {
        let today = date!(2026 - 11 - 25);
        let days = vec![
            day(today, 4, 3, 40.0, 25.0, &[(3, 2), (4, 2)]),
            day(date!(2026 - 11 - 19), 1, 1, 1.5, 1.5, &[(1, 1)]),
            day(date!(2026 - 11 - 18), 5, 0, 5000.0, 9000.0, &[(12, 5)]),
        ];
        let week = summarize(&days, today, 7);
        assert_eq!((week.runs, week.successful, week.failed), (5, 4, 1));
        assert_eq!(week.success_rate, Some(0.8));
        assert_eq!(week.duration_mean_s, Some(41.5 / 5.0));
        // Sorted buckets: 1 run ≤ 2 s, 2 runs ≤ 10 s, 2 runs ≤ 30 s (longest 25 s).
        assert_eq!(week.duration_p50_s, Some(10.0));
        assert_eq!(week.duration_p95_s, Some(25.0));
        assert_eq!(week.duration_max_s, Some(25.0));
        let month = summarize(&days, today, 30);
        assert_eq!(month.runs, 10);
        assert_eq!(month.duration_p95_s, Some(9000.0), "the open bucket reports the longest run");
    }

    #[test]
    fn an_empty_window_has_no_rates_or_durations() {
        let stats = summarize(&[], date!(2026 - 11 - 25), 7);
        assert_eq!(stats.runs, 0);
        assert_eq!(stats.success_rate, None);
        assert_eq!(stats.duration_p50_s, None);
        assert_eq!(stats.duration_max_s, None);
    }
}
