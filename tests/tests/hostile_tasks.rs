//! Hostile tenants against the real server and the local sandbox (issue 18): each test performs
//! the attack as a tenant would, asserts it fails, and checks that a bystander tenant's run still
//! succeeds. The attacks are bounded by design (see docs/security.md, "Threat table").

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gofer_core::RunStatus;
use gofer_tests::{TestApp, spawn_app};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A bystander tenant's one-task run, which must succeed whatever the attacker did.
async fn bystander_succeeds(app: &TestApp) {
    let bystander = app.tenant("bystander").await;
    bystander.namespace("work").await;
    bystander.register_one_task("work", "calm", "echo", &["sh", "-c", "echo fine"]).await;
    let run = bystander.run_to_completion("work", "calm", WAIT).await;
    assert_eq!(run.status, RunStatus::Successful, "the bystander's run: {run:?}");
}

#[tokio::test]
async fn loader_variables_are_refused_in_task_env_and_run_variables_naming_the_variable() {
    let app = spawn_app().await;
    let attacker = app.tenant("mallory").await;
    attacker.namespace("builds").await;

    // LD_PRELOAD pointing at the task's own /job would run the tenant's library in any host
    // process that inherited it (the attach helper did): refused at registration.
    let config = json!({"name": "evil", "tasks": [{"id": "build", "image": "debian:12", "command": ["true"],
        "env": {"LD_PRELOAD": "/job/evil.so"}}]});
    let refused = attacker.request("POST", "/api/v1/namespaces/builds/pipelines/evil/configs", Some(&config)).await;
    assert_eq!((refused.status, refused.code()), (400, "invalid_field"), "{refused:?}");
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("tasks[0].env.LD_PRELOAD"), "the variable is named: {detail}");

    // The same family as run variables, on a pipeline that is otherwise fine.
    attacker.register_one_task("builds", "plain", "build", &["true"]).await;
    for variable in ["LD_AUDIT", "GLIBC_TUNABLES", "GCONV_PATH", "MALLOC_CHECK_"] {
        let body = json!({"variables": {variable: "/job/evil.so"}});
        let refused = attacker.request("POST", "/api/v1/namespaces/builds/pipelines/plain/runs", Some(&body)).await;
        assert_eq!((refused.status, refused.code()), (400, "invalid_field"), "{variable}: {refused:?}");
        assert!(refused.body["detail"].as_str().unwrap().contains(variable), "{variable} is named: {refused:?}");
    }
    // Nothing was started by the refused requests.
    let runs = attacker.request("GET", "/api/v1/namespaces/builds/pipelines/plain/runs", None).await;
    assert_eq!(runs.body["items"].as_array().unwrap().len(), 0, "{runs:?}");

    // LD_LIBRARY_PATH is an ordinary build setting: allowed, and seen by the task.
    let body = json!({"variables": {"LD_LIBRARY_PATH": "/job/lib"}});
    let config = json!({"name": "libs", "tasks": [{"id": "build", "image": "debian:12",
        "command": ["sh", "-c", "test \"$LD_LIBRARY_PATH\" = /job/lib"]}]});
    attacker.register("builds", "libs", config).await;
    let started = attacker.request("POST", "/api/v1/namespaces/builds/pipelines/libs/runs", Some(&body)).await;
    assert_eq!(started.status, 201, "{started:?}");
    let run = gofer_core::RunId::from_i64(started.body["run"]["id"].as_i64().unwrap());
    let run = attacker.wait_for_run("builds", "libs", run, WAIT).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");

    bystander_succeeds(&app).await;
}
