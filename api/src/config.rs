//! The one typed configuration: defaults, then an optional TOML file, then `GOFER_*` environment
//! variables (`__` separates nested keys: `GOFER_ENGINE__LEASE_S=30`). Each library crate owns
//! its section (`gofer_engine::EngineSettings`, `gofer_objects::ObjectStoreSettings`…); keys of
//! the previous release are translated first (`legacy`). docs/config.md is generated from the
//! settings' doc comments (`doc`).

#[cfg(test)]
mod doc;
mod legacy;
mod sections;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gofer_core::settings::{SettingError, expose_optional_secret, expose_secret};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use legacy::Deprecated;
pub use sections::{
    AttachSettings, AuthSettings, EventSettings, LogFormat, LogSettings, RateLimitSettings, SchedulerKind,
};

/// The port of the private Postgres cluster that `infra/postgres.sh` starts.
pub const PRIVATE_POSTGRES_PORT: u16 = 54329;

/// Server configuration.
///
/// Secret values (`database_url`, `bootstrap_token`, `secret_store.keys`, `secret_store.token`,
/// `secret_store.secret_id`, `object_store.secret_access_key`, `run_tokens.keys`) are
/// [`SecretString`]s: `Debug` prints a redaction (`nomad.token` is hidden by `NomadConfig`'s own
/// `Debug`), and code reads them only through `expose_secret()` where they are used. `Serialize`
/// writes them out (the loader and the docs generator read defaults through it), so a `Config` is
/// never serialized into a log or a response.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds; on a dual-stack `[::]:8080`, IPv4 peers (`::ffff:a.b.c.d`)
    /// are limited, blocked and matched as their IPv4 address.
    ///
    /// Production: set (e.g. `0.0.0.0:8080` behind a proxy)
    pub listen: String,
    /// Postgres connection URL (a secret: it may carry the password); the default is the private
    /// cluster of `infra/postgres.sh`.
    ///
    /// Production: **required**
    #[serde(serialize_with = "expose_secret")]
    #[schemars(with = "String")]
    pub database_url: SecretString,
    /// Pool size of this replica.
    ///
    /// Production: tune
    pub database_max_connections: u32,
    /// Where local state lives: the bootstrap token file, key files (`run-token-keys.json`,
    /// `secret-keys.json`), task logs of running attempts (`logs/`), the local object store
    /// (`objects/`), sandbox work dirs (`sandbox/`).
    ///
    /// Production: **required** (a persistent volume)
    pub state_dir: PathBuf,
    /// Preset for the first operator token, at least 32 characters; used only on the first start
    /// of an empty database. Unset: a random token.
    ///
    /// Production: recommended (from a secret store)
    #[serde(serialize_with = "expose_optional_secret")]
    #[schemars(with = "Option<String>")]
    pub bootstrap_token: Option<SecretString>,
    /// `json`, `pretty`, or `auto` (pretty on a terminal, JSON otherwise).
    ///
    /// Production: `json`
    pub log_format: LogFormat,
    /// Default log filter (tracing-subscriber syntax); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Which scheduler runs tasks: `local` (the bubblewrap sandbox, `sandbox.*`) or `nomad` (a
    /// Nomad cluster, `nomad.*`; docs/nomad.md).
    ///
    /// Production: `nomad`
    pub scheduler: SchedulerKind,
    /// Engine tuning.
    pub engine: gofer_engine::EngineSettings,
    /// The local sandbox scheduler.
    pub sandbox: gofer_scheduler_local::SandboxSettings,
    /// The Nomad scheduler (docs/nomad.md).
    pub nomad: gofer_scheduler_nomad::NomadConfig,
    /// Task execution logs.
    pub logs: LogSettings,
    /// Event streams (SSE).
    pub events: EventSettings,
    /// Largest JSON body of ordinary endpoints, in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 is one per CPU core (actix's default).
    ///
    /// Production: fewer when the replica shares its cores with other busy processes
    pub http_workers: usize,
    /// Largest pipeline config accepted, in bytes.
    pub max_config_bytes: usize,
    /// The API's URL as tasks reach it (`GOFER_API_URL` in every task); unset: `http://<listen>`.
    ///
    /// Production: **required** behind a proxy
    pub public_url: Option<String>,
    /// This replica's URL as the other replicas reach it: an attach arriving at another replica is
    /// forwarded here when this one's local sandbox runs the task, with an assertion signed by the
    /// run-token keys (so replicas share `run_tokens.keys`); `https://` for TLS
    /// ([attach.md](attach.md)). Unset: `http://<listen>`.
    ///
    /// Production: with several replicas on the local scheduler, when `listen` is not reachable
    /// from the others
    pub replica_url: Option<String>,
    /// API tokens.
    pub tokens: gofer_tenants::TokenSettings,
    /// Authentication abuse limits.
    pub auth: AuthSettings,
    /// Run tokens (JWTs given to tasks that set `inject_api_token`).
    pub run_tokens: gofer_tenants::RunTokenSettings,
    /// Request rate limits.
    pub rate_limits: RateLimitSettings,
    /// CIDRs of proxies whose `X-Forwarded-For` is believed; the client is the right-most entry
    /// that is not one of them (empty: the socket peer is the client). Peers and entries are
    /// matched in canonical form (`::ffff:10.0.0.1` is `10.0.0.1`), so write IPv4 proxies as IPv4
    /// networks (`10.0.0.0/8`).
    ///
    /// Production: **required** behind a load balancer
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where secret values are kept: `postgres` (embedded, AES-256-GCM in this database) or
    /// `vault` (Vault/OpenBao KV v2); see [secrets.md](secrets.md).
    ///
    /// Production: `vault`
    pub secret_store: gofer_secrets::SecretStoreSettings,
    /// Largest secret value accepted, in bytes (stay below `max_body_bytes`).
    pub secret_max_value_bytes: usize,
    /// Anonymous trials (`POST /api/v1/trial`).
    pub trial: gofer_billing::TrialSettings,
    /// Blocking abusive client addresses.
    pub ip_blocks: gofer_billing::IpBlockSettings,
    /// Where objects and finished task logs live: `local` (content-addressed under
    /// `<state_dir>/objects`) or `s3` (docs/objects.md).
    ///
    /// Production: `s3`
    pub object_store: gofer_objects::ObjectStoreSettings,
    /// Object limits and expiry.
    pub objects: gofer_objects::ObjectSettings,
    /// Attaching to running tasks (docs/attach.md).
    pub attach: AttachSettings,
    /// How long a replica remembers a complete run (as the JSON it answers), and which runs a page
    /// of a run list holds, in seconds. `GET …/runs/{run}` of a finished run then costs no
    /// database round trip. A run list reads the page's ids only when they are not remembered,
    /// and reads only the runs that are not remembered (runs not yet complete are always read, so
    /// their states are current). A complete run never changes, and authorization is still
    /// checked on every request. 0 turns it off (a list then reads the page's ids, then all its
    /// runs). Deleting runs (their pipeline, namespace or tenant) evicts that tenant's runs and
    /// pages on every replica at once (trigger NOTIFY `gofer_runs_deleted`). Adding a run evicts
    /// the tenant's pages (trigger NOTIFY `gofer_runs_added`). So the TTL only bounds what a lost
    /// notification could cost; while the listener is down nothing is cached.
    pub run_cache_ttl_s: u64,
    /// Most complete runs one replica remembers (about 0.5 KiB of JSON each), and separately the
    /// most pages of run ids (8 bytes per run listed); when full, reads go to Postgres until
    /// entries expire.
    pub run_cache_max_entries: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: format!("postgres://postgres@127.0.0.1:{PRIVATE_POSTGRES_PORT}/gofer").into(),
            database_max_connections: 20,
            state_dir: PathBuf::from("./.gofer"),
            bootstrap_token: None,
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            scheduler: SchedulerKind::Local,
            engine: gofer_engine::EngineSettings::default(),
            sandbox: gofer_scheduler_local::SandboxSettings::default(),
            nomad: gofer_scheduler_nomad::NomadConfig::default(),
            logs: LogSettings::default(),
            events: EventSettings::default(),
            max_body_bytes: 64 * 1024,
            http_workers: 0,
            max_config_bytes: 1024 * 1024,
            public_url: None,
            replica_url: None,
            tokens: gofer_tenants::TokenSettings::default(),
            auth: AuthSettings::default(),
            run_tokens: gofer_tenants::RunTokenSettings::default(),
            rate_limits: RateLimitSettings::default(),
            trusted_proxies: Vec::new(),
            secret_store: gofer_secrets::SecretStoreSettings::default(),
            secret_max_value_bytes: gofer_core::secrets::MAX_SECRET_VALUE_BYTES,
            trial: gofer_billing::TrialSettings::default(),
            ip_blocks: gofer_billing::IpBlockSettings::default(),
            object_store: gofer_objects::ObjectStoreSettings::default(),
            objects: gofer_objects::ObjectSettings::default(),
            attach: AttachSettings::default(),
            run_cache_ttl_s: 60,
            run_cache_max_entries: 10_000,
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key is unknown, or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// A key of the previous release and its replacement are both set.
    #[error("invalid configuration: {0}")]
    Mixed(#[from] legacy::MixedKeys),
    /// Settings that cannot work.
    #[error("invalid configuration: {0}")]
    Setting(#[from] SettingError),
}

/// A loaded configuration, with the keys of the previous release it was written with.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Deprecated keys that were read (translated, or ignored as before).
    pub deprecated: Vec<Deprecated>,
}

impl Loaded {
    /// Logs one warning per deprecated key, naming its replacement (once logging is set up).
    pub fn warn_deprecated(&self) {
        for deprecated in &self.deprecated {
            tracing::warn!(old = deprecated.old, new = deprecated.new, "{deprecated}");
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (when given), then `GOFER_*` variables from the environment;
    /// keys of the previous release are translated (and reported), and the result is checked.
    pub fn load(file: Option<&Path>) -> Result<Loaded, ConfigError> {
        Self::load_from(file, Env::prefixed("GOFER_"))
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Loaded, ConfigError> {
        let given: figment::value::Dict = Self::given(file, env).extract().map_err(Box::new)?;
        let (translated, deprecated) = legacy::translate(given)?;
        let config: Config = Figment::from(Serialized::globals(translated)).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(Loaded { config, deprecated })
    }

    /// What the file and the environment set (defaults come from `Default` on extraction).
    fn given(file: Option<&Path>, env: Env) -> Figment {
        // Only GOFER_ variables naming a key of this struct (or of the previous release) are
        // read: the CLI's own variables (GOFER_HOST, GOFER_TOKEN…) share the prefix and must not
        // break the server. Unknown keys in a file are still refused, naming the key.
        let mut known: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        known.extend(legacy::old_top_level_keys().map(str::to_owned));
        // Nomad's own variable names, as operators know them, are accepted beside the nested form.
        let env = env.split("__").map(|key| match key.as_str() {
            k if k.eq_ignore_ascii_case("nomad_addr") => "nomad.addr".into(),
            k if k.eq_ignore_ascii_case("nomad_token") => "nomad.token".into(),
            k => k.to_owned().into(),
        });
        let env = env.filter(move |key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            known.iter().any(|k| k.eq_ignore_ascii_case(top))
        });
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(env)
    }

    /// Refuses settings that cannot work together, naming the key (each section checks its own).
    pub fn validate(&self) -> Result<(), SettingError> {
        self.object_store.validate()?;
        self.secret_store.validate()?;
        self.run_tokens.validate()
    }
}

/// The environment variable of a key: `engine.lease_s` is `GOFER_ENGINE__LEASE_S`.
pub(crate) fn env_var(key: &str) -> String {
    format!("GOFER_{}", key.replace('.', "__").to_uppercase())
}

#[cfg(test)]
#[allow(clippy::result_large_err, clippy::unwrap_used)] // figment's Jail closures return its own large error
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn load(file: Option<&str>) -> Result<Config, figment::Error> {
        Config::load(file.map(Path::new)).map(|loaded| loaded.config).map_err(|e| e.to_string().into())
    }

    #[test]
    fn defaults_are_documented_values() {
        figment::Jail::expect_with(|_| {
            let config = load(None)?;
            assert_eq!(config.listen, "127.0.0.1:8080");
            assert_eq!(config.state_dir, PathBuf::from("./.gofer"));
            assert_eq!(config.database_url.expose_secret(), "postgres://postgres@127.0.0.1:54329/gofer");
            assert!(config.bootstrap_token.is_none());
            assert_eq!(config.logs.max_bytes_per_task, 10 * 1024 * 1024);
            assert_eq!((config.events.poll_interval_ms, config.events.keepalive_s), (1000, 15));
            assert!(matches!(config.object_store, gofer_objects::ObjectStoreSettings::Local {}));
            assert!(matches!(config.secret_store, gofer_secrets::SecretStoreSettings::Postgres(_)));
            Ok(())
        });
    }

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gofer.toml",
                "listen = \"0.0.0.0:9000\"\nstate_dir = \"/srv/gofer\"\n[engine]\nlease_s = 10\n",
            )?;
            jail.set_env("GOFER_LISTEN", "127.0.0.1:9999");
            jail.set_env("GOFER_ENGINE__MAX_PARALLEL_TASKS", "3");
            jail.set_env("GOFER_HOST", "http://cli-only.example");
            jail.set_env("GOFER_LOGS__MAX_BYTES_PER_TASK", "4096");
            let config = load(Some("gofer.toml"))?;
            assert_eq!(config.listen, "127.0.0.1:9999");
            assert_eq!(config.state_dir, PathBuf::from("/srv/gofer"));
            assert_eq!(config.engine.lease_s, 10);
            assert_eq!(config.engine.max_parallel_tasks, Some(3));
            assert_eq!(config.logs.max_bytes_per_task, 4096);
            Ok(())
        });
    }

    #[test]
    fn the_nomad_scheduler_is_configured_by_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gofer.toml",
                "scheduler = \"nomad\"\n[nomad]\ndatacenters = [\"dc1\"]\ndriver = \"podman\"\nallowed_registries = [\"ghcr.io\"]\n[nomad.tls]\nca_cert = \"/etc/nomad/ca.pem\"\n",
            )?;
            jail.set_env("GOFER_NOMAD_ADDR", "https://nomad.internal:4646");
            jail.set_env("GOFER_NOMAD_TOKEN", "secret-token");
            jail.set_env("GOFER_NOMAD__REGION", "eu");
            let config = load(Some("gofer.toml"))?;
            assert_eq!(config.scheduler, SchedulerKind::Nomad);
            assert_eq!(config.nomad.addr, "https://nomad.internal:4646");
            assert_eq!(config.nomad.token.as_deref(), Some("secret-token"));
            assert_eq!(config.nomad.region.as_deref(), Some("eu"));
            assert_eq!(config.nomad.datacenters, ["dc1"]);
            assert_eq!(config.nomad.driver, gofer_scheduler_nomad::Driver::Podman);
            assert_eq!(config.nomad.allowed_registries, ["ghcr.io"]);
            assert_eq!(config.nomad.tls.ca_cert.as_deref(), Some(Path::new("/etc/nomad/ca.pem")));
            assert_eq!(config.engine.scheduler_outage_tolerance_s, 300);
            Ok(())
        });
    }

    #[test]
    fn the_stores_are_tagged_tables_in_files_and_nested_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gofer.toml",
                "[secret_store]\nkind = \"vault\"\naddr = \"https://vault.internal:8200\"\nrole_id = \"r\"\nsecret_id = \"s\"\n",
            )?;
            jail.set_env("GOFER_OBJECT_STORE__KIND", "s3");
            jail.set_env("GOFER_OBJECT_STORE__BUCKET", "artifacts");
            jail.set_env("GOFER_OBJECT_STORE__PART_CONCURRENCY", "8");
            let config = load(Some("gofer.toml"))?;
            let gofer_objects::ObjectStoreSettings::S3(s3) = &config.object_store else { panic!("{config:?}") };
            assert_eq!((s3.bucket.as_str(), s3.part_concurrency, s3.region.as_str()), ("artifacts", 8, "us-east-1"));
            let gofer_secrets::SecretStoreSettings::Vault(vault) = &config.secret_store else { panic!("{config:?}") };
            assert_eq!(
                (vault.addr.as_str(), vault.mount.as_str(), vault.prefix.as_str()),
                ("https://vault.internal:8200", "secret", "gofer/")
            );
            assert!(matches!(vault.auth(), Ok(gofer_secrets::VaultAuth::AppRole { .. })));
            Ok(())
        });
    }

    #[test]
    fn a_field_of_another_kind_of_store_cannot_be_written() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gofer.toml", "[object_store]\nkind = \"local\"\nbucket = \"artifacts\"\n")?;
            let err = load(Some("gofer.toml")).unwrap_err().to_string();
            assert!(err.contains("bucket"), "{err}");
            jail.create_file("gofer.toml", "[secret_store]\nkind = \"vault\"\ntoken = \"t\"\n")?;
            let err = load(Some("gofer.toml")).unwrap_err().to_string();
            assert!(err.contains("addr"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_key() {
        figment::Jail::expect_with(|jail| {
            for (toml, key) in [
                ("[object_store]\nkind = \"s3\"\naccess_key_id = \"AKID\"\n", "object_store.secret_access_key"),
                ("[secret_store]\nkind = \"vault\"\naddr = \"http://v:8200\"\n", "secret_store.token"),
                ("[secret_store]\nkind = \"postgres\"\nkeys = { k1 = \"a\" }\n", "secret_store.primary_key"),
                ("[run_tokens]\nkeys = { k1 = \"a\" }\n", "run_tokens.active_kid"),
            ] {
                jail.create_file("gofer.toml", toml)?;
                let err = load(Some("gofer.toml")).unwrap_err().to_string();
                assert!(err.contains(key), "{toml}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn debug_output_redacts_every_secret_value() {
        figment::Jail::expect_with(|jail| {
            let mut debug = String::new();
            for variables in [
                &[
                    ("GOFER_DATABASE_URL", "postgres://gofer:pw-sentinel-1@db:5432/gofer"),
                    ("GOFER_BOOTSTRAP_TOKEN", "sentinel-2"),
                    ("GOFER_SECRET_STORE__KEYS__S1", "sentinel-3"),
                    ("GOFER_SECRET_STORE__PRIMARY_KEY", "s1"),
                    ("GOFER_RUN_TOKENS__KEYS__K1", "sentinel-7"),
                    ("GOFER_RUN_TOKENS__ACTIVE_KID", "k1"),
                    ("GOFER_NOMAD_TOKEN", "sentinel-8"),
                ][..],
                &[
                    ("GOFER_SECRET_STORE__KIND", "vault"),
                    ("GOFER_SECRET_STORE__ADDR", "http://vault:8200"),
                    ("GOFER_SECRET_STORE__TOKEN", "sentinel-4"),
                    ("GOFER_SECRET_STORE__SECRET_ID", "sentinel-5"),
                    ("GOFER_OBJECT_STORE__KIND", "s3"),
                    ("GOFER_OBJECT_STORE__ACCESS_KEY_ID", "AKID"),
                    ("GOFER_OBJECT_STORE__SECRET_ACCESS_KEY", "sentinel-6"),
                ][..],
            ] {
                jail.clear_env();
                for (var, value) in variables {
                    jail.set_env(var, value);
                }
                let config = load(None)?;
                debug.push_str(&format!("{config:?} {config:#?}"));
            }
            assert!(!debug.contains("sentinel"), "{debug}");
            assert_eq!(debug.matches("[REDACTED]").count(), 2 * (4 + 4), "{debug}");
            Ok(())
        });
    }

    #[test]
    fn unknown_file_keys_are_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gofer.toml", "lisen = \"0.0.0.0:9000\"\n")?;
            let err = load(Some("gofer.toml")).unwrap_err().to_string();
            assert!(err.contains("lisen"), "{err}");
            Ok(())
        });
    }
}
