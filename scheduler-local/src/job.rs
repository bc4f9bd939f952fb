//! One sandboxed job: its live state, the task that waits for it, signalling, and the result file that outlives the server.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gofer_core::scheduler::{KillReason, SchedulerError, TaskObservation};
use rustix::process::{Pid, PidfdFlags, Signal};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::layout::JobPaths;

/// How long to wait for a SIGKILLed sandbox to be reaped before reporting the scheduler unavailable.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A job this server started.
#[derive(Debug)]
pub(crate) struct Job {
    job_id: String,
    paths: JobPaths,
    state: watch::Sender<TaskObservation>,
    /// Set before the scheduler ends the sandbox, so its exit is reported as a kill, not an exit code.
    kill_reason: Mutex<Option<KillReason>>,
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
    ) -> Arc<Self> {
        let job = Arc::new(Self {
            job_id: job_id.to_owned(),
            paths,
            state: watch::Sender::new(TaskObservation::Running),
            kill_reason: Mutex::new(None),
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
        tokio::spawn(Arc::clone(&job).wait(child, deadline));
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

    /// Waits for the sandbox to end, enforcing the deadline, and records how it ended.
    async fn wait(self: Arc<Self>, mut child: Child, deadline: Option<Instant>) {
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
        let reason = *self
            .kill_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let observation = match (reason, status) {
            (Some(reason), _) => TaskObservation::Killed { reason },
            (None, Ok(status)) => TaskObservation::Exited {
                // bwrap passes the task's code through (128+signal when the task died of a signal);
                // bwrap itself dying of a signal nobody here sent is reported the same way.
                exit_code: status
                    .code()
                    .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            },
            (None, Err(e)) => TaskObservation::Failed {
                detail: format!("waiting for the sandbox failed: {e}"),
            },
        };
        if let Err(e) = write_result(&self.paths.result, &observation).await {
            tracing::warn!(job_id = %self.job_id, error = %e, "could not record the job's result on disk");
        }
        tracing::info!(job_id = %self.job_id, ?observation, "job finished");
        self.state.send_replace(observation);
    }

    /// SIGKILLs bwrap; `--die-with-parent` and the end of its pid namespace take every task process with it.
    fn kill(&self, child: &mut Child) {
        if let Err(e) = child.start_kill() {
            tracing::debug!(job_id = %self.job_id, error = %e, "could not kill the sandbox (already gone?)");
        }
    }

    /// Records why the scheduler is ending the job; the first reason wins.
    fn set_kill_reason(&self, reason: KillReason) {
        self.kill_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
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
            Err(SchedulerError::Unavailable(format!(
                "job {} did not end after SIGKILL",
                self.job_id
            )))
        }
    }

    /// Waits up to `limit` for a final observation; true if there is one.
    async fn wait_final(&self, limit: Duration) -> bool {
        let mut rx = self.state.subscribe();
        matches!(
            tokio::time::timeout(limit, rx.wait_for(TaskObservation::is_final)).await,
            Ok(Ok(_))
        )
    }

    /// Signals the task's main process: the child of the sandbox's pid 1.
    ///
    /// Not bwrap itself: on SIGTERM it dies at once and takes the sandbox with it. Not the sandbox's
    /// pid 1 either: it is bwrap's reaper, and a pid-namespace init ignores signals it has no handler for.
    async fn signal_task(&self, signal: Signal) -> std::io::Result<()> {
        let init = sandbox_init_pid(&self.paths.info).await?;
        let children =
            tokio::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).await?;
        let main = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<i32>().ok())
            .and_then(Pid::from_raw)
            .ok_or_else(|| std::io::Error::other("the sandbox has no task process"))?;
        // Open a pidfd first, then check the pid still belongs to this sandbox: from then on the
        // signal can only reach that very process, even if the pid were recycled.
        let pidfd = rustix::process::pidfd_open(main, PidfdFlags::empty())?;
        if parent_pid(main.as_raw_nonzero().get()).await? != init {
            return Err(std::io::Error::other("the task process changed under us"));
        }
        rustix::process::pidfd_send_signal(&pidfd, signal)?;
        Ok(())
    }
}

/// The host pid of the sandbox's pid 1, from bwrap's `--info-fd` JSON.
async fn sandbox_init_pid(info_path: &Path) -> std::io::Result<i32> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "child-pid")]
        child_pid: i32,
    }
    let bytes = tokio::fs::read(info_path).await?;
    let info: Info = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
    Ok(info.child_pid)
}

/// A process's parent pid, from `/proc/<pid>/status`.
async fn parent_pid(pid: i32) -> std::io::Result<i32> {
    let status = tokio::fs::read_to_string(format!("/proc/{pid}/status")).await?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no PPid in /proc status"))
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
        TaskObservation::Exited { exit_code } => StoredResult::Exited {
            exit_code: *exit_code,
        },
        TaskObservation::Killed { reason } => StoredResult::Killed {
            reason: match reason {
                KillReason::Timeout => StoredKillReason::Timeout,
                KillReason::OutOfMemory => StoredKillReason::OutOfMemory,
                KillReason::Stopped => StoredKillReason::Stopped,
            },
        },
        TaskObservation::Failed { detail } => StoredResult::Failed {
            detail: detail.clone(),
        },
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
