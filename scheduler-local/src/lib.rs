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
//! are unshared, so there is only a loopback network unless [`LocalSchedulerConfig::share_network`].
//! The task is uid/gid 65534 (nobody) with no capabilities; it can read what any host user can read
//! in `/usr` and `/etc`, so keep secrets out of world-readable files there.
//!
//! A task of kind gofer ([`TaskSpec::gofer_cli`]) also gets the server's `gofer` binary
//! ([`LocalSchedulerConfig::gofer_binary`]) read-only at `/opt/gofer/bin/gofer`, with
//! `/opt/gofer/bin` first on its `PATH`: the sandbox's stand-in for the gofer CLI image.
//!
//! # Root or not
//! As root, bwrap is started through `setpriv` as host uid 65534: otherwise the sandbox user would
//! be host root in disguise (able to read `/etc/shadow` through the read-only `/etc`, and exempt from
//! `RLIMIT_NPROC`). Then uid 65534 must be able to enter the work directory (checked by
//! [`LocalScheduler::new`]), and each `job/` directory is chowned to 65534. As another user, bwrap
//! maps that user onto uid 65534 in the sandbox; files in `job/` belong to the server's user.
//!
//! # Limits
//! `prlimit --as` caps address space: going past it makes allocations fail inside the task (it
//! exits non-zero; the scheduler cannot tell this from other failures, so `OutOfMemory` is never
//! reported). `prlimit --nproc` counts every process of the sandbox's host uid (65534 as root, the
//! server's user otherwise), so it is a ceiling shared by all jobs running at once, not a per-job quota.
//! The wall-clock timeout SIGKILLs the sandbox. Output is not size-limited.
//!
//! # On disk
//! `<work_dir>/<job_id>/{job/, output.log, info.json, result.json}` (ids longer than 128 bytes get a
//! hashed directory name). `info.json` is bwrap's `--info-fd` output (`child-pid`, for attach via
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

mod exec;
mod job;
mod layout;
mod operations;
mod probe;
mod process;
mod sandbox;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gofer_core::scheduler::{
    BoxFuture, ExecRequest, ExecSession, LogChunk, Scheduler, SchedulerError, TaskObservation, TaskSpec,
};

use crate::job::Job;
use crate::sandbox::Tools;

/// Settings for [`LocalScheduler`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct LocalSchedulerConfig {
    /// Root of the per-job directories. Default `./.gofer/sandbox`.
    pub work_dir: PathBuf,
    /// The bubblewrap binary: a path, or a name looked up on `PATH`. Default `bwrap`.
    pub bwrap_path: PathBuf,
    /// Give tasks the host's network instead of loopback only. Default false.
    pub share_network: bool,
    /// Address-space limit per sandbox, in MiB (`prlimit --as`). Default 4096.
    pub memory_limit_mb: u64,
    /// Process limit (`prlimit --nproc`), counted per host uid: see the crate docs. Default 512.
    pub max_processes: u64,
    /// The `gofer` binary that `kind: gofer` tasks run ([`TaskSpec::gofer_cli`]), mounted
    /// read-only at `/opt/gofer/bin/gofer`. `None`: the `gofer` next to this executable, else the
    /// one on `PATH`, else such tasks are refused.
    pub gofer_binary: Option<PathBuf>,
}

impl Default for LocalSchedulerConfig {
    fn default() -> Self {
        Self {
            work_dir: PathBuf::from("./.gofer/sandbox"),
            bwrap_path: PathBuf::from("bwrap"),
            share_network: false,
            memory_limit_mb: 4096,
            max_processes: 512,
            gofer_binary: None,
        }
    }
}

/// Why a [`LocalScheduler`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum LocalSchedulerError {
    /// bwrap is not installed (or not at the configured path).
    #[error("bubblewrap (bwrap) not found at {path:?}: apt-get install -y bubblewrap")]
    BwrapNotFound {
        /// The configured `bwrap_path`.
        path: PathBuf,
    },
    /// The configured `gofer_binary` is not an executable file.
    #[error("the gofer binary for kind gofer tasks is not an executable file at {path:?}")]
    GoferNotFound {
        /// The configured `gofer_binary`.
        path: PathBuf,
    },
    /// Another program the sandbox needs is missing.
    #[error("{tool} not found on PATH: apt-get install -y util-linux")]
    ToolNotFound {
        /// `prlimit`, `setpriv` or `sh`.
        tool: &'static str,
    },
    /// The work directory could not be created or resolved.
    #[error("cannot use the sandbox work directory {path:?}: {source}")]
    WorkDir {
        /// The configured `work_dir`.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// bwrap is there but cannot start a sandbox (no user namespaces, unreachable work directory…).
    #[error("bubblewrap cannot start a sandbox on this host: {detail}")]
    SandboxUnusable {
        /// What the probe sandbox reported.
        detail: String,
    },
}

/// The embedded scheduler: runs each job in a bubblewrap sandbox on this host. See the crate docs.
#[derive(Debug)]
pub struct LocalScheduler {
    config: LocalSchedulerConfig,
    tools: Tools,
    /// Jobs started by this process. The lock also serialises starts, which makes them idempotent.
    jobs: tokio::sync::Mutex<HashMap<String, Arc<Job>>>,
}

impl LocalScheduler {
    /// Checks the tools, creates the work directory and runs a probe sandbox (a blocking call of a
    /// few milliseconds), so a host that cannot sandbox fails at start-up rather than on the first task.
    pub fn new(config: LocalSchedulerConfig) -> Result<Self, LocalSchedulerError> {
        let privileged = rustix::process::geteuid().is_root();
        let mut tools = Tools::find(&config.bwrap_path, config.gofer_binary.as_deref(), privileged)?;
        let work_dir_error = |source| LocalSchedulerError::WorkDir { path: config.work_dir.clone(), source };
        std::fs::create_dir_all(&config.work_dir).map_err(work_dir_error)?;
        // Absolute, so bwrap's bind sources do not depend on the server's current directory.
        let work_dir = std::fs::canonicalize(&config.work_dir).map_err(work_dir_error)?;
        let config = LocalSchedulerConfig { work_dir, ..config };
        probe::probe(&tools, &config, &config.work_dir)?;
        if privileged && let Some(gofer) = &tools.gofer {
            // bwrap binds as the sandbox user, who can enter the work directory (the probe just
            // proved it) but maybe not the directories holding the server's binary.
            tools.gofer = Some(stage_gofer_binary(gofer, &config.work_dir).map_err(work_dir_error)?);
        }
        tracing::info!(
            work_dir = %config.work_dir.display(),
            privileged,
            share_network = config.share_network,
            gofer = ?tools.gofer,
            "local sandbox scheduler ready"
        );
        Ok(Self { config, tools, jobs: tokio::sync::Mutex::new(HashMap::new()) })
    }

    /// The configuration in use (`work_dir` made absolute).
    pub fn config(&self) -> &LocalSchedulerConfig {
        &self.config
    }
}

/// Puts `gofer` at `<work_dir>/.gofer-cli/gofer` (a hard link when it can, else a copy), readable
/// and executable by everyone, and answers that path.
fn stage_gofer_binary(gofer: &std::path::Path, work_dir: &std::path::Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = work_dir.join(".gofer-cli");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let staged = dir.join("gofer");
    match std::fs::remove_file(&staged) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // A hard link shares the original's mode, so it only serves when that lets everyone run it;
    // otherwise a copy, widened.
    let runnable_by_all = std::fs::metadata(gofer)?.permissions().mode() & 0o005 == 0o005;
    if !(runnable_by_all && std::fs::hard_link(gofer, &staged).is_ok()) {
        std::fs::copy(gofer, &staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))?;
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
