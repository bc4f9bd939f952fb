//! How a job ends when it does not end on its own: timeouts and stop; and that nothing outlives it.

use std::time::{Duration, Instant};

use gofer_core::scheduler::{KillReason, Scheduler, TaskObservation};

use crate::support::{scheduler, sh, spec};

#[tokio::test]
async fn a_task_past_its_timeout_is_killed() {
    let s = scheduler();
    let mut slow = spec("slow", &["sleep", "30"]);
    slow.timeout = Duration::from_millis(500);
    let started = Instant::now();
    s.scheduler.start(&slow).await.unwrap();
    assert_eq!(s.scheduler.observe("slow").await.unwrap(), TaskObservation::Running);
    assert_eq!(s.wait_final("slow").await, TaskObservation::Killed { reason: KillReason::Timeout });
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn stop_sends_sigterm_to_the_task_first() {
    let s = scheduler();
    let script = "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done";
    s.scheduler.start(&sh("polite", script)).await.unwrap();
    s.wait_for_output("polite", "ready").await;
    s.scheduler.stop("polite", Duration::from_secs(10)).await.unwrap();
    assert_eq!(s.scheduler.observe("polite").await.unwrap(), TaskObservation::Killed { reason: KillReason::Stopped });
    assert_eq!(s.logs("polite").await, "ready\ngot-term\n");
}

#[tokio::test]
async fn stop_kills_a_task_that_ignores_sigterm_after_the_grace() {
    let s = scheduler();
    s.scheduler.start(&sh("stubborn", "trap '' TERM; echo ready; sleep 30")).await.unwrap();
    s.wait_for_output("stubborn", "ready").await;
    let started = Instant::now();
    s.scheduler.stop("stubborn", Duration::from_millis(300)).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(s.scheduler.observe("stubborn").await.unwrap(), TaskObservation::Killed { reason: KillReason::Stopped });
}

#[tokio::test]
async fn stopping_a_finished_or_unknown_job_succeeds_and_changes_nothing() {
    let s = scheduler();
    s.run(&sh("done", "exit 3")).await;
    s.scheduler.stop("done", Duration::ZERO).await.unwrap();
    assert_eq!(s.scheduler.observe("done").await.unwrap(), TaskObservation::Exited { exit_code: 3 });
    s.scheduler.stop("never-started", Duration::ZERO).await.unwrap();
    assert_eq!(s.scheduler.observe("never-started").await.unwrap(), TaskObservation::Unknown);
}

#[tokio::test]
async fn background_processes_end_with_the_task() {
    let s = scheduler();
    // A duration no other process on the host has, so the host can look for it.
    let duration = format!("3600.{}", std::process::id());
    let (observation, logs) = s
        .run(&sh(
            "bg",
            &format!(
                // Waits until the background process really is `sleep`, then leaves it behind.
                "sleep {duration} & until grep -q {duration} /proc/$!/cmdline; do sleep 0.01; done; echo started"
            ),
        ))
        .await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    let cmdline = format!("sleep\0{duration}\0");
    let deadline = Instant::now() + Duration::from_secs(5);
    while host_has_process(cmdline.as_bytes()) {
        assert!(Instant::now() < deadline, "the background sleep outlived its job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn host_has_process(cmdline: &[u8]) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|entry| std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == cmdline))
}

#[tokio::test]
async fn finished_jobs_leave_no_zombies_behind_even_when_the_server_is_pid_1() {
    // Meaningful as pid 1, where orphaned sandbox processes are reparented to the server:
    // `unshare --pid --fork --mount-proc <test binary> zombies`.
    let s = scheduler();
    for id in ["z-exit", "z-timeout"] {
        let mut task = sh(id, "sleep 0.05 & exit 0");
        if id == "z-timeout" {
            task = sh(id, "sleep 30");
            task.timeout = Duration::from_millis(100);
        }
        s.run(&task).await;
    }
    let me = std::process::id().to_string();
    let zombies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter(|status| {
            status.lines().any(|l| l.starts_with("PPid:") && l.split_whitespace().nth(1) == Some(&me))
                && status.lines().any(|l| l.starts_with("State:") && l.contains("zombie"))
        })
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
}
