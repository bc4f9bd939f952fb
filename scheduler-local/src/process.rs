//! A sandbox's processes as seen from the host: its pid 1 (from bwrap's info JSON), its task, signalling and reaping.
//!
//! The process tree is `bwrap` (the launcher, the pid tokio holds) → the sandbox's pid 1 (bwrap's
//! reaper, `child-pid` in `info.json`) → the task's main process → whatever the task starts.

use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};
use serde::Deserialize;

/// How long to wait for an orphaned sandbox pid 1, already SIGKILLed by the kernel, to exit.
pub(crate) const REAP_WAIT: Duration = Duration::from_secs(2);

/// The host pid of the sandbox's pid 1, from bwrap's `--info-fd` JSON.
pub(crate) fn init_pid_from_info(info: &[u8]) -> Option<Pid> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(rename = "child-pid")]
        child_pid: i32,
    }
    let info: Info = serde_json::from_slice(info).ok()?;
    Pid::from_raw(info.child_pid)
}

/// A process's parent, from `/proc/<pid>/status` (a small procfs read: fine on an async thread).
fn parent_pid(pid: Pid) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.as_raw_nonzero())).ok()?;
    status.lines().find_map(|line| line.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
}

/// Signals the task's main process: the child of the sandbox's pid 1.
///
/// Not the launcher: on SIGTERM it dies at once and takes the sandbox with it. Not pid 1 either:
/// it is bwrap's reaper, and a pid-namespace init ignores signals it has no handler for.
pub(crate) fn signal_task(init: Pid, signal: Signal) -> std::io::Result<()> {
    let raw_init = init.as_raw_nonzero().get();
    let children = std::fs::read_to_string(format!("/proc/{raw_init}/task/{raw_init}/children"))?;
    let main = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse::<i32>().ok())
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("the sandbox has no task process"))?;
    // Open a pidfd first, then check the pid still belongs to this sandbox: from then on the
    // signal can only reach that very process, even if the pid were recycled.
    let pidfd = rustix::process::pidfd_open(main, PidfdFlags::empty())?;
    if parent_pid(main) != Some(raw_init) {
        return Err(std::io::Error::other("the task process changed under us"));
    }
    rustix::process::pidfd_send_signal(&pidfd, signal)?;
    Ok(())
}

/// Whether [`try_reap`] is done with a sandbox's pid 1.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reap {
    /// Reaped, or not this process's child (the host's init reaps it).
    Done,
    /// This process's child, still exiting: try again shortly.
    Pending,
}

/// Reaps the sandbox's pid 1 if it has become this process's child.
///
/// bwrap's launcher exits as soon as it knows the task's status, before the sandbox's pid 1 (which
/// `--die-with-parent` then kills), so that process is orphaned to the host's init, which reaps
/// it. When this server *is* that init (pid 1 of a container), nobody else would, and each job
/// would leave a zombie counting against the sandbox uid's process limit.
pub(crate) fn try_reap(init: Pid) -> Reap {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    if parent_pid(init) != Some(me) {
        return Reap::Done;
    }
    match rustix::process::waitpid(Some(init), WaitOptions::NOHANG) {
        Ok(None) => Reap::Pending,
        Ok(Some(_)) | Err(_) => Reap::Done,
    }
}

/// [`try_reap`] until done or [`REAP_WAIT`] has passed, blocking the thread (for start-up only).
pub(crate) fn reap_blocking(init: Pid) {
    let deadline = Instant::now() + REAP_WAIT;
    while try_reap(init) == Reap::Pending && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
