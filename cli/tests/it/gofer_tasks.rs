//! `kind: gofer` tasks: a pipeline drives Gofer itself through the CLI with zero setup. The real
//! server runs the task in the local sandbox with this build's `gofer` binary, and the CLI finds
//! the API's URL, its run token and its namespace in the task's environment.

use std::time::Duration;

use gofer_core::model::Initiator;
use gofer_core::{NamespaceId, PipelineId, RunStatus, TaskId};
use gofer_sdk::PageOptions;
use gofer_tests::{fresh_database, spawn_with, test_config};
use serde_json::json;

#[tokio::test]
async fn a_gofer_task_starts_and_watches_another_pipeline_of_its_namespace() {
    let state_dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(fresh_database().await, state_dir.path());
    // The CLI in the task calls the API on the host's loopback.
    config.sandbox.share_network = true;
    config.sandbox.gofer_binary = Some(env!("CARGO_BIN_EXE_gofer").into());
    let app = spawn_with(config, state_dir).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let other =
        json!({"name": "Other", "tasks": [{"id": "work", "image": "debian:12", "command": ["echo", "other ran"]}]});
    acme.register("builds", "other", other).await;
    let driver = json!({"name": "Driver", "tasks": [
        {"id": "trigger", "kind": "gofer", "args": ["run", "start", "other", "--watch"]},
        {"id": "myself", "kind": "gofer", "args": ["run", "start", "driver"]}
    ]});
    acme.register("builds", "driver", driver).await;

    let run = acme.start_run("builds", "driver").await;
    let done = acme.wait_for_run("builds", "driver", run, Duration::from_secs(90)).await;

    let sdk = acme.sdk();
    let (ns, driver, other) = (
        NamespaceId::parse("builds").unwrap(),
        PipelineId::parse("driver").unwrap(),
        PipelineId::parse("other").unwrap(),
    );
    let trigger = sdk.task_logs(&ns, &driver, run, &TaskId::parse("trigger").unwrap()).await.unwrap();
    assert!(trigger.contains("Started run 1 of other"), "{trigger}");
    assert!(trigger.contains("Run 1 of builds/other (version 1): successful"), "watched to its end: {trigger}");
    let myself = sdk.task_logs(&ns, &driver, run, &TaskId::parse("myself").unwrap()).await.unwrap();
    // Its own pipeline is already in its chain of runs: each run would start the next forever.
    assert!(myself.contains("run_chain_loop (409)"), "{myself}");
    assert!(
        myself.contains(&format!("builds/driver#{run} → builds/driver: pipeline builds/driver is already")),
        "{myself}"
    );
    assert_eq!(done.status, RunStatus::Failed, "the task starting its own pipeline fails the run");

    let runs = sdk.list_runs(&ns, &other, PageOptions::default()).await.unwrap().items;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Successful);
    assert_eq!(runs[0].initiator, Initiator { kind: "run".into(), id: format!("builds/driver/{run}") });
    assert_eq!(sdk.list_runs(&ns, &driver, PageOptions::default()).await.unwrap().items.len(), 1);
    app.assert_queue_drained().await;
}
