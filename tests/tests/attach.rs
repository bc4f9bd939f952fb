//! Attach end to end: the real server, the websocket route, the engine's checks and the local
//! sandbox scheduler's exec into a running bubblewrap sandbox, against real Postgres.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gofer_core::{EventKind, NamespaceId, PipelineId, RunId, TaskId, TaskState};
use gofer_sdk::{AttachEvent, AttachOptions, AttachReader, AttachWriter};
use gofer_tests::{TenantClient, TestApp, spawn_app, spawn_with, test_config, wait_until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn ids() -> (NamespaceId, PipelineId, TaskId) {
    (NamespaceId::parse("builds").unwrap(), PipelineId::parse("sleepy").unwrap(), TaskId::parse("nap").unwrap())
}

/// A run whose task prints `ready` then sleeps; answers once the task is running and ready.
async fn sleeping_task(client: &TenantClient<'_>) -> RunId {
    client.namespace("builds").await;
    let config = json!({"name": "Sleepy", "tasks": [
        {"id": "nap", "image": "debian:12", "command": ["sh", "-c", "echo ready; sleep 60"],
         "env": {"VISIBLE": "plain", "HIDDEN": "secret{{ API_KEY }}"}}
    ]});
    client.register("builds", "sleepy", config).await;
    let secret = "/api/v1/namespaces/builds/pipelines/sleepy/secrets/API_KEY";
    assert_eq!(client.request("PUT", secret, Some(&json!({"value": "s3cr3t-value"}))).await.status, 201);
    let run = client.start_run("builds", "sleepy").await;
    let sdk = client.sdk();
    let (ns, p, t) = ids();
    wait_until("the task runs and is ready", WAIT, || {
        let sdk = sdk.clone();
        let (ns, p, t) = (ns.clone(), p.clone(), t.clone());
        async move {
            let task = sdk.get_task(&ns, &p, run, &t).await.unwrap();
            task.state == TaskState::Running
                && sdk.task_logs(&ns, &p, run, &t).await.is_ok_and(|log| log.contains("ready"))
        }
    })
    .await;
    run
}

async fn attach(client: &TenantClient<'_>, run: RunId, command: &[&str]) -> (AttachWriter, AttachReader) {
    let (ns, p, t) = ids();
    let options = AttachOptions { command: command.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    client.sdk().attach(&ns, &p, run, &t, &options).await.expect("the websocket opens")
}

/// Everything the server sends until the session ends: (stdout, stderr, the last event).
async fn drain(mut reader: AttachReader) -> (String, String, AttachEvent) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let last = tokio::time::timeout(WAIT, async {
        loop {
            match reader.next().await.expect("a message before the close").expect("a readable message") {
                AttachEvent::Stdout(b) => stdout.extend(b),
                AttachEvent::Stderr(b) => stderr.extend(b),
                last => return last,
            }
        }
    })
    .await
    .expect("the session ends in time");
    // After the exit or the error, a clean close.
    assert!(reader.next().await.is_none(), "the server closes after the last message");
    (String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap(), last)
}

async fn error_code(client: &TenantClient<'_>, run: RunId) -> String {
    let (_, reader) = attach(client, run, &["true"]).await;
    match drain(reader).await.2 {
        AttachEvent::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn cancel(client: &TenantClient<'_>, run: RunId) {
    let (ns, p, _) = ids();
    client.sdk().cancel_run(&ns, &p, run).await.unwrap();
}

#[tokio::test]
async fn attach_runs_a_command_inside_the_running_task_and_passes_its_exit_code_through() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let run = sleeping_task(&acme).await;

    let (_, reader) = attach(&acme, run, &["echo", "hello"]).await;
    assert_eq!(drain(reader).await, ("hello\n".into(), String::new(), AttachEvent::Exit(0)));

    // Inside the task's sandbox, with its plain env only: secrets are not passed to attach.
    let script = "echo $VISIBLE/$HIDDEN/$GOFER_TASK_ID; pwd; id -u; echo oops >&2; exit 7";
    let (_, reader) = attach(&acme, run, &["sh", "-c", script]).await;
    assert_eq!(drain(reader).await, ("plain//nap\n/job\n65534\n".into(), "oops\n".into(), AttachEvent::Exit(7)));

    // Input goes to the command.
    let (mut writer, reader) = attach(&acme, run, &["cat"]).await;
    writer.stdin(b"typed\n").await.unwrap();
    writer.close_stdin().await.unwrap();
    assert_eq!(drain(reader).await, ("typed\n".into(), String::new(), AttachEvent::Exit(0)));

    // Each attach is audited with the token and the command, never the input.
    let attached = acme.events_of_kind(EventKind::TaskAttached, 3, Duration::from_secs(10)).await;
    assert_eq!(attached.len(), 3);
    assert_eq!(attached[0].payload["command"], json!(["echo", "hello"]));
    assert_eq!(attached[2].payload["command"], json!(["cat"]));
    assert!(attached[0].payload["token_id"].as_str().is_some_and(|t| t.len() == 36));
    assert!(!attached.iter().any(|e| e.payload.to_string().contains("typed")));
    cancel(&acme, run).await;
}

#[tokio::test]
async fn only_running_tasks_of_ones_own_tenant_can_be_attached_by_tokens_that_start_runs() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    let (ns, p, t) = ids();

    // A read token may not attach: refused before the upgrade.
    let read = acme.request("POST", "/api/v1/tokens", Some(&json!({"role": "read"}))).await;
    let reader = app.sdk(read.body["token"].as_str().unwrap());
    let refused = reader.attach(&ns, &p, run, &t, &AttachOptions::default()).await.err().expect("refused");
    assert_eq!((refused.status(), refused.code()), (Some(403), Some("forbidden")));

    // Another tenant's run looks missing.
    let umbrella = app.tenant("umbrella").await;
    umbrella.namespace("builds").await;
    assert_eq!(error_code(&umbrella, run).await, "pipeline_not_found");

    // A plain HTTP request (no upgrade) answers problem details.
    let path = format!("/api/v1/namespaces/builds/pipelines/sleepy/runs/{run}/tasks/nap/attach");
    let plain = acme.request("GET", &path, None).await;
    assert_eq!((plain.status, plain.code()), (400, "websocket_required"));
    let plain = umbrella.request("GET", &path, None).await;
    assert_eq!((plain.status, plain.code()), (404, "pipeline_not_found"));

    // Once the task is over, attach answers task_not_running.
    cancel(&acme, run).await;
    acme.wait_for_run("builds", "sleepy", run, WAIT).await;
    assert_eq!(error_code(&acme, run).await, "task_not_running");
}

#[tokio::test]
async fn a_plan_without_attach_refuses_it() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    let op = Some(app.operator_token.as_str());
    let trial = app.request("GET", "/api/v1/plans/trial", op, None).await;
    assert_eq!(trial.body["plan"]["allow_attach"], json!(false), "trials never attach");
    let mut plan = app.request("GET", "/api/v1/plans/default", op, None).await.body["plan"].clone();
    assert_eq!(plan["allow_attach"], json!(true));
    plan["allow_attach"] = json!(false);
    assert_eq!(app.request("PUT", "/api/v1/plans/default", op, Some(&plan)).await.status, 200);
    assert_eq!(error_code(&acme, run).await, "attach_not_allowed");
    cancel(&acme, run).await;
}

#[tokio::test]
async fn the_operator_can_disable_attach_for_everyone() {
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(gofer_tests::fresh_database().await, state_dir.path());
    config.attach.enabled = false;
    let app: TestApp = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    assert_eq!(error_code(&acme, run).await, "attach_disabled");
    cancel(&acme, run).await;
}

#[tokio::test]
async fn with_the_local_scheduler_an_attach_through_another_replica_reaches_the_replica_running_the_task() {
    // Replica A alone starts the task, so its local sandbox runs in A; B starts afterwards.
    let database = gofer_tests::fresh_database().await;
    let dir_a = tempfile::tempdir().unwrap();
    let a = spawn_with(test_config(database.clone(), dir_a.path()), dir_a).await;
    let acme = a.tenant("acme").await;
    let run = sleeping_task(&acme).await;
    let dir_b = tempfile::tempdir().unwrap();
    let b = spawn_with(test_config(database, dir_b.path()), dir_b).await;
    let through_b = TenantClient { app: &b, tenant: acme.tenant.clone(), token: acme.token.clone() };

    // Through B: forwarded to A, the command runs in the task's sandbox, its output arrives once.
    let (_, reader) = attach(&through_b, run, &["sh", "-c", "echo hello from $GOFER_TASK_ID"]).await;
    assert_eq!(drain(reader).await, ("hello from nap\n".into(), String::new(), AttachEvent::Exit(0)));
    let (mut writer, reader) = attach(&through_b, run, &["cat"]).await;
    writer.stdin(b"typed through b\n").await.unwrap();
    writer.close_stdin().await.unwrap();
    assert_eq!(drain(reader).await, ("typed through b\n".into(), String::new(), AttachEvent::Exit(0)));
    // Through A itself, as before.
    let (_, reader) = attach(&acme, run, &["echo", "direct"]).await;
    assert_eq!(drain(reader).await, ("direct\n".into(), String::new(), AttachEvent::Exit(0)));

    // Each attach is audited once, by the replica that ran it, whichever one it arrived at.
    let attached = acme.events_of_kind(EventKind::TaskAttached, 3, Duration::from_secs(10)).await;
    assert_eq!(attached.len(), 3, "{attached:?}");

    // Errors decided by A come back through B as messages: once the task ends, B answers itself.
    cancel(&acme, run).await;
    wait_until("the task ends", WAIT, || async {
        let (ns, p, t) = ids();
        acme.sdk().get_task(&ns, &p, run, &t).await.unwrap().state == TaskState::Complete
    })
    .await;
    assert_eq!(error_code(&through_b, run).await, "task_not_running");
}
