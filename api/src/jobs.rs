//! Internal periodic jobs: one small trait, run on every replica (each job is safe to run
//! concurrently: it works in single idempotent statements).

use std::sync::Arc;
use std::time::Duration;

use gofer_core::EventKind;
use gofer_engine::events::{self, EventScope};
use sqlx::PgPool;

use crate::error::ApiError;
use crate::limits::AuthFailures;
use crate::usecases::{self, Handles};

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

/// Keeps the limiters' memory bounded (failed authentications, request rates), and the token
/// cache's (expired entries).
pub struct SweepAuthFailures(
    pub Arc<AuthFailures>,
    pub Arc<crate::limits::RequestLimits>,
    pub Arc<gofer_tenants::cache::TokenCache>,
);

impl PeriodicJob for SweepAuthFailures {
    fn name(&self) -> &'static str {
        "sweep_limiters"
    }

    /// Often, because the limiters' memory grows with the distinct clients seen between sweeps
    /// (a flood of made-up tokens from fresh addresses costs about 280 MiB per million, see
    /// docs/benchmarks.md); a sweep of a million entries takes well under a second.
    fn interval(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            self.0.sweep();
            self.1.sweep();
            self.2.sweep();
            Ok(())
        })
    }
}

/// Folds the request-latency samples recorded since the last run into the histograms. The
/// Prometheus recorder keeps every raw sample until this runs (or `/metrics` is scraped), so
/// without it a replica nobody scrapes grows by 8 bytes per request.
pub struct MetricsUpkeep;

impl PeriodicJob for MetricsUpkeep {
    fn name(&self) -> &'static str {
        "metrics_upkeep"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            crate::prometheus::handle().run_upkeep();
            Ok(())
        })
    }
}

/// Samples the queue gauges from Postgres for the OTLP metrics export, which (unlike a
/// Prometheus scrape) does not ask for them; added only when OTLP metrics are on.
pub struct SampleQueue {
    /// The database.
    pub pool: PgPool,
    /// How often: the export interval.
    pub every: Duration,
}

impl PeriodicJob for SampleQueue {
    fn name(&self) -> &'static str {
        "sample_queue"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move { Ok(crate::prometheus::sample_queue(&self.pool).await?) })
    }
}

/// Loads the active IP blocks into the in-memory cache.
pub async fn reload_ip_blocks(pool: &PgPool, blocks: &crate::blocks::IpBlocks) -> anyhow::Result<()> {
    let active = gofer_billing::ip_blocks::active(pool).await?;
    blocks.replace(active);
    Ok(())
}

/// Reloads IP blocks whenever a replica changes them ([`gofer_db::channels::IP_BLOCKS`] on
/// the replica's shared listener) and whenever that listener is back (some changes may have been
/// missed); the periodic job covers the rest.
pub async fn follow_ip_blocks(
    pool: PgPool,
    blocks: Arc<crate::blocks::IpBlocks>,
    mut notices: gofer_notify::Subscription,
) {
    loop {
        if notices.recv().await == gofer_notify::Notice::Lost {
            continue;
        }
        if let Err(e) = reload_ip_blocks(&pool, &blocks).await {
            tracing::warn!(error = %e, "reloading IP blocks failed");
        }
    }
}

/// Reloads IP blocks, deletes ended ones, and forgets idle strike counters.
pub struct RefreshIpBlocks {
    /// The database.
    pub pool: PgPool,
    /// The cache.
    pub blocks: Arc<crate::blocks::IpBlocks>,
    /// How often.
    pub every: Duration,
}

impl PeriodicJob for RefreshIpBlocks {
    fn name(&self) -> &'static str {
        "refresh_ip_blocks"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            gofer_billing::ip_blocks::purge_expired(&self.pool).await?;
            reload_ip_blocks(&self.pool, &self.blocks).await?;
            self.blocks.sweep();
            Ok(())
        })
    }
}

/// Ends trials: a trial past its end is suspended (its runs stopped; it can no longer be used),
/// and removed with all its data `grace` later, through the same use cases as the operator's
/// routes ([`crate::usecases`]). Idempotent, so every replica may run it.
pub struct EndTrials {
    /// The database.
    pub pool: PgPool,
    /// Runs (a suspended tenant's are cancelled).
    pub runs: gofer_engine::runs::Runs,
    /// Pipelines (removed with the tenant).
    pub pipelines: gofer_engine::Pipelines,
    /// Task logs (removed with the tenant).
    pub logs: gofer_engine::LogStore,
    /// Secret values (removed with the tenant).
    pub secrets: Arc<gofer_secrets::Secrets>,
    /// Objects and archived logs (removed with the tenant).
    pub objects: gofer_objects::Objects,
    /// This replica's verified tokens (a suspended tenant's are forgotten).
    pub token_cache: Arc<gofer_tenants::cache::TokenCache>,
    /// This replica's complete runs (a removed tenant's are forgotten).
    pub complete_runs: Arc<crate::run_cache::CompleteRuns>,
    /// How often.
    pub every: Duration,
    /// How long a suspended trial is kept.
    pub grace: Duration,
}

impl EndTrials {
    fn handles(&self) -> Handles<'_> {
        Handles {
            pool: &self.pool,
            runs: &self.runs,
            pipelines: &self.pipelines,
            logs: &self.logs,
            secrets: &self.secrets,
            objects: &self.objects,
            token_cache: &self.token_cache,
            complete_runs: &self.complete_runs,
        }
    }
}

impl PeriodicJob for EndTrials {
    fn name(&self) -> &'static str {
        "end_trials"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            for tenant in gofer_billing::trials::ended_unsuspended(&self.pool, 100).await? {
                let suspension = usecases::end_trial(self.handles(), &tenant).await?;
                tracing::info!(%tenant, cancelled = suspension.cancelled_runs, "trial ended; tenant suspended");
            }
            let grace = time::Duration::try_from(self.grace)?;
            for tenant in gofer_billing::trials::due_for_removal(&self.pool, grace, 100).await? {
                match usecases::remove_tenant(self.handles(), &tenant).await {
                    Ok(()) => tracing::info!(%tenant, "trial removed with all its data"),
                    // Another replica listed it too and removed it first: nothing is left to do.
                    Err(ApiError::NotFound { code: "tenant_not_found", .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            gofer_billing::trials::forget_expired_challenges(&self.pool).await?;
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

/// Registers this replica in the replica registry at start-up (the first tick is immediate) and
/// refreshes its row every minute after (attach forwarding, docs/attach.md).
pub struct RegisterReplica {
    pub pool: PgPool,
    pub replica: gofer_engine::attach::Replica,
}

impl PeriodicJob for RegisterReplica {
    fn name(&self) -> &'static str {
        "register_replica"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn run(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send + '_>> {
        Box::pin(async move {
            gofer_engine::attach::register_replica(&self.pool, self.replica.id, &self.replica.url).await?;
            Ok(())
        })
    }
}
