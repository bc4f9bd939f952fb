//! The replica's background work: the periodic jobs, and the followers that apply other
//! replicas' changes (NOTIFY) to this replica's caches.

use std::sync::Arc;
use std::time::Duration;

use gofer_db::channels;

use crate::state::AppState;

/// Starts every periodic job and follower of this replica, sharing the state's handles.
pub(super) fn spawn(state: &AppState, notifications: &gofer_notify::Notifications) -> Vec<tokio::task::JoinHandle<()>> {
    let AppState {
        pool,
        runs,
        pipelines,
        logs,
        secrets,
        objects,
        token_cache,
        complete_runs,
        auth_failures,
        request_limits,
        ip_blocks,
        replica,
        config,
        ..
    } = state;
    let mut periodic: Vec<Arc<dyn crate::jobs::PeriodicJob>> = vec![
        Arc::new(crate::jobs::PurgeExpiredTokens {
            pool: pool.clone(),
            every: Duration::from_secs(config.tokens.purge_interval_s),
            grace: Duration::from_secs(config.tokens.purge_grace_s),
        }),
        Arc::new(crate::jobs::MetricsUpkeep),
        Arc::new(crate::jobs::RegisterReplica { pool: pool.clone(), replica: replica.clone() }),
        Arc::new(crate::jobs::SweepAuthFailures(auth_failures.clone(), request_limits.clone(), token_cache.clone())),
        Arc::new(crate::jobs::RefreshIpBlocks {
            pool: pool.clone(),
            blocks: ip_blocks.clone(),
            every: Duration::from_millis(config.ip_blocks.refresh_interval_ms.max(100)),
        }),
        Arc::new(crate::jobs::EndTrials {
            pool: pool.clone(),
            runs: runs.clone(),
            pipelines: pipelines.clone(),
            logs: logs.clone(),
            secrets: secrets.clone(),
            objects: objects.clone(),
            token_cache: token_cache.clone(),
            complete_runs: complete_runs.clone(),
            every: Duration::from_secs(config.trial.job_interval_s.max(1)),
            grace: Duration::from_secs(config.trial.removal_grace_s),
        }),
        Arc::new(crate::jobs::StoreMaintenance {
            objects: objects.clone(),
            pool: pool.clone(),
            logs: logs.clone(),
            every: Duration::from_secs(config.objects.expiry_interval_s.max(1)),
            archive_after: Duration::from_secs(config.logs.archive_after_s),
            retention: (config.logs.retention_s > 0).then(|| Duration::from_secs(config.logs.retention_s)),
        }),
    ];
    if crate::telemetry::meter_provider().is_some() {
        let every = crate::telemetry::metric_export_interval();
        periodic.push(Arc::new(crate::jobs::SampleQueue { pool: pool.clone(), every }));
    }
    let mut jobs = crate::jobs::spawn_all(periodic);
    let ip_notices = notifications.subscribe(&[channels::IP_BLOCKS]);
    jobs.push(tokio::spawn(crate::jobs::follow_ip_blocks(pool.clone(), ip_blocks.clone(), ip_notices)));
    let auth_notices = notifications.subscribe(&[channels::AUTH]);
    jobs.push(tokio::spawn(gofer_tenants::cache::follow(auth_notices, token_cache.clone())));
    let deleted = notifications.subscribe(&[channels::RUNS_DELETED]);
    let changed = notifications.subscribe(&[channels::RUNS_DELETED, channels::RUNS_ADDED]);
    jobs.push(tokio::spawn(crate::run_cache::follow(deleted, changed, complete_runs.clone())));
    jobs
}
