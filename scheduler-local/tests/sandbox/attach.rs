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
