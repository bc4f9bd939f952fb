//! Plans: operators manage them, a tenant has one, and a run its plan cannot admit is refused
//! with quota_exceeded naming the limit and the numbers.

use gofer_tests::spawn_app;
use serde_json::{Value, json};

fn plan(id: &str, task_timeout: u32) -> Value {
    json!({"id": id, "name": "Small", "max_concurrent_tasks": 2, "max_task_timeout_s": task_timeout,
           "max_run_duration_s": 600, "max_cpu_millis": 1000, "max_memory_mb": 512,
           "task_seconds_per_month": 3600, "object_storage_bytes": 1048576, "requests_per_minute": 60})
}

#[tokio::test]
async fn operators_manage_plans() {
    let app = spawn_app().await;
    let op = Some(app.operator_token.as_str());
    let created = app.request("POST", "/api/v1/plans", op, Some(&plan("small", 120))).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["plan"]["max_task_timeout_s"], 120);
    let again = app.request("POST", "/api/v1/plans", op, Some(&plan("small", 120))).await;
    assert_eq!((again.status, again.code()), (409, "plan_exists"));
    let bad = app.request("POST", "/api/v1/plans", op, Some(&plan("small-2", 0))).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_field"));
    let unknown = app.request("POST", "/api/v1/plans", op, Some(&json!({"id": "x"}))).await;
    assert_eq!(unknown.status, 400);
    let listed = app.request("GET", "/api/v1/plans", op, None).await;
    let ids: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["default", "small", "trial"]);
    assert_eq!(
        (created.body["plan"]["node_pool"].clone(), created.body["plan"]["allow_network"].clone()),
        (Value::Null, json!(true))
    );
    let updated = app.request("PUT", "/api/v1/plans/small", op, Some(&plan("small", 300))).await;
    assert_eq!(updated.body["plan"]["max_task_timeout_s"], 300);
    // Where its tasks run: a node pool Nomad accepts, and whether they get a network.
    let mut placed = plan("small", 300);
    placed["node_pool"] = json!("gofer-small");
    placed["allow_network"] = json!(false);
    let moved = app.request("PUT", "/api/v1/plans/small", op, Some(&placed)).await;
    assert_eq!(
        (moved.body["plan"]["node_pool"].clone(), moved.body["plan"]["allow_network"].clone()),
        (json!("gofer-small"), json!(false))
    );
    placed["node_pool"] = json!("no spaces/or slashes");
    let refused = app.request("PUT", "/api/v1/plans/small", op, Some(&placed)).await;
    assert_eq!((refused.status, refused.code()), (400, "invalid_field"));
    let mismatch = app.request("PUT", "/api/v1/plans/small", op, Some(&plan("other", 300))).await;
    assert_eq!((mismatch.status, mismatch.code()), (422, "invalid_field"), "the body's id is not the path's plan");
    let acme = app.tenant("acme").await;
    let assigned = app.request("PUT", "/api/v1/tenants/acme/plan", op, Some(&json!({"plan": "small"}))).await;
    assert_eq!((assigned.status, assigned.body["plan"]["id"].as_str()), (200, Some("small")));
    let in_use = app.request("DELETE", "/api/v1/plans/small", op, None).await;
    assert_eq!((in_use.status, in_use.code()), (409, "plan_in_use"));
    app.request("PUT", "/api/v1/tenants/acme/plan", op, Some(&json!({"plan": "default"}))).await;
    assert_eq!(app.request("DELETE", "/api/v1/plans/small", op, None).await.status, 204);
    let gone = app.request("GET", "/api/v1/plans/small", op, None).await;
    assert_eq!((gone.status, gone.code()), (404, "plan_not_found"));
    let tenant_cannot = acme.request("GET", "/api/v1/plans", None).await;
    assert_eq!(tenant_cannot.status, 403);
}

#[tokio::test]
async fn a_run_its_plan_cannot_admit_is_refused_naming_the_limit_and_a_plan_change_applies_at_once() {
    let app = spawn_app().await;
    let op = Some(app.operator_token.as_str());
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    app.request("PUT", "/api/v1/tenants/acme/plan", op, Some(&json!({"plan": "trial"}))).await;
    // No timeout_s: the server's default (3600 s) is above the trial plan's 60 s.
    acme.register_one_task("builds", "long", "work", &["true"]).await;
    let refused = acme.request("POST", "/api/v1/namespaces/builds/pipelines/long/runs", Some(&json!({}))).await;
    assert_eq!((refused.status, refused.code()), (403, "quota_exceeded"));
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("max_run_duration_s") || detail.contains("max_task_timeout_s"), "{detail}");
    assert!(detail.contains("86400") || detail.contains("3600"), "the numbers are named: {detail}");

    acme.register(
        "builds",
        "fits",
        json!({"name": "F", "run_timeout_s": 300, "tasks": [{"id": "work", "image": "debian:12", "command": ["true"], "timeout_s": 60, "memory_mb": 128, "cpu": 500}]}),
    )
    .await;
    acme.start_run("builds", "fits").await;
    acme.register(
        "builds",
        "hungry",
        json!({"name": "H", "run_timeout_s": 300, "tasks": [{"id": "work", "image": "debian:12", "command": ["true"], "timeout_s": 60, "memory_mb": 1024, "cpu": 500}]}),
    )
    .await;
    let hungry = acme.request("POST", "/api/v1/namespaces/builds/pipelines/hungry/runs", Some(&json!({}))).await;
    assert_eq!(hungry.code(), "quota_exceeded");
    assert!(hungry.body["detail"].as_str().unwrap().contains("max_memory_mb 1024, above the plan's 128"), "{hungry:?}");
    let runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE pipeline_id = 'hungry'").fetch_one(&app.db).await.unwrap();
    assert_eq!(runs, 0, "a refused run leaves nothing behind");

    // Raise the trial plan's memory: the same run is admitted at once.
    let trial = app.request("GET", "/api/v1/plans/trial", op, None).await.body["plan"].clone();
    let mut roomier = trial.clone();
    roomier["max_memory_mb"] = json!(2048);
    app.request("PUT", "/api/v1/plans/trial", op, Some(&roomier)).await;
    acme.start_run("builds", "hungry").await;
    app.request("PUT", "/api/v1/plans/trial", op, Some(&trial)).await;
}

#[tokio::test]
async fn a_plans_concurrency_keeps_the_tenants_tasks_waiting_for_quota() {
    use std::sync::Arc;
    let state_dir = tempfile::tempdir().expect("temp dir");
    let config = gofer_tests::test_config(gofer_tests::fresh_database().await, state_dir.path());
    let fake = Arc::new(gofer_tests::fake_scheduler::FakeScheduler::default());
    let app = gofer_tests::spawn_replica(config, state_dir, Some(fake)).await;
    let op = Some(app.operator_token.as_str());
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    // The trial plan runs one task at a time.
    app.request("PUT", "/api/v1/tenants/acme/plan", op, Some(&json!({"plan": "trial"}))).await;
    let task = |id: &str| json!({"id": id, "image": "x", "command": ["sleep", "0.6"], "timeout_s": 60, "cpu": 500, "memory_mb": 128});
    acme.register(
        "builds",
        "three",
        json!({"name": "T", "run_timeout_s": 300, "tasks": [task("one"), task("two"), task("three")]}),
    )
    .await;
    let run = acme.start_run("builds", "three").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut saw_quota_wait = false;
    while std::time::Instant::now() < deadline && !saw_quota_wait {
        let tasks =
            acme.request("GET", &format!("/api/v1/namespaces/builds/pipelines/three/runs/{run}/tasks"), None).await;
        saw_quota_wait =
            tasks.body["items"].as_array().unwrap().iter().any(|t| t["waiting_reason"] == "waiting_for_quota");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(saw_quota_wait, "tasks over the plan's concurrency say they wait for quota");
    let done = acme.wait_for_run("builds", "three", run, std::time::Duration::from_secs(30)).await;
    assert_eq!(done.status, gofer_core::RunStatus::Successful);
    let spans: Vec<(String, String)> = sqlx::query_as(
        "SELECT started_at::text, ended_at::text FROM task_executions WHERE run_id = $1 ORDER BY started_at",
    )
    .bind(run.get())
    .fetch_all(&app.db)
    .await
    .unwrap();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "tasks overlapped under a one-task plan: {pair:?}");
    }
}

#[tokio::test]
async fn the_trial_plan_is_untrusted_with_a_small_disk_and_new_plans_default_to_trusted() {
    let app = spawn_app().await;
    let op = Some(app.operator_token.as_str());
    let trial = app.request("GET", "/api/v1/plans/trial", op, None).await;
    assert_eq!(
        (trial.body["plan"]["untrusted"].clone(), trial.body["plan"]["max_disk_mb"].clone()),
        (json!(true), json!(256))
    );
    let created = app.request("POST", "/api/v1/plans", op, Some(&plan("roomy", 120))).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(
        (created.body["plan"]["untrusted"].clone(), created.body["plan"]["max_disk_mb"].clone()),
        (json!(false), json!(10240))
    );
    let mut marked = plan("roomy", 120);
    marked["untrusted"] = json!(true);
    marked["max_disk_mb"] = json!(512);
    let updated = app.request("PUT", "/api/v1/plans/roomy", op, Some(&marked)).await;
    assert_eq!(
        (updated.body["plan"]["untrusted"].clone(), updated.body["plan"]["max_disk_mb"].clone()),
        (json!(true), json!(512))
    );
}
