//! The instant scheduler: every job exits 0 the moment it starts, so a benchmark measures the
//! engine alone. It records when each job was started and purged (the engine purges a job right
//! after committing its outcome), and lets the benchmark wait for either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use gofer_core::scheduler::{BoxFuture, LogChunk, Scheduler, SchedulerError, TaskObservation, TaskSpec};
use tokio::sync::watch;

/// What the scheduler saw, shared by every replica's view of it.
#[derive(Debug, Default)]
pub struct Record {
    /// When `start` was first called for each job id.
    pub started: HashMap<String, Instant>,
    /// When `purge` was called for each job id, i.e. just after its outcome was committed.
    pub purged: HashMap<String, Instant>,
    /// The earliest `start` call.
    pub first_start: Option<Instant>,
    /// The latest `purge` call.
    pub last_purge: Option<Instant>,
    /// Jobs started through each replica's view.
    pub starts_per_replica: Vec<usize>,
}

/// One scheduler instance whose jobs finish at once. Hand each replica a [`view`](Self::view).
pub struct InstantScheduler {
    record: Mutex<Record>,
    /// Bumped on every start and purge, to wake waiters.
    changed: watch::Sender<u64>,
}

impl Default for InstantScheduler {
    fn default() -> Self {
        Self { record: Mutex::new(Record::default()), changed: watch::Sender::new(0) }
    }
}

impl InstantScheduler {
    /// A scheduler for replica number `replica`: the same instance, counting starts per replica.
    pub fn view(self: &Arc<Self>, replica: usize) -> Arc<dyn Scheduler> {
        if let Ok(mut record) = self.record.lock()
            && record.starts_per_replica.len() <= replica
        {
            record.starts_per_replica.resize(replica + 1, 0);
        }
        Arc::new(ReplicaView { shared: self.clone(), replica })
    }

    /// Reads the record.
    pub fn record(&self) -> anyhow::Result<MutexGuard<'_, Record>> {
        self.record.lock().map_err(|_| anyhow!("the instant scheduler's record is poisoned"))
    }

    /// Waits until `probe` answers something, at most `timeout`.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut probe: impl FnMut(&Record) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut changes = self.changed.subscribe();
        let waiting = async {
            loop {
                if let Some(found) = probe(&*self.record()?) {
                    return Ok(found);
                }
                changes.changed().await.context("the instant scheduler went away")?;
            }
        };
        tokio::time::timeout(timeout, waiting).await.map_err(|_| anyhow!("nothing happened within {timeout:?}"))?
    }

    /// When job `job_id` was started, waiting for it at most `timeout`.
    pub async fn started(&self, job_id: &str, timeout: Duration) -> anyhow::Result<Instant> {
        self.wait_for(timeout, |r| r.started.get(job_id).copied()).await.with_context(|| format!("job {job_id} start"))
    }

    /// When job `job_id` was purged (its outcome committed), waiting for it at most `timeout`.
    pub async fn purged(&self, job_id: &str, timeout: Duration) -> anyhow::Result<Instant> {
        self.wait_for(timeout, |r| r.purged.get(job_id).copied()).await.with_context(|| format!("job {job_id} purge"))
    }

    fn touch(&self, update: impl FnOnce(&mut Record)) -> Result<(), SchedulerError> {
        let mut record = self.record.lock().map_err(|_| SchedulerError::Unavailable("poisoned".into()))?;
        update(&mut record);
        drop(record);
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }
}

struct ReplicaView {
    shared: Arc<InstantScheduler>,
    replica: usize,
}

impl Scheduler for ReplicaView {
    fn name(&self) -> &'static str {
        "instant"
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<(), SchedulerError>> {
        // The instant is taken before anything else, so the lock is not part of what is measured.
        let now = Instant::now();
        Box::pin(async move {
            self.shared.touch(|r| {
                if r.started.contains_key(&spec.job_id) {
                    return;
                }
                r.started.insert(spec.job_id.clone(), now);
                r.first_start = Some(r.first_start.map_or(now, |first| first.min(now)));
                if let Some(count) = r.starts_per_replica.get_mut(self.replica) {
                    *count += 1;
                }
            })
        })
    }

    fn observe<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<TaskObservation, SchedulerError>> {
        Box::pin(async move {
            let record = self.shared.record.lock().map_err(|_| SchedulerError::Unavailable("poisoned".into()))?;
            Ok(if record.started.contains_key(job_id) {
                TaskObservation::Exited { exit_code: 0 }
            } else {
                TaskObservation::Unknown
            })
        })
    }

    fn read_logs<'a>(
        &'a self,
        _job_id: &'a str,
        offset: u64,
        _max_bytes: usize,
    ) -> BoxFuture<'a, Result<LogChunk, SchedulerError>> {
        // No output: the benchmark measures the queue, not log copying.
        Box::pin(async move { Ok(LogChunk { data: Vec::new(), next_offset: offset }) })
    }

    fn stop<'a>(&'a self, _job_id: &'a str, _grace: Duration) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(async { Ok(()) })
    }

    fn purge<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<(), SchedulerError>> {
        let now = Instant::now();
        Box::pin(async move {
            self.shared.touch(|r| {
                r.purged.entry(job_id.to_owned()).or_insert(now);
                r.last_purge = Some(r.last_purge.map_or(now, |last| last.max(now)));
            })
        })
    }
}
