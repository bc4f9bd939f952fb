//! A job's bookkeeping: idempotent starts, restarts, purge, job ids, and start-up errors.

use std::time::Duration;

use gofer_core::scheduler::{KillReason, Scheduler, SchedulerError, TaskObservation};
use gofer_scheduler_local::{LocalScheduler, LocalSchedulerConfig, LocalSchedulerError};

use crate::support::{scheduler, scheduler_with, sh};

#[tokio::test]
async fn starting_the_same_job_twice_runs_it_once() {
    let s = scheduler();
    let task = sh("once", "echo ran; sleep 0.2");
    let (a, b) = tokio::join!(s.scheduler.start(&task), s.scheduler.start(&task));
    a.unwrap();
    b.unwrap();
    s.wait_final("once").await;
    s.scheduler.start(&task).await.unwrap();
    assert_eq!(s.scheduler.observe("once").await.unwrap(), TaskObservation::Exited { exit_code: 0 });
    assert_eq!(s.logs("once").await, "ran\n", "one sandbox ran");
}

#[tokio::test]
async fn a_restarted_scheduler_reports_finished_jobs_from_disk() {
    let s = scheduler();
    s.run(&sh("before", "echo hello; exit 4")).await;
    let mut stopped = sh("stopped", "sleep 30");
    stopped.timeout = Duration::from_millis(100);
    s.scheduler.start(&stopped).await.unwrap();
    s.wait_final("stopped").await;

    let restarted = LocalScheduler::new(s.scheduler.config().clone()).unwrap();
    assert_eq!(restarted.observe("before").await.unwrap(), TaskObservation::Exited { exit_code: 4 });
    assert_eq!(restarted.observe("stopped").await.unwrap(), TaskObservation::Killed { reason: KillReason::Timeout });
    assert_eq!(restarted.read_logs("before", 0, 100).await.unwrap().data, b"hello\n");
    // Known on disk: starting it again does not run it again.
    restarted.start(&sh("before", "echo again")).await.unwrap();
    assert_eq!(restarted.observe("before").await.unwrap(), TaskObservation::Exited { exit_code: 4 });
    assert_eq!(restarted.read_logs("before", 0, 100).await.unwrap().data, b"hello\n");
}

#[tokio::test]
async fn a_job_directory_without_a_result_is_unknown() {
    let s = scheduler();
    // What a server that died mid-job leaves behind (its sandboxes die with it).
    std::fs::create_dir_all(s.work_dir.join("orphan").join("job")).unwrap();
    assert_eq!(s.scheduler.observe("orphan").await.unwrap(), TaskObservation::Unknown);
    s.scheduler.purge("orphan").await.unwrap();
    assert!(!s.work_dir.join("orphan").exists());
}

#[tokio::test]
async fn the_info_file_names_the_sandbox_process_for_attach() {
    let s = scheduler();
    s.run(&sh("info", "true")).await;
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.work_dir.join("info").join("info.json")).unwrap()).unwrap();
    assert!(info["child-pid"].as_i64().is_some_and(|pid| pid > 1), "{info}");
}

#[tokio::test]
async fn purge_removes_a_finished_job_and_everything_it_left() {
    let s = scheduler();
    // Read-only directories: a non-root server must make them writable before deleting them.
    s.run(&sh("messy", "mkdir -p /job/ro/sub && touch /job/ro/sub/f && chmod 0500 /job/ro/sub /job/ro")).await;
    s.scheduler.purge("messy").await.unwrap();
    assert!(!s.work_dir.join("messy").exists());
    assert_eq!(s.scheduler.observe("messy").await.unwrap(), TaskObservation::Unknown);
    assert!(matches!(s.scheduler.read_logs("messy", 0, 10).await, Err(SchedulerError::NotFound(_))));
    s.scheduler.purge("messy").await.unwrap();
}

#[tokio::test]
async fn a_running_job_cannot_be_purged() {
    let s = scheduler();
    s.scheduler.start(&sh("busy", "sleep 30")).await.unwrap();
    let result = s.scheduler.purge("busy").await;
    assert!(matches!(result, Err(SchedulerError::Rejected(_))), "{result:?}");
    s.scheduler.stop("busy", Duration::ZERO).await.unwrap();
    s.scheduler.purge("busy").await.unwrap();
    assert!(!s.work_dir.join("busy").exists());
}

#[tokio::test]
async fn invalid_job_ids_are_rejected_everywhere() {
    let s = scheduler();
    for bad in ["../escape", "a/b", "..", ".", "", "Upper", "dot.ted", "sp ace"] {
        let rejected = |r: Result<(), SchedulerError>| matches!(r, Err(SchedulerError::Rejected(_)));
        assert!(rejected(s.scheduler.start(&sh(bad, "true")).await), "start {bad:?}");
        assert!(rejected(s.scheduler.observe(bad).await.map(drop)), "observe {bad:?}");
        assert!(rejected(s.scheduler.read_logs(bad, 0, 1).await.map(drop)), "read_logs {bad:?}");
        assert!(rejected(s.scheduler.stop(bad, Duration::ZERO).await), "stop {bad:?}");
        assert!(rejected(s.scheduler.purge(bad).await), "purge {bad:?}");
    }
    // No job directory (the scheduler's own start-up files are dot-named; job ids never are).
    let jobs = std::fs::read_dir(&s.work_dir)
        .unwrap()
        .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'));
    assert_eq!(jobs.count(), 0);
}

#[tokio::test]
async fn a_missing_bwrap_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalSchedulerConfig {
        work_dir: dir.path().to_owned(),
        settings: gofer_scheduler_local::SandboxSettings {
            bwrap_path: "/nonexistent/bwrap".into(),
            ..Default::default()
        },
        ..LocalSchedulerConfig::default()
    };
    let error = LocalScheduler::new(config).unwrap_err();
    assert!(matches!(error, LocalSchedulerError::BwrapNotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("apt-get install -y bubblewrap"), "{error}");
}

#[tokio::test]
async fn as_root_a_work_dir_that_nobody_cannot_enter_is_a_clear_error() {
    // 0700 is fine for a non-root server (the sandbox is its own user), not for root, whose
    // sandboxes start as uid 65534.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let config = LocalSchedulerConfig { work_dir: dir.path().join("work"), ..LocalSchedulerConfig::default() };
    let running_as_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    match LocalScheduler::new(config) {
        Err(LocalSchedulerError::SandboxUnusable { detail }) if running_as_root => {
            assert!(detail.contains("o+x"), "{detail}");
        }
        Ok(_) if !running_as_root => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn without_cgroups_untrusted_plans_are_refused_unless_the_operator_opts_out() {
    let mut trial = sh("trial", "echo ran");
    trial.untrusted = true;
    let without = scheduler_with(|c| c.settings.cgroups = gofer_scheduler_local::CgroupMode::Off);
    assert!(!without.scheduler.limits_whole_tasks());
    let refused = without.scheduler.start(&trial).await.unwrap_err();
    assert!(matches!(&refused, SchedulerError::Rejected(m) if m.contains("untrusted")), "{refused:?}");
    // A trusted tenant's task still runs there.
    assert_eq!(
        without.run(&sh("paying", "echo ran")).await,
        (TaskObservation::Exited { exit_code: 0 }, "ran\n".into())
    );
    let opted_out = scheduler_with(|c| {
        c.settings.cgroups = gofer_scheduler_local::CgroupMode::Off;
        c.settings.allow_untrusted_without_cgroups = true;
    });
    assert_eq!(opted_out.run(&trial).await, (TaskObservation::Exited { exit_code: 0 }, "ran\n".into()));
    // With cgroups, trials run.
    let with = scheduler();
    if with.scheduler.limits_whole_tasks() {
        assert_eq!(with.run(&trial).await, (TaskObservation::Exited { exit_code: 0 }, "ran\n".into()));
    }
}
