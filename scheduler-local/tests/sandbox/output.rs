//! What a job leaves to read: combined output, exit codes, log slices.

use gofer_core::scheduler::{Scheduler, SchedulerError, TaskObservation};

use crate::support::{scheduler, sh, spec};

#[tokio::test]
async fn stdout_and_stderr_are_captured_in_order() {
    let s = scheduler();
    let (observation, logs) = s.run(&sh("order", "echo one; echo two >&2; echo three; echo four >&2")).await;
    assert_eq!(observation, TaskObservation::Exited { exit_code: 0 });
    assert_eq!(logs, "one\ntwo\nthree\nfour\n");
}

#[tokio::test]
async fn exit_codes_are_recorded() {
    let s = scheduler();
    assert_eq!(s.run(&sh("seven", "exit 7")).await.0, TaskObservation::Exited { exit_code: 7 });
    // A task killed by a signal nobody here sent reports 128 + the signal, like a shell.
    assert_eq!(s.run(&sh("killed", "kill -KILL $$")).await.0, TaskObservation::Exited { exit_code: 137 });
}

#[tokio::test]
async fn a_command_missing_from_the_host_exits_non_zero() {
    let s = scheduler();
    let (observation, logs) = s.run(&spec("missing", &["no-such-program-here"])).await;
    assert!(matches!(observation, TaskObservation::Exited { exit_code } if exit_code != 0), "{observation:?}");
    assert!(logs.contains("no-such-program-here"), "{logs}");
}

#[tokio::test]
async fn read_logs_returns_the_requested_slice() {
    let s = scheduler();
    s.run(&spec("slices", &["printf", "0123456789"])).await;
    let read = |offset, max| s.scheduler.read_logs("slices", offset, max);
    let chunk = read(3, 4).await.unwrap();
    assert_eq!((chunk.data.as_slice(), chunk.next_offset), (b"3456".as_slice(), 7));
    let chunk = read(7, 100).await.unwrap();
    assert_eq!((chunk.data.as_slice(), chunk.next_offset), (b"789".as_slice(), 10));
    let chunk = read(10, 100).await.unwrap();
    assert_eq!((chunk.data.len(), chunk.next_offset), (0, 10));
    let chunk = read(50, 100).await.unwrap();
    assert_eq!((chunk.data.len(), chunk.next_offset), (0, 50));
    assert_eq!(read(0, 0).await.unwrap().next_offset, 0);
}

#[tokio::test]
async fn logs_of_an_unknown_job_are_not_found() {
    let s = scheduler();
    let result = s.scheduler.read_logs("nobody-started-this", 0, 10).await;
    assert!(matches!(result, Err(SchedulerError::NotFound(_))), "{result:?}");
}
