//! One replica's engine tuning ([`EngineConfig`]) and the context its loop and monitors share
//! ([`EngineCtx`]).

use std::sync::Arc;
use std::time::Duration;

use gofer_core::scheduler::Scheduler;
use gofer_notify::Notifications;
use sqlx::PgPool;
use tokio::sync::Notify;

use super::cancel::Signals;
use crate::logs::LogStore;
use crate::{EngineError, db};

/// Tuning of one replica's engine. Defaults are the documented production values.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This replica's identity, written as the lease owner of what it dispatches.
    pub replica_id: uuid::Uuid,
    /// Task executions this replica watches at once.
    pub max_parallel_tasks: usize,
    /// How often to look for queued work when no NOTIFY arrives (NOTIFY can be missed while reconnecting).
    pub poll_interval: Duration,
    /// How often to read a running task's state and logs.
    pub monitor_interval: Duration,
    /// How long a claim holds without a heartbeat; a dead replica's tasks are taken over after it.
    pub lease: Duration,
    /// How long past its timeout a task may run before the engine stops it itself.
    pub timeout_grace: Duration,
    /// How long a stopped task gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Timeout of a task that sets none.
    pub default_task_timeout: Duration,
    /// The longest a task may run, whatever it asks.
    pub max_task_timeout: Duration,
    /// Timeout of a run whose pipeline sets none.
    pub default_run_timeout: Duration,
    /// CPU of a task that sets none, in millicores.
    pub default_cpu_millis: u32,
    /// Memory of a task that sets none, in MiB.
    pub default_memory_mb: u32,
    /// Infrastructure failures (scheduler errors, lost tasks) retried per task execution.
    pub infra_retries: u32,
    /// First retry backoff, doubled per failure (capped at a minute).
    pub retry_backoff: Duration,
    /// How long a dispatch keeps retrying a start while the scheduler is unavailable (holding the
    /// lease) before the attempt counts as an infrastructure failure.
    pub scheduler_outage_tolerance: Duration,
    /// Running task executions per tenant; 0 means no limit (plans set it per tenant later).
    pub tenant_max_running_tasks: u32,
    /// How often to look for tenants whose task-seconds ran out while their tasks run.
    pub quota_check_interval: Duration,
    /// The API's URL as tasks reach it, given to them as `GOFER_API_URL`.
    pub api_url: String,
    /// Largest object an env value may reference (`pipeline_object{{ key }}`, `run_object{{ key }}`).
    pub max_env_object_bytes: u64,
    /// The image `kind: gofer` tasks run in (the gofer CLI, `infra/images/gofer-cli`).
    pub gofer_cli_image: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            replica_id: uuid::Uuid::new_v4(),
            max_parallel_tasks: 16,
            poll_interval: Duration::from_secs(2),
            monitor_interval: Duration::from_millis(200),
            lease: Duration::from_secs(60),
            timeout_grace: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            default_task_timeout: Duration::from_secs(3600),
            max_task_timeout: Duration::from_secs(24 * 3600),
            default_run_timeout: Duration::from_secs(24 * 3600),
            default_cpu_millis: 1000,
            default_memory_mb: 2048,
            infra_retries: 3,
            retry_backoff: Duration::from_secs(1),
            scheduler_outage_tolerance: Duration::from_secs(300),
            tenant_max_running_tasks: 0,
            quota_check_interval: Duration::from_secs(5),
            api_url: "http://127.0.0.1:8080".into(),
            max_env_object_bytes: 64 * 1024,
            gofer_cli_image: gofer_core::config::GOFER_CLI_IMAGE.into(),
        }
    }
}

/// What every part of one replica's engine shares: its connections (Postgres, the scheduler, the
/// log store), its tuning, the cancel signals of the runs it watches, and the caches and loops
/// its monitors go through.
pub(crate) struct EngineCtx {
    pub pool: PgPool,
    pub scheduler: Arc<dyn Scheduler>,
    pub logs: LogStore,
    pub config: EngineConfig,
    pub signals: Arc<Signals>,
    /// Mints run tokens for tasks that ask for one.
    pub run_tokens: Option<Arc<dyn gofer_core::tokens::RunTokenMinter>>,
    /// Resolve references (`secret{{ key }}`) in env values before a task starts.
    pub resolvers: super::references::Resolvers,
    /// Wakes the loop when a slot frees up.
    pub(super) slot_freed: Notify,
    /// Pipeline configs by content hash: versions never change, so a monitor reads and parses
    /// each one once per replica instead of once per task.
    configs: std::sync::Mutex<lru::LruCache<String, Arc<gofer_core::PipelineConfig>>>,
    /// The replica's shared LISTEN connection, when it has one; else the engine opens its own.
    pub(super) notifications: Option<Notifications>,
    /// Records the monitors' successes in batches (see `finisher.rs`).
    pub finisher: super::finisher::Finisher,
}

/// Configs a replica keeps parsed (see `EngineCtx::configs`).
const CACHED_CONFIGS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(1024).unwrap();

impl EngineCtx {
    /// A context over a pool, a scheduler and a log store, with no run tokens, no secret
    /// resolver and no shared LISTEN connection until the [`Engine`](super::worker::Engine) is
    /// configured with them.
    pub(super) fn new(pool: PgPool, scheduler: Arc<dyn Scheduler>, logs: LogStore, config: EngineConfig) -> Self {
        Self {
            pool,
            scheduler,
            logs,
            config,
            signals: Arc::new(Signals::default()),
            run_tokens: None,
            resolvers: super::references::Resolvers::default(),
            slot_freed: Notify::new(),
            configs: std::sync::Mutex::new(lru::LruCache::new(CACHED_CONFIGS)),
            notifications: None,
            finisher: super::finisher::Finisher::new(),
        }
    }

    /// The config of `run`'s version `version`, whose content hash is `hash`, from the cache or
    /// the database.
    pub(crate) async fn config_for(
        &self,
        conn: &mut sqlx::PgConnection,
        run: &crate::runs::RunKey,
        version: i64,
        hash: &str,
    ) -> Result<Arc<gofer_core::PipelineConfig>, EngineError> {
        if let Some(config) = self.configs.lock().ok().and_then(|mut cache| cache.get(hash).cloned()) {
            return Ok(config);
        }
        let config = Arc::new(db::get_config(conn, &run.pipeline, version).await?);
        if let Ok(mut cache) = self.configs.lock() {
            cache.put(hash.to_owned(), config.clone());
        }
        Ok(config)
    }
}
