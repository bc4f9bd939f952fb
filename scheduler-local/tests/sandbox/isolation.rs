//! What a task can and cannot reach: user, capabilities, environment, network, files, limits.

use std::collections::BTreeSet;
use std::time::Duration;

use gofer_core::scheduler::{KillReason, Scheduler, TaskObservation};

use crate::support::{TestScheduler, scheduler, scheduler_with, sh, spec};

#[tokio::test]
async fn a_task_runs_as_nobody_with_no_capabilities() {
    let s = scheduler();
    let script = "id -u; id -g; grep -E '^Cap(Eff|Prm|Inh|Amb)' /proc/self/status; hostname";
    let (observation, logs) = s.run(&sh("whoami", script)).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines[..2], ["65534", "65534"], "{logs}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert!(logs.contains(&format!("{cap}:\t0000000000000000")), "{cap} in {logs}");
    }
    assert_eq!(lines.last(), Some(&"gofer-sandbox"));
}

#[tokio::test]
async fn a_task_cannot_read_root_only_host_files() {
    let s = scheduler();
    // /etc/shadow is not in the task's minimal /etc at all; a root-only file the task can reach
    // (its own /proc/1/environ belongs to bwrap's pid 1 set up as root inside) stays unreadable
    // because the task's user is nobody on the host too.
    let (observation, logs) = s.run(&sh("shadow", "cat /etc/shadow")).await;
    assert_ne!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    assert!(logs.contains("No such file"), "{logs}");
}

#[tokio::test]
async fn only_declared_environment_variables_reach_the_task() {
    let s = scheduler();
    let mut declared = spec("env", &["env"]);
    declared.env.insert("GOFER_RUN".into(), "7".into());
    declared.env.insert("WITH_SPACES".into(), "a b  c".into());
    let (observation, logs) = s.run(&declared).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    let keys: BTreeSet<&str> = logs.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
    // PWD comes from bwrap's --chdir.
    assert_eq!(keys, BTreeSet::from(["GOFER_RUN", "HOME", "PATH", "PWD", "WITH_SPACES"]), "{logs}");
    assert!(logs.contains("WITH_SPACES=a b  c\n"));
    assert!(logs.contains("HOME=/job\n"));
    assert!(logs.contains("PATH=/usr/local/bin:/usr/bin:/bin\n"));
    // None of the test process's own variables get in.
    for (key, _) in std::env::vars() {
        assert!(!logs.contains(&format!("{key}=")) || keys.contains(key.as_str()), "{key} leaked: {logs}");
    }

    let mut overridden = spec("env-home", &["sh", "-c", "echo $HOME"]);
    overridden.env.insert("HOME".into(), "/job/home".into());
    assert_eq!(s.run(&overridden).await.1, "/job/home\n");
}

#[tokio::test]
async fn task_secrets_do_not_appear_in_host_process_lists() {
    let s = scheduler();
    let secret = format!("s3cret-{}-{:?}", std::process::id(), std::time::Instant::now());
    let mut task = sh("secret", "echo ready; sleep 30");
    task.env.insert("TOKEN".into(), secret.clone());
    s.scheduler.start(&task).await.unwrap();
    s.wait_for_output("secret", "ready").await;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(!cmdline.contains(&secret), "{:?}: {cmdline}", entry.path());
        }
    }
    s.scheduler.stop("secret", Duration::ZERO).await.unwrap();
}

/// A python script connecting to the host's listener, printing `connected` or `refused`.
fn connect_script(port: u16) -> String {
    format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('connected')\n\
         except OSError as e:\n    print('refused', e)"
    )
}

#[tokio::test]
async fn the_task_has_only_a_loopback_network() {
    let s = scheduler();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = connect_script(port);
    let (observation, logs) = s.run(&spec("offline", &["python3", "-c", &script])).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    assert!(logs.starts_with("refused"), "{logs}");

    let (_, devices) = s.run(&sh("devices", "tail -n +3 /proc/net/dev | cut -d: -f1")).await;
    assert_eq!(devices.split_whitespace().collect::<Vec<_>>(), ["lo"]);
}

#[tokio::test]
async fn a_networked_task_does_not_reach_the_hosts_loopback() {
    // Before: share_network gave the task the host's namespace, and this connected.
    let s = scheduler_with(|c| c.settings.share_network = true);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let script = connect_script(listener.local_addr().unwrap().port());
    let (_, logs) = s.run(&spec("online", &["python3", "-c", &script])).await;
    assert_ne!(logs, "connected\n");
}

#[tokio::test]
async fn usr_is_read_only_tmp_is_private_and_job_is_writable() {
    let s = scheduler();
    let host_tmp = tempfile::NamedTempFile::new().unwrap();
    let host_tmp_name = host_tmp.path().file_name().unwrap().to_str().unwrap();
    let private_name = format!("gofer-private-{}", std::process::id());
    let script = format!(
        "touch /usr/x 2>/dev/null && echo usr-writable
         touch /etc/x 2>/dev/null && echo etc-writable
         test -e /tmp/{host_tmp_name} && echo host-tmp-visible
         echo private > /tmp/{private_name} && echo tmp-writable
         echo result > /job/out.txt && echo job-writable
         cat /job/out.txt
         pwd"
    );
    let (_, logs) = s.run(&sh("files", &script)).await;
    assert_eq!(logs, "tmp-writable\njob-writable\nresult\n/job\n");
    assert!(!std::env::temp_dir().join(private_name).exists(), "the sandbox's /tmp leaked to the host");
}

/// How a task over its memory ends: killed `out_of_memory` by its cgroup, or, with per-process
/// limits only (no usable cgroup), a failed allocation.
fn assert_over_memory(s: &TestScheduler, observation: TaskObservation, logs: &str) {
    if s.scheduler.limits_whole_tasks() {
        assert_eq!(observation, TaskObservation::Killed { reason: KillReason::OutOfMemory }, "{logs}");
    } else {
        assert_eq!(observation, TaskObservation::Exited { exit_code: 1 }, "{logs}");
        assert!(logs.contains("MemoryError"), "{logs}");
    }
}

#[tokio::test]
async fn an_allocation_past_the_memory_limit_fails() {
    let s = scheduler_with(|c| c.settings.memory_limit_mb = 200);
    let allocate =
        |mb: u32| spec("alloc", &["python3", "-c", &format!("b = bytearray({mb} * 1024 * 1024); print('ok')")]);
    let (observation, logs) = s.run(&allocate(300)).await;
    assert_over_memory(&s, observation, &logs);

    let mut small = allocate(50);
    small.job_id = "alloc-small".into();
    assert_eq!(s.run(&small).await, (TaskObservation::Exited { exit_code: 0 }, "ok\n".into()));
}

#[tokio::test]
async fn a_task_gets_its_own_memory_limit_within_the_scheduler_ceiling() {
    let s = scheduler();
    let mut task = spec("own-limit", &["python3", "-c", "b = bytearray(300 * 1024 * 1024); print('ok')"]);
    task.memory_mb = 200;
    let (observation, logs) = s.run(&task).await;
    assert_over_memory(&s, observation, &logs);

    let mut roomy = spec("own-limit-roomy", &["python3", "-c", "b = bytearray(300 * 1024 * 1024); print('ok')"]);
    roomy.memory_mb = 1024;
    assert_eq!(s.run(&roomy).await, (TaskObservation::Exited { exit_code: 0 }, "ok\n".into()));
}

#[tokio::test]
async fn the_entrypoint_comes_before_the_command() {
    let s = scheduler();
    let mut task = spec("entry", &["echo from the command"]);
    task.entrypoint = Some(vec!["sh".into(), "-c".into()]);
    assert_eq!(s.run(&task).await, (TaskObservation::Exited { exit_code: 0 }, "from the command\n".into()));
}

#[tokio::test]
async fn a_task_cannot_fork_past_the_process_limit() {
    // The limit counts every process of the sandbox's host uid, including other tests' sandboxes
    // and their not-yet-reaped zombies: leave them plenty of room, and fork far past it.
    let s = scheduler_with(|c| c.settings.max_processes = 150);
    // Children sleep; the parent exits at once, which ends the pid namespace and every child with it.
    let script = "import os, time\nn = 0\ntry:\n    for _ in range(400):\n        if os.fork() == 0:\n            \
                  time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('fork failed:', e)\n\
                  print('forked', n, flush=True)\nos._exit(0)";
    let (observation, logs) = s.run(&spec("forks", &["python3", "-c", script])).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    assert!(logs.contains("fork failed"), "{logs}");
    let forked: u32 = logs.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(forked < 150, "{logs}");
}

#[tokio::test]
async fn environments_larger_than_a_pipe_buffer_reach_the_task() {
    let s = scheduler();
    let mut task = sh("big-env", "printf %s \"$A$B$C\" | wc -c");
    for key in ["A", "B", "C"] {
        task.env.insert(key.into(), "x".repeat(60_000));
    }
    let (observation, logs) = s.run(&task).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 }, "{logs}");
    assert_eq!(logs.trim(), "180000");
}
