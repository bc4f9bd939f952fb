//! What the configuration names outside the database: the scheduler, the secret store, and the
//! key files kept in the state dir.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use gofer_core::scheduler::Scheduler;
use gofer_scheduler_local::{LocalScheduler, LocalSchedulerConfig};
use gofer_secrets::SecretStoreSettings;
use gofer_tenants::run_tokens::RunTokenKeys;
use sqlx::PgPool;

use crate::config::{Config, SchedulerKind};

/// The configured scheduler; `api_url` is where tasks reach the API.
pub(super) fn scheduler(config: &Config, api_url: &str) -> anyhow::Result<Arc<dyn Scheduler>> {
    Ok(match config.scheduler {
        SchedulerKind::Local => Arc::new(
            LocalScheduler::new(LocalSchedulerConfig {
                settings: config.sandbox.clone(),
                work_dir: config.sandbox.work_dir.clone().unwrap_or_else(|| config.state_dir.join("sandbox")),
                // Networked `kind: gofer` tasks reach an API on this host's loopback through it.
                api_port: super::loopback_port(api_url),
                // The host keeps what the engine's log keeps (docs/sandbox.md, "Output and state").
                max_output_bytes: config.logs.max_bytes_per_task,
            })
            .context("starting the local sandbox scheduler")?,
        ),
        SchedulerKind::Nomad => Arc::new(
            gofer_scheduler_nomad::NomadScheduler::new(config.nomad.clone())
                .context("setting up the Nomad scheduler")?,
        ),
    })
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
pub(super) fn replica_tls(ca_file: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
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
pub(super) fn run_token_keys(config: &Config) -> anyhow::Result<RunTokenKeys> {
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
pub(super) async fn secret_store(
    config: &Config,
    pool: &PgPool,
) -> anyhow::Result<Arc<dyn gofer_core::secrets::SecretStore>> {
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
pub(super) fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
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
