//! Test helpers: a scheduler in a fresh work directory, spec builders, and polling with deadlines.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use gofer_core::id::RunId;
use gofer_core::scheduler::{Scheduler, TaskObservation, TaskSpec};
use gofer_scheduler_local::{LocalScheduler, LocalSchedulerConfig};
use tempfile::TempDir;

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A scheduler whose work directory disappears with the test.
pub struct TestScheduler {
    pub scheduler: LocalScheduler,
    pub work_dir: PathBuf,
    _dir: TempDir,
}

pub fn scheduler() -> TestScheduler {
    scheduler_with(|_| {})
}

pub fn scheduler_with(configure: impl FnOnce(&mut LocalSchedulerConfig)) -> TestScheduler {
    let dir = tempfile::tempdir().unwrap();
    // Not left to the umask: as root, sandboxes start as uid 65534, which must be able to enter it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = LocalSchedulerConfig { work_dir: dir.path().join("work"), ..LocalSchedulerConfig::default() };
    configure(&mut config);
    let scheduler = LocalScheduler::new(config).unwrap();
    let work_dir = scheduler.config().work_dir.clone();
    TestScheduler { scheduler, work_dir, _dir: dir }
}

/// A spec running `command` with a generous timeout and no environment.
pub fn spec(job_id: &str, command: &[&str]) -> TaskSpec {
    TaskSpec {
        job_id: job_id.to_owned(),
        tenant: "acme".parse().unwrap(),
        namespace: "team".parse().unwrap(),
        pipeline: "build".parse().unwrap(),
        run: RunId::from_i64(1),
        task: "test".parse().unwrap(),
        attempt: 1,
        image: "ignored:latest".to_owned(),
        command: command.iter().map(|s| s.to_string()).collect(),
        entrypoint: None,
        env: BTreeMap::new(),
        timeout: Duration::from_secs(60),
        cpu_millis: 1000,
        memory_mb: 4096,
        disk_mb: 1024,
        registry_auth: None,
        allow_network: true,
        untrusted: false,
        node_pool: None,
        gofer_cli: false,
    }
}

/// A spec running a `/bin/sh` script.
pub fn sh(job_id: &str, script: &str) -> TaskSpec {
    spec(job_id, &["sh", "-c", script])
}

impl TestScheduler {
    /// Starts a job and waits for it to finish; returns how it ended and its output.
    pub async fn run(&self, spec: &TaskSpec) -> (TaskObservation, String) {
        self.scheduler.start(spec).await.unwrap();
        let observation = self.wait_final(&spec.job_id).await;
        (observation, self.logs(&spec.job_id).await)
    }

    pub async fn wait_final(&self, job_id: &str) -> TaskObservation {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let observation = self.scheduler.observe(job_id).await.unwrap();
            if observation.is_final() {
                return observation;
            }
            assert!(tokio::time::Instant::now() < deadline, "{job_id} still {observation:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the job's output contains `needle` (the task is ready for the next step).
    pub async fn wait_for_output(&self, job_id: &str, needle: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !self.logs(job_id).await.contains(needle) {
            assert!(tokio::time::Instant::now() < deadline, "{job_id} never printed {needle:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The job's whole output so far.
    pub async fn logs(&self, job_id: &str) -> String {
        let chunk = self.scheduler.read_logs(job_id, 0, usize::MAX).await.unwrap();
        String::from_utf8(chunk.data).unwrap()
    }
}
