//! Pipelines, config versions and deployments end to end: hash dedupe, `?deploy=false`, reads and
//! diffs, immediate and canary deployments (routing, promotion, rollback), disable/enable, delete.

use std::time::Duration;

use gofer_core::RunStatus;
use gofer_tests::{TenantClient, pipeline_path, spawn_app};
use serde_json::{Value, json};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A one-task pipeline config running `command`.
fn config(name: &str, command: &[&str]) -> Value {
    json!({"name": name, "tasks": [{"id": "main", "image": "debian:12", "command": command}]})
}

fn versions(list: &Value) -> Vec<(i64, String)> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| (c["version"].as_i64().expect("version"), c["state"].as_str().expect("state").to_owned()))
        .collect()
}

fn log_messages(deployment: &Value) -> Vec<String> {
    deployment["log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["message"].as_str().expect("message").to_owned())
        .collect()
}

async fn event_kinds(app: &gofer_tests::TestApp, pipeline: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM events WHERE tenant_id = 'acme' AND pipeline_id = $1 ORDER BY id")
        .bind(pipeline)
        .fetch_all(&app.db)
        .await
        .expect("events")
}

/// Sets up `builds/<pipeline>` with version 1 (`true`) live and version 2 (`command`) unreleased.
async fn live_and_unreleased(acme: &TenantClient<'_>, pipeline: &str, command: &[&str]) {
    assert_eq!(acme.register("builds", pipeline, config("One", &["true"])).await, 1);
    let two = acme.register_with("builds", pipeline, &config("Two", command), false).await;
    assert_eq!(
        (two.status, two.body["version"].as_i64(), two.body["state"].as_str()),
        (201, Some(2), Some("unreleased"))
    );
}

#[tokio::test]
async fn registering_the_same_config_again_creates_nothing_and_a_changed_one_creates_the_next_version() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let path = format!("{}/configs", pipeline_path("builds", "demo"));
    let original = json!({"name": "Demo", "tasks": [
        {"id": "build", "image": "debian:12", "command": ["make"], "env": {"A": "1", "B": "2"}},
        {"id": "test", "image": "debian:12", "command": ["make", "test"], "depends_on": {"build": "success"}}]});

    let first = acme.request("POST", &path, Some(&original)).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!((first.body["version"].as_i64(), first.body["created"].as_bool()), (Some(1), Some(true)));
    assert_eq!(first.body["state"], "live");
    let hash = first.body["config_hash"].as_str().unwrap().to_owned();

    let again = acme.request("POST", &path, Some(&original)).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body, json!({"version": 1, "config_hash": hash, "created": false, "state": "live"}));

    // Same meaning, keys shuffled and defaults spelled out: the same version.
    let shuffled = json!({"tasks": [
        {"command": ["make"], "env": {"B": "2", "A": "1"}, "image": "debian:12", "id": "build", "inject_api_token": false},
        {"depends_on": {"build": "success"}, "id": "test", "retries": 0, "command": ["make", "test"], "image": "debian:12"}],
        "description": "", "parallelism": 0, "name": "Demo"});
    let same = acme.request("POST", &path, Some(&shuffled)).await;
    assert_eq!(
        (same.status, same.body["version"].as_i64(), same.body["created"].as_bool()),
        (200, Some(1), Some(false))
    );
    assert_eq!(same.body["config_hash"], hash.as_str());

    let mut changed = original.clone();
    changed["tasks"][0]["command"] = json!(["make", "all"]);
    let next = acme.request("POST", &path, Some(&changed)).await;
    assert_eq!(next.status, 201, "{next:?}");
    assert_eq!((next.body["version"].as_i64(), next.body["created"].as_bool()), (Some(2), Some(true)));
    assert_ne!(next.body["config_hash"], hash.as_str());

    // An older version's config again: nothing is created; with the default ?deploy=true that
    // version goes live again (an immediate deployment), with ?deploy=false nothing changes.
    let quiet = acme.register_with("builds", "demo", &original, false).await;
    assert_eq!(
        (quiet.status, quiet.body["version"].as_i64(), quiet.body["state"].as_str()),
        (200, Some(1), Some("deprecated"))
    );
    assert_eq!(acme.pipeline("builds", "demo").await["live_version"], 2);
    let back = acme.request("POST", &path, Some(&original)).await;
    assert_eq!((back.status, back.body["version"].as_i64(), back.body["state"].as_str()), (200, Some(1), Some("live")));
    assert_eq!(acme.pipeline("builds", "demo").await["live_version"], 1);

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM pipeline_configs").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 2, "duplicates were not stored");
    let kinds = event_kinds(&app, "demo").await;
    assert_eq!(kinds.iter().filter(|k| *k == "config_registered").count(), 2, "{kinds:?}");
    let bad = acme.request("POST", &format!("{path}?deploy=maybe"), Some(&original)).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_query"));
}

#[tokio::test]
async fn a_version_registered_with_deploy_false_is_not_live_and_runs_use_the_live_version_not_the_newest() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let first = acme.register_with("builds", "quiet", &config("One", &["true"]), false).await;
    assert_eq!((first.status, first.body["state"].as_str()), (201, Some("unreleased")));
    let pipeline = acme.pipeline("builds", "quiet").await;
    assert_eq!((pipeline["live_version"].clone(), pipeline["latest_version"].clone()), (Value::Null, json!(1)));
    assert_eq!(pipeline["state"], "active");

    let runs = format!("{}/runs", pipeline_path("builds", "quiet"));
    let refused = acme.request("POST", &runs, Some(&json!({"variables": {}}))).await;
    assert_eq!((refused.status, refused.code()), (409, "no_live_version"), "{refused:?}");
    let listed = acme.request("GET", &runs, None).await;
    assert_eq!((listed.status, listed.body["items"].as_array().map(Vec::len)), (200, Some(0)), "reads still work");

    let deployed = acme.deploy("builds", "quiet", json!({"version": 1})).await;
    assert_eq!(deployed.status, 201, "{deployed:?}");
    let d = &deployed.body["deployment"];
    assert_eq!(
        (d["id"].as_i64(), d["type"].as_str(), d["from_version"].clone(), d["to_version"].as_i64()),
        (Some(1), Some("immediate"), Value::Null, Some(1))
    );
    assert_eq!((d["state"].as_str(), d["status"].as_str()), (Some("complete"), Some("successful")));
    assert_eq!(acme.run_to_completion("builds", "quiet", RUN_TIMEOUT).await.config_version, 1);

    let two = acme.register_with("builds", "quiet", &config("Two", &["sh", "-c", "true"]), false).await;
    assert_eq!(
        (two.status, two.body["version"].as_i64(), two.body["state"].as_str()),
        (201, Some(2), Some("unreleased"))
    );
    let run = acme.run_to_completion("builds", "quiet", RUN_TIMEOUT).await;
    assert_eq!((run.config_version, run.status), (1, RunStatus::Successful), "the live version, not the newest");
    let pipeline = acme.pipeline("builds", "quiet").await;
    assert_eq!((pipeline["live_version"].as_i64(), pipeline["latest_version"].as_i64()), (Some(1), Some(2)));
    let list = acme.request("GET", &format!("{}/configs", pipeline_path("builds", "quiet")), None).await;
    assert_eq!(versions(&list.body), [(2, "unreleased".into()), (1, "live".into())]);
}

#[tokio::test]
async fn an_immediate_deployment_switches_at_once_and_redeploying_the_live_version_changes_nothing() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    live_and_unreleased(&acme, "demo", &["sh", "-c", "true"]).await;

    let deployed = acme.deploy("builds", "demo", json!({"version": 2})).await;
    assert_eq!(deployed.status, 201, "{deployed:?}");
    let d = deployed.body["deployment"].clone();
    assert_eq!(
        (d["id"].as_i64(), d["type"].as_str(), d["from_version"].as_i64(), d["to_version"].as_i64()),
        (Some(2), Some("immediate"), Some(1), Some(2))
    );
    assert_eq!(
        (d["state"].as_str(), d["status"].as_str(), d["status_reason"].as_str()),
        (Some("complete"), Some("successful"), Some("deployed immediately"))
    );
    assert!(d["ended"].is_string() && d["canary_percent"].is_null());
    assert_eq!(
        log_messages(&d),
        ["immediate deployment of version 2 started (live: version 1)", "version 2 is live; version 1 is deprecated"]
    );
    assert_eq!(acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await.config_version, 2);

    let configs = acme.request("GET", &format!("{}/configs", pipeline_path("builds", "demo")), None).await;
    assert_eq!(versions(&configs.body), [(2, "live".into()), (1, "deprecated".into())]);
    assert!(configs.body["items"][1]["deprecated"].is_string() && configs.body["items"][0]["deprecated"].is_null());

    let again = acme.deploy("builds", "demo", json!({"version": 2})).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["deployment"], d, "the deployment that made it live, unchanged");
    let list = acme.request("GET", &format!("{}/deployments", pipeline_path("builds", "demo")), None).await;
    let ids: Vec<i64> = list.body["items"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [2, 1], "newest first; the no-op added nothing");
    let page = acme.request("GET", &format!("{}/deployments?limit=1", pipeline_path("builds", "demo")), None).await;
    let cursor = page.body["next_cursor"].as_str().expect("a second page").to_owned();
    let rest = acme
        .request("GET", &format!("{}/deployments?limit=1&cursor={cursor}", pipeline_path("builds", "demo")), None)
        .await;
    assert_eq!((rest.body["items"][0]["id"].as_i64(), rest.body["next_cursor"].clone()), (Some(1), Value::Null));

    // Back to version 1: a deprecated version can be deployed again.
    let back = acme.deploy("builds", "demo", json!({"version": 1})).await;
    assert_eq!((back.status, back.body["deployment"]["from_version"].as_i64()), (201, Some(2)));
    assert_eq!(acme.pipeline("builds", "demo").await["live_version"], 1);
    let kinds = event_kinds(&app, "demo").await;
    assert_eq!(kinds.iter().filter(|k| *k == "deployment_started").count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "deployment_completed").count(), 3, "{kinds:?}");
}

#[tokio::test]
async fn configs_are_listed_newest_first_read_back_and_diffed_by_task_id() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let v1 = json!({"name": "Demo", "tasks": [
        {"id": "build", "image": "debian:12", "command": ["make"], "env": {"TARGET": "debug"}},
        {"id": "test", "image": "debian:12", "command": ["make", "test"], "depends_on": {"build": "success"}}]});
    let v2 = json!({"name": "Demo", "tasks": [
        {"id": "deploy", "image": "debian:12", "command": ["ship"], "depends_on": {"build": "success"}},
        {"id": "build", "image": "debian:12", "command": ["make", "all"], "env": {"TARGET": "release", "CI": "1"}, "timeout_s": 60}]});
    acme.register("builds", "demo", v1.clone()).await;
    acme.register("builds", "demo", v2).await;
    acme.register("builds", "demo", config("Three", &["true"])).await;
    let base = pipeline_path("builds", "demo");

    let first = acme.request("GET", &format!("{base}/configs?limit=2"), None).await;
    assert_eq!(versions(&first.body), [(3, "live".into()), (2, "deprecated".into())]);
    let cursor = first.body["next_cursor"].as_str().expect("a second page").to_owned();
    let second = acme.request("GET", &format!("{base}/configs?limit=2&cursor={cursor}"), None).await;
    assert_eq!(versions(&second.body), [(1, "deprecated".into())]);
    assert!(second.body["next_cursor"].is_null());
    assert!(first.body["items"][0]["registered"].is_string() && first.body["items"][0]["config"].is_null());

    let one = acme.request("GET", &format!("{base}/configs/1"), None).await;
    assert_eq!(one.status, 200, "{one:?}");
    let c = &one.body["config"];
    assert_eq!((c["version"].as_i64(), c["state"].as_str()), (Some(1), Some("deprecated")));
    assert_eq!(c["config"]["tasks"][0]["command"], json!(["make"]));
    assert_eq!(c["config"]["tasks"][0]["retries"], 0, "stored with defaults filled in");
    assert!(
        c["config"]["tasks"][0]["timeout_s"].is_null(),
        "no timeout means the server's default, decided at dispatch"
    );
    assert_eq!(c["config_hash"].as_str().map(str::len), Some(64));

    let diff = acme.request("GET", &format!("{base}/configs/1/diff/2"), None).await;
    assert_eq!(diff.status, 200, "{diff:?}");
    assert_eq!(
        diff.body,
        json!({"from": 1, "to": 2, "changes": [
            {"path": "tasks.build.command", "op": "changed", "from": ["make"], "to": ["make", "all"]},
            {"path": "tasks.build.env.CI", "op": "added", "from": null, "to": "1"},
            {"path": "tasks.build.env.TARGET", "op": "changed", "from": "debug", "to": "release"},
            {"path": "tasks.build.timeout_s", "op": "changed", "from": null, "to": 60},
            {"path": "tasks.test", "op": "removed", "from": {
                "id": "test", "image": "debian:12", "command": ["make", "test"], "env": {}, "depends_on": {"build": "success"},
                "timeout_s": null, "entrypoint": null, "cpu": null, "memory_mb": null, "retries": 0,
                "inject_api_token": false, "registry_auth": null}, "to": null},
            {"path": "tasks.deploy", "op": "added", "from": null, "to": {
                "id": "deploy", "image": "debian:12", "command": ["ship"], "env": {}, "depends_on": {"build": "success"},
                "timeout_s": null, "entrypoint": null, "cpu": null, "memory_mb": null, "retries": 0,
                "inject_api_token": false, "registry_auth": null}}
        ]})
    );
    let back = acme.request("GET", &format!("{base}/configs/2/diff/1"), None).await;
    let ops: Vec<(&str, &str)> = back.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), c["op"].as_str().unwrap()))
        .collect();
    assert_eq!(ops[0], ("tasks.deploy", "removed"));
    assert!(ops.contains(&("tasks.build.env.CI", "removed")) && ops.contains(&("tasks.test", "added")), "{ops:?}");
    let name = acme.request("GET", &format!("{base}/configs/1/diff/3"), None).await;
    assert_eq!(name.body["changes"][0], json!({"path": "name", "op": "changed", "from": "Demo", "to": "Three"}));
    let same = acme.request("GET", &format!("{base}/configs/2/diff/2"), None).await;
    assert_eq!(same.body, json!({"from": 2, "to": 2, "changes": []}));
}

#[tokio::test]
async fn a_canary_whose_runs_succeed_is_promoted() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    live_and_unreleased(&acme, "demo", &["sh", "-c", "true"]).await;

    let started = acme
        .deploy(
            "builds",
            "demo",
            json!({"version": 2, "canary": {"percent": 50, "max_failure_rate": 0, "min_runs": 2}}),
        )
        .await;
    assert_eq!(started.status, 201, "{started:?}");
    let d = &started.body["deployment"];
    assert_eq!(
        (d["type"].as_str(), d["state"].as_str(), d["status"].as_str()),
        (Some("canary"), Some("running"), Some("unknown"))
    );
    assert_eq!(
        (d["canary_percent"].as_i64(), d["max_failure_rate"].as_f64(), d["min_runs"].as_i64()),
        (Some(50), Some(0.0), Some(2))
    );
    let id = d["id"].as_i64().unwrap();
    let configs = acme.request("GET", &format!("{}/configs", pipeline_path("builds", "demo")), None).await;
    assert_eq!(versions(&configs.body), [(2, "canary".into()), (1, "live".into())]);

    // 50%: runs 1 and 3 go to the canary, run 2 to the live version.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let run = acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await;
        assert_eq!(run.status, RunStatus::Successful);
        seen.push(run.config_version);
        let state = acme.deployment("builds", "demo", id).await;
        assert_eq!(state["state"], if seen.len() < 3 { "running" } else { "complete" }, "after {seen:?}");
    }
    assert_eq!(seen, [2, 1, 2]);

    let done = acme.deployment("builds", "demo", id).await;
    assert_eq!(
        (done["status"].as_str(), done["canary_runs"].as_i64(), done["canary_failures"].as_i64()),
        (Some("successful"), Some(2), Some(0))
    );
    assert_eq!((done["routed_runs"].as_i64(), done["routed_to_canary"].as_i64()), (Some(3), Some(2)));
    assert_eq!(done["status_reason"], "0 of 2 canary runs failed (0%), within the allowed 0%");
    assert!(done["ended"].is_string());
    assert_eq!(
        log_messages(&done),
        [
            "canary deployment of version 2 started beside live version 1: 50% of new runs go to it; promoted after 2 \
             completed canary runs with at most 0% failed",
            "run 1 on canary version 2 ended successful: 1 of 2 canary runs counted, 0 failed",
            "run 3 on canary version 2 ended successful: 2 of 2 canary runs counted, 0 failed",
            "promoted: 0 of 2 canary runs failed (0%), within the allowed 0%; version 2 is live, version 1 is deprecated",
        ]
    );
    let pipeline = acme.pipeline("builds", "demo").await;
    assert_eq!(pipeline["live_version"], 2);
    let configs = acme.request("GET", &format!("{}/configs", pipeline_path("builds", "demo")), None).await;
    assert_eq!(versions(&configs.body), [(2, "live".into()), (1, "deprecated".into())]);
    assert_eq!(acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await.config_version, 2, "new runs use it");

    let routed: Vec<(i64, bool)> =
        sqlx::query_as("SELECT run_id, canary FROM deployment_runs WHERE tenant_id = 'acme' ORDER BY run_id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(routed, [(1, true), (2, false), (3, true)], "run 4 started after the canary ended");
    let kinds = event_kinds(&app, "demo").await;
    let deployment_kinds: Vec<&str> =
        kinds.iter().map(String::as_str).filter(|k| k.starts_with("deployment") || k.starts_with("canary")).collect();
    assert_eq!(
        deployment_kinds,
        [
            "deployment_started",
            "deployment_completed",
            "deployment_started",
            "canary_run_counted",
            "canary_run_counted",
            "deployment_completed"
        ]
    );
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_canary_whose_runs_fail_is_rolled_back_as_soon_as_it_cannot_pass() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    live_and_unreleased(&acme, "demo", &["sh", "-c", "exit 1"]).await;
    let started = acme
        .deploy(
            "builds",
            "demo",
            json!({"version": 2, "canary": {"percent": 50, "max_failure_rate": 0.5, "min_runs": 3}}),
        )
        .await;
    assert_eq!(started.status, 201, "{started:?}");
    let id = started.body["deployment"]["id"].as_i64().unwrap();

    let first = acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await;
    assert_eq!((first.config_version, first.status), (2, RunStatus::Failed));
    assert_eq!(acme.deployment("builds", "demo", id).await["state"], "running", "one failure of three may pass");
    let second = acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await;
    assert_eq!((second.config_version, second.status), (1, RunStatus::Successful));
    let third = acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await;
    assert_eq!((third.config_version, third.status), (2, RunStatus::Failed));

    let done = acme.deployment("builds", "demo", id).await;
    assert_eq!((done["state"].as_str(), done["status"].as_str()), (Some("complete"), Some("rolled_back")));
    assert_eq!((done["canary_runs"].as_i64(), done["canary_failures"].as_i64()), (Some(2), Some(2)), "before min_runs");
    let reason = done["status_reason"].as_str().unwrap();
    assert_eq!(
        reason,
        "2 of 2 canary runs failed before 3 completed: over 3 runs the failure rate would be at least 66.67%, above \
         the allowed 50%"
    );
    let log = log_messages(&done);
    assert_eq!(log[1], "run 1 on canary version 2 ended failed: 1 of 3 canary runs counted, 1 failed");
    assert_eq!(log.last().unwrap(), &format!("rolled back: {reason}; version 1 stays live, version 2 is deprecated"));

    assert_eq!(acme.pipeline("builds", "demo").await["live_version"], 1, "the live version stays");
    let configs = acme.request("GET", &format!("{}/configs", pipeline_path("builds", "demo")), None).await;
    assert_eq!(versions(&configs.body), [(2, "deprecated".into()), (1, "live".into())]);
    for _ in 0..2 {
        let later = acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await;
        assert_eq!((later.config_version, later.status), (1, RunStatus::Successful), "later runs use the old version");
    }
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_canary_receives_exactly_its_share_of_new_runs() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    live_and_unreleased(&acme, "demo", &["sh", "-c", "true"]).await;

    for (percent, expected) in [(50, vec![2, 1, 2, 1, 2, 1, 2, 1, 2, 1]), (30, vec![2, 1, 1, 2, 1, 1, 2, 1, 1, 1])] {
        // min_runs high enough that the canary is still running after ten runs.
        let started = acme
            .deploy(
                "builds",
                "demo",
                json!({"version": 2, "canary": {"percent": percent, "max_failure_rate": 1, "min_runs": 1000}}),
            )
            .await;
        assert_eq!(started.status, 201, "{started:?}");
        let id = started.body["deployment"]["id"].as_i64().unwrap();
        let mut chosen = Vec::new();
        for _ in 0..10 {
            let path = format!("{}/runs", pipeline_path("builds", "demo"));
            let answer = acme.request("POST", &path, Some(&json!({"variables": {}}))).await;
            assert_eq!(answer.status, 201, "{answer:?}");
            chosen.push(answer.body["run"]["config_version"].as_i64().unwrap());
        }
        assert_eq!(chosen, expected, "{percent}%");
        let d = acme.deployment("builds", "demo", id).await;
        let canary = expected.iter().filter(|v| **v == 2).count() as i64;
        assert_eq!((d["routed_runs"].as_i64(), d["routed_to_canary"].as_i64()), (Some(10), Some(canary)));
        let recorded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deployment_runs WHERE tenant_id = 'acme' AND deployment_id = $1 AND canary",
        )
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(recorded, canary);
        let rolled =
            acme.request("POST", &format!("{}/deployments/{id}/rollback", pipeline_path("builds", "demo")), None).await;
        assert_eq!(rolled.status, 200, "{rolled:?}");
    }
    let runs: Vec<i64> = sqlx::query_scalar("SELECT id FROM runs WHERE tenant_id = 'acme' ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    for run in runs {
        acme.wait_for_run("builds", "demo", gofer_core::RunId::from_i64(run), RUN_TIMEOUT).await;
    }
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_running_canary_can_be_rolled_back_by_hand_with_a_reason() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    live_and_unreleased(&acme, "demo", &["sh", "-c", "true"]).await;
    let canary = json!({"version": 2, "canary": {"percent": 10, "max_failure_rate": 0, "min_runs": 5}});
    let started = acme.deploy("builds", "demo", canary.clone()).await;
    let id = started.body["deployment"]["id"].as_i64().unwrap();
    let rollback = format!("{}/deployments/{id}/rollback", pipeline_path("builds", "demo"));

    let unknown = acme.request("POST", &rollback, Some(&json!({"why": "x"}))).await;
    assert_eq!((unknown.status, unknown.code()), (400, "unknown_field"));
    let rolled = acme.request("POST", &rollback, Some(&json!({"reason": "the new image looks wrong"}))).await;
    assert_eq!(rolled.status, 200, "{rolled:?}");
    let d = &rolled.body["deployment"];
    assert_eq!((d["state"].as_str(), d["status"].as_str()), (Some("complete"), Some("rolled_back")));
    assert_eq!(d["status_reason"], "rolled back by hand: the new image looks wrong");
    assert_eq!(
        log_messages(d).last().unwrap(),
        "rolled back: rolled back by hand: the new image looks wrong; version 1 stays live, version 2 is deprecated"
    );
    assert_eq!(acme.pipeline("builds", "demo").await["live_version"], 1);
    assert_eq!(acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await.config_version, 1);

    let again = acme.request("POST", &rollback, None).await;
    assert_eq!((again.status, again.body["deployment"].clone()), (200, d.clone()), "already rolled back: unchanged");
    let immediate =
        acme.request("POST", &format!("{}/deployments/1/rollback", pipeline_path("builds", "demo")), None).await;
    assert_eq!((immediate.status, immediate.code()), (409, "deployment_not_running"));

    // Without a body the reason says only that it was done by hand.
    let second = acme.deploy("builds", "demo", canary).await;
    assert_eq!(second.status, 201, "a rolled-back version can be tried again: {second:?}");
    let second_id = second.body["deployment"]["id"].as_i64().unwrap();
    let path = format!("{}/deployments/{second_id}/rollback", pipeline_path("builds", "demo"));
    let plain = acme.request("POST", &path, None).await;
    assert_eq!((plain.status, plain.body["deployment"]["status_reason"].as_str()), (200, Some("rolled back by hand")));
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn only_one_deployment_runs_at_a_time_and_bad_deployments_are_refused() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    live_and_unreleased(&acme, "demo", &["sh", "-c", "true"]).await;
    let three = acme.register_with("builds", "demo", &config("Three", &["sh", "-c", "exit 0"]), false).await;
    assert_eq!(three.body["version"], 3);
    let canary = acme
        .deploy(
            "builds",
            "demo",
            json!({"version": 2, "canary": {"percent": 20, "max_failure_rate": 0.1, "min_runs": 10}}),
        )
        .await;
    assert_eq!(canary.status, 201);
    let running = canary.body["deployment"]["id"].as_i64().unwrap();

    for body in [
        json!({"version": 3}),
        json!({"version": 1}),
        json!({"version": 3, "canary": {"percent": 20, "max_failure_rate": 0.1, "min_runs": 10}}),
    ] {
        let refused = acme.deploy("builds", "demo", body.clone()).await;
        assert_eq!((refused.status, refused.code()), (409, "deployment_in_progress"), "{body}");
        assert!(refused.body["detail"].as_str().unwrap().contains(&running.to_string()), "names the running one");
    }
    // A new config would go live at once: refused too, and nothing is stored.
    let new = acme
        .request("POST", &format!("{}/configs", pipeline_path("builds", "demo")), Some(&config("Four", &["ls"])))
        .await;
    assert_eq!((new.status, new.code()), (409, "deployment_in_progress"));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM pipeline_configs").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, 3);
    let quiet = acme.register_with("builds", "demo", &config("Four", &["ls"]), false).await;
    assert_eq!((quiet.status, quiet.body["version"].as_i64()), (201, Some(4)), "without deploying it is fine");
    let live_again = acme.register("builds", "other", config("One", &["true"])).await;
    assert_eq!(live_again, 1, "other pipelines are not affected");

    let bad = [
        (json!({"version": 0}), 400, "invalid_field"),
        (json!({"version": 99}), 404, "config_not_found"),
        (
            json!({"version": 2, "canary": {"percent": 0, "max_failure_rate": 0.1, "min_runs": 10}}),
            400,
            "invalid_field",
        ),
        (
            json!({"version": 2, "canary": {"percent": 100, "max_failure_rate": 0.1, "min_runs": 10}}),
            400,
            "invalid_field",
        ),
        (
            json!({"version": 2, "canary": {"percent": 10, "max_failure_rate": 1.5, "min_runs": 10}}),
            400,
            "invalid_field",
        ),
        (
            json!({"version": 2, "canary": {"percent": 10, "max_failure_rate": -0.1, "min_runs": 10}}),
            400,
            "invalid_field",
        ),
        (
            json!({"version": 2, "canary": {"percent": 10, "max_failure_rate": 0.1, "min_runs": 0}}),
            400,
            "invalid_field",
        ),
        (
            json!({"version": 2, "canary": {"percent": 10, "max_failure_rate": 0.1, "min_runs": 1001}}),
            400,
            "invalid_field",
        ),
        (json!({"version": 2, "canary": {"max_failure_rate": 0.1}}), 400, "missing_field"),
        (json!({"version": 2, "canary_percent": 10}), 400, "unknown_field"),
        (json!({"version": 2, "canary": {"percent": 10, "min_run": 10}}), 400, "unknown_field"),
        (json!({}), 400, "missing_field"),
    ];
    for (body, status, code) in bad {
        let answer = acme.deploy("builds", "other", body.clone()).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{body}: {answer:?}");
    }
    let named = acme.deploy("builds", "other", json!({"version": 1, "canary": {"percent": 100}})).await;
    assert!(named.body["detail"].as_str().unwrap().starts_with("canary.percent"), "{named:?}");

    // A canary needs a live version to run beside.
    acme.register_with("builds", "fresh", &config("One", &["true"]), false).await;
    let lonely = acme
        .deploy(
            "builds",
            "fresh",
            json!({"version": 1, "canary": {"percent": 10, "max_failure_rate": 0, "min_runs": 1}}),
        )
        .await;
    assert_eq!((lonely.status, lonely.code()), (409, "no_live_version"));

    let rollback = format!("{}/deployments/{running}/rollback", pipeline_path("builds", "demo"));
    assert_eq!(acme.request("POST", &rollback, None).await.status, 200);
    assert_eq!(acme.deploy("builds", "demo", json!({"version": 3})).await.status, 201, "free again after the rollback");
    // A canary given only its share takes the defaults: any failure rolls it back, after 10 runs.
    let defaults = acme.deploy("builds", "demo", json!({"version": 4, "canary": {"percent": 25}})).await;
    assert_eq!(defaults.status, 201, "{defaults:?}");
    let d = &defaults.body["deployment"];
    assert_eq!(
        (d["canary_percent"].as_i64(), d["max_failure_rate"].as_f64(), d["min_runs"].as_i64()),
        (Some(25), Some(0.0), Some(10))
    );
}

#[tokio::test]
async fn a_disabled_pipeline_refuses_runs_until_it_is_enabled() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "demo", config("One", &["true"])).await;
    let path = pipeline_path("builds", "demo");
    let runs = format!("{path}/runs");

    let disabled = acme.request("PATCH", &path, Some(&json!({"state": "disabled"}))).await;
    assert_eq!((disabled.status, disabled.body["pipeline"]["state"].as_str()), (200, Some("disabled")), "{disabled:?}");
    let again = acme.request("PATCH", &path, Some(&json!({"state": "disabled"}))).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, disabled.body, "no change: the same object");
    let unchanged = acme.request("PATCH", &path, Some(&json!({}))).await;
    assert_eq!(unchanged.body, disabled.body);

    let refused = acme.request("POST", &runs, Some(&json!({"variables": {}}))).await;
    assert_eq!((refused.status, refused.code()), (409, "pipeline_disabled"), "{refused:?}");
    assert_eq!(acme.request("GET", &runs, None).await.status, 200, "reads still work");
    // Config versions can still be registered and deployed while disabled.
    assert_eq!(acme.register("builds", "demo", config("Two", &["sh", "-c", "true"])).await, 2);

    for (body, code) in
        [(json!({"state": "paused"}), "invalid_field"), (json!({"state": "active", "colour": "red"}), "unknown_field")]
    {
        let answer = acme.request("PATCH", &path, Some(&body)).await;
        assert_eq!((answer.status, answer.code()), (400, code), "{body}");
    }
    let enabled = acme.request("PATCH", &path, Some(&json!({"state": "active"}))).await;
    assert_eq!((enabled.status, enabled.body["pipeline"]["state"].as_str()), (200, Some("active")));
    let run = acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await;
    assert_eq!((run.config_version, run.status), (2, RunStatus::Successful));

    let kinds = event_kinds(&app, "demo").await;
    let toggles: Vec<&str> = kinds.iter().map(String::as_str).filter(|k| k.starts_with("pipeline_")).collect();
    assert_eq!(toggles, ["pipeline_disabled", "pipeline_enabled"], "only changes are recorded");
}

#[tokio::test]
async fn deleting_a_pipeline_is_refused_while_it_has_runs_and_otherwise_removes_everything() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "demo", config("Slow", &["sh", "-c", "echo old output; sleep 1"])).await;
    acme.register("builds", "keep", config("Keep", &["echo", "kept"])).await;
    let path = pipeline_path("builds", "demo");

    let run = acme.start_run("builds", "demo").await;
    for query in ["", "?delete_runs=true"] {
        let busy = acme.request("DELETE", &format!("{path}{query}"), None).await;
        assert_eq!((busy.status, busy.code()), (409, "pipeline_busy"), "{query}: {busy:?}");
    }
    acme.wait_for_run("builds", "demo", run, RUN_TIMEOUT).await;
    let kept = acme.run_to_completion("builds", "keep", RUN_TIMEOUT).await;
    let has_runs = acme.request("DELETE", &path, None).await;
    assert_eq!((has_runs.status, has_runs.code()), (409, "pipeline_has_runs"));
    let explicit_no = acme.request("DELETE", &format!("{path}?delete_runs=false"), None).await;
    assert_eq!(explicit_no.code(), "pipeline_has_runs");

    let logs = app.state_dir.path().join("logs/tenants/acme/namespaces/builds/pipelines");
    assert!(logs.join("demo/runs/1/tasks/main/attempt-1.log").exists(), "the run wrote a log");
    let deleted = acme.request("DELETE", &format!("{path}?delete_runs=true"), None).await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    assert!(!logs.join("demo").exists(), "its logs are gone");
    assert!(logs.join("keep").exists(), "other pipelines' logs stay");

    let gone = acme.request("GET", &path, None).await;
    assert_eq!((gone.status, gone.code()), (404, "pipeline_not_found"));
    for table in ["pipelines", "pipeline_configs", "runs", "task_executions", "deployments", "deployment_log"] {
        let column = if table == "pipelines" { "id" } else { "pipeline_id" };
        let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id = 'acme' AND {column} = 'demo'");
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&app.db).await.unwrap();
        assert_eq!(left, 0, "{table} rows of the pipeline are gone");
    }
    let keep_runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE pipeline_id = 'keep'").fetch_one(&app.db).await.unwrap();
    assert_eq!(keep_runs, 1);
    assert_eq!(acme.run_to_completion("builds", "keep", RUN_TIMEOUT).await.id.get(), kept.id.get() + 1);
    assert!(event_kinds(&app, "demo").await.contains(&"pipeline_deleted".to_owned()));

    // The id can be used again and starts afresh.
    assert_eq!(acme.register("builds", "demo", config("New", &["sh", "-c", "echo new output"])).await, 1);
    let fresh = acme.run_to_completion("builds", "demo", RUN_TIMEOUT).await;
    assert_eq!(fresh.id.get(), 1);
    let log = acme.request("GET", &format!("{path}/runs/1/tasks/main/logs"), None).await;
    assert_eq!(log.body["text"], "new output\n");

    // A pipeline without runs goes without asking.
    acme.register_with("builds", "empty", &config("Empty", &["true"]), false).await;
    assert_eq!(acme.request("DELETE", &pipeline_path("builds", "empty"), None).await.status, 204);
    let twice = acme.request("DELETE", &pipeline_path("builds", "empty"), None).await;
    assert_eq!((twice.status, twice.code()), (404, "pipeline_not_found"));
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn pipelines_are_listed_in_pages_with_their_versions_and_state() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.namespace("other").await;
    acme.register("builds", "ccc", config("C", &["true"])).await;
    acme.register("builds", "aaa", config("A", &["true"])).await;
    acme.register_with("builds", "aaa", &config("A2", &["ls"]), false).await;
    acme.register_with("builds", "bbb", &config("B", &["true"]), false).await;
    acme.register("other", "zzz", config("Z", &["true"])).await;
    acme.request("PATCH", &pipeline_path("builds", "ccc"), Some(&json!({"state": "disabled"}))).await;

    let first = acme.request("GET", "/api/v1/namespaces/builds/pipelines?limit=2", None).await;
    assert_eq!(first.status, 200, "{first:?}");
    let items = first.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0]["id"].as_str(), items[0]["live_version"].as_i64(), items[0]["latest_version"].as_i64()),
        (Some("aaa"), Some(1), Some(2))
    );
    assert_eq!((items[1]["id"].as_str(), items[1]["live_version"].clone()), (Some("bbb"), Value::Null));
    assert!(items[0]["created"].is_string() && items[0]["modified"].is_string());
    assert_eq!(items[0]["namespace_id"], "builds");
    let cursor = first.body["next_cursor"].as_str().expect("a second page").to_owned();
    let second =
        acme.request("GET", &format!("/api/v1/namespaces/builds/pipelines?limit=2&cursor={cursor}"), None).await;
    let items = second.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["id"].as_str(), items[0]["state"].as_str()), (Some("ccc"), Some("disabled")));
    assert!(second.body["next_cursor"].is_null());
    let got = acme.request("GET", &pipeline_path("builds", "aaa"), None).await;
    assert_eq!(got.body["pipeline"], first.body["items"][0]);
}

#[tokio::test]
async fn missing_parents_are_named_parent_first_and_bad_numbers_are_refused() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register("builds", "demo", config("One", &["true"])).await;
    let p = |ns: &str, pl: &str, rest: &str| format!("{}{rest}", pipeline_path(ns, pl));
    let canary = json!({"version": 1});
    let routes: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "", None),
        ("PATCH", "", Some(json!({"state": "disabled"}))),
        ("DELETE", "", None),
        ("GET", "/configs", None),
        ("GET", "/configs/1", None),
        ("GET", "/configs/1/diff/1", None),
        ("GET", "/deployments", None),
        ("POST", "/deployments", Some(canary)),
        ("GET", "/deployments/1", None),
        ("POST", "/deployments/1/rollback", None),
    ];
    for (method, rest, body) in &routes {
        let answer = acme.request(method, &p("nope", "demo", rest), body.as_ref()).await;
        assert_eq!((answer.status, answer.code()), (404, "namespace_not_found"), "{method} {rest}");
        let answer = acme.request(method, &p("builds", "nope", rest), body.as_ref()).await;
        assert_eq!((answer.status, answer.code()), (404, "pipeline_not_found"), "{method} {rest}");
        assert_eq!(answer.content_type, "application/problem+json");
    }
    let listed = acme.request("GET", "/api/v1/namespaces/nope/pipelines", None).await;
    assert_eq!((listed.status, listed.code()), (404, "namespace_not_found"));

    for (method, rest, code) in [
        ("GET", "/configs/9", "config_not_found"),
        ("GET", "/configs/1/diff/9", "config_not_found"),
        ("GET", "/configs/9/diff/1", "config_not_found"),
        ("GET", "/deployments/9", "deployment_not_found"),
        ("POST", "/deployments/9/rollback", "deployment_not_found"),
    ] {
        let answer = acme.request(method, &p("builds", "demo", rest), None).await;
        assert_eq!((answer.status, answer.code()), (404, code), "{method} {rest}");
    }
    let deploy = acme.deploy("builds", "demo", json!({"version": 9})).await;
    assert_eq!((deploy.status, deploy.code()), (404, "config_not_found"));
    assert!(deploy.body["detail"].as_str().unwrap().contains('9'));

    for (method, rest) in [
        ("GET", "/configs/0"),
        ("GET", "/configs/abc"),
        ("GET", "/configs/-1"),
        ("GET", "/configs/1/diff/0"),
        ("GET", "/configs/x/diff/1"),
        ("GET", "/deployments/0"),
        ("GET", "/deployments/abc"),
        ("POST", "/deployments/1.5/rollback"),
    ] {
        let answer = acme.request(method, &p("builds", "demo", rest), None).await;
        assert_eq!((answer.status, answer.code()), (400, "invalid_identifier"), "{method} {rest}");
    }
    for (path, code) in [
        ("/api/v1/namespaces/builds/pipelines?limit=0", "invalid_limit"),
        ("/api/v1/namespaces/builds/pipelines?cursor=zz!", "invalid_cursor"),
        ("/api/v1/namespaces/builds/pipelines/demo/configs?cursor=MA", "invalid_cursor"),
        ("/api/v1/namespaces/Builds/pipelines", "invalid_identifier"),
    ] {
        let answer = acme.request("GET", path, None).await;
        assert_eq!((answer.status, answer.code()), (400, code), "{path}");
    }
}

#[tokio::test]
async fn another_tenants_pipelines_configs_and_deployments_answer_404_like_missing_ones() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    let umbrella = app.tenant("umbrella").await;
    acme.namespace("secret-ns").await;
    acme.register("secret-ns", "secret-p", config("One", &["true"])).await;
    acme.register_with("secret-ns", "secret-p", &config("Two", &["ls"]), false).await;
    umbrella.namespace("mine").await;

    let base = pipeline_path("secret-ns", "secret-p");
    let probes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/api/v1/namespaces/secret-ns/pipelines".into(), None),
        ("GET", base.clone(), None),
        ("PATCH", base.clone(), Some(json!({"state": "disabled"}))),
        ("DELETE", format!("{base}?delete_runs=true"), None),
        ("GET", format!("{base}/configs"), None),
        ("GET", format!("{base}/configs/1"), None),
        ("GET", format!("{base}/configs/1/diff/2"), None),
        ("GET", format!("{base}/deployments"), None),
        ("GET", format!("{base}/deployments/1"), None),
        ("POST", format!("{base}/deployments"), Some(json!({"version": 2}))),
        ("POST", format!("{base}/deployments/1/rollback"), None),
    ];
    for (method, path, body) in &probes {
        let theirs = umbrella.request(method, path, body.as_ref()).await;
        let missing = umbrella.request(method, &path.replace("secret-ns", "never-ns"), body.as_ref()).await;
        assert_eq!((theirs.status, theirs.code()), (404, "namespace_not_found"), "{method} {path}");
        assert_eq!(
            theirs.body["detail"].as_str().unwrap().replace("secret-ns", "X"),
            missing.body["detail"].as_str().unwrap().replace("never-ns", "X"),
            "{method} {path}: same answer as a missing object"
        );
    }
    // With a namespace of the same id, the pipeline is what is missing.
    umbrella.namespace("secret-ns").await;
    for (method, path, body) in probes.iter().skip(1) {
        let theirs = umbrella.request(method, path, body.as_ref()).await;
        assert_eq!((theirs.status, theirs.code()), (404, "pipeline_not_found"), "{method} {path}");
    }
    let listed = umbrella.request("GET", "/api/v1/namespaces/secret-ns/pipelines", None).await;
    assert_eq!((listed.status, listed.body["items"].as_array().map(Vec::len)), (200, Some(0)));

    // Nothing of Acme's changed.
    let pipeline = acme.pipeline("secret-ns", "secret-p").await;
    assert_eq!((pipeline["state"].as_str(), pipeline["live_version"].as_i64()), (Some("active"), Some(1)));
    let deployments: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments").fetch_one(&app.db).await.unwrap();
    assert_eq!(deployments, 1);
}

#[tokio::test]
async fn runs_started_concurrently_while_a_canary_is_decided_all_complete_and_the_counts_add_up() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    live_and_unreleased(&acme, "demo", &["sh", "-c", "true"]).await;
    let started = acme
        .deploy(
            "builds",
            "demo",
            json!({"version": 2, "canary": {"percent": 50, "max_failure_rate": 0, "min_runs": 3}}),
        )
        .await;
    let id = started.body["deployment"]["id"].as_i64().expect("id");

    // Starts and completions interleave: runs::start holds the pipeline's lock while routing,
    // and completing canary runs take it to count (and finally promote). Neither may deadlock.
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..12u64 {
        let (http, url, token) =
            (app.http.clone(), format!("{}{}/runs", app.address, pipeline_path("builds", "demo")), acme.token.clone());
        starts.spawn(async move {
            // Staggered, so that some runs start while earlier ones complete.
            tokio::time::sleep(Duration::from_millis(60 * i)).await;
            let answer = http.post(url).bearer_auth(token).json(&json!({"variables": {}})).send().await.expect("sent");
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.expect("json");
            (status, body["run"]["id"].as_i64(), body["run"]["config_version"].as_i64())
        });
    }
    let mut runs = Vec::new();
    while let Some(result) = starts.join_next().await {
        let (status, run, version) = result.expect("task");
        assert_eq!(status, 201);
        runs.push((run.expect("run id"), version.expect("version")));
    }
    for (run, _) in &runs {
        let done = acme.wait_for_run("builds", "demo", gofer_core::RunId::from_i64(*run), RUN_TIMEOUT).await;
        assert_eq!(done.status, RunStatus::Successful);
    }
    let d = acme.deployment("builds", "demo", id).await;
    assert_eq!((d["state"].as_str(), d["status"].as_str()), (Some("complete"), Some("successful")), "{d}");
    assert_eq!(
        (d["canary_runs"].as_i64(), d["canary_failures"].as_i64()),
        (Some(3), Some(0)),
        "counted exactly min_runs"
    );
    let routed = d["routed_runs"].as_i64().expect("routed");
    let to_canary = d["routed_to_canary"].as_i64().expect("to canary");
    assert_eq!(to_canary, (routed + 1) / 2, "the share held while it ran");
    let on_canary = runs.iter().filter(|(_, v)| *v == 2).count() as i64;
    let after = runs.len() as i64 - routed;
    assert_eq!(on_canary, to_canary + after, "runs after the promotion use the new live version");
    assert_eq!(acme.pipeline("builds", "demo").await["live_version"], 2);
    app.assert_queue_drained().await;
}
