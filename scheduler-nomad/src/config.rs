//! Settings of the Nomad scheduler (the `[nomad]` section of the server config; docs/config.md).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The task driver the Nomad clients run tasks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NomadTls {
    /// CA certificate that signed the Nomad servers' certificates.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate, for Nomad's `verify_https_client`.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key.
    pub client_key: Option<PathBuf>,
}

/// Settings of [`NomadScheduler`](crate::NomadScheduler).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NomadConfig {
    /// Nomad's HTTP address (`GOFER_NOMAD_ADDR`). Default `http://127.0.0.1:4646`.
    pub addr: String,
    /// ACL token (`GOFER_NOMAD_TOKEN`), sent as `X-Nomad-Token`; never logged.
    pub token: Option<String>,
    /// TLS files.
    pub tls: NomadTls,
    /// Region (`?region=` and `Job.Region`); `None`: the agent's own.
    pub region: Option<String>,
    /// Datacenters jobs may run in. Default `["*"]`.
    pub datacenters: Vec<String>,
    /// Task driver. Default `docker`.
    pub driver: Driver,
    /// Node pool of tenants whose plan names none. Default `default`.
    pub node_pool: String,
    /// Registries images may come from (`docker.io`, `ghcr.io`, `registry.example.com:5000`), by
    /// exact name; `*` stands for any registry the egress policy accepts. Empty: `["*"]`. A
    /// registry on a loopback, private, link-local or metadata address (or `localhost`) is refused
    /// unless it is listed by name. An image without a registry host is `docker.io`.
    pub allowed_registries: Vec<String>,
    /// The user tasks run as (`uid:gid`); never root. Default `65534:65534`.
    pub task_user: String,
    /// Process limit per task (`pids_limit`). Default 512.
    pub pids_limit: u32,
    /// Open files per process (`ulimit nofile`). Default 8192.
    pub nofile_limit: u32,
    /// Size of the task's `/tmp` tmpfs in MiB (at most the plan's disk; counted in the task's
    /// memory). Default 256.
    pub tmp_size_mb: u32,
    /// Seccomp profile on the client nodes (`security_opt = ["seccomp=<path>"]`; ship
    /// `infra/nomad/seccomp.json`). Default `/etc/gofer/seccomp.json`.
    pub seccomp_profile: String,
    /// Set the docker driver's `storage_opt = { size = <disk> }` (needs overlay2 on xfs mounted
    /// with `pquota`; turn off where the storage driver cannot honour it). Default true.
    pub storage_size_limit: bool,
    /// The CNI network (`cni/<name>` on the client nodes) of tasks whose plan allows network;
    /// its egress rules refuse private and metadata addresses (`infra/nomad/gofer-egress.*`).
    /// Default `gofer-egress`.
    pub egress_network: String,
    /// Nomad CPU MHz given per 1000 millicores a task asks for. Default 1000.
    pub cpu_mhz_per_core: u32,
    /// Set `MemoryMaxMB` (needs memory oversubscription enabled in Nomad's scheduler config).
    pub memory_oversubscription: bool,
    /// Seconds between the stop signal and the kill (`KillTimeout`). Default 10.
    pub kill_timeout_s: u64,
    /// Timeout of one API call, in seconds. Default 10.
    pub request_timeout_s: u64,
    /// Follow `/v1/event/stream` (false: poll allocations only). Default true.
    pub event_stream: bool,
    /// Hold `follow=true` log streams (false: poll task logs every monitor interval). Default true.
    pub follow_logs: bool,
    /// Set `TaskGroup.MaxRunDuration` from the task timeout (Nomad 2.0.3+; older servers ignore it).
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
