//! Gofer's embedded default [`Scheduler`]: each task runs rootless in a bubblewrap sandbox on this host.
//!
//! # What a task sees
//! The task runs on the host's own userland: `/usr` and `/etc` mounted read-only, `/bin`, `/lib`
//! and `/lib64` as links into `/usr`. **The spec's image is not pulled or used**: a pipeline asking
//! for `node:22` gets whatever node this host has. Use the Nomad scheduler for real images.
//! Since nothing is pulled, the spec's `registry_auth` (resolved pull credentials) is ignored.
//! Besides that: a fresh `/proc`, a minimal `/dev`, a private tmpfs `/tmp`, and the job's own
//! directory read-write at `/job` (also the working directory and, by default, `HOME`). The
//! environment is exactly the spec's `env` plus `PATH` and `HOME` unless it sets them. All namespaces
//! are unshared, so there is only a loopback network unless [`SandboxSettings::share_network`].
//! The task is uid/gid 65534 (nobody) with no capabilities; it can read what any host user can read
//! in `/usr` and `/etc`, so keep secrets out of world-readable files there.
//!
//! A task of kind gofer ([`TaskSpec::gofer_cli`]) also gets the server's `gofer` binary
//! ([`SandboxSettings::gofer_binary`]) read-only at `/opt/gofer/bin/gofer`, with
//! `/opt/gofer/bin` first on its `PATH`: the sandbox's stand-in for the gofer CLI image.
//!
//! # Root or not
//! As root, bwrap is started through `setpriv` as host uid 65534: otherwise the sandbox user would
//! be host root in disguise (able to read root-only files, and exempt from `RLIMIT_NPROC`). Then
//! uid 65534 must be able to enter the work directory (checked by [`LocalScheduler::new`]). Without
//! root, bwrap could only map the server's own user into the sandbox, so the scheduler refuses to
//! start unless [`SandboxSettings::unsafe_tasks_as_service_user`] says otherwise (development).
//!
//! # Limits
//! Each task runs in cgroups of its own (`cgroup.rs`): memory for all its processes with its tmpfs
//! pages (a task over it ends `OutOfMemory`), `pids.max`, and a CPU quota and weight from its
//! `cpu`. `/tmp` and `/dev/shm` are sized tmpfs, `/dev` is read-only, no user namespace can be
//! made inside (`--disable-userns`) and a seccomp filter refuses namespace, mount, keyring, BPF and
//! other kernel surface (`seccomp.rs`). Without usable cgroups ([`CgroupMode`]), limits fall back to
//! `prlimit --as` per process and `prlimit --nproc` per host uid (shared by all sandboxes). The
//! wall-clock timeout SIGKILLs the sandbox. Output is not size-limited.
//!
//! # On disk
//! `<work_dir>/<job_id>/{job/, output.log, identity.json, info.json, result.json}` (job ids are
//! `{tenant}~{namespace}~{pipeline}~{run}~{task}~{attempt}`; ids longer than 128 bytes get a hashed
//! directory name). `identity.json` records the execution the job was started for, before it
//! starts: a start of the same id for another execution, or of a directory without a record, is
//! refused rather than adopted. `info.json` is bwrap's `--info-fd` output (`child-pid`, for attach via
//! `nsenter`); `result.json` keeps the final observation so a restarted server can still report it.
//! A sandbox dies with the server (`--die-with-parent`): after a restart, a job without a result is
//! [`TaskObservation::Unknown`].
//!
//! # Attach
//! [`Scheduler::exec`] runs a command inside a running sandbox with `nsenter` (same namespaces,
//! same unprivileged user, `/job`), on a pty or on pipes: see `exec.rs`. Only jobs started by this
//! server process can be entered.
//!
//! # Processes
//! A job is `bwrap` (the launcher tokio waits for) → the sandbox's pid 1 (bwrap's reaper) → the task.
//! The launcher exits with the task's status before pid 1 is gone, so pid 1 is orphaned and reaped by
//! the host's init; when this server is itself pid 1 (a container without an init), it reaps them.

mod cgroup;
mod error;
mod exec;
mod files;
mod identity;
mod job;
mod layout;
mod network;
mod operations;
mod output;
mod probe;
mod process;
mod sandbox;
mod seccomp;
mod settings;

pub use error::LocalSchedulerError;
pub use settings::{CgroupMode, LocalSchedulerConfig, SandboxSettings};

use std::collections::HashMap;

use sha2::Digest;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gofer_core::scheduler::{
    BoxFuture, ExecRequest, ExecSession, LogChunk, Scheduler, SchedulerError, TaskObservation, TaskSpec,
};

use crate::cgroup::Cgroups;
use crate::files::SandboxFiles;
use crate::job::Job;
use crate::network::Network;
use crate::sandbox::Tools;

/// The embedded scheduler: runs each job in a bubblewrap sandbox on this host. See the crate docs.
#[derive(Debug)]
pub struct LocalScheduler {
    config: LocalSchedulerConfig,
    tools: Tools,
    /// Where task cgroups are made; `None`: per-process limits only (see [`CgroupMode`]).
    cgroups: Option<Cgroups>,
    /// How networked tasks get their network; `None`: `share_network` is off.
    network: Option<Network>,
    /// Jobs started by this process. The lock also serialises starts, which makes them idempotent.
    jobs: tokio::sync::Mutex<HashMap<String, Arc<Job>>>,
}

impl LocalScheduler {
    /// Checks the tools, creates the work directory and runs a probe sandbox (a blocking call of a
    /// few milliseconds), so a host that cannot sandbox fails at start-up rather than on the first task.
    pub fn new(config: LocalSchedulerConfig) -> Result<Self, LocalSchedulerError> {
        let privileged = rustix::process::geteuid().is_root();
        check_sandbox_user(privileged, config.settings.unsafe_tasks_as_service_user)?;
        let mut tools = Tools::find(&config.settings.bwrap_path, config.settings.gofer_binary.as_deref(), privileged)?;
        let work_dir_error = |source| LocalSchedulerError::WorkDir { path: config.work_dir.clone(), source };
        std::fs::create_dir_all(&config.work_dir).map_err(work_dir_error)?;
        // Absolute, so bwrap's bind sources do not depend on the server's current directory.
        let work_dir = std::fs::canonicalize(&config.work_dir).map_err(work_dir_error)?;
        let config = LocalSchedulerConfig { work_dir, ..config };
        // As root, the shared files go where the task's mount table shows no state directory.
        let shared = if privileged { PathBuf::from(STAGED_DIR) } else { config.work_dir.join(".sandbox") };
        tools.files = SandboxFiles::write(&config.work_dir.join(".sandbox"), &shared).map_err(work_dir_error)?;
        probe::probe(&tools, &config, &config.work_dir)?;
        let network = match config.settings.share_network {
            false => None,
            true => Some(
                Network::prepare(&config.settings.egress_allow, config.api_port)
                    .map_err(|detail| LocalSchedulerError::NetworkUnusable { detail })?,
            ),
        };
        let cgroups = match config.settings.cgroups {
            CgroupMode::Off => None,
            mode => match Cgroups::detect() {
                Ok(cgroups) => Some(cgroups),
                Err(detail) if mode == CgroupMode::Required => {
                    return Err(LocalSchedulerError::CgroupsUnusable { detail });
                }
                Err(detail) => {
                    tracing::warn!(
                        %detail,
                        "no cgroup can be used: tasks are limited per process only (memory per process, \
                         processes per host uid); see docs/sandbox.md"
                    );
                    None
                }
            },
        };
        if privileged && let Some(gofer) = &tools.gofer {
            // bwrap binds as the sandbox user, who may not be able to enter the directories holding
            // the server's binary; and the staged path names no state directory.
            tools.gofer = Some(stage_gofer_binary(gofer).map_err(work_dir_error)?);
        }
        tracing::info!(
            work_dir = %config.work_dir.display(),
            privileged,
            share_network = config.settings.share_network,
            gofer = ?tools.gofer,
            cgroups = ?cgroups.as_ref().map(Cgroups::version),
            "local sandbox scheduler ready"
        );
        Ok(Self { config, tools, cgroups, network, jobs: tokio::sync::Mutex::new(HashMap::new()) })
    }

    /// The configuration in use (`work_dir` made absolute).
    pub fn config(&self) -> &LocalSchedulerConfig {
        &self.config
    }

    /// Whether each task runs in cgroups of its own (memory, processes and CPU limited for the
    /// whole task); false: per-process limits only (see [`CgroupMode`]).
    pub fn limits_whole_tasks(&self) -> bool {
        self.cgroups.is_some()
    }

    /// Where this scheduler keeps its task cgroups (one directory per controller hierarchy on
    /// cgroup v1; each holds `slot-<n>` groups, reused task after task); empty without cgroups.
    pub fn task_cgroup_parents(&self) -> Vec<PathBuf> {
        self.cgroups.as_ref().map(Cgroups::parents).unwrap_or_default()
    }
}

/// Refuses to run tasks as the service's own user: without root, bwrap maps that user into the
/// sandbox, so a task would share the server's uid on the host. Mapping a distinct uid needs a
/// subuid range and `newuidmap` (not done yet, see docs/sandbox.md).
fn check_sandbox_user(privileged: bool, unsafe_opt_out: bool) -> Result<(), LocalSchedulerError> {
    if privileged {
        return Ok(());
    }
    let uid = rustix::process::geteuid().as_raw();
    if unsafe_opt_out {
        tracing::warn!(
            uid,
            "tasks run as the service's own user (sandbox.unsafe_tasks_as_service_user): development only"
        );
        return Ok(());
    }
    Err(LocalSchedulerError::NoSandboxUser { uid })
}

/// Where a root server stages what sandboxes bind (the `gofer` binary for `kind: gofer` tasks, the
/// task's `/etc`): outside the state directory, so a task's mount table does not name it.
const STAGED_DIR: &str = "/run/gofer-sandbox";

/// Puts `gofer` at `/run/gofer-sandbox/gofer-<key>` (a hard link when it can, else a copy),
/// readable and executable by everyone, and answers that path. The key is the binary's identity (device, inode, size, modification time),
/// so servers of one binary share one copy and a new binary gets a new one; `/run` is emptied at
/// boot.
fn stage_gofer_binary(gofer: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(gofer)?;
    let identity = format!("{}:{}:{}:{}.{}", meta.dev(), meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec());
    let key = &hex::encode(sha2::Sha256::digest(identity.as_bytes()))[..16];
    let dir = std::path::Path::new(STAGED_DIR);
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let staged = dir.join(format!("gofer-{key}"));
    if !staged.exists() {
        // A hard link when the binary is on the same filesystem and everyone may run it (no copy
        // to store); otherwise a copy to a private name, then a rename: a concurrent server never
        // binds half a file.
        let runnable_by_all = meta.permissions().mode() & 0o005 == 0o005;
        // A concurrent server may have linked it first: that is as good.
        if !(runnable_by_all && (std::fs::hard_link(gofer, &staged).is_ok() || staged.exists())) {
            let tmp = dir.join(format!(".gofer-{key}.{}", files::unique_suffix()));
            std::fs::copy(gofer, &tmp)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&tmp, &staged)?;
        }
    }
    Ok(staged)
}

/// [`Scheduler::default_parallel_tasks`] of the local sandbox: the tasks share the replica's host.
pub const LOCAL_PARALLEL_TASKS: usize = 16;

impl Scheduler for LocalScheduler {
    fn name(&self) -> &'static str {
        "local"
    }

    /// Tasks run on this host: as many at once as a small host takes.
    fn default_parallel_tasks(&self) -> usize {
        LOCAL_PARALLEL_TASKS
    }

    /// The sandboxes are this process's children: only it can enter them.
    fn exec_needs_starting_replica(&self) -> bool {
        true
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(self.start_job(spec))
    }

    fn observe<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<TaskObservation, SchedulerError>> {
        Box::pin(self.observe_job(job_id))
    }

    fn read_logs<'a>(
        &'a self,
        job_id: &'a str,
        offset: u64,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<LogChunk, SchedulerError>> {
        Box::pin(self.read_job_logs(job_id, offset, max_bytes))
    }

    fn stop<'a>(&'a self, job_id: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(self.stop_job(job_id, grace))
    }

    fn purge<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(self.purge_job(job_id))
    }

    fn exec<'a>(&'a self, request: &'a ExecRequest) -> BoxFuture<'a, Result<ExecSession, SchedulerError>> {
        Box::pin(self.exec_job(request))
    }

    /// Every job runs on this host.
    fn node<'a>(&'a self, _job_id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async {
            tokio::fs::read_to_string("/proc/sys/kernel/hostname").await.ok().map(|h| h.trim().to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_root_tasks_never_run_as_the_service_user_unless_the_operator_says_so() {
        assert!(check_sandbox_user(true, false).is_ok());
        let refused = check_sandbox_user(false, false).unwrap_err();
        assert!(matches!(refused, LocalSchedulerError::NoSandboxUser { .. }), "{refused:?}");
        assert!(refused.to_string().contains("sandbox.unsafe_tasks_as_service_user"), "{refused}");
        assert!(check_sandbox_user(false, true).is_ok());
    }
}
