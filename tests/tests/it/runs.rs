//! Runs end to end: the real server, the real engine, the bubblewrap sandbox and Postgres.

use std::time::Duration;

use gofer_core::{NamespaceId, PipelineId, RunStatus, StatusReason, TaskId, TaskState, TaskStatus};
use gofer_tests::spawn_app;
use serde_json::json;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn ids(ns: &str, p: &str) -> (NamespaceId, PipelineId) {
    (NamespaceId::parse(ns).expect("valid"), PipelineId::parse(p).expect("valid"))
}

#[tokio::test]
async fn a_two_task_dag_runs_end_to_end_and_its_logs_read_back() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let version = acme
        .register(
            "builds",
            "hello",
            json!({
                "name": "Hello",
                "tasks": [
                    {"id": "build", "image": "debian:12", "command": ["sh", "-c", "echo building $TARGET; echo warning >&2"],
                     "env": {"TARGET": "release"}},
                    {"id": "test", "image": "debian:12",
                     "command": ["sh", "-c", "echo testing run $GOFER_RUN_ID of $GOFER_PIPELINE_ID with $GREETING"],
                     "depends_on": {"build": "success"}, "timeout_s": 60}
                ]
            }),
        )
        .await;
    assert_eq!(version, 1);

    let sdk = acme.sdk();
    let (ns, p) = ids("builds", "hello");
    let vars = [("GREETING".to_owned(), "hi there".to_owned())].into();
    let run = sdk.start_run(&ns, &p, &vars).await.unwrap();
    assert_eq!(run.id.get(), 1);
    assert_eq!(run.config_version, 1);

    let done = acme.wait_for_run("builds", "hello", run.id, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    assert!(done.started.is_some() && done.ended.is_some());

    let tasks = sdk.list_tasks(&ns, &p, run.id).await.unwrap();
    assert_eq!(tasks.len(), 2);
    for task in &tasks {
        assert_eq!((task.state, task.status, task.exit_code), (TaskState::Complete, TaskStatus::Successful, Some(0)));
        assert_eq!(task.image, "debian:12");
        assert!(task.started.is_some() && task.ended.is_some());
    }
    let build = tasks.iter().find(|t| t.task_id.as_str() == "build").unwrap();
    let test = tasks.iter().find(|t| t.task_id.as_str() == "test").unwrap();
    assert!(test.started.unwrap() >= build.ended.unwrap(), "test started before build ended");
    assert_eq!(build.scheduler_id.as_deref(), Some("acme~builds~hello~1~build~1"));

    let build_log = sdk.task_logs(&ns, &p, run.id, &TaskId::parse("build").unwrap()).await.unwrap();
    assert!(build_log.contains("building release\n"), "{build_log:?}");
    assert!(build_log.contains("warning\n"), "stderr is captured too: {build_log:?}");
    let test_log = sdk.task_logs(&ns, &p, run.id, &TaskId::parse("test").unwrap()).await.unwrap();
    assert_eq!(test_log, "testing run 1 of hello with hi there\n");

    let events: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, task_id FROM events WHERE tenant_id = 'acme' AND run_id = 1 ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let events: Vec<String> = events
        .into_iter()
        .map(|(kind, task)| format!("{kind}{}", task.map(|t| format!(":{t}")).unwrap_or_default()))
        .collect();
    assert_eq!(
        events,
        [
            "run_created",
            "task_queued:build",
            "run_started",
            "task_started:build",
            "task_completed:build",
            "task_queued:test",
            "task_started:test",
            "task_completed:test",
            "run_completed"
        ],
        "every transition is recorded, in order"
    );

    let raw = acme.request("GET", "/api/v1/namespaces/builds/pipelines/hello/runs/1/tasks/test/logs", None).await;
    assert_eq!(raw.status, 200);
    assert!(raw.content_type.starts_with("text/plain"), "{}", raw.content_type);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_failing_task_fails_the_run_skips_success_dependants_and_runs_any_and_failure_dependants() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "broken",
        json!({
            "name": "Broken",
            "tasks": [
                {"id": "compile", "image": "debian:12", "command": ["sh", "-c", "echo compiling; exit 3"]},
                {"id": "deploy", "image": "debian:12", "command": ["echo", "deploying"], "depends_on": {"compile": "success"}},
                {"id": "announce", "image": "debian:12", "command": ["echo", "announcing"], "depends_on": {"deploy": "success"}},
                {"id": "cleanup", "image": "debian:12", "command": ["echo", "cleaning up"], "depends_on": {"compile": "any"}},
                {"id": "report", "image": "debian:12", "command": ["echo", "reporting"], "depends_on": {"compile": "failure"}}
            ]
        }),
    )
    .await;
    let run = acme.start_run("builds", "broken").await;
    let done = acme.wait_for_run("builds", "broken", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Failed);
    let reason = done.status_reason.expect("a failed run says why");
    assert_eq!(reason.reason, StatusReason::TaskFailed);
    assert!(reason.description.contains("compile"), "{reason:?}");

    let (ns, p) = ids("builds", "broken");
    let tasks = acme.sdk().list_tasks(&ns, &p, run).await.unwrap();
    let task = |id: &str| tasks.iter().find(|t| t.task_id.as_str() == id).unwrap().clone();

    let compile = task("compile");
    assert_eq!((compile.status, compile.exit_code), (TaskStatus::Failed, Some(3)));
    assert_eq!(compile.status_reason.unwrap().reason, StatusReason::AbnormalExit);

    for skipped in ["deploy", "announce"] {
        let t = task(skipped);
        assert_eq!((t.state, t.status), (TaskState::Complete, TaskStatus::Skipped), "{skipped}");
        assert_eq!(t.status_reason.unwrap().reason, StatusReason::FailedPrecondition);
        assert!(t.started.is_none() && t.scheduler_id.is_none(), "{skipped} never ran");
    }
    for ran in ["cleanup", "report"] {
        let t = task(ran);
        assert_eq!((t.status, t.exit_code), (TaskStatus::Successful, Some(0)), "{ran}");
    }
    let log = acme.sdk().task_logs(&ns, &p, run, &TaskId::parse("cleanup").unwrap()).await.unwrap();
    assert_eq!(log, "cleaning up\n");
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn tasks_run_as_nobody_without_capabilities_network_or_host_environment() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "probe", "probe", &["sh", "-c",
            "id -u; grep CapEff /proc/self/status; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; env | sort; touch /usr/x 2>/dev/null && echo usr-writable; touch /job/ok && echo job-writable"])
    .await;
    let run = acme.start_run("builds", "probe").await;
    let done = acme.wait_for_run("builds", "probe", run, RUN_TIMEOUT).await;
    assert_eq!(done.status, RunStatus::Successful, "{done:?}");
    let (ns, p) = ids("builds", "probe");
    let log = acme.sdk().task_logs(&ns, &p, run, &TaskId::parse("probe").unwrap()).await.unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "65534", "{log}");
    assert_eq!(lines[1].split_whitespace().last(), Some("0000000000000000"), "{log}");
    assert!(lines.contains(&"lo") && !log.contains("eth0"), "only loopback: {log}");
    assert!(log.contains("GOFER_TASK_ID=probe"), "{log}");
    assert!(!log.contains("GOFER_TEST_DATABASE_URL") && !log.contains("CARGO"), "host environment leaked: {log}");
    assert!(!log.contains("usr-writable") && log.contains("job-writable"), "{log}");
}

#[tokio::test]
async fn a_task_that_outlives_its_timeout_fails_with_reason_timeout() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "slow",
        json!({"name": "Slow", "tasks": [{"id": "sleeper", "image": "debian:12", "command": ["sleep", "60"], "timeout_s": 1}]}),
    )
    .await;
    let run = acme.start_run("builds", "slow").await;
    let done = acme.wait_for_run("builds", "slow", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Failed);
    let (ns, p) = ids("builds", "slow");
    let task = acme.sdk().get_task(&ns, &p, run, &TaskId::parse("sleeper").unwrap()).await.unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.status_reason.unwrap().reason, StatusReason::Timeout);
    let ran_for = task.ended.unwrap() - task.started.unwrap();
    assert!(ran_for < time::Duration::seconds(20), "stopped promptly, ran {ran_for}");
}

#[tokio::test]
async fn runs_are_numbered_per_pipeline_listed_newest_first_and_paginated() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let config = json!({"name": "Quick", "tasks": [{"id": "noop", "image": "debian:12", "command": ["true"]}]});
    acme.register("builds", "quick", config.clone()).await;
    acme.register("builds", "other", config).await;
    for _ in 0..3 {
        acme.start_run("builds", "quick").await;
    }
    assert_eq!(acme.start_run("builds", "other").await.get(), 1, "numbering is per pipeline");

    let first = acme.request("GET", "/api/v1/namespaces/builds/pipelines/quick/runs?limit=2", None).await;
    assert_eq!(first.status, 200);
    let items: Vec<i64> = first.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(items, vec![3, 2]);
    let cursor = first.body["next_cursor"].as_str().expect("a second page exists").to_owned();
    let second = acme
        .request("GET", &format!("/api/v1/namespaces/builds/pipelines/quick/runs?limit=2&cursor={cursor}"), None)
        .await;
    let items: Vec<i64> = second.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(items, vec![1]);
    assert!(second.body["next_cursor"].is_null());

    for run in 1..=3 {
        let done = acme.wait_for_run("builds", "quick", gofer_core::RunId::from_i64(run), RUN_TIMEOUT).await;
        assert_eq!(done.status, RunStatus::Successful);
    }
    acme.wait_for_run("builds", "other", gofer_core::RunId::from_i64(1), RUN_TIMEOUT).await;
    app.assert_queue_drained().await;
}
