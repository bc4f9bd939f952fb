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

/// One replica's engine: its settings and what the server tells it about itself.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The `[engine]` settings.
    pub settings: crate::EngineSettings,
    /// This replica's identity, written as the lease owner of what it dispatches.
    pub replica_id: uuid::Uuid,
    /// How long past its timeout a task may run before the engine stops it itself.
    pub timeout_grace: Duration,
    /// The API's URL as tasks reach it, given to them as `GOFER_API_URL`.
    pub api_url: String,
    /// Largest object an env value may reference (`pipeline_object{{ key }}`, `run_object{{ key }}`).
    pub max_env_object_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            settings: crate::EngineSettings::default(),
            replica_id: uuid::Uuid::new_v4(),
            timeout_grace: Duration::from_secs(30),
            api_url: "http://127.0.0.1:8080".into(),
            max_env_object_bytes: 64 * 1024,
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
        run: &gofer_core::keys::RunKey,
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
