//! The composition root: builds a replica from its configuration. Each step is a module:
//! the database (`database.rs`), what the config names outside it (`stores.rs`), the background
//! jobs (`jobs.rs`) and the HTTP server (`http.rs`); this file puts them together in order.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context;
use gofer_core::scheduler::Scheduler;
use gofer_db::channels;
use gofer_engine::{Engine, EngineConfig, EngineHandle, LogStore};

use crate::config::Config;
use crate::limits::{AuthFailures, RequestLimits};
use crate::live::EventHub;
use crate::state::AppState;

mod database;
mod http;
mod jobs;
mod stores;

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    engine: EngineHandle,
    hub: EventHub,
    /// The replica's one LISTEN connection; stopped after the engine.
    notifications: gofer_notify::Notifications,
    bootstrap_token: Option<String>,
    jobs: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Connects to Postgres, applies migrations, issues the bootstrap token on first start,
    /// starts the engine and binds the listener (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_scheduler(config, None).await
    }

    /// Like [`Application::build`], with a given scheduler instead of the configured one (tests
    /// use schedulers that inject faults or outlive the replica).
    pub async fn build_with_scheduler(config: Config, scheduler: Option<Arc<dyn Scheduler>>) -> anyhow::Result<Self> {
        // Install the metrics recorder before anything records.
        crate::prometheus::handle();
        // Secret values print redacted (config.rs); cli/tests/it/config_secrets.rs holds that.
        tracing::debug!(?config, "starting with this configuration");
        config.validate().context("checking the configuration")?;
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("creating the state dir {}", config.state_dir.display()))?;
        let pool = database::connect(&config).await?;
        let event_ids = crate::event_ids::EventIds::load(&pool).await.context("loading the event id key")?;
        let bootstrap_token = database::issue_bootstrap_token(&pool, &config).await?;

        let listener = TcpListener::bind(&config.listen).with_context(|| format!("binding {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let api_url = api_url(&config, port);
        let scheduler = match scheduler {
            Some(given) => given,
            None => stores::scheduler(&config, &api_url)?,
        };
        let store = config.object_store.open(&config.state_dir).await.context("opening the object store")?;
        let objects = gofer_objects::Objects::new(pool.clone(), store.clone(), config.objects.clone());
        let logs = LogStore::new(config.state_dir.join("logs"), config.logs.max_bytes_per_task).with_archive(store);
        let run_tokens = Arc::new(stores::run_token_keys(&config)?);
        let replica_tls = config.attach.replica_ca_file.as_deref().map(stores::replica_tls).transpose()?;
        let secrets = Arc::new(gofer_secrets::Secrets::new(pool.clone(), stores::secret_store(&config, &pool).await?));
        let engine_config = EngineConfig {
            settings: config.engine.clone(),
            api_url: api_url.clone(),
            max_env_object_bytes: config.objects.max_env_object_bytes,
            ..EngineConfig::default()
        };
        // Registered by the periodic job, whose first run is at start-up.
        let replica = gofer_engine::attach::Replica {
            id: engine_config.replica_id,
            url: config.replica_url.clone().unwrap_or_else(|| local_url(&config.listen, port)),
        };
        // One LISTEN connection for the whole replica (see gofer_notify for why).
        let notifications = gofer_notify::Notifications::start(
            pool.clone(),
            &[
                channels::QUEUE,
                channels::CANCEL,
                channels::EVENTS,
                channels::IP_BLOCKS,
                channels::AUTH,
                channels::RUNS_DELETED,
                channels::RUNS_ADDED,
            ],
        );
        let engine = Engine::new(pool.clone(), scheduler.clone(), logs.clone(), engine_config)
            .with_notifications(notifications.clone())
            .with_run_tokens(run_tokens.clone())
            .with_secrets(secrets.clone())
            .spawn();

        let auth_failures = Arc::new(AuthFailures::new(
            config.auth.failures_per_minute,
            Duration::from_secs(config.auth.failure_block_s),
        ));
        let request_limits = Arc::new(RequestLimits::new(
            config.rate_limits.per_token_per_minute,
            config.rate_limits.anonymous_per_minute,
            config.rate_limits.start_runs_per_minute,
            config.rate_limits.trial_signups_per_minute,
        ));
        let ip_blocks = Arc::new(crate::blocks::IpBlocks::new(config.ip_blocks.rate_limited_per_minute));
        crate::jobs::reload_ip_blocks(&pool, &ip_blocks).await.context("loading IP blocks")?;
        let token_cache = Arc::new(gofer_tenants::cache::TokenCache::new(
            Duration::from_secs(config.auth.token_cache_ttl_s),
            config.auth.token_cache_max_entries,
        ));
        let complete_runs = Arc::new(crate::run_cache::CompleteRuns::new(
            Duration::from_secs(config.run_cache_ttl_s),
            config.run_cache_max_entries,
        ));
        let hub = EventHub::start(notifications.subscribe(&[channels::EVENTS]));
        let state = web::Data::new(AppState {
            runs: gofer_engine::runs::Runs::new(pool.clone(), config.engine.clone()),
            pipelines: gofer_engine::Pipelines::new(pool.clone(), logs.clone()),
            tenants: gofer_tenants::Tenants::new(pool.clone(), config.tokens.clone()),
            billing: gofer_billing::Billing::new(pool.clone(), config.trial.clone()),
            pool,
            logs,
            hub: hub.clone(),
            config,
            migrator: &gofer_db::MIGRATOR,
            auth_failures,
            run_tokens,
            replica_tls,
            request_limits,
            secrets,
            ip_blocks,
            objects,
            scheduler,
            api_url,
            replica,
            token_cache,
            complete_runs,
            event_ids,
            streams: crate::streams::StreamSlots::default(),
        });
        let jobs = jobs::spawn(&state, &notifications);
        let server = http::serve(listener, state)?;
        Ok(Self { port, server, engine, hub, notifications, bootstrap_token, jobs })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bootstrap operator token, when this start issued it (first start on an empty database).
    pub fn bootstrap_token(&self) -> Option<&str> {
        self.bootstrap_token.as_deref()
    }

    /// A handle that stops the HTTP server (the engine stops after it).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The shared events listener of this replica (tests count open streams through it).
    pub fn event_hub(&self) -> EventHub {
        self.hub.clone()
    }

    /// Serves until the server stops (SIGINT/SIGTERM), then stops the event streams, the engine and
    /// the replica's LISTEN connection.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let closer = tokio::spawn(close_on_signal(self.hub.clone()));
        let result = self.server.await;
        for job in &self.jobs {
            job.abort();
        }
        closer.abort();
        self.hub.close();
        self.engine.shutdown().await;
        self.notifications.stop();
        // Send the spans still queued; the exporter blocks, so off the async workers.
        let _ = tokio::task::spawn_blocking(crate::telemetry::flush).await;
        result
    }
}

/// Waits for SIGINT or SIGTERM, which actix also hears and acts on, then ends the live streams so
/// that a graceful shutdown is not held open by them until its timeout.
async fn close_on_signal(hub: EventHub) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => drop(signal.recv().await),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: closing live streams");
    hub.close();
}

/// The URL tasks reach the API at: `public_url`, else the listen address's.
fn api_url(config: &Config, port: u16) -> String {
    config.public_url.clone().unwrap_or_else(|| local_url(&config.listen, port))
}

/// The port of a URL whose host is this machine's loopback (`127.0.0.1`, `localhost`, `[::1]`).
fn loopback_port(url: &str) -> Option<u16> {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest).split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    matches!(host, "127.0.0.1" | "localhost" | "[::1]").then(|| port.parse().ok()).flatten()
}

/// `http://<host>:<port>` for a listen address, with a wildcard host replaced by loopback so the
/// URL can be dialled on this machine.
pub fn local_url(listen: &str, port: u16) -> String {
    let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1");
    let host = if host == "0.0.0.0" || host == "[::]" { "127.0.0.1" } else { host };
    format!("http://{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_api_on_this_hosts_loopback_has_a_port_to_forward_into_tasks() {
        assert_eq!(loopback_port("http://127.0.0.1:8080"), Some(8080));
        assert_eq!(loopback_port("http://localhost:9000/base"), Some(9000));
        assert_eq!(loopback_port("http://[::1]:7000"), Some(7000));
        assert_eq!(loopback_port("https://gofer.example.com:443"), None);
        assert_eq!(loopback_port("http://10.0.0.5:8080"), None);
        assert_eq!(loopback_port("http://127.0.0.1"), None);
    }
}
