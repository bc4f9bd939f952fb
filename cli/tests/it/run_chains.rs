//! Runs that start runs (issue 19, item 10), driven by real `kind: gofer` tasks: the real server
//! runs each task in the local sandbox with this build's `gofer` binary and the run's token, and
//! the chain of runs the tasks build is refused where it loops or goes too deep.
//! `tests/tests/it/run_chains.rs` checks the same refusals answer by answer over HTTP.

use std::time::Duration;

use gofer_core::chain::RunAncestor;
use gofer_core::model::Run;
use gofer_core::{NamespaceId, PipelineId, RunId, RunStatus, TaskId};
use gofer_sdk::PageOptions;
use gofer_tests::{TenantClient, TestApp, fresh_database, spawn_with, test_config};
use serde_json::{Value, json};

/// The real server whose sandbox runs this build's `gofer` for `kind: gofer` tasks, with runs
/// nesting at most `max_depth` deep.
async fn spawn(max_depth: u32) -> TestApp {
    let state_dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(fresh_database().await, state_dir.path());
    // The CLI in the task calls the API on the host's loopback.
    config.sandbox.share_network = true;
    config.sandbox.gofer_binary = Some(env!("CARGO_BIN_EXE_gofer").into());
    config.engine.max_run_chain_depth = max_depth;
    spawn_with(config, state_dir).await
}

/// A pipeline whose one task starts `next` and watches it to its end.
fn starts(next: &str) -> Value {
    json!({"name": format!("Starts {next}"), "tasks": [
        {"id": "start", "kind": "gofer", "args": ["run", "start", next, "--watch"]}
    ]})
}

fn echo() -> Value {
    json!({"name": "Echo", "tasks": [{"id": "work", "image": "debian:12", "command": ["echo", "done"]}]})
}

fn ids(pipeline: &str) -> (NamespaceId, PipelineId) {
    (NamespaceId::parse("builds").expect("namespace"), PipelineId::parse(pipeline).expect("pipeline"))
}

fn ancestor(pipeline: &str, run: i64) -> RunAncestor {
    let (namespace_id, pipeline_id) = ids(pipeline);
    RunAncestor { namespace_id, pipeline_id, run_id: RunId::from_i64(run) }
}

async fn runs(tenant: &TenantClient<'_>, pipeline: &str) -> Vec<Run> {
    let (ns, p) = ids(pipeline);
    tenant.sdk().list_runs(&ns, &p, PageOptions::default()).await.expect("runs").items
}

async fn start_log(tenant: &TenantClient<'_>, pipeline: &str, run: RunId) -> String {
    let (ns, p) = ids(pipeline);
    tenant.sdk().task_logs(&ns, &p, run, &TaskId::parse("start").expect("task")).await.expect("log")
}

#[tokio::test]
async fn pipelines_whose_tasks_start_each_other_stop_at_the_loop_and_a_bystanders_chain_succeeds() {
    let app = spawn(5).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "ping", starts("pong")).await;
    acme.register("builds", "pong", starts("ping")).await;
    let globex = app.tenant("globex").await;
    globex.namespace("builds").await;
    globex.register("builds", "ping", starts("pong")).await;
    globex.register("builds", "pong", echo()).await;

    let attack = acme.start_run("builds", "ping").await;
    let bystander = globex.start_run("builds", "ping").await;
    let attack = acme.wait_for_run("builds", "ping", attack, Duration::from_secs(120)).await;
    let bystander = globex.wait_for_run("builds", "ping", bystander, Duration::from_secs(120)).await;

    // ping#1 started pong#1, whose task's start of ping was refused: pong failed, and so did
    // ping, which watched it.
    let pongs = runs(&acme, "pong").await;
    assert_eq!(pongs.len(), 1, "{pongs:?}");
    assert_eq!(pongs[0].ancestry, vec![ancestor("ping", 1)]);
    let log = start_log(&acme, "pong", pongs[0].id).await;
    assert!(log.contains("run_chain_loop (409)"), "{log}");
    assert!(log.contains("builds/ping#1 → builds/pong#1 → builds/ping: pipeline builds/ping is already in this chain"));
    assert_eq!(pongs[0].status, RunStatus::Failed);
    assert_eq!(attack.status, RunStatus::Failed);
    assert_eq!(runs(&acme, "ping").await.len(), 1, "no second ping");

    // The bystander's ping started its pong, which ran, with its own chain.
    assert_eq!(bystander.status, RunStatus::Successful, "{bystander:?}");
    assert!(bystander.ancestry.is_empty());
    let their_pongs = runs(&globex, "pong").await;
    assert_eq!(their_pongs.len(), 1, "{their_pongs:?}");
    assert_eq!((their_pongs[0].status, &their_pongs[0].ancestry), (RunStatus::Successful, &vec![ancestor("ping", 1)]));
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_chain_of_tasks_starting_runs_stops_past_the_depth_limit_and_a_bystanders_chain_at_the_limit_succeeds() {
    // One run may stand before a run: one#1 → two#1 is allowed, two#1 → three is one too many.
    let app = spawn(1).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "one", starts("two")).await;
    acme.register("builds", "two", starts("three")).await;
    acme.register("builds", "three", echo()).await;
    let globex = app.tenant("globex").await;
    globex.namespace("builds").await;
    globex.register("builds", "one", starts("two")).await;
    globex.register("builds", "two", echo()).await;

    let attack = acme.start_run("builds", "one").await;
    let bystander = globex.start_run("builds", "one").await;
    let attack = acme.wait_for_run("builds", "one", attack, Duration::from_secs(120)).await;
    let bystander = globex.wait_for_run("builds", "one", bystander, Duration::from_secs(120)).await;

    let twos = runs(&acme, "two").await;
    assert_eq!(twos.len(), 1, "{twos:?}");
    assert_eq!(twos[0].ancestry, vec![ancestor("one", 1)]);
    let log = start_log(&acme, "two", twos[0].id).await;
    assert!(log.contains("run_chain_too_deep (409)"), "{log}");
    assert!(log.contains("builds/one#1 → builds/two#1 → builds/three: the run would have 2 runs before it"), "{log}");
    assert!(runs(&acme, "three").await.is_empty(), "three never started");
    assert_eq!(attack.status, RunStatus::Failed);

    assert_eq!(bystander.status, RunStatus::Successful, "{bystander:?}");
    let their_twos = runs(&globex, "two").await;
    assert_eq!(their_twos.len(), 1, "{their_twos:?}");
    assert_eq!((their_twos[0].status, &their_twos[0].ancestry), (RunStatus::Successful, &vec![ancestor("one", 1)]));
    app.assert_queue_drained().await;
}
