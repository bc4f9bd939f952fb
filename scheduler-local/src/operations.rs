//! The [`Scheduler`](gofer_core::scheduler::Scheduler) operations of [`LocalScheduler`]: start, observe, read_logs, stop, purge.

use std::io::{ErrorKind, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gofer_core::scheduler::{LogChunk, SchedulerError, TaskObservation, TaskSpec};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::LocalScheduler;
use crate::cgroup::TaskLimits;
use crate::identity;
use crate::job::{self, Job, JobLimits};
use crate::layout::JobPaths;
use crate::output::{self, OutputCap};
use crate::sandbox::{self, HOST_PATH, JobMount, ProcessLimits, SandboxCommand, SandboxRequest};

/// How long a networked sandbox may take to report its pid 1, before its network is set up.
const NETWORK_WAIT: Duration = Duration::from_secs(5);

/// Read buffers start at most this big, so a huge `max_bytes` does not allocate up front.
const INITIAL_READ_CAPACITY: usize = 64 * 1024;

fn unavailable(what: &str, error: impl std::fmt::Display) -> SchedulerError {
    SchedulerError::Unavailable(format!("{what}: {error}"))
}

impl LocalScheduler {
    fn paths(&self, job_id: &str) -> Result<JobPaths, SchedulerError> {
        JobPaths::new(&self.config.work_dir, job_id)
    }

    /// Starts a job unless its id is already known here or on disk; an existing job is taken as
    /// this start's only when its `identity.json` names the same execution (see `identity.rs`).
    ///
    /// A failure to launch (a missing tool, no fds left) removes what was created and returns
    /// [`SchedulerError::Unavailable`], so the engine's retry really starts the job; recording
    /// `Failed` instead would fail the task for what is a host problem, and leave a directory that
    /// makes every retry a no-op.
    #[tracing::instrument(skip_all, fields(job_id = %spec.job_id), err)]
    pub(crate) async fn start_job(&self, spec: &TaskSpec) -> Result<(), SchedulerError> {
        let paths = self.paths(&spec.job_id)?;
        sandbox::check_spec(spec)?;
        if spec.untrusted && self.cgroups.is_none() && !self.config.settings.allow_untrusted_without_cgroups {
            return Err(SchedulerError::Rejected(
                "this host cannot limit each task on its own (no usable cgroup), so tasks of untrusted plans \
                 (trials) are refused here; see docs/sandbox.md, \"Limits\""
                    .into(),
            ));
        }
        // Held until the job is registered: a concurrent start of the same id waits, then sees it.
        let mut jobs = self.jobs.lock().await;
        if jobs.contains_key(&spec.job_id) {
            identity::adopt(&spec.job_id, &identity::read(&paths.identity).await?, &spec.identity())?;
            tracing::debug!("job already started");
            return Ok(());
        }
        // Creating the directory is the claim: it also covers jobs of an earlier server process.
        match tokio::fs::create_dir(&paths.root).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                identity::adopt(&spec.job_id, &identity::read(&paths.identity).await?, &spec.identity())?;
                tracing::info!("job directory already exists, not starting the job again");
                return Ok(());
            }
            Err(e) => return Err(unavailable("creating the job directory", e)),
        }
        // Recorded before anything runs, so the job is never without its owner.
        let launched = match identity::record(&paths.identity, &spec.identity()).await {
            Ok(()) => self.launch(spec, &paths).await,
            Err(e) => Err(e),
        };
        match launched {
            Ok(job) => {
                jobs.insert(spec.job_id.clone(), job);
                Ok(())
            }
            Err(e) => {
                if let Err(cleanup) = tokio::fs::remove_dir_all(&paths.root).await {
                    tracing::warn!(error = %cleanup, "could not remove the directory of a job that failed to start");
                }
                Err(e)
            }
        }
    }

    /// Prepares the job directory and spawns the sandbox.
    async fn launch(&self, spec: &TaskSpec, paths: &JobPaths) -> Result<Arc<Job>, SchedulerError> {
        // The job's files are the server's alone: the sandbox sees none of them (its `/job` is a
        // tmpfs of its own).
        set_mode(&paths.root, 0o700).await?;

        // stdout and stderr share one pipe: one log, in order, pumped into output.log (output.rs).
        let output = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&paths.output)
            .await
            .map_err(|e| unavailable("creating output.log", e))?;
        let (reader, stdout) = std::io::pipe().map_err(|e| unavailable("creating the output pipe", e))?;
        let stderr = stdout.try_clone().map_err(|e| unavailable("duplicating the output pipe", e))?;
        let reader = tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))
            .map_err(|e| unavailable("reading the output pipe", e))?;

        // No images here: a gofer task gets the server's CLI instead of the gofer CLI image.
        let gofer = match (spec.gofer_cli, &self.tools.gofer) {
            (false, _) => None,
            (true, Some(gofer)) => Some(gofer.clone()),
            (true, None) => {
                return Err(SchedulerError::Rejected(
                    "this server has no gofer binary for kind gofer tasks: set sandbox.gofer_binary".into(),
                ));
            }
        };
        // The entrypoint, when given, is simply the start of the argv.
        let argv: Vec<String> = spec.entrypoint.iter().flatten().chain(&spec.command).cloned().collect();
        // The task's own memory, within the scheduler's ceiling.
        let memory_limit_mb = u64::from(spec.memory_mb).min(self.config.settings.memory_limit_mb);
        // A networked task keeps its own network namespace; bwrap waits on this FIFO until the
        // server has set it up (network.rs). Opened read-write, so neither end blocks.
        let network = self.network.as_ref().filter(|_| spec.allow_network);
        let network_ready = network.map(|_| paths.root.join("network-ready"));
        let ready_sender = network_ready.as_deref().map(ready_fifo).transpose()?;
        // Last before the spawn, whose failure gives it back: nothing else can leave it taken.
        let cgroup = match &self.cgroups {
            None => None,
            Some(cgroups) => {
                let limits = TaskLimits {
                    memory_bytes: memory_limit_mb.saturating_mul(1024 * 1024),
                    pids: self.config.settings.max_processes,
                    cpu_millis: spec.cpu_millis,
                };
                Some(cgroups.acquire(limits).map_err(|e| unavailable("creating the task's cgroups", e))?)
            }
        };
        // A networked task that holds a run token (`kind: gofer`, `inject_api_token`) reaches an
        // API on the host's loopback at the gateway.
        let reaches_api = spec.gofer_cli || spec.env.contains_key("GOFER_API_TOKEN");
        let mut env = std::borrow::Cow::Borrowed(&spec.env);
        if let Some(url) = network
            .filter(|_| reaches_api)
            .and_then(|n| spec.env.get("GOFER_API_URL").and_then(|u| n.api_url_for_task(u)))
        {
            env.to_mut().insert("GOFER_API_URL".into(), url);
        }
        let sandbox = SandboxCommand::new(
            &self.tools,
            &self.config,
            &SandboxRequest {
                job: JobMount::Tmpfs {
                    size_bytes: u64::from(spec.disk_mb).min(memory_limit_mb).saturating_mul(1024 * 1024),
                },
                info_path: &paths.info,
                command: &argv,
                env: &env,
                memory_limit_mb,
                disk_limit_mb: u64::from(spec.disk_mb),
                process_limits: ProcessLimits::for_task(cgroup.is_some()),
                network_ready: network_ready.as_deref(),
                gofer: gofer.as_deref(),
            },
        );
        let spawned = tokio::process::Command::new(&sandbox.program)
            .args(&sandbox.args)
            // The server's environment (database URLs, tokens) stays out of the sandbox's processes.
            .env_clear()
            .env("PATH", HOST_PATH)
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group: a terminal's Ctrl-C reaches the server, which ends the sandboxes.
            .process_group(0)
            // If the runtime goes away with the waiter, the sandbox goes too.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| unavailable("spawning the sandbox", e));
        let limits = JobLimits { memory_limit_mb, cgroup, home: self.cgroups.clone() };
        let child = match spawned.and_then(|child| join_cgroups(child, &limits)) {
            Ok(child) => child,
            Err(e) => {
                limits.release_cgroup();
                return Err(e);
            }
        };
        tracing::info!(pid = child.id(), timeout = ?spec.timeout, "sandbox started");
        let job_id = spec.job_id.clone();
        let cap = OutputCap::of(self.config.max_output_bytes);
        let pump = tokio::spawn(async move {
            match output::pump(reader, output, cap).await {
                Ok(pumped) if pumped.cut > 0 => {
                    tracing::info!(job_id, total = pumped.total, cut = pumped.cut, "the task's output passed the cap");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(job_id, error = %e, "copying the task's output failed"),
            }
        });
        let job = Job::track(&spec.job_id, paths.clone(), child, sandbox.options, spec.timeout, limits, pump);
        if let (Some(network), Some(mut ready)) = (network, ready_sender) {
            let attached = match job.wait_init_pid(NETWORK_WAIT).await {
                Some(init) => network.attach(init, reaches_api).await,
                None => Err("the sandbox did not start".to_owned()),
            };
            let released = match attached {
                Ok(slirp) => {
                    // Ended with the sandbox (job.rs).
                    job.hold_helper(slirp);
                    ready.write_all(b"1").await.map_err(|e| format!("releasing the sandbox: {e}"))
                }
                Err(e) => Err(e),
            };
            if let Err(e) = released {
                // The task never ran: end the waiting sandbox and let the engine retry.
                let _ = job.stop(Duration::ZERO).await;
                return Err(unavailable("setting up the task's network", e));
            }
        }
        Ok(job)
    }

    /// Reports a job from memory, else from its `result.json`, else `Unknown`.
    #[tracing::instrument(skip_all, fields(job_id = %job_id), err)]
    pub(crate) async fn observe_job(&self, job_id: &str) -> Result<TaskObservation, SchedulerError> {
        let paths = self.paths(job_id)?;
        if let Some(job) = self.jobs.lock().await.get(job_id) {
            return Ok(job.observation());
        }
        Ok(job::read_result(&paths.result).await.unwrap_or(TaskObservation::Unknown))
    }

    /// Reads `output.log` from `offset`, at most `max_bytes`.
    #[tracing::instrument(skip_all, fields(job_id = %job_id, offset), err)]
    pub(crate) async fn read_job_logs(
        &self,
        job_id: &str,
        offset: u64,
        max_bytes: usize,
    ) -> Result<LogChunk, SchedulerError> {
        let paths = self.paths(job_id)?;
        let mut file = match tokio::fs::File::open(&paths.output).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(SchedulerError::NotFound(job_id.to_owned()));
            }
            Err(e) => return Err(unavailable("opening output.log", e)),
        };
        file.seek(SeekFrom::Start(offset)).await.map_err(|e| unavailable("seeking in output.log", e))?;
        let mut data = Vec::with_capacity(max_bytes.min(INITIAL_READ_CAPACITY));
        file.take(u64::try_from(max_bytes).unwrap_or(u64::MAX))
            .read_to_end(&mut data)
            .await
            .map_err(|e| unavailable("reading output.log", e))?;
        let next_offset = offset + data.len() as u64;
        Ok(LogChunk { data, next_offset })
    }

    /// Stops a running job; finished and unknown jobs are left as they are.
    #[tracing::instrument(skip_all, fields(job_id = %job_id), err)]
    pub(crate) async fn stop_job(&self, job_id: &str, grace: Duration) -> Result<(), SchedulerError> {
        self.paths(job_id)?;
        // Cloned out so the lock is not held through the grace period.
        let job = self.jobs.lock().await.get(job_id).cloned();
        match job {
            Some(job) => job.stop(grace).await,
            None => Ok(()),
        }
    }

    /// Removes a finished (or unknown) job's directory and forgets it.
    #[tracing::instrument(skip_all, fields(job_id = %job_id), err)]
    pub(crate) async fn purge_job(&self, job_id: &str) -> Result<(), SchedulerError> {
        let paths = self.paths(job_id)?;
        let mut jobs = self.jobs.lock().await;
        if let Some(job) = jobs.get(job_id)
            && !job.observation().is_final()
        {
            return Err(SchedulerError::Rejected(format!("job {job_id} is still running: stop it before purging it")));
        }
        let root = jobs.get(job_id).map_or(paths.root, |job| job.paths().root.clone());
        tokio::task::spawn_blocking(move || remove_job_dir(&root))
            .await
            .map_err(|e| unavailable("removing the job directory", e))?
            .map_err(|e| unavailable("removing the job directory", e))?;
        jobs.remove(job_id);
        tracing::info!("job purged");
        Ok(())
    }
}

/// Makes the FIFO a networked sandbox waits on (`--block-fd`) and answers its writing end, opened
/// read-write so that neither end blocks on the other.
fn ready_fifo(fifo: &Path) -> Result<tokio::net::unix::pipe::Sender, SchedulerError> {
    let mode = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mknodat(rustix::fs::CWD, fifo, rustix::fs::FileType::Fifo, mode, 0)
        .map_err(|e| unavailable("creating the network FIFO", e))?;
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(fifo)
        .map_err(|e| unavailable("opening the network FIFO", e))
}

/// Moves the launcher into the task's cgroups. It is still waiting for its options (written
/// only once this returns), so nothing of the task has started outside them.
fn join_cgroups(mut child: tokio::process::Child, limits: &JobLimits) -> Result<tokio::process::Child, SchedulerError> {
    let Some(cgroup) = &limits.cgroup else { return Ok(child) };
    let joined = match child.id() {
        Some(pid) => cgroup.add(pid),
        None => Err("the launcher exited at once".to_owned()),
    };
    match joined {
        Ok(()) => Ok(child),
        Err(e) => {
            // kill_on_drop ends the launcher; its options were never written, so it ran nothing.
            let _ = child.start_kill();
            Err(unavailable("moving the sandbox into its cgroups", e))
        }
    }
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), SchedulerError> {
    // Explicit, because the umask may have taken bits the sandbox needs.
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| unavailable(&format!("setting the mode of {}", path.display()), e))
}

/// Removes a job directory. A task can leave directories without write permission, which only
/// root could delete anyway; a non-root server makes its own directories writable and tries again.
fn remove_job_dir(root: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            make_dirs_writable(root)?;
            std::fs::remove_dir_all(root)
        }
        Err(e) => Err(e),
    }
}

fn make_dirs_writable(dir: &Path) -> std::io::Result<()> {
    // symlink_metadata: a link planted by the task is never followed out of the job directory.
    if !std::fs::symlink_metadata(dir)?.is_dir() {
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        make_dirs_writable(&entry?.path())?;
    }
    Ok(())
}
