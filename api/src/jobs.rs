//! Internal periodic jobs: one small trait, run on every replica (each job is safe to run
//! concurrently: it works in single idempotent statements).

use std::sync::Arc;
use std::time::Duration;

use gofer_core::EventKind;
use gofer_engine::events::{self, EventScope};
use sqlx::PgPool;

use crate::limits::AuthFailures;

/// A job that runs every `interval`.
pub trait PeriodicJob: Send + Sync + 'static {
    /// Named in logs.
    fn name(&self) -> &'static str;
    /// How often it runs.
    fn interval(&self) -> Duration;
    /// One run.
    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>>;
}

/// Starts every job on the current runtime; each logs its failures and runs again next time.
pub fn spawn_all(jobs: Vec<Arc<dyn PeriodicJob>>) -> Vec<tokio::task::JoinHandle<()>> {
    jobs.into_iter()
        .map(|job| {
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(job.interval());
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    if let Err(e) = job.run().await {
                        tracing::error!(job = job.name(), error = %e, "periodic job failed");
                    }
                }
            })
        })
        .collect()
}

/// Deletes tokens expired or revoked longer than `grace` ago, recording an event per tenant.
pub struct PurgeExpiredTokens {
    /// The database.
    pub pool: PgPool,
    /// How often.
    pub every: Duration,
    /// How long expired tokens stay listed before they are deleted.
    pub grace: Duration,
}

impl PeriodicJob for PurgeExpiredTokens {
    fn name(&self) -> &'static str {
        "purge_expired_tokens"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            let grace = time::Duration::try_from(self.grace)?;
            let purged = gofer_tenants::tokens::purge_expired(&self.pool, grace).await?;
            for (tenant, count) in purged {
                tracing::info!(tenant = tenant.as_deref().unwrap_or("(operator)"), count, "purged expired tokens");
                if let Some(tenant) = tenant {
                    let tenant = tenant.parse()?;
                    let mut conn = self.pool.acquire().await?;
                    let payload = serde_json::json!({"count": count});
                    events::record(&mut conn, &tenant, EventKind::TokensPurged, EventScope::default(), payload).await?;
                }
            }
            Ok(())
        })
    }
}

/// Keeps the limiters' memory bounded (failed authentications, request rates).
pub struct SweepAuthFailures(pub Arc<AuthFailures>, pub Arc<crate::limits::RequestLimits>);

impl PeriodicJob for SweepAuthFailures {
    fn name(&self) -> &'static str {
        "sweep_limiters"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            self.0.sweep();
            self.1.sweep();
            Ok(())
        })
    }
}

/// The object store's upkeep: moves finished task logs to it, removes logs past retention, and
/// expires run objects of runs older than each pipeline's last `keep_run_objects_for_runs`.
pub struct StoreMaintenance {
    /// The objects.
    pub objects: gofer_objects::Objects,
    /// The database.
    pub pool: PgPool,
    /// Task logs.
    pub logs: gofer_engine::LogStore,
    /// How often.
    pub every: Duration,
    /// How long after an attempt ends its log moves to the store.
    pub archive_after: Duration,
    /// How long logs are kept; `None`: forever.
    pub retention: Option<Duration>,
}

impl PeriodicJob for StoreMaintenance {
    fn name(&self) -> &'static str {
        "store_maintenance"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            if let Some(retention) = self.retention {
                let removed = gofer_engine::logs::expire_finished(&self.pool, &self.logs, retention).await?;
                if removed > 0 {
                    tracing::info!(count = removed, "removed task logs past retention");
                }
            }
            let moved = gofer_engine::logs::archive_finished(&self.pool, &self.logs, self.archive_after).await?;
            if moved > 0 {
                tracing::debug!(count = moved, "moved finished task logs to the object store");
            }
            let expired = self.objects.expire_run_objects().await?;
            if expired > 0 {
                tracing::info!(count = expired, "expired run objects");
            }
            Ok(())
        })
    }
}
