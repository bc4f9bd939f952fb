//! A test double of a scheduler (test code only): jobs live in memory, outside any replica, the
//! way Nomad jobs outlive the server that submitted them. It counts starts per job id, can fail
//! starts on purpose, and "runs" commands it understands:
//! `["sleep", "<seconds>"]` runs that long then exits 0, `["exit", "<code>"]` exits at once,
//! `["lines", "<seconds>", "a", "b", …]` prints one line every that many seconds then exits 0,
//! with `$NAME` in a line replaced by the task's env value `NAME` (resolved secrets included).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gofer_core::scheduler::{BoxFuture, KillReason, LogChunk, Scheduler, SchedulerError, TaskObservation, TaskSpec};

struct Job {
    started: Instant,
    runs_for: Duration,
    exit_code: i32,
    stopped: bool,
    /// Output, and when (after the start) each piece of it appears.
    output: Vec<(Duration, Vec<u8>)>,
}

impl Job {
    fn visible_output(&self) -> Vec<u8> {
        let elapsed = self.started.elapsed();
        self.output.iter().filter(|(at, _)| *at <= elapsed).flat_map(|(_, data)| data.iter().copied()).collect()
    }
}

/// An in-memory scheduler shared by every replica of a test.
#[derive(Default)]
pub struct FakeScheduler {
    jobs: Mutex<HashMap<String, Job>>,
    starts: Mutex<HashMap<String, u32>>,
    /// How many of the next `start` calls fail as if the scheduler were down.
    pub failing_starts: AtomicU32,
}

impl FakeScheduler {
    /// How many times `start` created the job `job_id` (idempotent repeats not counted).
    pub fn starts(&self, job_id: &str) -> u32 {
        self.starts.lock().map(|s| s.get(job_id).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Forgets a job, as when the node it ran on is lost.
    pub fn forget(&self, job_id: &str) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(job_id);
        }
    }

    /// Every job id ever started.
    pub fn job_ids(&self) -> Vec<String> {
        self.starts.lock().map(|s| s.keys().cloned().collect()).unwrap_or_default()
    }
}

/// How long the job runs, its exit code, and its output after the first line.
fn parse(spec: &TaskSpec) -> (Duration, i32, Vec<(Duration, Vec<u8>)>) {
    match spec.command.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["sleep", secs] => (Duration::from_secs_f64(secs.parse().unwrap_or(0.0)), 0, Vec::new()),
        ["exit", code] => (Duration::ZERO, code.parse().unwrap_or(1), Vec::new()),
        ["lines", every, lines @ ..] => {
            let every = Duration::from_secs_f64(every.parse().unwrap_or(0.0));
            let output = lines
                .iter()
                .enumerate()
                .map(|(i, line)| {
                    let line = spec.env.iter().fold((*line).to_owned(), |l, (k, v)| l.replace(&format!("${k}"), v));
                    (every * u32::try_from(i + 1).unwrap_or(u32::MAX), format!("{line}\n").into_bytes())
                })
                .collect();
            (every * u32::try_from(lines.len() + 1).unwrap_or(u32::MAX), 0, output)
        }
        _ => (Duration::ZERO, 0, Vec::new()),
    }
}

impl Scheduler for FakeScheduler {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(async move {
            let failing = self.failing_starts.load(Ordering::SeqCst);
            if failing > 0 {
                self.failing_starts.store(failing - 1, Ordering::SeqCst);
                return Err(SchedulerError::Unavailable("injected: the scheduler is down".into()));
            }
            let mut jobs = self.jobs.lock().map_err(|_| SchedulerError::Unavailable("poisoned".into()))?;
            if jobs.contains_key(&spec.job_id) {
                return Ok(());
            }
            let (runs_for, exit_code, lines) = parse(spec);
            let first = format!("started {} attempt {}\n", spec.job_id, spec.attempt).into_bytes();
            let output = std::iter::once((Duration::ZERO, first)).chain(lines).collect();
            jobs.insert(
                spec.job_id.clone(),
                Job { started: Instant::now(), runs_for, exit_code, stopped: false, output },
            );
            if let Ok(mut starts) = self.starts.lock() {
                *starts.entry(spec.job_id.clone()).or_default() += 1;
            }
            Ok(())
        })
    }

    fn observe<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<TaskObservation, SchedulerError>> {
        Box::pin(async move {
            let jobs = self.jobs.lock().map_err(|_| SchedulerError::Unavailable("poisoned".into()))?;
            Ok(match jobs.get(job_id) {
                None => TaskObservation::Unknown,
                Some(job) if job.stopped => TaskObservation::Killed { reason: KillReason::Stopped },
                Some(job) if job.started.elapsed() >= job.runs_for => {
                    TaskObservation::Exited { exit_code: job.exit_code }
                }
                Some(_) => TaskObservation::Running,
            })
        })
    }

    fn read_logs<'a>(
        &'a self,
        job_id: &'a str,
        offset: u64,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<LogChunk, SchedulerError>> {
        Box::pin(async move {
            let jobs = self.jobs.lock().map_err(|_| SchedulerError::Unavailable("poisoned".into()))?;
            let job = jobs.get(job_id).ok_or_else(|| SchedulerError::NotFound(job_id.to_owned()))?;
            let output = job.visible_output();
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(output.len());
            let end = start.saturating_add(max_bytes).min(output.len());
            Ok(LogChunk { data: output[start..end].to_vec(), next_offset: end as u64 })
        })
    }

    fn stop<'a>(&'a self, job_id: &'a str, _grace: Duration) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(async move {
            let mut jobs = self.jobs.lock().map_err(|_| SchedulerError::Unavailable("poisoned".into()))?;
            if let Some(job) = jobs.get_mut(job_id)
                && job.started.elapsed() < job.runs_for
            {
                job.stopped = true;
            }
            Ok(())
        })
    }

    fn purge<'a>(&'a self, _job_id: &'a str) -> BoxFuture<'a, Result<(), SchedulerError>> {
        // Jobs are kept so tests can count them.
        Box::pin(async { Ok(()) })
    }

    fn node<'a>(&'a self, _job_id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { Some("fake-node-1".to_owned()) })
    }
}

/// A scheduler that fails a share of every kind of call (start, observe, read_logs, stop, purge)
/// with an infrastructure error, at random, and passes the rest to `inner`. The failures are
/// seeded, so a failing run can be replayed.
pub struct FlakyScheduler<S> {
    /// The scheduler that answers the calls that do not fail.
    pub inner: S,
    /// Failures per 100 calls.
    pub percent: u64,
    state: std::sync::atomic::AtomicU64,
    failures: Mutex<HashMap<&'static str, u64>>,
    calls: Mutex<HashMap<&'static str, u64>>,
}

impl<S> FlakyScheduler<S> {
    /// Wraps `inner`, failing `percent` of calls, with a seed.
    pub fn new(inner: S, percent: u64, seed: u64) -> Self {
        Self {
            inner,
            percent,
            state: std::sync::atomic::AtomicU64::new(seed | 1),
            failures: Mutex::default(),
            calls: Mutex::default(),
        }
    }

    /// How many calls of `kind` failed on purpose, and how many were made.
    pub fn failures(&self, kind: &str) -> (u64, u64) {
        let get =
            |m: &Mutex<HashMap<&'static str, u64>>| m.lock().map(|m| m.get(kind).copied().unwrap_or(0)).unwrap_or(0);
        (get(&self.failures), get(&self.calls))
    }

    fn fails(&self, kind: &'static str) -> Result<(), SchedulerError> {
        // xorshift64: fast, seeded, good enough to pick failures.
        let mut x = self.state.load(Ordering::SeqCst);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::SeqCst);
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry(kind).or_default() += 1;
        }
        if x % 100 < self.percent {
            if let Ok(mut failures) = self.failures.lock() {
                *failures.entry(kind).or_default() += 1;
            }
            return Err(SchedulerError::Unavailable(format!("injected: {kind} failed")));
        }
        Ok(())
    }
}

impl<S: Scheduler> Scheduler for FlakyScheduler<S> {
    fn name(&self) -> &'static str {
        "flaky"
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(async move {
            self.fails("start")?;
            self.inner.start(spec).await
        })
    }

    fn observe<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<TaskObservation, SchedulerError>> {
        Box::pin(async move {
            self.fails("observe")?;
            self.inner.observe(job_id).await
        })
    }

    fn read_logs<'a>(
        &'a self,
        job_id: &'a str,
        offset: u64,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<LogChunk, SchedulerError>> {
        Box::pin(async move {
            self.fails("read_logs")?;
            self.inner.read_logs(job_id, offset, max_bytes).await
        })
    }

    fn stop<'a>(&'a self, job_id: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(async move {
            self.fails("stop")?;
            self.inner.stop(job_id, grace).await
        })
    }

    fn purge<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(async move {
            self.fails("purge")?;
            self.inner.purge(job_id).await
        })
    }

    fn node<'a>(&'a self, job_id: &'a str) -> BoxFuture<'a, Option<String>> {
        self.inner.node(job_id)
    }
}
