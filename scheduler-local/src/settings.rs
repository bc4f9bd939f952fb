//! The local sandbox's settings (the `[sandbox]` section of the server config; docs/config.md), and
//! the configuration the scheduler runs with: those and what the server tells it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The local sandbox scheduler's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSettings {
    /// Where per-task work directories live; unset: `<state_dir>/sandbox`. As root, uid 65534 must
    /// be able to enter it (`infra/start.sh` picks `/var/lib/gofer/sandbox-…` when the state dir is
    /// under a private home).
    pub work_dir: Option<PathBuf>,
    /// The bubblewrap binary: a path, or a name looked up on `PATH`.
    pub bwrap_path: PathBuf,
    /// Give tasks of plans with `allow_network` a network **of their own**: their own namespace,
    /// outbound through `slirp4netns`, with nftables egress rules refusing loopback, the host's
    /// own addresses, private, link-local, shared, multicast, reserved and metadata addresses
    /// (docs/sandbox.md, "Network"). Never the host's namespace. Off: loopback only for every
    /// task; trial plans never get a network. Needs `slirp4netns`, `nft`, `nsenter` and `ip` at
    /// start-up (`infra/deps.sh` installs them).
    ///
    /// Production: on where tasks need the internet
    pub share_network: bool,
    /// Networks (CIDR) networked tasks may reach although the egress policy refuses them: a
    /// private mirror or proxy, say. The host's resolvers are always allowed for DNS (port 53).
    #[schemars(with = "Vec<String>")]
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Memory ceiling per task, in MiB: a task gets its own `memory_mb` up to this, as its memory
    /// cgroup's limit (tmpfs pages included; `/tmp` is sized to it). Without cgroups: the
    /// address-space limit of each process (`prlimit --as`).
    pub memory_limit_mb: u64,
    /// Processes and threads per task (`pids.max` of the task's cgroup; `prlimit --nproc` at 16 ×
    /// this is a host-wide backstop). Without cgroups: `prlimit --nproc`, counted over every
    /// sandbox of the host uid together.
    pub max_processes: u64,
    /// Per-task cgroups (docs/sandbox.md, "Limits"): `auto` uses them when the host allows it
    /// (cgroup v2 with `memory` and `pids` delegated to the service, or the v1 controllers
    /// writable, as root) and otherwise logs a warning at start-up and falls back to per-process
    /// limits; `required` refuses to start without them; `off` never uses them.
    ///
    /// Production: `required` on hosts that run trials
    pub cgroups: CgroupMode,
    /// On a host where no cgroup can limit each task, tasks of plans marked `untrusted` (the trial
    /// plan) are refused (`scheduler_error`, the start-up log says why); `true` runs them anyway
    /// under per-process limits only.
    ///
    /// Production: keep off
    pub allow_untrusted_without_cgroups: bool,
    /// Without root, the local scheduler refuses to start (tasks must never run as the service's
    /// own uid); `true` lets it run tasks as that user anyway: **development only**, a task could
    /// then reach the server's processes and files (docs/sandbox.md).
    ///
    /// Production: never in production
    pub unsafe_tasks_as_service_user: bool,
    /// The `gofer` binary `kind: gofer` tasks run: mounted read-only at `/opt/gofer/bin/gofer`,
    /// with `/opt/gofer/bin` first on their `PATH`; unset: the `gofer` next to the server's
    /// executable, else on `PATH`. Set and missing: the server does not start; unset and not
    /// found: such tasks fail with reason `scheduler_error`. As root, the server stages it at
    /// start-up as `/run/gofer-sandbox/gofer-<key>` (a hard link when the binary is on the same
    /// filesystem and runnable by all, else a copy readable by all; keyed by the binary's identity
    /// and shared by servers of one binary), since the sandbox user binds it and may not be able
    /// to enter the directory it came from, and so a task's mount table names no state directory.
    pub gofer_binary: Option<PathBuf>,
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
            cgroups: CgroupMode::Auto,
            allow_untrusted_without_cgroups: false,
            unsafe_tasks_as_service_user: false,
            gofer_binary: None,
        }
    }
}

/// What [`LocalScheduler`](crate::LocalScheduler) runs with: its settings, and what the server tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSchedulerConfig {
    /// The `[sandbox]` settings.
    pub settings: SandboxSettings,
    /// Root of the per-job directories (`settings.work_dir`, else under the state dir).
    pub work_dir: PathBuf,
    /// The API's port on this host's loopback, forwarded into networked `kind: gofer` tasks (their
    /// `127.0.0.1:<port>` is the API).
    pub api_port: Option<u16>,
    /// Bytes of a task's output kept on the host (`output.log`): this much as it arrives, then
    /// half as much again of its end (see `output.rs`). Default 10 MiB, the engine's log cap.
    pub max_output_bytes: u64,
}

impl Default for LocalSchedulerConfig {
    fn default() -> Self {
        Self {
            settings: SandboxSettings::default(),
            work_dir: PathBuf::from("./.gofer/sandbox"),
            api_port: None,
            max_output_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Whether the local scheduler limits each task with cgroups of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMode {
    /// Use cgroups when the host allows it (cgroup v2 with memory and pids delegated to the
    /// service, or the v1 controllers writable); otherwise say so at start-up and fall back to
    /// per-process limits.
    #[default]
    Auto,
    /// Refuse to start without usable cgroups.
    Required,
    /// Never use cgroups (per-process limits only).
    Off,
}
