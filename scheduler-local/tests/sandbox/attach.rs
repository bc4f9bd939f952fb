//! Exec into a running sandbox: same namespaces, same user, `/job`, the given environment only.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use gofer_core::scheduler::{ExecInput, ExecOutput, ExecRequest, ExecSession, Scheduler, SchedulerError, TerminalSize};

use crate::support::{DEADLINE, TestScheduler, scheduler, sh};

fn request(job_id: &str, command: &[&str], tty: bool) -> ExecRequest {
    ExecRequest {
        job_id: job_id.to_owned(),
        task: "test".parse().unwrap(),
        command: command.iter().map(|s| s.to_string()).collect(),
        tty,
        size: tty.then_some(TerminalSize { cols: 123, rows: 45 }),
        env: BTreeMap::from([("VISIBLE".to_owned(), "yes".to_owned())]),
    }
}

/// Collects stdout, stderr and the exit code of a session.
async fn finish(mut session: ExecSession) -> (String, String, i32) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let collect = async {
        while let Some(item) = session.output.next().await {
            match item {
                ExecOutput::Stdout(b) => stdout.extend(b),
                ExecOutput::Stderr(b) => stderr.extend(b),
                ExecOutput::Exited(code) => return code,
                ExecOutput::Failed(e) => panic!("exec failed: {e}"),
            }
        }
        panic!("the session ended without an exit");
    };
    let code = tokio::time::timeout(DEADLINE, collect).await.expect("exec finished in time");
    (String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap(), code)
}

async fn running(name: &str) -> TestScheduler {
    let s = scheduler();
    s.scheduler.start(&sh(name, "echo marker > /tmp/seen; echo started; sleep 30")).await.unwrap();
    s.wait_for_output(name, "started").await;
    s
}

#[tokio::test]
async fn exec_runs_inside_the_sandbox_as_the_task_user() {
    let s = running("exec-inside").await;
    let script = "cat /tmp/seen; id -u; pwd; echo \"$VISIBLE\"; env | grep -c GOFER_ || true; grep CapEff /proc/self/status; echo err >&2; exit 7";
    let session = s.scheduler.exec(&request("exec-inside", &["sh", "-c", script], false)).await.unwrap();
    let (stdout, stderr, code) = finish(session).await;
    assert_eq!(code, 7);
    assert_eq!(stderr, "err\n");
    let lines: Vec<&str> = stdout.lines().collect();
    // The task's private /tmp, uid 65534, /job, only the given environment, no capabilities.
    assert_eq!(lines[..4], ["marker", "65534", "/job", "yes"], "{stdout}");
    assert_eq!(lines[4], "0");
    assert_eq!(lines[5].split_whitespace().nth(1), Some("0000000000000000"), "{stdout}");
    s.scheduler.stop("exec-inside", std::time::Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn exec_with_a_tty_takes_input_and_the_terminal_size() {
    let s = running("exec-tty").await;
    let session = s.scheduler.exec(&request("exec-tty", &["sh"], true)).await.unwrap();
    session.input.send(ExecInput::Resize(TerminalSize { cols: 100, rows: 30 })).await.unwrap();
    session.input.send(ExecInput::Stdin(b"stty size; tty -s && echo is-a-tty; exit 3\n".to_vec())).await.unwrap();
    let (stdout, _, code) = finish(session).await;
    assert_eq!(code, 3, "{stdout:?}");
    assert!(stdout.contains("30 100"), "{stdout:?}");
    assert!(stdout.contains("is-a-tty"), "{stdout:?}");
    s.scheduler.stop("exec-tty", std::time::Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn exec_feeds_stdin_through_pipes() {
    let s = running("exec-stdin").await;
    let session = s.scheduler.exec(&request("exec-stdin", &["cat"], false)).await.unwrap();
    session.input.send(ExecInput::Stdin(b"through\n".to_vec())).await.unwrap();
    session.input.send(ExecInput::CloseStdin).await.unwrap();
    assert_eq!(finish(session).await, ("through\n".to_owned(), String::new(), 0));
    s.scheduler.stop("exec-stdin", std::time::Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn exec_into_a_finished_or_unknown_job_is_refused() {
    let s = scheduler();
    s.run(&sh("exec-done", "true")).await;
    for job in ["exec-done", "exec-never"] {
        let error = s.scheduler.exec(&request(job, &["true"], false)).await.unwrap_err();
        assert!(matches!(error, SchedulerError::NotFound(_)), "{error:?}");
    }
}

/// Builds a preload library whose constructor appends `<uid> <pid-namespace>` to `marker`: proof
/// of every process that loaded it. `None` when no C compiler is installed.
fn build_preload(dir: &std::path::Path, marker: &std::path::Path) -> Option<std::path::PathBuf> {
    let source = dir.join("evil.c");
    let library = dir.join("evil.so");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n#include <unistd.h>\n__attribute__((constructor)) static void evil(void) {{\n\
             FILE *f = fopen(\"{}\", \"a\"); if (f) {{ char ns[64] = {{0}}; readlink(\"/proc/self/ns/pid\", ns, 63);\n\
             fprintf(f, \"%d %s\\n\", (int)getuid(), ns); fclose(f); }} }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let built =
        std::process::Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&library).arg(&source).status().ok()?;
    built.success().then_some(library)
}

#[tokio::test]
async fn exec_runs_no_host_process_with_the_tasks_environment() {
    let s = running("exec-preload").await;
    // The attack: the task's own /job holds a library, and the request's environment (the task's
    // run variables) preloads it. Host helpers that inherited it would run it as root on the host.
    let marker = std::env::temp_dir().join(format!("gofer-preload-marker-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let build_dir = tempfile::tempdir().unwrap();
    let Some(library) = build_preload(build_dir.path(), &marker) else {
        eprintln!("exec_runs_no_host_process_with_the_tasks_environment: skipped, no C compiler (cc)");
        return;
    };
    // The tenant puts the library in its /job (here through an attach's stdin).
    let mut upload = request("exec-preload", &["sh", "-c", "cat > /job/evil.so && chmod 755 /job/evil.so"], false);
    upload.env.clear();
    let session = s.scheduler.exec(&upload).await.unwrap();
    session.input.send(ExecInput::Stdin(std::fs::read(&library).unwrap())).await.unwrap();
    session.input.send(ExecInput::CloseStdin).await.unwrap();
    assert_eq!(finish(session).await.2, 0);
    // From the host, /job is reachable through the sandbox's pid 1 (`/proc/<pid>/root`).
    let info = std::fs::read(s.work_dir.join("exec-preload").join("info.json")).unwrap();
    let init: serde_json::Value = serde_json::from_slice(&info).unwrap();
    let host_path = format!("/proc/{}/root/job/evil.so", init["child-pid"]);
    let mut attack =
        request("exec-preload", &["sh", "-c", &format!("cat {} 2>/dev/null | wc -l", marker.display())], false);
    // Both the sandbox's path and the host's path of the library.
    attack.env.insert("LD_PRELOAD".into(), format!("{host_path} /job/evil.so"));
    attack.env.insert("LD_LIBRARY_PATH".into(), "/job".into());
    let (stdout, _stderr, code) = finish(s.scheduler.exec(&attack).await.unwrap()).await;
    assert_eq!(code, 0);
    // Inside the sandbox the library did load (the task's own processes may preload what they like),
    // into the sandbox's private /tmp…
    assert_ne!(stdout.trim(), "0", "the sandboxed command loaded the library: {stdout}");
    // …and no host process ever loaded it: nothing was written to the host's /tmp.
    assert!(!marker.exists(), "a host process ran the tenant's library: {:?}", std::fs::read_to_string(&marker));
    s.scheduler.stop("exec-preload", std::time::Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn exec_counts_in_the_tasks_own_limits() {
    let s = crate::support::scheduler_with(|c| c.settings.max_processes = 32);
    if !s.scheduler.limits_whole_tasks() {
        eprintln!("exec_counts_in_the_tasks_own_limits: skipped, no usable cgroup on this host");
        return;
    }
    s.scheduler.start(&sh("exec-limits", "echo started; sleep 30")).await.unwrap();
    s.wait_for_output("exec-limits", "started").await;
    // The attached command forks far past the task's 32 processes (bounded at 100).
    let bomb = "import os, time\nn = 0\ntry:\n    for _ in range(100):\n        if os.fork() == 0:\n            time.sleep(5)\n            \
                os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)";
    let (stdout, _, code) =
        finish(s.scheduler.exec(&request("exec-limits", &["python3", "-c", bomb], false)).await.unwrap()).await;
    assert_eq!(code, 0);
    let forked: u32 = stdout.trim().parse().unwrap();
    assert!(forked < 32, "attach forked {forked} processes past the task's 32");
    s.scheduler.stop("exec-limits", std::time::Duration::ZERO).await.unwrap();
}
