//! The [`Scheduler`](gofer_core::scheduler::Scheduler) operations of [`LocalScheduler`]: start, observe, read_logs, stop, purge.

use std::io::{ErrorKind, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use gofer_core::scheduler::{LogChunk, SchedulerError, TaskObservation, TaskSpec};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::LocalScheduler;
use crate::job::{self, Job};
use crate::layout::JobPaths;
use crate::sandbox::{self, HOST_PATH, SANDBOX_UID, SandboxCommand, SandboxRequest};

/// Read buffers start at most this big, so a huge `max_bytes` does not allocate up front.
const INITIAL_READ_CAPACITY: usize = 64 * 1024;

fn unavailable(what: &str, error: impl std::fmt::Display) -> SchedulerError {
    SchedulerError::Unavailable(format!("{what}: {error}"))
}

impl LocalScheduler {
    fn paths(&self, job_id: &str) -> Result<JobPaths, SchedulerError> {
        JobPaths::new(&self.config.work_dir, job_id)
    }

    /// Starts a job unless its id is already known here or on disk.
    ///
    /// A failure to launch (a missing tool, no fds left) removes what was created and returns
    /// [`SchedulerError::Unavailable`], so the engine's retry really starts the job; recording
    /// `Failed` instead would fail the task for what is a host problem, and leave a directory that
    /// makes every retry a no-op.
    #[tracing::instrument(skip_all, fields(job_id = %spec.job_id), err)]
    pub(crate) async fn start_job(&self, spec: &TaskSpec) -> Result<(), SchedulerError> {
        let paths = self.paths(&spec.job_id)?;
        sandbox::check_spec(spec)?;
        // Held until the job is registered: a concurrent start of the same id waits, then sees it.
        let mut jobs = self.jobs.lock().await;
        if jobs.contains_key(&spec.job_id) {
            tracing::debug!("job already started");
            return Ok(());
        }
        // Creating the directory is the claim: it also covers jobs of an earlier server process.
        match tokio::fs::create_dir(&paths.root).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                tracing::info!("job directory already exists, not starting the job again");
                return Ok(());
            }
            Err(e) => return Err(unavailable("creating the job directory", e)),
        }
        match self.launch(spec, &paths).await {
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
        let privileged = self.tools.privileged();
        // As root, bwrap runs as uid 65534 and must pass through the job root to bind `job/`; the
        // files in it stay root's (0600). Otherwise the server's user owns everything.
        let root_mode = if privileged { 0o711 } else { 0o700 };
        set_mode(&paths.root, root_mode).await?;
        tokio::fs::create_dir(&paths.job).await.map_err(|e| unavailable("creating job/", e))?;
        if privileged {
            // chown rather than 0777: only the sandbox user can write there, and other host users
            // cannot read a job's files.
            let job_dir = paths.job.clone();
            tokio::task::spawn_blocking(move || {
                std::os::unix::fs::chown(job_dir, Some(SANDBOX_UID), Some(SANDBOX_UID))
            })
            .await
            .map_err(|e| unavailable("chowning job/", e))?
            .map_err(|e| unavailable("chowning job/", e))?;
        }
        set_mode(&paths.job, 0o700).await?;

        // stdout and stderr share one open file description in append mode: one log, in order.
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&paths.output)
            .map_err(|e| unavailable("creating output.log", e))?;
        let stderr = output.try_clone().map_err(|e| unavailable("duplicating the output.log handle", e))?;

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
        let sandbox = SandboxCommand::new(
            &self.tools,
            &self.config,
            &SandboxRequest {
                job_dir: &paths.job,
                info_path: &paths.info,
                command: &argv,
                env: &spec.env,
                // The task's own memory, within the scheduler's ceiling.
                memory_limit_mb: u64::from(spec.memory_mb).min(self.config.memory_limit_mb),
                allow_network: spec.allow_network,
                gofer: gofer.as_deref(),
            },
        );
        let child = tokio::process::Command::new(&sandbox.program)
            .args(&sandbox.args)
            // The server's environment (database URLs, tokens) stays out of the sandbox's processes.
            .env_clear()
            .env("PATH", HOST_PATH)
            .stdin(Stdio::piped())
            .stdout(output)
            .stderr(stderr)
            // Its own process group: a terminal's Ctrl-C reaches the server, which ends the sandboxes.
            .process_group(0)
            // If the runtime goes away with the waiter, the sandbox goes too.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| unavailable("spawning the sandbox", e))?;
        tracing::info!(pid = child.id(), timeout = ?spec.timeout, "sandbox started");
        Ok(Job::track(&spec.job_id, paths.clone(), child, sandbox.options, spec.timeout))
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
