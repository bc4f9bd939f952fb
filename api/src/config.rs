//! The one typed configuration: defaults, then an optional TOML file, then `GOFER_*` environment
//! variables (`__` separates nested keys: `GOFER_ENGINE__LEASE_S=30`). Documented in docs/config.md.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The port of the private Postgres cluster that `infra/postgres.sh` starts.
pub const PRIVATE_POSTGRES_PORT: u16 = 54329;

/// Server configuration.
///
/// Secret values (`database_url`, `bootstrap_token`, `secret_keys`, `vault_token`,
/// `vault_secret_id`, `s3_secret_access_key`, `run_tokens.keys`) are [`SecretString`]s: `Debug`
/// prints a redaction (`nomad.token` is hidden by `NomadConfig`'s own `Debug`), and code reads them only through
/// `expose_secret()` where they are used. `Serialize` writes them out (figment reads the defaults
/// through it), so a `Config` is never serialized into a log or a response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Postgres connection URL (a secret: it may carry the password).
    #[serde(serialize_with = "secret::expose")]
    pub database_url: SecretString,
    /// Most connections this replica opens.
    pub database_max_connections: u32,
    /// Where local state lives: the bootstrap token file, logs, sandbox work directories.
    pub state_dir: PathBuf,
    /// Optional preset for the first operator token (at least 32 characters); random when unset.
    #[serde(serialize_with = "secret::expose_option")]
    pub bootstrap_token: Option<SecretString>,
    /// `auto` (pretty on a terminal, JSON otherwise), `json` or `pretty`.
    pub log_format: LogFormat,
    /// Default log filter (tracing-subscriber syntax); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Which scheduler runs tasks: `local` (default) or `nomad`.
    pub scheduler: SchedulerKind,
    /// Engine tuning.
    pub engine: EngineSettings,
    /// The local sandbox scheduler.
    pub sandbox: SandboxSettings,
    /// The Nomad scheduler (docs/nomad.md).
    pub nomad: gofer_scheduler_nomad::NomadConfig,
    /// Task execution logs.
    pub logs: LogSettings,
    /// Event streams (SSE).
    pub events: EventSettings,
    /// Largest JSON body accepted by ordinary endpoints, in bytes.
    pub max_body_bytes: usize,
    /// HTTP worker threads (0: one per CPU core, actix's default).
    pub http_workers: usize,
    /// Largest pipeline config accepted, in bytes.
    pub max_config_bytes: usize,
    /// The API's URL as tasks reach it (`GOFER_API_URL` in every task); default `http://<listen>`.
    pub public_url: Option<String>,
    /// This replica's own URL as the other replicas reach it (attach through one replica to a task
    /// that another's local sandbox runs is forwarded there); default `http://<listen>`.
    pub replica_url: Option<String>,
    /// API tokens.
    pub tokens: TokenSettings,
    /// Authentication abuse limits.
    pub auth: AuthSettings,
    /// Run tokens (JWTs given to tasks that set `inject_api_token`).
    pub run_tokens: RunTokenSettings,
    /// Request rate limits.
    pub rate_limits: RateLimitSettings,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs); the client is the right-most entry
    /// that is not one of them. Empty: the socket peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where secret values are kept: `postgres` (embedded, encrypted) or `vault` (Vault/OpenBao KV v2).
    pub secret_store: SecretStoreKind,
    /// Postgres store keys by id: base64 of 32 bytes each (AES-256-GCM). Every key decrypts; keep
    /// old keys after a rotation. Empty: a key is created once in `<state_dir>/secret-keys.json`.
    #[serde(serialize_with = "secret::expose_map")]
    pub secret_keys: std::collections::BTreeMap<String, SecretString>,
    /// The id of the key that encrypts new values (required when `secret_keys` is set). Values
    /// sealed by other keys are re-encrypted with it at start-up.
    pub secret_primary_key: Option<String>,
    /// Largest secret value accepted, in bytes.
    pub secret_max_value_bytes: usize,
    /// Vault/OpenBao address (`secret_store = "vault"`), e.g. `https://vault.internal:8200`.
    pub vault_addr: Option<String>,
    /// Vault token; or use AppRole (`vault_role_id` and `vault_secret_id`).
    #[serde(serialize_with = "secret::expose_option")]
    pub vault_token: Option<SecretString>,
    /// AppRole role id.
    pub vault_role_id: Option<String>,
    /// AppRole secret id.
    #[serde(serialize_with = "secret::expose_option")]
    pub vault_secret_id: Option<SecretString>,
    /// The AppRole auth mount.
    pub vault_approle_mount: String,
    /// The KV v2 mount holding secrets.
    pub vault_mount: String,
    /// Path prefix inside the mount; values live under `<prefix>tenants/<tenant>/…`.
    pub vault_prefix: String,
    /// Anonymous trials (`POST /api/v1/trial`).
    pub trial: TrialSettings,
    /// Blocking abusive client addresses.
    pub ip_blocks: IpBlockSettings,
    /// Where objects and finished task logs are kept: `local` (content-addressed, under
    /// `<state_dir>/objects`) or `s3`.
    pub object_store: ObjectStoreKind,
    /// S3 endpoint URL; unset: AWS's endpoint for `s3_region`.
    pub s3_endpoint: Option<String>,
    /// S3 bucket (created at start-up when missing).
    pub s3_bucket: String,
    /// S3 region.
    pub s3_region: String,
    /// Path-style S3 addressing (`<endpoint>/<bucket>/<key>`), which most non-AWS servers need.
    pub s3_path_style: bool,
    /// S3 access key id; with `s3_secret_access_key`. Unset: the default AWS credential chain.
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[serde(serialize_with = "secret::expose_option")]
    pub s3_secret_access_key: Option<SecretString>,
    /// Multipart part size in bytes (at least 5 MiB); bodies longer than one part go up in parts.
    pub s3_part_size_bytes: u64,
    /// Parts of one object uploaded at once while the body is read on into the next, and ranges
    /// of one object read ahead on downloads (at least 1). Memory per transfer is at most
    /// `(s3_part_concurrency + 1) × s3_part_size_bytes`.
    pub s3_part_concurrency: usize,
    /// Longest object sent to S3 as one streamed `PutObject` when the request declares its
    /// length (`Content-Length`); longer ones, and bodies of unknown length (chunked), go up as
    /// multipart uploads. At most 5 GiB (S3's limit for one `PutObject`).
    pub s3_single_put_max_bytes: u64,
    /// Object limits and expiry.
    pub objects: ObjectSettings,
    /// Attaching to running tasks (docs/attach.md).
    pub attach: AttachSettings,
    /// How long a replica remembers a complete run for `GET …/runs/{run}` and the run list, in
    /// seconds (0: every read goes to the database). A complete run never changes; deleting it evicts at once on
    /// every replica through NOTIFY, so this bounds what a missed notification could cost.
    pub run_cache_ttl_s: u64,
    /// Most complete runs a replica remembers.
    pub run_cache_max_entries: usize,
}

/// Attaching to running tasks (`…/tasks/{task}/attach`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachSettings {
    /// Whether attach is offered at all; `false` answers 403 `attach_disabled` to everyone.
    pub enabled: bool,
    /// An attach session ends after this long, in seconds, whatever it is doing.
    pub max_session_s: u64,
    /// The CA (PEM) that the TLS certificates of replicas' `https://` URLs (`replica_url`) are
    /// checked against when an attach is forwarded to them; unset: the public roots.
    pub replica_ca_file: Option<PathBuf>,
}

impl Default for AttachSettings {
    fn default() -> Self {
        Self { enabled: true, max_session_s: 3600, replica_ca_file: None }
    }
}

/// The object store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStoreKind {
    /// The local content-addressed store under the state dir.
    Local,
    /// An S3 bucket.
    S3,
}

/// Object limits and expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectSettings {
    /// Largest object accepted, in bytes (pipeline objects are also bounded by the plan's
    /// `object_storage_bytes` and `max_pipeline_object_bytes`; how many a pipeline keeps is the
    /// plan's `max_pipeline_objects`).
    pub max_object_bytes: u64,
    /// Run objects of each pipeline's last this many runs are kept; older ones expire.
    pub keep_run_objects_for_runs: u32,
    /// How often the run-object expiry and log retention job runs, in seconds.
    pub expiry_interval_s: u64,
    /// Largest object an env value may reference with `pipeline_object{{ key }}` or
    /// `run_object{{ key }}`, in bytes.
    pub max_env_object_bytes: u64,
}

impl Default for ObjectSettings {
    fn default() -> Self {
        Self {
            max_object_bytes: 5 * 1024 * 1024 * 1024,
            keep_run_objects_for_runs: 10,
            expiry_interval_s: 600,
            max_env_object_bytes: 64 * 1024,
        }
    }
}

/// Where secret values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretStoreKind {
    /// Encrypted in this service's Postgres database.
    Postgres,
    /// In Vault or OpenBao (KV v2).
    Vault,
}

/// Anonymous trials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrialSettings {
    /// Whether `POST /api/v1/trial` creates trials (off: 404 `route_not_found`).
    pub enabled: bool,
    /// The plan trial tenants get.
    pub plan: String,
    /// How long a trial lasts, in seconds; then it is suspended.
    pub lifetime_s: u64,
    /// How long a suspended trial is kept before it is removed with all its data, in seconds.
    pub removal_grace_s: u64,
    /// Trials one client address (IPv6: /64) may start per 24 hours; one more blocks the address.
    pub max_per_address_per_day: u32,
    /// Trials one IPv4 /24 may start per 24 hours (0: no cap).
    pub max_per_ipv4_24_per_day: u32,
    /// Trials one IPv6 /56 may start per 24 hours (0: no cap).
    pub max_per_ipv6_56_per_day: u32,
    /// Trials one IPv6 /48 may start per 24 hours (0: no cap).
    pub max_per_ipv6_48_per_day: u32,
    /// Trials the whole service may start per hour, from all addresses together (0: no cap).
    pub max_per_hour: u32,
    /// The proof of work a sign-up pays: leading zero bits of SHA-256 (`gofer_core::proof_of_work`);
    /// each bit doubles the work, 24 is about a second of one core. 0: none asked.
    pub proof_of_work_bits: u8,
    /// How long a proof-of-work challenge may be answered, in seconds.
    pub challenge_ttl_s: u64,
    /// How long an address whose trial used up its task-seconds is refused new trials, in seconds.
    pub exhausted_refusal_s: u64,
    /// How often expired trials are suspended and removed, in seconds.
    pub job_interval_s: u64,
}

impl Default for TrialSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            plan: "trial".into(),
            lifetime_s: 24 * 3600,
            removal_grace_s: 24 * 3600,
            max_per_address_per_day: 3,
            max_per_ipv4_24_per_day: 10,
            max_per_ipv6_56_per_day: 10,
            max_per_ipv6_48_per_day: 20,
            max_per_hour: 100,
            proof_of_work_bits: 24,
            challenge_ttl_s: 300,
            exhausted_refusal_s: 7 * 24 * 3600,
            job_interval_s: 60,
        }
    }
}

/// Blocking abusive client addresses (403 `ip_blocked`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpBlockSettings {
    /// How long an address that asks for more trials than allowed is blocked, in seconds.
    pub trial_abuse_block_s: u64,
    /// Rate-limited (429) answers an address may get per minute before it is blocked; 0 never blocks.
    pub rate_limited_per_minute: u32,
    /// How long an address that keeps hitting rate limits is blocked, in seconds.
    pub rate_limit_block_s: u64,
    /// How often each replica reloads the blocks from Postgres besides NOTIFY, in milliseconds.
    pub refresh_interval_ms: u64,
}

impl Default for IpBlockSettings {
    fn default() -> Self {
        Self {
            trial_abuse_block_s: 24 * 3600,
            rate_limited_per_minute: 60,
            rate_limit_block_s: 3600,
            refresh_interval_ms: 30_000,
        }
    }
}

/// Request rate limits. A tenant token is limited at its plan's `requests_per_minute` once it
/// has authenticated; these apply to operator tokens and a token's first request on a replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Whether requests are rate limited at all (off only to measure the limiter's cost; IP
    /// blocks still apply).
    pub enabled: bool,
    /// Requests per minute per token (operator tokens; tenant tokens until their plan is known).
    pub per_token_per_minute: u32,
    /// Requests per minute per client address (IPv6: /64) without a token.
    pub anonymous_per_minute: u32,
    /// Run starts per minute per token (or address), on top of the general limit.
    pub start_runs_per_minute: u32,
    /// Trial signups (`POST /api/v1/trial`) per minute per client address.
    pub trial_signups_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_token_per_minute: 1200,
            anonymous_per_minute: 120,
            start_runs_per_minute: 120,
            trial_signups_per_minute: 3,
        }
    }
}

/// Run token signing keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunTokenSettings {
    /// Keys by id: base64 secrets of at least 32 bytes. Every key verifies; keep an old key here
    /// after rotating so tokens it signed keep working until they expire. Empty: a key is created
    /// once in `<state_dir>/run-token-keys.json` (fine for one host; set keys for several replicas).
    #[serde(serialize_with = "secret::expose_map")]
    pub keys: std::collections::BTreeMap<String, SecretString>,
    /// The id of the key that signs new tokens (required when `keys` is set).
    pub active_kid: Option<String>,
}

/// API tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Lifetime of a new token that asks for none, in days.
    pub default_expiry_days: u32,
    /// The longest lifetime a token may ask for, in days.
    pub max_expiry_days: u32,
    /// How often expired tokens are purged, in seconds.
    pub purge_interval_s: u64,
    /// How long expired or revoked tokens stay listed before the purge deletes them, in seconds.
    pub purge_grace_s: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self { default_expiry_days: 90, max_expiry_days: 365, purge_interval_s: 3600, purge_grace_s: 86400 }
    }
}

/// Authentication abuse limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Failed authentications a client address may make per minute before it is blocked.
    pub failures_per_minute: u32,
    /// How long a blocked client is refused, in seconds.
    pub failure_block_s: u64,
    /// How long a replica remembers a verified API token, in seconds (0: every request reads the
    /// database). Revocations and other changes evict at once through NOTIFY; this bounds what a
    /// missed notification could cost.
    pub token_cache_ttl_s: u64,
    /// Most verified tokens a replica remembers.
    pub token_cache_max_entries: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self { failures_per_minute: 20, failure_block_s: 300, token_cache_ttl_s: 30, token_cache_max_entries: 10_000 }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// The scheduler that runs tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// The embedded bubblewrap sandbox on this host.
    Local,
    /// A Nomad cluster (the `nomad` section).
    Nomad,
}

/// Engine tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Task executions one replica watches at once; unset: the scheduler's default (16 for the
    /// local sandbox, whose tasks share this host; 64 for a cluster such as Nomad).
    pub max_parallel_tasks: Option<usize>,
    /// How often to look for queued work when no NOTIFY arrives, in milliseconds.
    pub poll_interval_ms: u64,
    /// How often to read a running task's state and logs, in milliseconds.
    pub monitor_interval_ms: u64,
    /// How long a claim on a task execution holds without a heartbeat, in seconds; a dead
    /// replica's tasks are taken over after it.
    pub lease_s: u64,
    /// Seconds a stopped task gets between SIGTERM and SIGKILL.
    pub stop_grace_s: u64,
    /// Timeout of a task that sets no `timeout_s`, in seconds.
    pub default_task_timeout_s: u32,
    /// The longest any task may run, in seconds (a task asking for more is stopped at this).
    pub max_task_timeout_s: u32,
    /// Timeout of a run whose pipeline sets no `run_timeout_s`, in seconds.
    pub default_run_timeout_s: u32,
    /// CPU of a task that sets none, in millicores.
    pub default_cpu_millis: u32,
    /// Memory of a task that sets none, in MiB.
    pub default_memory_mb: u32,
    /// Infrastructure failures (scheduler errors, lost tasks) retried per task execution.
    pub infra_retries: u32,
    /// First retry backoff in milliseconds, doubled per failure (capped at a minute).
    pub retry_backoff_ms: u64,
    /// Running task executions per tenant; 0 means no limit.
    pub tenant_max_running_tasks: u32,
    /// How many runs may stand before a run in a chain of runs started by runs (`kind: gofer`
    /// tasks, with their run tokens); a start past it is refused (409 `run_chain_too_deep`), as
    /// is one whose pipeline is already in the chain (`run_chain_loop`). 0: no run starts runs.
    pub max_run_chain_depth: u32,
    /// How often each replica looks for tenants whose task-seconds ran out while their tasks
    /// run (and stops those runs), in milliseconds.
    pub quota_check_interval_ms: u64,
    /// How long a dispatch keeps retrying while the scheduler is unavailable, holding the task's
    /// lease, before the attempt counts as an infrastructure failure, in seconds.
    pub scheduler_outage_tolerance_s: u64,
    /// The image `kind: gofer` tasks run in on Nomad: the gofer CLI (`infra/images/gofer-cli`).
    /// The local sandbox ignores images and binds `sandbox.gofer_binary` instead.
    pub gofer_cli_image: String,
}

/// The local sandbox scheduler.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// Where per-task work directories live; default `<state_dir>/sandbox`. As root, the sandbox
    /// user (uid 65534) must be able to enter it.
    pub work_dir: Option<PathBuf>,
    /// The bubblewrap binary.
    pub bwrap_path: PathBuf,
    /// Give tasks whose plan allows it a network of their own, with egress rules (off: loopback only).
    pub share_network: bool,
    /// Networks networked tasks may reach although the egress policy refuses them.
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Memory ceiling per task, in MiB (the task's memory cgroup; without cgroups, per process).
    pub memory_limit_mb: u64,
    /// Processes per task (the task's `pids.max`; without cgroups, per host uid).
    pub max_processes: u64,
    /// Whether tasks get cgroups of their own: `auto`, `required` or `off`.
    pub cgroups: gofer_scheduler_local::CgroupMode,
    /// Run trial (untrusted) tenants' tasks even without per-task cgroups.
    pub allow_untrusted_without_cgroups: bool,
    /// Without root, run tasks as the service's own user (development only; unsafe).
    pub unsafe_tasks_as_service_user: bool,
    /// The `gofer` binary `kind: gofer` tasks run, mounted read-only at `/opt/gofer/bin/gofer`
    /// (on their `PATH`). Default: the `gofer` next to the server's executable, else on `PATH`.
    pub gofer_binary: Option<PathBuf>,
}

/// Task execution logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Bytes of output kept per task execution: the first half and the last half, with a marker
    /// saying how many bytes were cut between them.
    pub max_bytes_per_task: u64,
    /// How long logs of finished task attempts are kept, in seconds (default 30 days); the
    /// periodic job (`objects.expiry_interval_s`) removes older ones and reads answer 410
    /// `logs_expired`. 0 keeps them forever.
    pub retention_s: u64,
    /// Seconds after a task attempt ends before its log moves from local disk to the object store
    /// (live followers have finished by then).
    pub archive_after_s: u64,
}

/// Event streams (SSE) and their safety nets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// How often a tenant's event feed (shared by its streams) looks for new events when no NOTIFY
    /// arrives, in milliseconds (NOTIFY can be missed while the listener reconnects, and an event
    /// becomes visible only once every older transaction has ended).
    pub poll_interval_ms: u64,
    /// How often an idle stream sends a `: keepalive` comment, in seconds.
    pub keepalive_s: u64,
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
            engine: EngineSettings::default(),
            sandbox: SandboxSettings::default(),
            nomad: gofer_scheduler_nomad::NomadConfig::default(),
            logs: LogSettings::default(),
            events: EventSettings::default(),
            max_body_bytes: 64 * 1024,
            http_workers: 0,
            max_config_bytes: 1024 * 1024,
            public_url: None,
            replica_url: None,
            tokens: TokenSettings::default(),
            auth: AuthSettings::default(),
            run_tokens: RunTokenSettings::default(),
            rate_limits: RateLimitSettings::default(),
            trusted_proxies: Vec::new(),
            secret_store: SecretStoreKind::Postgres,
            secret_keys: std::collections::BTreeMap::new(),
            secret_primary_key: None,
            secret_max_value_bytes: gofer_core::secrets::MAX_SECRET_VALUE_BYTES,
            vault_addr: None,
            vault_token: None,
            vault_role_id: None,
            vault_secret_id: None,
            vault_approle_mount: "approle".into(),
            vault_mount: "secret".into(),
            vault_prefix: "gofer/".into(),
            trial: TrialSettings::default(),
            ip_blocks: IpBlockSettings::default(),
            object_store: ObjectStoreKind::Local,
            s3_endpoint: None,
            s3_bucket: "gofer".into(),
            s3_region: "us-east-1".into(),
            s3_path_style: true,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_part_size_bytes: 8 * 1024 * 1024,
            s3_part_concurrency: 4,
            s3_single_put_max_bytes: 100 * 1024 * 1024,
            objects: ObjectSettings::default(),
            attach: AttachSettings::default(),
            run_cache_ttl_s: 60,
            run_cache_max_entries: 10_000,
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_parallel_tasks: None,
            poll_interval_ms: 2000,
            monitor_interval_ms: 200,
            lease_s: 60,
            stop_grace_s: 10,
            default_task_timeout_s: 3600,
            max_task_timeout_s: 24 * 3600,
            default_run_timeout_s: 24 * 3600,
            default_cpu_millis: 1000,
            default_memory_mb: 2048,
            infra_retries: 3,
            retry_backoff_ms: 1000,
            tenant_max_running_tasks: 0,
            max_run_chain_depth: 5,
            quota_check_interval_ms: 5000,
            scheduler_outage_tolerance_s: 300,
            gofer_cli_image: gofer_core::config::GOFER_CLI_IMAGE.into(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            max_bytes_per_task: gofer_engine::logs::DEFAULT_MAX_BYTES_PER_TASK,
            retention_s: 30 * 24 * 3600,
            archive_after_s: 30,
        }
    }
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { poll_interval_ms: 1000, keepalive_s: 15 }
    }
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            work_dir: None,
            bwrap_path: "bwrap".into(),
            share_network: false,
            egress_allow: Vec::new(),
            memory_limit_mb: 4096,
            max_processes: 512,
            cgroups: gofer_scheduler_local::CgroupMode::Auto,
            allow_untrusted_without_cgroups: false,
            unsafe_tasks_as_service_user: false,
            gofer_binary: None,
        }
    }
}

/// Serializers that write secret values out; only figment's defaults go through them.
mod secret {
    use std::collections::BTreeMap;

    use secrecy::{ExposeSecret, SecretString};
    use serde::Serializer;

    pub(super) fn expose<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.expose_secret())
    }

    pub(super) fn expose_option<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.serialize_some(value.expose_secret()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn expose_map<S: Serializer>(value: &BTreeMap<String, SecretString>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(value.iter().map(|(k, v)| (k, v.expose_secret())))
    }
}

/// Secret values of a map as plain strings, for the code that uses them.
pub fn expose_map(
    map: &std::collections::BTreeMap<String, SecretString>,
) -> std::collections::BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.expose_secret().to_owned())).collect()
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Loads defaults, then `file` (when given), then `GOFER_*` variables from the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::figment(file, Env::prefixed("GOFER_")).extract().map_err(|e| ConfigError(Box::new(e)))
    }

    fn figment(file: Option<&Path>, env: Env) -> Figment {
        // Only GOFER_ variables naming a key of this struct are read: the CLI's own variables
        // (GOFER_HOST, GOFER_TOKEN…) share the prefix and must not break the server. Unknown keys
        // in a file are still refused, naming the key.
        let known: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
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
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(env)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err, clippy::unwrap_used)] // figment's Jail closures return its own large error
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        figment::Jail::expect_with(|_| {
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.listen, "127.0.0.1:8080");
            assert_eq!(config.state_dir, PathBuf::from("./.gofer"));
            assert_eq!(config.database_url.expose_secret(), "postgres://postgres@127.0.0.1:54329/gofer");
            assert!(config.bootstrap_token.is_none());
            assert_eq!(config.logs.max_bytes_per_task, 10 * 1024 * 1024);
            assert_eq!((config.events.poll_interval_ms, config.events.keepalive_s), (1000, 15));
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
            let config = Config::load(Some(Path::new("gofer.toml"))).map_err(|e| e.to_string())?;
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
            let config = Config::load(Some(Path::new("gofer.toml"))).map_err(|e| e.to_string())?;
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
    fn debug_output_redacts_every_secret_value() {
        figment::Jail::expect_with(|jail| {
            for (var, value) in [
                ("GOFER_DATABASE_URL", "postgres://gofer:pw-sentinel-1@db:5432/gofer"),
                ("GOFER_BOOTSTRAP_TOKEN", "sentinel-2"),
                ("GOFER_SECRET_KEYS__S1", "sentinel-3"),
                ("GOFER_VAULT_TOKEN", "sentinel-4"),
                ("GOFER_VAULT_SECRET_ID", "sentinel-5"),
                ("GOFER_S3_SECRET_ACCESS_KEY", "sentinel-6"),
                ("GOFER_RUN_TOKENS__KEYS__K1", "sentinel-7"),
                ("GOFER_NOMAD_TOKEN", "sentinel-8"),
            ] {
                jail.set_env(var, value);
            }
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.database_url.expose_secret(), "postgres://gofer:pw-sentinel-1@db:5432/gofer");
            assert_eq!(config.run_tokens.keys["k1"].expose_secret(), "sentinel-7");
            let debug = format!("{config:?} {config:#?}");
            assert!(!debug.contains("sentinel"), "{debug}");
            Ok(())
        });
    }

    #[test]
    fn unknown_file_keys_are_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("gofer.toml", "lisen = \"0.0.0.0:9000\"\n")?;
            let err = Config::load(Some(Path::new("gofer.toml"))).unwrap_err().to_string();
            assert!(err.contains("lisen"), "{err}");
            Ok(())
        });
    }
}
