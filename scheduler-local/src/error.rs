//! The error of creating a local scheduler.

use std::path::PathBuf;

/// Why a [`LocalScheduler`](crate::LocalScheduler) could not be created.
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
    /// The server is not root, so tasks would run as its own user.
    #[error(
        "the local sandbox needs root: tasks must never run as the service's own user (uid {uid}); start \
         the service as root, or for development only set sandbox.unsafe_tasks_as_service_user = true"
    )]
    NoSandboxUser {
        /// The service's uid.
        uid: u32,
    },
    /// `sandbox.share_network` is on and networked tasks cannot be given their own network.
    #[error("sandbox.share_network is on but tasks cannot get a network of their own: {detail}")]
    NetworkUnusable {
        /// What is missing.
        detail: String,
    },
    /// `sandbox.cgroups = "required"` and no cgroup can be used.
    #[error("sandbox.cgroups is \"required\" but no cgroup can be used on this host: {detail}")]
    CgroupsUnusable {
        /// Why.
        detail: String,
    },
    /// bwrap is there but cannot start a sandbox (no user namespaces, unreachable work directory…).
    #[error("bubblewrap cannot start a sandbox on this host: {detail}")]
    SandboxUnusable {
        /// What the probe sandbox reported.
        detail: String,
    },
}
