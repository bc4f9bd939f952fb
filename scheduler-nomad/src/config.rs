//! Settings of the Nomad scheduler (the `[nomad]` section of the server config; docs/config.md).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The task driver the Nomad clients run tasks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// `docker` (point the plugin at a rootless dockerd).
    Docker,
    /// `podman` (nomad-driver-podman, rootless).
    Podman,
}

impl Driver {
    /// The driver's name in a job spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Docker => "docker",
            Driver::Podman => "podman",
        }
    }
}

/// TLS towards the Nomad servers (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NomadTls {
    /// PEM CA certificate that signed the Nomad servers' certificates.
    ///
    /// Production: with TLS
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for Nomad's `verify_https_client`; with `client_key` (both or
    /// neither).
    ///
    /// Production: with mTLS
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key.
    pub client_key: Option<PathBuf>,
}

/// Settings of [`NomadScheduler`](crate::NomadScheduler).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NomadConfig {
    /// Nomad's HTTP API (also `GOFER_NOMAD_ADDR`).
    ///
    /// Production: **required** with `scheduler = "nomad"`
    pub addr: String,
    /// ACL token sent as `X-Nomad-Token` (also `GOFER_NOMAD_TOKEN`; policy in
    /// `infra/nomad/gofer-service-policy.hcl`); never logged.
    ///
    /// Production: **required** (from a secret store)
    pub token: Option<String>,
    /// TLS files.
    pub tls: NomadTls,
    /// `?region=` on every call and `Job.Region`; unset: the agent's own.
    ///
    /// Production: multi-region
    pub region: Option<String>,
    /// Datacenters task jobs may run in.
    pub datacenters: Vec<String>,
    /// Task driver: `docker` (rootless dockerd) or `podman` (rootless).
    pub driver: Driver,
    /// Node pool of tenants whose plan sets no `node_pool` (the seeded trial plan uses
    /// `gofer-trial`).
    ///
    /// Production: a dedicated pool, off the servers
    pub node_pool: String,
    /// Registries images may come from, by exact `host[:port]` (`docker.io`, `ghcr.io`,
    /// `registry.example.com:5000`); `*` is any registry the egress policy accepts, i.e. not on a
    /// loopback, private, link-local, shared, reserved or cloud metadata address nor `localhost`; a
    /// registry named here is allowed whatever its address (`["*", "10.0.0.5:5000"]` adds one
    /// private mirror). Empty: the same as `["*"]`. An image without a host is `docker.io`; others
    /// are refused (`scheduler_error`, naming the registry and why). docs/nomad.md, "Registries".
    ///
    /// Production: set
    pub allowed_registries: Vec<String>,
    /// The `uid:gid` tasks run as; root is refused at start-up.
    pub task_user: String,
    /// `pids_limit` of every task (must not exceed the plugin's).
    pub pids_limit: u32,
    /// `ulimit nofile` (soft and hard) of every task; at least 64. `fsize` is the plan's
    /// `max_disk_mb`.
    pub nofile_limit: u32,
    /// Size of every task's tmpfs `/tmp` in MiB (at most the plan's `max_disk_mb`; counted in the
    /// task's memory).
    pub tmp_size_mb: u32,
    /// Absolute path, on the client nodes, of the seccomp profile every job names (`security_opt`);
    /// install `infra/nomad/seccomp.json` there (docs/nomad.md, "Isolation on the client nodes").
    ///
    /// Production: install the file
    pub seccomp_profile: String,
    /// docker: set `storage_opt size` to the plan's `max_disk_mb`; needs overlay2 on xfs with
    /// `pquota`, so set `false` on other storage (podman jobs never carry it).
    ///
    /// Production: `false` unless xfs + pquota
    pub storage_size_limit: bool,
    /// CNI network (`cni/<name>`) of tasks whose plan allows network; install
    /// `infra/nomad/gofer-egress.conflist` and `gofer-egress.nft` on the client nodes.
    pub egress_network: String,
    /// Nomad `CPU` MHz per 1000 millicores a task asks for.
    ///
    /// Production: your nodes' MHz
    pub cpu_mhz_per_core: u32,
    /// Reserve half the task's memory (`MemoryMB`) and cap at all of it (`MemoryMaxMB`); needs
    /// oversubscription enabled in Nomad.
    pub memory_oversubscription: bool,
    /// `KillTimeout`: stop signal → kill, in seconds.
    ///
    /// Production: as `engine.stop_grace_s`
    pub kill_timeout_s: u64,
    /// Timeout of one Nomad API call, in seconds (the event stream has none; it counts 45 s of
    /// silence as broken).
    pub request_timeout_s: u64,
    /// Follow `/v1/event/stream` (false: poll allocations).
    pub event_stream: bool,
    /// Hold `follow=true` log streams per task output (false: poll logs every monitor interval;
    /// polling also takes over by itself when a stream cannot be opened 3 times in a row).
    pub follow_logs: bool,
    /// Set `TaskGroup.MaxRunDuration` from the task timeout (Nomad 2.0.3+; older servers ignore it,
    /// the engine enforces the timeout anyway).
    pub max_run_duration: bool,
}

impl Default for NomadConfig {
    fn default() -> Self {
        Self {
            addr: "http://127.0.0.1:4646".into(),
            token: None,
            tls: NomadTls::default(),
            region: None,
            datacenters: vec!["*".into()],
            driver: Driver::Docker,
            node_pool: "default".into(),
            allowed_registries: Vec::new(),
            task_user: "65534:65534".into(),
            pids_limit: 512,
            nofile_limit: 8192,
            tmp_size_mb: 256,
            seccomp_profile: "/etc/gofer/seccomp.json".into(),
            storage_size_limit: true,
            egress_network: "gofer-egress".into(),
            cpu_mhz_per_core: 1000,
            memory_oversubscription: false,
            kill_timeout_s: 10,
            request_timeout_s: 10,
            event_stream: true,
            follow_logs: true,
            max_run_duration: true,
        }
    }
}

impl NomadConfig {
    /// Refuses settings that would weaken every job: a root task user, a seccomp profile that is
    /// not a file, limits of zero, a network name Nomad cannot take.
    pub fn validate(&self) -> Result<(), String> {
        let user = self.task_user.split(':').next().unwrap_or_default();
        if user.is_empty() || user == "0" || user == "root" {
            return Err("task_user must not be root".into());
        }
        if !self.seccomp_profile.starts_with('/') {
            return Err(format!(
                "seccomp_profile must be an absolute path on the client nodes, not {:?}",
                self.seccomp_profile
            ));
        }
        if self.nofile_limit < 64 || self.tmp_size_mb == 0 || self.pids_limit == 0 {
            return Err("nofile_limit (at least 64), tmp_size_mb and pids_limit must be set".into());
        }
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.egress_network.is_empty() || !self.egress_network.chars().all(name_ok) {
            return Err(format!("egress_network {:?} is not a CNI network name", self.egress_network));
        }
        Ok(())
    }
}

impl std::fmt::Debug for NomadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NomadConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .field("region", &self.region)
            .field("datacenters", &self.datacenters)
            .field("driver", &self.driver)
            .field("node_pool", &self.node_pool)
            .field("allowed_registries", &self.allowed_registries)
            .field("seccomp_profile", &self.seccomp_profile)
            .field("egress_network", &self.egress_network)
            .finish_non_exhaustive()
    }
}
