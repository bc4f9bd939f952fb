//! Wiring: connect and migrate Postgres, bootstrap, start the scheduler and engine, bind HTTP.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use gofer_core::scheduler::Scheduler;
use gofer_db::channels;
use gofer_engine::{Engine, EngineConfig, EngineHandle, LogStore};
use gofer_scheduler_local::{LocalScheduler, LocalSchedulerConfig};
use gofer_secrets::SecretStoreSettings;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::{Config, SchedulerKind};
use crate::error::ApiError;
use crate::limits::{AuthFailures, RequestLimits};
use crate::live::EventHub;
use crate::state::AppState;
use gofer_tenants::run_tokens::RunTokenKeys;

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
        let pool = PgPoolOptions::new()
            .max_connections(config.database_max_connections)
            // sqlx pings every connection on release anyway; pinging again on acquire is a round
            // trip per query for nothing, except after a connection sat idle, when Postgres may
            // have restarted or a proxy dropped it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(1) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .acquire_timeout(Duration::from_secs(10))
            .connect(config.database_url.expose_secret())
            .await
            .with_context(
                || "connecting to Postgres (is it running? `infra/postgres.sh start` starts the private one)",
            )?;
        gofer_db::MIGRATOR.run(&pool).await.context("applying database migrations")?;
        let event_ids = crate::event_ids::EventIds::load(&pool).await.context("loading the event id key")?;

        let bootstrap_token =
            gofer_tenants::bootstrap(&pool, config.bootstrap_token.as_ref().map(|t| t.expose_secret()))
                .await
                .context("issuing the bootstrap token")?
                .map(|secret| secret.expose().to_owned());
        if let Some(token) = &bootstrap_token {
            write_secret_file(&config.state_dir.join("bootstrap-token"), token)?;
            tracing::info!(file = %config.state_dir.join("bootstrap-token").display(), "issued the bootstrap operator token");
        }

        let listener = TcpListener::bind(&config.listen).with_context(|| format!("binding {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let scheduler: Arc<dyn Scheduler> = match (scheduler, config.scheduler) {
            (Some(given), _) => given,
            (None, SchedulerKind::Local) => Arc::new(
                LocalScheduler::new(LocalSchedulerConfig {
                    settings: config.sandbox.clone(),
                    work_dir: config.sandbox.work_dir.clone().unwrap_or_else(|| config.state_dir.join("sandbox")),
                    // Networked `kind: gofer` tasks reach an API on this host's loopback through it.
                    api_port: loopback_port(&api_url(&config, port)),
                    // The host keeps what the engine's log keeps (docs/sandbox.md, "Output and state").
                    max_output_bytes: config.logs.max_bytes_per_task,
                })
                .context("starting the local sandbox scheduler")?,
            ),
            (None, SchedulerKind::Nomad) => Arc::new(
                gofer_scheduler_nomad::NomadScheduler::new(config.nomad.clone())
                    .context("setting up the Nomad scheduler")?,
            ),
        };
        let store = config.object_store.open(&config.state_dir).await.context("opening the object store")?;
        let objects = gofer_objects::Objects::new(pool.clone(), store.clone(), config.objects.clone());
        let logs = LogStore::new(config.state_dir.join("logs"), config.logs.max_bytes_per_task).with_archive(store);
        let run_tokens = Arc::new(run_token_keys(&config)?);
        let replica_tls = config.attach.replica_ca_file.as_deref().map(replica_tls).transpose()?;
        let secrets = Arc::new(gofer_secrets::Secrets::new(pool.clone(), secret_store(&config, &pool).await?));
        let engine_config = gofer_engine::EngineConfig {
            settings: config.engine.clone(),
            api_url: api_url(&config, port),
            max_env_object_bytes: config.objects.max_env_object_bytes,
            ..EngineConfig::default()
        };
        let api_url = engine_config.api_url.clone();
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

        let max_body = config.max_body_bytes;
        let http_workers = config.http_workers;
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
        let mut periodic: Vec<Arc<dyn crate::jobs::PeriodicJob>> = vec![
            Arc::new(crate::jobs::PurgeExpiredTokens {
                pool: pool.clone(),
                every: Duration::from_secs(config.tokens.purge_interval_s),
                grace: Duration::from_secs(config.tokens.purge_grace_s),
            }),
            Arc::new(crate::jobs::MetricsUpkeep),
            Arc::new(crate::jobs::RegisterReplica { pool: pool.clone(), replica: replica.clone() }),
            Arc::new(crate::jobs::SweepAuthFailures(
                auth_failures.clone(),
                request_limits.clone(),
                token_cache.clone(),
            )),
            Arc::new(crate::jobs::RefreshIpBlocks {
                pool: pool.clone(),
                blocks: ip_blocks.clone(),
                every: Duration::from_millis(config.ip_blocks.refresh_interval_ms.max(100)),
            }),
            Arc::new(crate::jobs::EndTrials {
                pool: pool.clone(),
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
        let hub = EventHub::start(notifications.subscribe(&[channels::EVENTS]));
        let state = web::Data::new(AppState {
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
        let routes = web::Data::new(crate::contract::RouteTable::new(crate::openapi::document()));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(crate::admission::rate_limit))
                .wrap(actix_web::middleware::from_fn(crate::prometheus::record_request))
                .wrap(tracing_actix_web::TracingLogger::<crate::request_span::RequestSpan>::new())
                .app_data(state.clone())
                .app_data(web::JsonConfig::default().limit(max_body).error_handler(|err, _| ApiError::from(err).into()))
                .app_data(web::PathConfig::default().error_handler(|err, _| {
                    ApiError::InvalidParameter { code: "invalid_path", detail: err.to_string() }.into()
                }))
                .app_data(web::QueryConfig::default().error_handler(|err, _| {
                    ApiError::InvalidParameter { code: "invalid_query", detail: err.to_string() }.into()
                }))
                .app_data(routes.clone())
                .configure(|cfg| {
                    crate::routes::configure(&mut utoipa_actix_web::service_config::ServiceConfig::new(cfg))
                })
                .default_service(web::to(
                    |req: actix_web::HttpRequest, routes: web::Data<crate::contract::RouteTable>| async move {
                        crate::contract::no_route(&routes, req.method().as_str(), req.path())
                    },
                ))
        });
        let server = if http_workers > 0 { server.workers(http_workers) } else { server };
        let server = server.listen(listener)?.run();
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

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;
    fn respond_to(self, _: &actix_web::HttpRequest) -> actix_web::HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
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

/// Keys by id and the active one, as kept in a state-dir file.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredKeys {
    active: String,
    keys: std::collections::BTreeMap<String, String>,
}

/// The keys kept in `<state_dir>/<file>`, created (one key `k1` from `generate`, file mode 0600)
/// on first start.
fn stored_keys(config: &Config, file: &str, generate: fn() -> String) -> anyhow::Result<StoredKeys> {
    let path = config.state_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let stored = StoredKeys {
                active: "k1".into(),
                keys: std::collections::BTreeMap::from([("k1".to_owned(), generate())]),
            };
            write_secret_file(&path, &serde_json::to_string(&stored)?)?;
            tracing::info!(file = %path.display(), "created a key file; back it up with the database");
            Ok(stored)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// rustls settings trusting only the CA in `ca_file` (PEM), for replicas' `https://` URLs.
fn replica_tls(ca_file: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("attach.replica_ca_file: reading {}", ca_file.display()))?;
    for certificate in certificates {
        let certificate = certificate
            .with_context(|| format!("attach.replica_ca_file: {} holds no PEM certificate", ca_file.display()))?;
        roots.add(certificate).with_context(|| format!("attach.replica_ca_file: {}", ca_file.display()))?;
    }
    anyhow::ensure!(!roots.is_empty(), "attach.replica_ca_file: {} holds no certificate", ca_file.display());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The run token keys from the config, or the ones kept in the state dir (created on first start).
fn run_token_keys(config: &Config) -> anyhow::Result<RunTokenKeys> {
    let settings = &config.run_tokens;
    if let (false, Some(active)) = (settings.keys.is_empty(), &settings.active_kid) {
        return Ok(RunTokenKeys::new(&gofer_core::settings::exposed_map(&settings.keys), active)?);
    }
    let stored = stored_keys(config, "run-token-keys.json", RunTokenKeys::generate_secret)?;
    Ok(RunTokenKeys::new(&stored.keys, &stored.active)?)
}

/// The configured secret store. The Postgres store's keys come from the config, or from
/// `<state_dir>/secret-keys.json` (created on first start); values sealed by an older key are
/// re-encrypted with the primary one in the background.
async fn secret_store(config: &Config, pool: &PgPool) -> anyhow::Result<Arc<dyn gofer_core::secrets::SecretStore>> {
    match &config.secret_store {
        SecretStoreSettings::Postgres(settings) => {
            let keyring = match settings.keyring()? {
                Some(keyring) => keyring,
                None => {
                    let stored = stored_keys(config, "secret-keys.json", gofer_secrets::Keyring::generate_key)?;
                    gofer_secrets::Keyring::new(&stored.keys, &stored.active)?
                }
            };
            let store = gofer_secrets::PostgresStore::new(pool.clone(), keyring);
            let background = store.clone();
            tokio::spawn(async move {
                match background.reencrypt().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(values = n, "re-encrypted secret values with the primary key"),
                    Err(e) => tracing::error!(error = %e, "re-encrypting secret values failed"),
                }
            });
            Ok(Arc::new(store))
        }
        SecretStoreSettings::Vault(settings) => {
            let store = gofer_secrets::VaultStore::connect(settings.clone()).await.context("connecting to Vault")?;
            Ok(Arc::new(store))
        }
    }
}

/// Writes a secret readable by its owner only (0600), replacing any older file.
fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
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
