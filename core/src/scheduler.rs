//! The `Scheduler` trait: what the engine needs from whatever runs containers (Nomad, the local sandbox).
//!
//! Futures are boxed by hand so the trait stays object-safe without pulling an async runtime into core.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::id::{NamespaceId, PipelineId, RunId, TaskId, TenantId};

mod identity;
pub use identity::JobIdentity;

/// A boxed, sendable future, as returned by [`Scheduler`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything a scheduler needs to run one task execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// Deterministic job id, `{tenant}~{namespace}~{pipeline}~{run}~{task}~{attempt}` (see
    /// [`JobIdentity`]): submitting the same spec twice must not start a second job.
    pub job_id: String,
    /// Owner of the task.
    pub tenant: TenantId,
    /// Namespace of the pipeline.
    pub namespace: NamespaceId,
    /// Pipeline.
    pub pipeline: PipelineId,
    /// Run.
    pub run: RunId,
    /// Task.
    pub task: TaskId,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Container image.
    pub image: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Overrides the image's entrypoint; the command follows it.
    pub entrypoint: Option<Vec<String>>,
    /// The complete environment the task sees (task env, run variables and `GOFER_*`).
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit; the scheduler stops the task when it passes.
    pub timeout: Duration,
    /// CPU in millicores.
    pub cpu_millis: u32,
    /// Memory limit in MiB.
    pub memory_mb: u32,
    /// Disk limit of the task's writable work directory, in MiB (the plan's `max_disk_mb`).
    pub disk_mb: u32,
    /// Credentials for pulling a private image, resolved from the task's `registry_auth` secret.
    pub registry_auth: Option<RegistryAuth>,
    /// Whether the task may reach the network (from the tenant's plan; trial plans say no).
    pub allow_network: bool,
    /// Whether the tenant's plan is untrusted (anonymous trials): a scheduler that cannot limit
    /// each task on its own refuses such tasks.
    pub untrusted: bool,
    /// The scheduler's node pool for the task (from the tenant's plan); `None`: the scheduler's default.
    pub node_pool: Option<String>,
    /// The task runs the gofer CLI (`kind: gofer`). `image` is then the service's gofer CLI image;
    /// a scheduler that ignores images (the local sandbox) provides the `gofer` binary itself.
    pub gofer_cli: bool,
}

/// Registry credentials; never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryAuth({}, ***)", self.username)
    }
}

impl TaskSpec {
    /// The deterministic job id for a task execution: [`JobIdentity::job_id`].
    pub fn job_id_for(
        tenant: &TenantId,
        namespace: &NamespaceId,
        pipeline: &PipelineId,
        run: RunId,
        task: &TaskId,
        attempt: u32,
    ) -> String {
        identity::join(tenant, namespace, pipeline, run, task, attempt)
    }

    /// The task execution this spec is for, as schedulers record it with the job.
    pub fn identity(&self) -> JobIdentity {
        JobIdentity {
            tenant: self.tenant.clone(),
            namespace: self.namespace.clone(),
            pipeline: self.pipeline.clone(),
            run: self.run,
            task: self.task.clone(),
            attempt: self.attempt,
        }
    }
}

/// Why a task stopped without exiting on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// It ran past its timeout.
    Timeout,
    /// It used more memory than allowed.
    OutOfMemory,
    /// [`Scheduler::stop`] was called.
    Stopped,
}

/// What the scheduler knows about a job right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskObservation {
    /// Accepted, not running yet (placing, pulling the image).
    Pending,
    /// Running.
    Running,
    /// Exited on its own with this code.
    Exited {
        /// Process exit code.
        exit_code: i32,
    },
    /// Stopped by the scheduler.
    Killed {
        /// Why.
        reason: KillReason,
    },
    /// Could not be started or failed inside the scheduler (bad image, driver error).
    Failed {
        /// What went wrong, for the task's status reason.
        detail: String,
    },
    /// The scheduler has no such job (never submitted, or lost with its node).
    Unknown,
}

impl TaskObservation {
    /// Whether the job will not change any more.
    pub fn is_final(&self) -> bool {
        !matches!(self, TaskObservation::Pending | TaskObservation::Running)
    }
}

/// A slice of a job's combined stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogChunk {
    /// Bytes from the requested offset.
    pub data: Vec<u8>,
    /// The offset to ask for next.
    pub next_offset: u64,
}

/// A scheduler failure (not a task failure: those are [`TaskObservation`]s).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The scheduler refused the spec; retrying it will not help.
    #[error("the scheduler refused the task: {0}")]
    Rejected(String),
    /// The scheduler could not be reached or failed; a retry may succeed.
    #[error("the scheduler is unavailable: {0}")]
    Unavailable(String),
    /// No job with this id.
    #[error("no such job: {0}")]
    NotFound(String),
    /// This scheduler cannot do what was asked (for example exec into a task).
    #[error("the {scheduler} scheduler does not support {operation}")]
    Unsupported {
        /// The scheduler's [`Scheduler::name`].
        scheduler: &'static str,
        /// What was asked (`exec`).
        operation: &'static str,
    },
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// A command to run inside a running job ([`Scheduler::exec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The job (task execution) to enter.
    pub job_id: String,
    /// The task's name inside the job (Nomad's task name); the local sandbox has one task per job.
    pub task: TaskId,
    /// The argv to run; not empty.
    pub command: Vec<String>,
    /// Run under a pseudo-terminal (stdout and stderr then arrive merged as stdout).
    pub tty: bool,
    /// The terminal's initial size, with `tty`.
    pub size: Option<TerminalSize>,
    /// Environment for the command where the scheduler sets it (the local sandbox: exactly this,
    /// plus `PATH`/`HOME` defaults; Nomad: the task's own environment, this is ignored). Callers
    /// pass the task's non-secret variables only.
    pub env: BTreeMap<String, String>,
}

/// What a client sends into an exec session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    /// Bytes for the command's stdin.
    Stdin(Vec<u8>),
    /// End of stdin.
    CloseStdin,
    /// The terminal was resized (only meaningful with a tty).
    Resize(TerminalSize),
}

/// What an exec session produces, in order; [`ExecOutput::Exited`] is the last item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    /// Bytes from stdout (with a tty: the terminal's output).
    Stdout(Vec<u8>),
    /// Bytes from stderr.
    Stderr(Vec<u8>),
    /// The command ended with this exit code (128 + signal number when killed by a signal).
    Exited(i32),
    /// The session broke before the command's end was known.
    Failed(String),
}

/// The sending half of an exec session.
pub trait ExecInputSink: Send + Sync {
    /// Sends input; fails once the session is over.
    fn send(&self, input: ExecInput) -> BoxFuture<'_, Result<(), SchedulerError>>;
}

/// A running exec: input goes into `input`, output comes out of `output` until it ends (after
/// [`ExecOutput::Exited`] or [`ExecOutput::Failed`]). Dropping both ends the command.
pub struct ExecSession {
    /// Where stdin and resizes go.
    pub input: Box<dyn ExecInputSink>,
    /// Output, then the exit.
    pub output: Pin<Box<dyn futures_core::Stream<Item = ExecOutput> + Send>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecSession")
    }
}

/// [`Scheduler::default_parallel_tasks`] of a scheduler that runs tasks on a cluster.
pub const CLUSTER_PARALLEL_TASKS: usize = 64;

/// Runs task executions somewhere. Implementations must be idempotent on `job_id`.
pub trait Scheduler: Send + Sync + 'static {
    /// A short name for logs and metrics (`local`, `nomad`).
    fn name(&self) -> &'static str;

    /// How many task executions one replica watches at once when the operator sets no
    /// `max_parallel_tasks`. A scheduler that runs tasks on the replica's own host answers what
    /// the host takes; one that runs them on a cluster leaves the limit to the cluster, and a
    /// replica then only pays for watching them (one observation and one log read per
    /// monitor interval each).
    fn default_parallel_tasks(&self) -> usize {
        CLUSTER_PARALLEL_TASKS
    }

    /// Starts the job. Starting a job id that already exists succeeds without starting another when
    /// the existing job was recorded for the same [`JobIdentity`] (a repeated start); when it was
    /// recorded for another one, or its identity is unknown, the start is refused with
    /// [`SchedulerError::Rejected`] naming only the job id: a job is never adopted by a stranger.
    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<(), SchedulerError>>;

    /// Reports the job's current state.
    fn observe<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<TaskObservation, SchedulerError>>;

    /// Reads combined output from `offset`, at most `max_bytes`.
    fn read_logs<'a>(
        &'a self,
        job_id: &'a str,
        offset: u64,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<LogChunk, SchedulerError>>;

    /// Stops the job: a polite signal, then a kill after `grace`. Stopping a finished or unknown job succeeds.
    fn stop<'a>(&'a self, job_id: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), SchedulerError>>;

    /// Forgets a finished job and frees what it held (work directory, stored output).
    fn purge<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<(), SchedulerError>>;

    /// The node (host) the job runs or ran on, once placed.
    fn node<'a>(&'a self, _job_id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }

    /// Whether only the replica that started a job can [`Self::exec`] into it (its sandbox lives in
    /// that replica's process), so that an attach arriving at another replica must be forwarded
    /// there. A cluster scheduler execs from anywhere.
    fn exec_needs_starting_replica(&self) -> bool {
        false
    }

    /// Runs a command inside the running job (attach). Schedulers that cannot answer
    /// [`SchedulerError::Unsupported`]; a job that is not running answers [`SchedulerError::NotFound`].
    fn exec<'a>(&'a self, _request: &'a ExecRequest) -> BoxFuture<'a, Result<ExecSession, SchedulerError>> {
        let scheduler = self.name();
        Box::pin(async move { Err(SchedulerError::Unsupported { scheduler, operation: "exec" }) })
    }
}
