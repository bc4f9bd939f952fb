//! Task logs end to end: following a task live, the cap that keeps head and tail, refusals.

use std::time::Duration;

use futures_util::StreamExt;
use gofer_core::{NamespaceId, PipelineId, RunId, TaskId, TaskState};
use gofer_sdk::LogStream;
use gofer_tests::{TenantClient, fresh_database, spawn_app, spawn_with, test_config};
use serde_json::json;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

struct TaskRef {
    ns: NamespaceId,
    p: PipelineId,
    run: RunId,
    task: TaskId,
}

impl TaskRef {
    fn new(ns: &str, p: &str, run: RunId, task: &str) -> Self {
        Self {
            ns: NamespaceId::parse(ns).expect("valid"),
            p: PipelineId::parse(p).expect("valid"),
            run,
            task: TaskId::parse(task).expect("valid"),
        }
    }

    async fn follow(&self, client: &TenantClient<'_>, offset: u64) -> LogStream {
        client.sdk().follow_logs(&self.ns, &self.p, self.run, &self.task, offset).await.expect("follow")
    }

    async fn state(&self, client: &TenantClient<'_>) -> TaskState {
        client.sdk().get_task(&self.ns, &self.p, self.run, &self.task).await.expect("get task").state
    }

    fn path(&self) -> String {
        format!("/api/v1/namespaces/{}/pipelines/{}/runs/{}/tasks/{}/logs", self.ns, self.p, self.run, self.task)
    }
}

/// Reads a followed log to its end, failing the test if it does not end within `timeout`.
async fn read_to_end(mut log: LogStream, timeout: Duration) -> String {
    let mut body = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while let Some(chunk) = tokio::time::timeout_at(deadline, log.next()).await.expect("the follow ends in time") {
        body.extend_from_slice(&chunk.expect("chunk"));
    }
    String::from_utf8(body).expect("UTF-8")
}

#[tokio::test]
async fn following_a_running_task_streams_lines_as_they_come_and_ends_after_the_last() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "lines",
        json!({"name": "Lines", "tasks": [{"id": "count", "image": "debian:12",
            "command": ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"]}]}),
    )
    .await;
    let run = acme.start_run("builds", "lines").await;
    let task = TaskRef::new("builds", "lines", run, "count");
    let mut log = task.follow(&acme, 0).await;

    let mut body = Vec::new();
    let mut chunks = 0;
    while !String::from_utf8_lossy(&body).contains("line 1\n") {
        let chunk = tokio::time::timeout(RUN_TIMEOUT, log.next()).await.expect("the first line in time");
        body.extend_from_slice(&chunk.expect("the follow does not end before the first line").unwrap());
        chunks += 1;
    }
    assert_ne!(task.state(&acme).await, TaskState::Complete, "the first line arrived before the task ended");
    app.wait_for_open_streams(1, RUN_TIMEOUT).await;

    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while let Some(chunk) = tokio::time::timeout_at(deadline, log.next()).await.expect("the follow ends in time") {
        body.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert_eq!(String::from_utf8(body).unwrap(), "line 1\nline 2\nline 3\nline 4\nline 5\n");
    assert!(chunks >= 2, "the lines came as they were written, not at once");
    assert_eq!(task.state(&acme).await, TaskState::Complete, "the follow ended once the task was complete");
    app.wait_for_open_streams(0, RUN_TIMEOUT).await;

    // Following from an offset, once complete, sends the rest and ends.
    assert_eq!(read_to_end(task.follow(&acme, 14).await, RUN_TIMEOUT).await, "line 3\nline 4\nline 5\n");
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn following_a_skipped_task_ends_at_once_with_an_empty_body() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "broken",
        json!({"name": "Broken", "tasks": [
            {"id": "compile", "image": "debian:12", "command": ["sh", "-c", "sleep 1; exit 3"]},
            {"id": "deploy", "image": "debian:12", "command": ["echo", "deploying"], "depends_on": {"compile": "success"}}
        ]}),
    )
    .await;
    let run = acme.start_run("builds", "broken").await;
    let deploy = TaskRef::new("builds", "broken", run, "deploy");

    // Followed while it waits: the follow ends when the task is skipped, with nothing in it.
    let waiting = deploy.follow(&acme, 0).await;
    assert_eq!(read_to_end(waiting, RUN_TIMEOUT).await, "");
    assert_eq!(deploy.state(&acme).await, TaskState::Complete);
    acme.wait_for_run("builds", "broken", run, RUN_TIMEOUT).await;

    // Followed once skipped: it ends at once.
    let answer = app
        .http
        .get(format!("{}{}?follow=true", app.address, deploy.path()))
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let body = tokio::time::timeout(Duration::from_secs(5), answer.text()).await.expect("ends at once").unwrap();
    assert_eq!(body, "");
    app.wait_for_open_streams(0, RUN_TIMEOUT).await;
}

#[tokio::test]
async fn a_capped_log_keeps_its_head_and_tail_around_a_marker_with_the_cut_count() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh_database().await, state_dir.path());
    config.logs.max_bytes_per_task = 100;
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "chatty", "count", &["seq", "1", "1000"]).await;
    let run = acme.start_run("builds", "chatty").await;
    acme.wait_for_run("builds", "chatty", run, RUN_TIMEOUT).await;
    let task = TaskRef::new("builds", "chatty", run, "count");

    let output: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    assert_eq!(output.len(), 3893);
    let tail = &output[output.len() - 50..];
    let marker = "\n[gofer: 3793 bytes cut]\n";
    let stored = acme.sdk().task_logs(&task.ns, &task.p, task.run, &task.task).await.unwrap();
    assert_eq!(stored, format!("{}{marker}{tail}", &output[..50]), "head, marker, tail");

    // Positions count the task's raw output: a read from one inside the head, or the tail.
    let read = |offset: usize| {
        let url = format!("{}{}?offset={offset}", app.address, task.path());
        let request = app.http.get(url).bearer_auth(&acme.token);
        async move {
            let answer = request.send().await.unwrap();
            let next = answer.headers()["gofer-log-offset"].to_str().unwrap().parse::<usize>().unwrap();
            (answer.text().await.unwrap(), next)
        }
    };
    assert_eq!(read(10).await, (format!("{}{marker}{tail}", &output[10..50]), 3893));
    assert_eq!(read(3893 - 20).await, (output[3893 - 20..].to_owned(), 3893));
    assert_eq!(read(3893).await, (String::new(), 3893));
    assert_eq!(read(0).await.0, stored);
    // A follow of the complete task sends the same and ends.
    assert_eq!(read_to_end(task.follow(&acme, 0).await, RUN_TIMEOUT).await, stored);

    // On disk: the head, and a tail of at most twice its half plus a header.
    let file = app
        .state_dir
        .path()
        .join("logs/tenants/acme/namespaces/builds/pipelines/chatty/runs/1/tasks/count/attempt-1.log");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 50);
    let tail_file = std::fs::metadata(file.with_extension("log.tail")).unwrap().len();
    assert!(tail_file <= 2 * 50 + 64, "tail file holds {tail_file} bytes");
}

#[tokio::test]
async fn log_parameters_are_refused_with_their_codes_and_other_tenants_logs_are_not_found() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let umbrella = app.tenant("umbrella").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "quick", "noop", &["true"]).await;
    let run = acme.start_run("builds", "quick").await;
    let logs = format!("/api/v1/namespaces/builds/pipelines/quick/runs/{run}/tasks/noop/logs");
    for (query, status, code) in [
        ("offset=-1", 400, "invalid_offset"),
        ("offset=ten", 400, "invalid_offset"),
        ("follow=maybe", 400, "invalid_follow"),
        ("follow=true&offset=-5", 400, "invalid_offset"),
    ] {
        let answer = acme.request("GET", &format!("{logs}?{query}"), None).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{query}: {answer:?}");
    }
    for (path, code) in [
        (format!("/api/v1/namespaces/builds/pipelines/quick/runs/{run}/tasks/zzz/logs"), "task_not_found"),
        ("/api/v1/namespaces/builds/pipelines/quick/runs/99/tasks/noop/logs".to_owned(), "run_not_found"),
    ] {
        let answer = acme.request("GET", &format!("{path}?follow=true"), None).await;
        assert_eq!((answer.status, answer.code()), (404, code), "{path}");
    }
    let theirs = umbrella.request("GET", &format!("{logs}?follow=true"), None).await;
    assert_eq!((theirs.status, theirs.code()), (404, "namespace_not_found"));
    assert_eq!(app.hub.open_streams(), 0, "nothing refused opened a follow");
    acme.wait_for_run("builds", "quick", run, RUN_TIMEOUT).await;
}
