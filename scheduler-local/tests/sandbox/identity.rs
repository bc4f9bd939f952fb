//! Job identity: a start adopts an existing job of its id only when that job was recorded for the
//! same task execution, so one tenant never reads, enters, stops or purges another's job.

use gofer_core::scheduler::{Scheduler, SchedulerError, TaskObservation, TaskSpec};
use gofer_scheduler_local::LocalScheduler;

use crate::support::{scheduler, sh};

/// `sh(job_id, script)` for tenant `tenant` and namespace `namespace`.
fn owned(tenant: &str, namespace: &str, job_id: &str, script: &str) -> TaskSpec {
    TaskSpec { tenant: tenant.parse().unwrap(), namespace: namespace.parse().unwrap(), ..sh(job_id, script) }
}

fn assert_refused(result: Result<(), SchedulerError>, job_id: &str) {
    match result {
        Err(SchedulerError::Rejected(message)) => {
            assert!(message.contains(job_id), "the refusal names the job: {message}");
            let rest = message.replace(job_id, "");
            assert!(!rest.contains("acme") && !rest.contains("labs"), "nothing of the other owner: {message}");
        }
        other => panic!("a start for another execution must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_start_of_the_same_id_for_another_tenant_is_refused_and_reads_nothing() {
    let s = scheduler();
    // The pair the `-`-joined ids ran together: acme + labs-builds and acme-labs + builds.
    let first = owned("acme", "labs-builds", "shared", "echo first-secret-4711; sleep 0.5");
    let second = owned("acme-labs", "builds", "shared", "echo second-ran; touch /job/second-ran");
    s.scheduler.start(&first).await.unwrap();
    s.wait_for_output("shared", "first-secret-4711").await;

    // While it runs, after it ended, and after a server restart (the job is then only on disk).
    assert_refused(s.scheduler.start(&second).await, "shared");
    assert_eq!(s.wait_final("shared").await, TaskObservation::Exited { exit_code: 0 });
    assert_refused(s.scheduler.start(&second).await, "shared");
    let restarted = LocalScheduler::new(s.scheduler.config().clone()).unwrap();
    assert_refused(restarted.start(&second).await, "shared");

    // The owner's job is untouched: its output alone, and the second command never ran.
    assert_eq!(s.logs("shared").await, "first-secret-4711\n");
    // The owner's own repeated start is still a no-op success, here and after the restart.
    s.scheduler.start(&first).await.unwrap();
    restarted.start(&first).await.unwrap();
    assert_eq!(restarted.observe("shared").await.unwrap(), TaskObservation::Exited { exit_code: 0 });
}

#[tokio::test]
async fn another_attempt_or_run_never_adopts_a_job_of_the_same_id() {
    let s = scheduler();
    let first = sh("reused", "echo one");
    s.run(&first).await;
    let retry = TaskSpec { attempt: 2, ..first.clone() };
    assert_refused(s.scheduler.start(&retry).await, "reused");
    let next_run = TaskSpec { run: gofer_core::id::RunId::from_i64(2), ..first };
    assert_refused(s.scheduler.start(&next_run).await, "reused");
    assert_eq!(s.logs("reused").await, "one\n");
}

#[tokio::test]
async fn a_job_left_by_a_version_without_identity_records_is_observed_but_never_adopted() {
    let s = scheduler();
    // An execution dispatched under the old `-`-joined id, by a version that wrote no identity.json.
    let legacy = "acme-labs-builds-hello-1-build-1";
    let old = owned("acme", "labs-builds", legacy, "echo old-secret");
    s.run(&old).await;
    std::fs::remove_file(s.work_dir.join(legacy).join("identity.json")).unwrap();
    let upgraded = LocalScheduler::new(s.scheduler.config().clone()).unwrap();

    // The engine still observes and reads it under its recorded id...
    assert_eq!(upgraded.observe(legacy).await.unwrap(), TaskObservation::Exited { exit_code: 0 });
    assert_eq!(upgraded.read_logs(legacy, 0, 100).await.unwrap().data, b"old-secret\n");
    // ...but no start takes it over, not even one claiming the same execution.
    assert_refused(upgraded.start(&owned("acme-labs", "builds", legacy, "true")).await, legacy);
    match upgraded.start(&old).await {
        Err(SchedulerError::Rejected(message)) => assert!(message.contains("no recorded owner"), "{message}"),
        other => panic!("{other:?}"),
    }
    upgraded.purge(legacy).await.unwrap();
    assert!(!s.work_dir.join(legacy).exists());
}

#[tokio::test]
async fn the_identity_record_is_written_before_the_task_runs_and_kept_from_it() {
    let s = scheduler();
    // The task looks for the record from inside: it lives beside `/job`, out of the sandbox's reach.
    let script =
        "for f in /job/identity.json /job/../identity.json /identity.json; do test -e $f && echo $f; done; echo done";
    let (ended, out) = s.run(&sh("recorded", script)).await;
    assert_eq!(ended, TaskObservation::Exited { exit_code: 0 });
    assert_eq!(out, "done\n");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.work_dir.join("recorded").join("identity.json")).unwrap()).unwrap();
    assert_eq!(
        record,
        serde_json::json!({"tenant": "acme", "namespace": "team", "pipeline": "build", "run": 1, "task": "test", "attempt": 1})
    );
}
