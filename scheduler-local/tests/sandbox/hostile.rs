//! Hostile tasks (issue 18): each attack runs as a real task, bounded by its own design (a bomb
//! that stops at a few hundred processes, a hog that allocates at most about twice its limit, a
//! fill of at most twice its size, a timeout), and a bystander task must be unaffected.
//!
//! The cgroup tests need root (or a delegated cgroup v2 subtree); without usable cgroups they say
//! so and check nothing, as CI runs as root where they run.

use std::time::Duration;

use gofer_core::scheduler::{KillReason, Scheduler, TaskObservation};

use crate::support::{TestScheduler, scheduler, scheduler_with, sh, spec};

/// A bystander's task that forks a few processes and writes a little: must succeed.
async fn bystander_succeeds(s: &TestScheduler, job_id: &str) {
    let (observation, logs) = s.run(&sh(job_id, "for i in 1 2 3 4 5; do sleep 0.01 & done; wait; echo fine")).await;
    assert_eq!((observation, logs.as_str()), (TaskObservation::Exited { exit_code: 0 }, "fine\n"), "the bystander");
}

fn needs_cgroups(s: &TestScheduler, test: &str) -> bool {
    if !s.scheduler.limits_whole_tasks() {
        eprintln!("{test}: skipped, no usable cgroup on this host (needs root or a delegated cgroup v2 subtree)");
    }
    s.scheduler.limits_whole_tasks()
}

#[tokio::test]
async fn a_memory_hog_of_several_processes_is_killed_out_of_memory() {
    let s = scheduler();
    if !needs_cgroups(&s, "a_memory_hog_of_several_processes_is_killed_out_of_memory") {
        return;
    }
    // Four processes of 60 MiB each under a 128 MiB task: each fits a per-process limit, together
    // they do not. 240 MiB at most, whatever the defence.
    // The parent, like any build tool, fails when a child dies of a signal.
    let hog = "import os, sys, time\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n        \
               kids = None\n        break\n    kids.append(pid)\n\
               b = bytearray(60 * 1024 * 1024)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\ntime.sleep(3)\n\
               if kids is None:\n    os._exit(0)\n\
               failed = [p for p in kids if os.waitpid(p, 0)[1] != 0]\nprint('children failed:', len(failed), flush=True)\n\
               sys.exit(1 if failed else 0)";
    let mut task = spec("hog", &["python3", "-c", hog]);
    task.memory_mb = 128;
    task.timeout = Duration::from_secs(20);
    let (observation, logs) = s.run(&task).await;
    assert_eq!(observation, TaskObservation::Killed { reason: KillReason::OutOfMemory }, "{logs}");
    bystander_succeeds(&s, "hog-bystander").await;
}

#[tokio::test]
async fn a_fork_bomb_is_held_to_its_own_task_and_a_bystander_still_starts() {
    let s = scheduler_with(|c| c.settings.max_processes = 64);
    if !needs_cgroups(&s, "a_fork_bomb_is_held_to_its_own_task_and_a_bystander_still_starts") {
        return;
    }
    // Up to 300 sleeping children: far past the task's 64, and bounded whatever happens.
    let bomb = "import os, time\nn = 0\ntry:\n    for _ in range(300):\n        if os.fork() == 0:\n            \
                time.sleep(20)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('fork failed:', e)\n\
                print('forked', n, flush=True)\ntime.sleep(20)";
    let mut task = spec("bomb", &["python3", "-c", bomb]);
    task.timeout = Duration::from_secs(20);
    s.scheduler.start(&task).await.unwrap();
    s.wait_for_output("bomb", "forked").await;
    let logs = s.logs("bomb").await;
    let forked: u32 = logs.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(logs.contains("fork failed") && forked < 64, "{logs}");
    // While the bomb holds all it may, another task (of the same host uid) starts and forks.
    bystander_succeeds(&s, "bomb-bystander").await;
    s.scheduler.stop("bomb", Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn filling_tmp_and_dev_shm_stops_at_their_size() {
    let s = scheduler();
    // Twice the task's memory into each; the writes must stop short (no space, or the cgroup's
    // OOM kill), and nothing may be written to /dev itself.
    let script = "head -c $((256 << 20)) /dev/zero > /tmp/fill; echo tmp=$(stat -c %s /tmp/fill)
                  rm -f /tmp/fill
                  head -c $((256 << 20)) /dev/zero > /dev/shm/fill; echo shm=$(stat -c %s /dev/shm/fill)
                  rm -f /dev/shm/fill
                  touch /dev/planted 2>/dev/null && echo dev-writable
                  df -k /tmp /dev/shm | tail -n 2";
    let mut task = sh("fill", script);
    task.memory_mb = 128;
    task.timeout = Duration::from_secs(20);
    let (observation, logs) = s.run(&task).await;
    let size = |key: &str| -> u64 {
        logs.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    match observation {
        // Killed by the memory cgroup while filling: bounded too.
        TaskObservation::Killed { reason: KillReason::OutOfMemory } => {}
        TaskObservation::Exited { exit_code: 0 } => {
            assert!(size("tmp") <= 128 << 20, "/tmp took {} bytes: {logs}", size("tmp"));
            assert!(size("shm") <= 64 << 20, "/dev/shm took {} bytes: {logs}", size("shm"));
            assert!(!logs.contains("dev-writable"), "{logs}");
        }
        other => panic!("{other:?}: {logs}"),
    }
    bystander_succeeds(&s, "fill-bystander").await;
}

#[tokio::test]
async fn a_task_cannot_make_namespaces_and_runs_under_a_syscall_filter() {
    let s = scheduler();
    let script = "grep '^Seccomp:' /proc/self/status
                  unshare -U true 2>/dev/null && echo userns-made
                  unshare -r true 2>/dev/null && echo root-mapped
                  unshare -m true 2>/dev/null && echo mountns-made
                  python3 -c 'import os; os.unshare(os.CLONE_NEWUSER)' 2>/dev/null && echo python-userns
                  python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); exit(0 if l.syscall(250, 0, -3, 0) >= 0 else 1)' && echo keyctl-allowed
                  echo done";
    let (observation, logs) = s.run(&sh("filtered", script)).await;
    assert_eq!((observation, logs.as_str()), (TaskObservation::Exited { exit_code: 0 }, "Seccomp:\t2\ndone\n"));
    bystander_succeeds(&s, "filtered-bystander").await;
}

#[tokio::test]
async fn a_task_gets_its_cpu_share_not_more() {
    let s = scheduler();
    if !needs_cgroups(&s, "a_task_gets_its_cpu_share_not_more") {
        return;
    }
    // One second of busy looping at 100 millicores: about 0.1 s of CPU, far from the 1 s it
    // would get unlimited.
    let spin = "import os, time\nt = time.time()\nwhile time.time() - t < 1.0:\n    pass\nprint(os.times().user)";
    let mut task = spec("spin", &["python3", "-c", spin]);
    task.cpu_millis = 100;
    let (observation, logs) = s.run(&task).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    let user: f64 = logs.trim().parse().unwrap();
    assert!(user < 0.4, "the task used {user} s of CPU in 1 s at 100 millicores");
}

#[tokio::test]
async fn a_finished_task_leaves_nothing_running_in_its_cgroup_and_groups_are_reused() {
    let s = scheduler();
    if !needs_cgroups(&s, "a_finished_task_leaves_nothing_running_in_its_cgroup_and_groups_are_reused") {
        return;
    }
    let groups = || -> Vec<(std::path::PathBuf, String)> {
        s.scheduler
            .task_cgroup_parents()
            .iter()
            .flat_map(|parent| std::fs::read_dir(parent).unwrap().flatten().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .map(|p| (p.clone(), std::fs::read_to_string(p.join("cgroup.procs")).unwrap()))
            .collect()
    };
    // Groups are emptied just after each task is reported final: allow it a moment.
    let settle = || async {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while groups().iter().any(|(_, procs)| !procs.trim().is_empty()) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = groups();
        assert!(left.iter().all(|(_, procs)| procs.trim().is_empty()), "processes left: {left:?}");
        left.len()
    };
    let mut counts = Vec::new();
    for i in 0..3 {
        // A background process outlives the task's main process; it must not outlive the task.
        let (observation, _) = s.run(&sh(&format!("tidy-{i}"), "sleep 5 & echo $$")).await;
        assert_eq!(observation, TaskObservation::Exited { exit_code: 0 });
        counts.push(settle().await);
        // Given back to the pool just after the processes are gone (reclaimed first): wait for it.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // One task at a time, once its group was given back, reuses it: the count does not grow.
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
}

#[tokio::test]
async fn a_plain_task_still_works_under_every_defence() {
    let s = scheduler();
    let script =
        "echo hi > /tmp/a && cat /tmp/a && echo shm > /dev/shm/b && cat /dev/shm/b && ls /job >/dev/null && echo ok";
    assert_eq!(s.run(&sh("plain", script)).await, (TaskObservation::Exited { exit_code: 0 }, "hi\nshm\nok\n".into()));
}

#[tokio::test]
async fn filling_job_stops_at_the_tasks_disk_and_no_file_outgrows_it() {
    let s = scheduler();
    // Twice the 64 MiB disk into /job (a tmpfs of that size): no space left at 64 MiB. Then one
    // file of 96 MiB in /tmp (sized to the 256 MiB memory): RLIMIT_FSIZE (the disk) stops it.
    let script = "head -c $((128 << 20)) /dev/zero > /job/fill 2>/dev/null; echo job=$(stat -c %s /job/fill)
                  rm -f /job/fill
                  (head -c $((96 << 20)) /dev/zero > /tmp/big) 2>/dev/null; echo tmp-rc=$?
                  echo tmp=$(stat -c %s /tmp/big)";
    let mut task = sh("disk", script);
    task.memory_mb = 256;
    task.disk_mb = 64;
    task.timeout = Duration::from_secs(20);
    let (observation, logs) = s.run(&task).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    let value = |key: &str| -> u64 {
        logs.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).and_then(|v| v.parse().ok()).unwrap()
    };
    assert!(value("job") <= 64 << 20 && value("job") > 32 << 20, "{logs}");
    // 128 + SIGXFSZ (25): the writer was stopped at the limit.
    assert_eq!(value("tmp-rc"), 153, "{logs}");
    assert_eq!(value("tmp"), 64 << 20, "{logs}");
    bystander_succeeds(&s, "disk-bystander").await;
}

#[tokio::test]
async fn output_past_the_cap_leaves_a_bounded_file_with_its_head_and_tail() {
    let s = scheduler_with(|c| c.max_output_bytes = 1 << 20);
    // 8 MiB of output, bounded by design, then a last line.
    let script = "echo the-start; head -c $((8 << 20)) /dev/zero | tr '\\0' x; echo; echo the-end";
    let (observation, logs) = s.run(&sh("chatty", script)).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 });
    let meta = std::fs::metadata(s.work_dir.join("chatty").join("output.log")).unwrap();
    let on_disk = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert!(on_disk <= (1 << 20) + (1 << 19) + (64 << 10), "output.log takes {on_disk} bytes on disk");
    // Every byte keeps its position (the cut part is a hole), so the engine counts what was cut.
    assert_eq!(logs.len(), "the-start\n".len() + (8 << 20) + "\nthe-end\n".len());
    assert!(logs.starts_with("the-start\nxxx"), "the head is kept");
    assert!(logs.ends_with("x\nthe-end\n"), "the tail is kept");
}

#[tokio::test]
async fn a_task_sees_a_minimal_etc_and_no_host_paths() {
    let s = scheduler();
    let script = "ls /etc | tr '\\n' ' '; echo
                  cat /etc/passwd
                  touch /etc/planted 2>/dev/null && echo etc-writable
                  awk 'BEGIN { print \"awk works\" }'; which sh
                  cat /proc/self/mountinfo /proc/self/cgroup";
    let (observation, logs) = s.run(&sh("minimal-etc", script)).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    let listed: Vec<&str> = logs.lines().next().unwrap().split_whitespace().collect();
    for needed in ["passwd", "group", "hosts", "resolv.conf", "ld.so.cache", "alternatives"] {
        assert!(listed.contains(&needed), "{needed} missing from /etc: {listed:?}");
    }
    for host_only in ["shadow", "gshadow", "sudoers", "ssh", "hostname", "machine-id", "fstab", "postgresql"] {
        assert!(!listed.contains(&host_only), "{host_only} leaked into /etc: {listed:?}");
    }
    assert!(logs.contains("nobody:x:65534:65534:nobody:/job:"), "{logs}");
    assert!(!logs.contains("etc-writable"), "{logs}");
    assert!(logs.contains("awk works\n/usr/bin/sh\n"), "{logs}");
    // Neither the state directory nor the job id appears anywhere the task can read.
    let work_dir = s.work_dir.display().to_string();
    assert!(!logs.contains(&work_dir) && !logs.contains("minimal-etc"), "a host path leaked: {logs}");
    bystander_succeeds(&s, "etc-bystander").await;
}
