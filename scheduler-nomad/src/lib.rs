//! Gofer's production [`Scheduler`]: each task execution is one Nomad batch job, registered over
//! Nomad's HTTP API in the tenant's namespace `gofer-<tenant>` (created on demand) and node pool.
//! See docs/nomad.md for what the Nomad cluster must be configured with.
//!
//! # Faithful to the engine's contract
//! - Starts are idempotent: the job id is deterministic and registration is check-and-set with
//!   index 0, so a repeated start finds the job and leaves it alone, once its namespace and `Meta`
//!   show it is this execution's (a job of another is refused: see `identity.rs`).
//! - Nomad never retries behind the engine's back (restart and reschedule attempts 0).
//! - Nomad being down or slow is never a task outcome: every failed call is a
//!   [`SchedulerError::Unavailable`] (the engine keeps its lease and tries again); only what an
//!   allocation says (an exit, a kill, a driver failure, a lost node) ends a task.
//!
//! # Watching
//! Allocation updates come from `/v1/event/stream` (see `watch.rs`); without it, `observe` polls
//! `/v1/job/:id/allocations`. Logs come from held `follow=true` streams of
//! `/v1/client/fs/logs/:alloc` (see `follow.rs`; polled reads when a stream cannot be held, and
//! once more when the task is dead), stdout then stderr per read, as one combined stream (see
//! [`NomadScheduler::read_logs`] for the takeover caveat).
//!
//! # Exec (attach)
//! [`Scheduler::exec`] opens `/v1/client/allocation/:id/exec` (a websocket) on the job's running
//! allocation; see `exec.rs`.

mod client;
mod config;
mod exec;
mod follow;
mod identity;
pub mod job;
mod state;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gofer_core::scheduler::{
    BoxFuture, ExecRequest, ExecSession, LogChunk, Scheduler, SchedulerError, TaskObservation, TaskSpec,
};
use serde_json::json;
use tokio::sync::Mutex;

pub use crate::client::{Client, NomadError, NomadSetupError};
pub use crate::config::{Driver, NomadConfig, NomadTls};
pub use crate::state::Allocation;

use crate::follow::Follower;
use crate::job::TASK;
use crate::watch::Tracker;

/// What this process knows of a job it started or looked up.
#[derive(Debug, Clone)]
struct Known {
    namespace: String,
    /// Whether a registry-auth variable was written for it (deleted on purge).
    variable: bool,
}

/// Where the combined log of a job stands.
#[derive(Debug, Default)]
struct LogCursor {
    stdout: u64,
    stderr: u64,
    /// Held streams of stdout and stderr, started from the positions above; `None` before the
    /// first read, after the task ended, or once polling took over.
    followers: [Option<Follower>; 2],
    /// Poll instead of following (a follower gave up, or `follow_logs` is off).
    polling: [bool; 2],
    /// Combined bytes handed to the engine so far (its offset).
    delivered: u64,
    /// Combined bytes still to drop after a takeover.
    skip: u64,
    /// Read from Nomad, not handed out yet.
    pending: Vec<u8>,
}

/// The Nomad scheduler. See the crate docs.
pub struct NomadScheduler {
    config: NomadConfig,
    client: Client,
    tracker: Arc<Tracker>,
    jobs: Mutex<HashMap<String, Known>>,
    namespaces: Mutex<std::collections::HashSet<String>>,
    logs: Mutex<HashMap<String, LogCursor>>,
    stream: Option<tokio::task::JoinHandle<()>>,
    exec: exec::ExecClient,
}

impl Drop for NomadScheduler {
    fn drop(&mut self) {
        if let Some(stream) = &self.stream {
            stream.abort();
        }
    }
}

impl std::fmt::Debug for NomadScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NomadScheduler").field("config", &self.config).finish_non_exhaustive()
    }
}

impl NomadScheduler {
    /// Builds the client and, inside a tokio runtime with `event_stream` on, starts following the
    /// event stream. Nomad is not contacted here: an unreachable Nomad only delays tasks.
    pub fn new(config: NomadConfig) -> Result<Self, NomadSetupError> {
        config.validate().map_err(NomadSetupError::Invalid)?;
        let client = Client::new(&config)?;
        let exec = exec::ExecClient::new(&config, config.addr.trim_end_matches('/'))?;
        let tracker = Arc::new(Tracker::default());
        let stream = match tokio::runtime::Handle::try_current() {
            Ok(handle) if config.event_stream => Some(handle.spawn(watch::follow(client.clone(), tracker.clone()))),
            _ => None,
        };
        tracing::info!(addr = %config.addr, driver = config.driver.as_str(), event_stream = stream.is_some(), "Nomad scheduler ready");
        Ok(Self {
            config,
            client,
            tracker,
            jobs: Mutex::new(HashMap::new()),
            namespaces: Mutex::new(Default::default()),
            logs: Mutex::new(HashMap::new()),
            stream,
            exec,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &NomadConfig {
        &self.config
    }

    /// The namespace of a job started here or, after a restart or takeover, looked up in Nomad.
    async fn known(&self, job_id: &str) -> Result<Option<Known>, SchedulerError> {
        if let Some(known) = self.jobs.lock().await.get(job_id) {
            return Ok(Some(known.clone()));
        }
        // Only in the tenant's own namespace: a job of the same id elsewhere is someone else's.
        // Ids recorded before the current scheme name no tenant reliably: searched everywhere.
        let found = match identity::home_namespace(job_id) {
            Some(namespace) => self.client.job(&namespace, job_id).await?.filter(|job| job.namespace == namespace),
            None => self.client.find_job(job_id).await?,
        };
        let Some(stub) = found else {
            return Ok(None);
        };
        let known = Known { namespace: stub.namespace, variable: false };
        self.jobs.lock().await.insert(job_id.to_owned(), known.clone());
        self.tracker.track(job_id);
        Ok(Some(known))
    }

    async fn ensure_namespace(&self, spec: &TaskSpec, namespace: &str) -> Result<(), SchedulerError> {
        if self.namespaces.lock().await.contains(namespace) {
            return Ok(());
        }
        self.client.upsert_namespace(namespace, spec.tenant.as_str()).await?;
        self.namespaces.lock().await.insert(namespace.to_owned());
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(job_id = %spec.job_id), err)]
    async fn start_job(&self, spec: &TaskSpec) -> Result<(), SchedulerError> {
        job::check_image(&spec.image, &self.config.allowed_registries).map_err(SchedulerError::Rejected)?;
        let namespace = job::nomad_namespace(&spec.tenant);
        self.ensure_namespace(spec, &namespace).await?;
        if let Some(auth) = &spec.registry_auth {
            let items = json!({"username": auth.username, "password": auth.password});
            self.client.put_variable(&namespace, &job::registry_variable_path(&spec.job_id), items).await?;
        }
        let previous = self.jobs.lock().await.insert(
            spec.job_id.clone(),
            Known { namespace: namespace.clone(), variable: spec.registry_auth.is_some() },
        );
        self.tracker.track(&spec.job_id);
        let created = match self.client.register(&namespace, job::job_spec(spec, &self.config)).await {
            Ok(created) => created,
            Err(e) => {
                if matches!(&e, NomadError::Status { message, .. } if message.contains("nonexistent namespace")) {
                    // Deleted behind our back: create it again on the retry.
                    self.namespaces.lock().await.remove(&namespace);
                }
                return Err(e.into());
            }
        };
        if !created && let Err(e) = self.adopt_existing(spec, &namespace).await {
            // Leave what this process knew of the existing job as it was.
            match previous {
                Some(previous) => {
                    self.jobs.lock().await.insert(spec.job_id.clone(), previous);
                }
                None => {
                    self.jobs.lock().await.remove(&spec.job_id);
                    self.tracker.forget(&spec.job_id);
                }
            }
            return Err(e);
        }
        tracing::info!(namespace, created, node_pool = job::node_pool(spec, &self.config), "Nomad job registered");
        Ok(())
    }

    /// Takes the job a check-and-set registration found already there as this start's, if it is.
    async fn adopt_existing(&self, spec: &TaskSpec, namespace: &str) -> Result<(), SchedulerError> {
        match self.client.job(namespace, &spec.job_id).await? {
            Some(existing) => identity::adopt(&existing, &spec.identity()),
            // Purged in between: the engine's retry registers it afresh.
            None => Err(SchedulerError::Unavailable(format!("Nomad job {} vanished while starting", spec.job_id))),
        }
    }

    /// The job's current allocation: from the event stream's cache, else polled.
    async fn allocation(&self, job_id: &str, namespace: &str) -> Result<Option<Allocation>, SchedulerError> {
        if let Some(alloc) = self.tracker.fresh(job_id) {
            return Ok(Some(alloc));
        }
        let alloc = state::latest(self.client.allocations(namespace, job_id).await?);
        if let Some(alloc) = &alloc {
            self.tracker.store(alloc.clone(), false);
        }
        Ok(alloc)
    }

    #[tracing::instrument(skip_all, fields(job_id = %job_id), err(level = "debug"))]
    async fn observe_job(&self, job_id: &str) -> Result<TaskObservation, SchedulerError> {
        let Some(known) = self.known(job_id).await? else {
            return Ok(TaskObservation::Unknown);
        };
        if let Some(alloc) = self.allocation(job_id, &known.namespace).await? {
            return Ok(alloc.observation());
        }
        // No allocation yet: placing (or blocked on a full pool), stopped before placement, or gone.
        Ok(match self.client.job(&known.namespace, job_id).await? {
            None => TaskObservation::Unknown,
            Some(job) if job.stop => TaskObservation::Killed { reason: gofer_core::scheduler::KillReason::Stopped },
            Some(_) => TaskObservation::Pending,
        })
    }

    /// Reads combined output. Nomad keeps stdout and stderr apart; each read appends what is new
    /// in stdout, then what is new in stderr. A replica that takes over a task (no cursor here,
    /// `offset` > 0) re-reads both from the start and drops the first `offset` bytes, so the log
    /// continues without gaps, though stdout/stderr interleaving may differ around the handover.
    #[tracing::instrument(skip_all, fields(job_id = %job_id, offset), err(level = "debug"))]
    async fn read_job_logs(&self, job_id: &str, offset: u64, max_bytes: usize) -> Result<LogChunk, SchedulerError> {
        let Some(known) = self.known(job_id).await? else {
            return Err(SchedulerError::NotFound(job_id.to_owned()));
        };
        let mut logs = self.logs.lock().await;
        let cursor = logs.entry(job_id.to_owned()).or_default();
        if cursor.delivered != offset {
            *cursor = LogCursor { skip: offset, delivered: offset, ..LogCursor::default() };
        }
        if cursor.pending.is_empty() {
            let Some(alloc) = self.allocation(job_id, &known.namespace).await? else {
                return Ok(LogChunk { data: Vec::new(), next_offset: offset });
            };
            if alloc.client_status == "pending" {
                return Ok(LogChunk { data: Vec::new(), next_offset: offset });
            }
            // Once the task is dead, its output is complete: close the streams (keeping what they
            // had) and read the rest with one poll, so the last bytes never wait on a stream.
            let dead = alloc.observation().is_final();
            let cursor = &mut *cursor;
            let outputs = [("stdout", &mut cursor.stdout), ("stderr", &mut cursor.stderr)];
            for (((kind, position), follower), polling) in
                outputs.into_iter().zip(cursor.followers.iter_mut()).zip(cursor.polling.iter_mut())
            {
                if let Some(f) = follower.take_if(|f| dead || f.gave_up()) {
                    let rest = f.close();
                    *position += rest.len() as u64;
                    cursor.pending.extend(rest);
                    *polling = true;
                }
                if !*polling && self.config.follow_logs {
                    let f = follower.get_or_insert_with(|| {
                        Follower::start(self.client.clone(), alloc.id.clone(), TASK, kind, *position)
                    });
                    let data = f.take();
                    *position += data.len() as u64;
                    cursor.pending.extend(data);
                    continue;
                }
                let data = self.client.logs(&alloc.id, TASK, kind, *position).await?;
                *position += data.len() as u64;
                cursor.pending.extend(data);
            }
            let skip = usize::try_from(cursor.skip).unwrap_or(usize::MAX).min(cursor.pending.len());
            cursor.pending.drain(..skip);
            cursor.skip -= skip as u64;
        }
        let n = max_bytes.min(cursor.pending.len());
        let data: Vec<u8> = cursor.pending.drain(..n).collect();
        cursor.delivered += n as u64;
        Ok(LogChunk { data, next_offset: cursor.delivered })
    }

    #[tracing::instrument(skip_all, fields(job_id = %job_id), err)]
    async fn stop_job(&self, job_id: &str) -> Result<(), SchedulerError> {
        match self.known(job_id).await? {
            Some(known) => Ok(self.client.deregister(&known.namespace, job_id, false).await?),
            None => Ok(()),
        }
    }

    #[tracing::instrument(skip_all, fields(job_id = %job_id), err)]
    async fn purge_job(&self, job_id: &str) -> Result<(), SchedulerError> {
        let Some(known) = self.known(job_id).await? else {
            return Ok(());
        };
        self.client.deregister(&known.namespace, job_id, true).await?;
        if known.variable {
            self.client.delete_variable(&known.namespace, &job::registry_variable_path(job_id)).await?;
        }
        self.jobs.lock().await.remove(job_id);
        self.logs.lock().await.remove(job_id);
        self.tracker.forget(job_id);
        tracing::info!("Nomad job purged");
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(job_id = %request.job_id, tty = request.tty), err(level = "debug"))]
    async fn exec_job(&self, request: &ExecRequest) -> Result<ExecSession, SchedulerError> {
        let not_running = || SchedulerError::NotFound(format!("job {} is not running", request.job_id));
        let known = self.known(&request.job_id).await?.ok_or_else(not_running)?;
        let alloc = self.allocation(&request.job_id, &known.namespace).await?.ok_or_else(not_running)?;
        if alloc.client_status != "running" {
            return Err(not_running());
        }
        self.exec.exec(&known.namespace, &alloc.id, TASK, request).await
    }

    async fn node_of(&self, job_id: &str) -> Option<String> {
        if let Some(node) = self.tracker.any(job_id).and_then(|a| a.node()) {
            return Some(node);
        }
        let known = self.known(job_id).await.ok()??;
        self.allocation(job_id, &known.namespace).await.ok()??.node()
    }
}

impl Scheduler for NomadScheduler {
    fn name(&self) -> &'static str {
        "nomad"
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

    /// Deregisters the job; Nomad signals the task and kills it after the job's `KillTimeout`
    /// (`kill_timeout_s`, fixed at registration, so `grace` is not used).
    fn stop<'a>(&'a self, job_id: &'a str, _grace: Duration) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(self.stop_job(job_id))
    }

    /// Deregisters with `purge=true` (Nomad forgets the job) and deletes its registry-auth variable.
    fn purge<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(self.purge_job(job_id))
    }

    fn node<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(self.node_of(job_id))
    }

    fn exec<'a>(&'a self, request: &'a ExecRequest) -> BoxFuture<'a, Result<ExecSession, SchedulerError>> {
        Box::pin(self.exec_job(request))
    }
}
