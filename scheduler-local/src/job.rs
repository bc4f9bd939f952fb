//! One sandboxed job: its live state, the task that waits for it, stop, and the result file that outlives the server.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gofer_core::scheduler::{KillReason, SchedulerError, TaskObservation};
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::cgroup::{Cgroups, TaskCgroup};
use crate::layout::JobPaths;
use crate::process::{self, Reap};

/// How long the output may still flow after the sandbox ended.
const OUTPUT_WAIT: Duration = Duration::from_secs(5);

/// How long to wait for a SIGKILLed sandbox to be reaped before reporting the scheduler unavailable.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// The limits a job runs under; attach applies the same ones to what it runs in the job.
#[derive(Debug)]
pub(crate) struct JobLimits {
    /// The task's memory in MiB (its cgroup's limit, or per process without one).
    pub memory_limit_mb: u64,
    /// The task's own cgroups, when the host has them.
    pub cgroup: Option<TaskCgroup>,
    /// Where they came from, and go back to once the task ended.
    pub home: Option<Cgroups>,
}

impl JobLimits {
    /// Gives the task's cgroups back (emptied, for the next task); blocking sysfs work.
    pub(crate) fn release_cgroup(&self) {
        if let (Some(home), Some(group)) = (&self.home, &self.cgroup) {
            home.release(group);
        }
    }
}

/// A job this server started.
#[derive(Debug)]
pub(crate) struct Job {
    job_id: String,
    paths: JobPaths,
    limits: JobLimits,
    state: watch::Sender<TaskObservation>,
    /// Set before the scheduler ends the sandbox, so its exit is reported as a kill, not an exit code.
    kill_reason: Mutex<Option<KillReason>>,
    /// Host helpers that serve the sandbox (its network's slirp4netns), ended with it.
    helpers: Mutex<Vec<Child>>,
    /// Asks the waiter, which owns the `Child`, to SIGKILL the sandbox: only the waiter knows whether
    /// the pid has been reaped, so only it can signal that pid without hitting a recycled one.
    kill_now: Notify,
}

impl Job {
    /// Tracks a freshly spawned sandbox: feeds it its bwrap options and waits for it in the background.
    pub(crate) fn track(
        job_id: &str,
        paths: JobPaths,
        mut child: Child,
        options: Vec<u8>,
        timeout: Duration,
        limits: JobLimits,
        output: tokio::task::JoinHandle<()>,
    ) -> Arc<Self> {
        let job = Arc::new(Self {
            job_id: job_id.to_owned(),
            paths,
            limits,
            state: watch::Sender::new(TaskObservation::Running),
            kill_reason: Mutex::new(None),
            helpers: Mutex::new(Vec::new()),
            kill_now: Notify::new(),
        });
        if let Some(mut stdin) = child.stdin.take() {
            let job_id = job.job_id.clone();
            // A separate task because bwrap reads its options while starting: options larger than a
            // pipe buffer would otherwise block the caller. Dropping stdin gives bwrap its EOF.
            tokio::spawn(async move {
                if let Err(e) = stdin.write_all(&options).await {
                    tracing::warn!(job_id, error = %e, "could not pass the sandbox its options");
                }
            });
        }
        let deadline = Instant::now().checked_add(timeout);
        tokio::spawn(Arc::clone(&job).wait(child, deadline, output));
        job
    }

    /// The current observation.
    pub(crate) fn observation(&self) -> TaskObservation {
        self.state.borrow().clone()
    }

    /// The job's files.
    pub(crate) fn paths(&self) -> &JobPaths {
        &self.paths
    }

    /// Keeps a helper process that must end with the sandbox.
    pub(crate) fn hold_helper(&self, helper: Child) {
        self.helpers.lock().unwrap_or_else(PoisonError::into_inner).push(helper);
    }

    /// The limits the job runs under.
    pub(crate) fn limits(&self) -> &JobLimits {
        &self.limits
    }

    /// Waits for the sandbox to end, enforcing the deadline, and records how it ended.
    async fn wait(self: Arc<Self>, mut child: Child, deadline: Option<Instant>, output: tokio::task::JoinHandle<()>) {
        let mut deadline = deadline;
        let status = loop {
            let timer = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = child.wait() => break status,
                () = timer => {
                    // SIGKILL right away: the timeout already was the task's allowance.
                    deadline = None;
                    self.set_kill_reason(KillReason::Timeout);
                    tracing::info!(job_id = %self.job_id, "job passed its timeout, killing the sandbox");
                    self.kill(&mut child);
                }
                () = self.kill_now.notified() => self.kill(&mut child),
            }
        };
        let reason = *self.kill_reason.lock().unwrap_or_else(PoisonError::into_inner);
        // A task that failed after the kernel's OOM killer hit it ran out of memory, whichever
        // of its processes was chosen.
        let oom = || self.limits.cgroup.as_ref().is_some_and(crate::cgroup::TaskCgroup::oom_killed);
        let observation = match (reason, status) {
            (Some(reason), _) => TaskObservation::Killed { reason },
            (None, Ok(status)) if !status.success() && oom() => {
                TaskObservation::Killed { reason: KillReason::OutOfMemory }
            }
            (None, Ok(status)) => TaskObservation::Exited {
                // bwrap passes the task's code through (128+signal when the task died of a signal);
                // bwrap itself dying of a signal nobody here sent is reported the same way.
                exit_code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            },
            (None, Err(e)) => TaskObservation::Failed { detail: format!("waiting for the sandbox failed: {e}") },
        };
        self.reap_sandbox_init().await;
        // Dropping them kills them (`kill_on_drop`); the runtime reaps them.
        self.helpers.lock().unwrap_or_else(PoisonError::into_inner).clear();
        // The whole output is in output.log before the job is reported final. Every writer died with
        // the sandbox's pid namespace, so the pipe is at its end; the limit only guards a surprise.
        if tokio::time::timeout(OUTPUT_WAIT, output).await.is_err() {
            tracing::warn!(job_id = %self.job_id, "the task's output was still open after it ended");
        }
        if let Err(e) = write_result(&self.paths.result, &observation).await {
            tracing::warn!(job_id = %self.job_id, error = %e, "could not record the job's result on disk");
        }
        tracing::info!(job_id = %self.job_id, ?observation, "job finished");
        self.state.send_replace(observation);
        // After the report, not before: removing a memory cgroup can wait on the kernel, and the
        // task's result does not depend on it (its OOM count was read above).
        if self.limits.cgroup.is_some() {
            // Blocking sysfs work with short retries: off the async threads.
            let job = Arc::clone(&self);
            if tokio::task::spawn_blocking(move || job.limits.release_cgroup()).await.is_err() {
                tracing::warn!(job_id = %self.job_id, "releasing the task's cgroups panicked");
            }
        }
    }

    /// Reaps the sandbox's pid 1 if it was orphaned to this process (see [`process::try_reap`]).
    async fn reap_sandbox_init(&self) {
        let Some(init) = self.init_pid().await else {
            return;
        };
        let deadline = Instant::now() + process::REAP_WAIT;
        while process::try_reap(init) == Reap::Pending {
            if Instant::now() >= deadline {
                tracing::warn!(job_id = %self.job_id, pid = %init.as_raw_nonzero(), "the sandbox's pid 1 did not exit");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits up to `limit` for the sandbox's pid 1 (bwrap writes `info.json` once its namespaces
    /// exist); `None` when it never came or the job ended first.
    pub(crate) async fn wait_init_pid(&self, limit: Duration) -> Option<Pid> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pid) = self.init_pid().await {
                return Some(pid);
            }
            if self.observation().is_final() || Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The host pid of the sandbox's pid 1, once bwrap has written `info.json`.
    pub(crate) async fn init_pid(&self) -> Option<Pid> {
        let info = tokio::fs::read(&self.paths.info).await.ok()?;
        process::init_pid_from_info(&info)
    }

    /// SIGKILLs bwrap; `--die-with-parent` and the end of its pid namespace take every task process with it.
    fn kill(&self, child: &mut Child) {
        if let Err(e) = child.start_kill() {
            tracing::debug!(job_id = %self.job_id, error = %e, "could not kill the sandbox (already gone?)");
        }
    }

    /// Records why the scheduler is ending the job; the first reason wins.
    fn set_kill_reason(&self, reason: KillReason) {
        self.kill_reason.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(reason);
    }

    /// Stops the job: SIGTERM to the task, SIGKILL to the sandbox after `grace`.
    pub(crate) async fn stop(&self, grace: Duration) -> Result<(), SchedulerError> {
        if self.observation().is_final() {
            return Ok(());
        }
        self.set_kill_reason(KillReason::Stopped);
        match self.signal_task(Signal::TERM).await {
            Ok(()) => {
                tracing::info!(job_id = %self.job_id, ?grace, "sent SIGTERM to the task");
                if self.wait_final(grace).await {
                    return Ok(());
                }
            }
            // Usually a sandbox still starting up: there is nothing to be polite to yet.
            Err(e) => {
                tracing::info!(job_id = %self.job_id, error = %e, "could not SIGTERM the task, killing")
            }
        }
        self.kill_now.notify_one();
        if self.wait_final(KILL_WAIT).await {
            Ok(())
        } else {
            Err(SchedulerError::Unavailable(format!("job {} did not end after SIGKILL", self.job_id)))
        }
    }

    /// Waits up to `limit` for a final observation; true if there is one.
    async fn wait_final(&self, limit: Duration) -> bool {
        let mut rx = self.state.subscribe();
        matches!(tokio::time::timeout(limit, rx.wait_for(TaskObservation::is_final)).await, Ok(Ok(_)))
    }

    /// Signals the task's main process (see [`process::signal_task`]).
    async fn signal_task(&self, signal: Signal) -> std::io::Result<()> {
        let init =
            self.init_pid().await.ok_or_else(|| std::io::Error::other("the sandbox has not reported its pid yet"))?;
        process::signal_task(init, signal)
    }
}

/// The final observation as stored in `result.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum StoredResult {
    Exited { exit_code: i32 },
    Killed { reason: StoredKillReason },
    Failed { detail: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredKillReason {
    Timeout,
    OutOfMemory,
    Stopped,
}

/// Writes `result.json` through a rename, so a reader never sees half a file.
async fn write_result(path: &Path, observation: &TaskObservation) -> std::io::Result<()> {
    let stored = match observation {
        TaskObservation::Exited { exit_code } => StoredResult::Exited { exit_code: *exit_code },
        TaskObservation::Killed { reason } => StoredResult::Killed {
            reason: match reason {
                KillReason::Timeout => StoredKillReason::Timeout,
                KillReason::OutOfMemory => StoredKillReason::OutOfMemory,
                KillReason::Stopped => StoredKillReason::Stopped,
            },
        },
        TaskObservation::Failed { detail } => StoredResult::Failed { detail: detail.clone() },
        // Only final observations are recorded.
        TaskObservation::Pending | TaskObservation::Running | TaskObservation::Unknown => {
            return Ok(());
        }
    };
    let json = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    tokio::fs::write(&tmp, json).await?;
    tokio::fs::rename(&tmp, path).await
}

/// Reads `result.json`: `None` when there is none (or it cannot be read: the job is then unknown).
pub(crate) async fn read_result(path: &Path) -> Option<TaskObservation> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not read a job result");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(StoredResult::Exited { exit_code }) => Some(TaskObservation::Exited { exit_code }),
        Ok(StoredResult::Killed { reason }) => Some(TaskObservation::Killed {
            reason: match reason {
                StoredKillReason::Timeout => KillReason::Timeout,
                StoredKillReason::OutOfMemory => KillReason::OutOfMemory,
                StoredKillReason::Stopped => KillReason::Stopped,
            },
        }),
        Ok(StoredResult::Failed { detail }) => Some(TaskObservation::Failed { detail }),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "a job result is corrupt");
            None
        }
    }
}
