//! Metering and task-seconds: one ledger row per finished attempt, written once even when a
//! replica dies; no run starts without task-seconds left; running tasks stop when they run out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gofer_core::{RunStatus, StatusReason, TaskStatus};
use gofer_tests::fake_scheduler::FakeScheduler;
use gofer_tests::{TestApp, fresh_database, spawn_replica, test_config, wait_until};
use serde_json::json;

fn fast_config(database_url: String, state_dir: &std::path::Path) -> gofer_api::Config {
    let mut config = test_config(database_url, state_dir);
    config.engine.lease_s = 2;
    config.engine.retry_backoff_ms = 100;
    config.engine.quota_check_interval_ms = 100;
    config
}

async fn fake_app() -> (TestApp, Arc<FakeScheduler>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = Arc::new(FakeScheduler::default());
    let app = spawn_replica(fast_config(fresh_database().await, dir.path()), dir, Some(fake.clone())).await;
    (app, fake)
}

/// A plan with `task_seconds` a month and room for everything else.
fn plan(id: &str, task_seconds: u64) -> serde_json::Value {
    json!({"id": id, "name": id, "max_concurrent_tasks": 4, "max_task_timeout_s": 3600,
           "max_run_duration_s": 86400, "max_cpu_millis": 8000, "max_memory_mb": 16384,
           "task_seconds_per_month": task_seconds, "object_storage_bytes": 0, "requests_per_minute": 600})
}

#[derive(sqlx::FromRow, Debug)]
struct Row {
    task_id: String,
    attempt: i32,
    plan_id: String,
    task_ms: i64,
    cpu_millis: i32,
    memory_mb: i32,
}

async fn ledger(app: &TestApp) -> Vec<Row> {
    sqlx::query_as(
        "SELECT task_id, attempt, plan_id, task_ms, cpu_millis, memory_mb FROM usage_records ORDER BY task_id, attempt",
    )
    .fetch_all(&app.db)
    .await
    .expect("ledger read")
}

#[tokio::test]
async fn every_finished_attempt_is_metered_once_with_its_plan_and_resources() {
    let (app, _fake) = fake_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "two",
        json!({"name": "T", "tasks": [
            {"id": "alpha", "image": "x", "command": ["sleep", "0.3"], "cpu": 250, "memory_mb": 64},
            {"id": "beta", "image": "x", "command": ["exit", "1"], "retries": 1}
        ]}),
    )
    .await;
    let done = acme.run_to_completion("builds", "two", Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Failed);
    let rows = ledger(&app).await;
    let keys: Vec<(&str, i32)> = rows.iter().map(|r| (r.task_id.as_str(), r.attempt)).collect();
    assert_eq!(keys, [("alpha", 1), ("beta", 1), ("beta", 2)], "one row per attempt, retries included: {rows:?}");
    let a = &rows[0];
    assert_eq!((a.plan_id.as_str(), a.cpu_millis, a.memory_mb), ("default", 250, 64));
    assert!((300..5000).contains(&a.task_ms), "{a:?}");
    // The server's defaults stand for what a task does not set.
    assert_eq!((rows[1].cpu_millis, rows[1].memory_mb), (1000, 2048));
}

#[tokio::test]
async fn a_task_taken_over_from_a_dead_replica_is_metered_exactly_once() {
    let database_url = fresh_database().await;
    let fake = Arc::new(FakeScheduler::default());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config_a = fast_config(database_url.clone(), dir_a.path());
    let mut config_b = fast_config(database_url, dir_b.path());
    config_b.bootstrap_token = config_a.bootstrap_token.clone();
    let mut a = spawn_replica(config_a, dir_a, Some(fake.clone())).await;
    let acme = a.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "long", "work", "x", &["sleep", "2"]).await;
    let token = acme.token.clone();
    let run = acme.start_run("builds", "long").await;
    let job = format!("acme~builds~long~{run}~work~1");
    wait_until("replica A to dispatch", Duration::from_secs(10), || async { fake.starts(&job) == 1 }).await;
    a.kill().await;
    let b = spawn_replica(config_b, tempfile::tempdir().unwrap(), Some(fake.clone())).await;
    let acme_b = gofer_tests::TenantClient { app: &b, tenant: "acme".parse().unwrap(), token };
    let done = acme_b.wait_for_run("builds", "long", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Successful);
    let rows = ledger(&b).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].task_ms >= 2000, "the whole attempt, across both replicas: {rows:?}");
}

#[tokio::test]
async fn no_run_starts_without_task_seconds_left_and_running_tasks_stop_when_they_run_out() {
    let (app, _fake) = fake_app().await;
    let op = Some(app.operator_token.as_str());
    assert_eq!(app.request("POST", "/api/v1/plans", op, Some(&plan("tiny", 1))).await.status, 201);
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    app.request("PUT", "/api/v1/tenants/acme/plan", op, Some(&json!({"plan": "tiny"}))).await;
    acme.register_one_task_in_image("builds", "slow", "work", "x", &["sleep", "30"]).await;
    // One task-second a month: the running task is stopped once it has used it.
    let started = Instant::now();
    let run = acme.start_run("builds", "slow").await;
    let done = acme.wait_for_run("builds", "slow", run, Duration::from_secs(20)).await;
    assert!(started.elapsed() < Duration::from_secs(10), "stopped soon after the quota ran out");
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.status_reason.as_ref().unwrap().reason, StatusReason::QuotaExhausted);
    let (ns, p) = ("builds".parse().unwrap(), "slow".parse().unwrap());
    let work = acme.sdk().get_task(&ns, &p, run, &"work".parse().unwrap()).await.unwrap();
    assert_eq!(work.status, TaskStatus::Failed);
    assert_eq!(work.status_reason.unwrap().reason, StatusReason::QuotaExhausted);
    let used: i64 =
        sqlx::query_scalar("SELECT sum(task_ms)::bigint FROM usage_records").fetch_one(&app.db).await.unwrap();
    assert!(used >= 1000, "{used}");

    // Nothing left: the next run is refused, naming the limit and the numbers.
    let refused = acme.request("POST", "/api/v1/namespaces/builds/pipelines/slow/runs", Some(&json!({}))).await;
    assert_eq!((refused.status, refused.code()), (403, "quota_exceeded"));
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("task_seconds_per_month") && detail.contains("of the plan's 1 task-seconds"), "{detail}");

    // A bigger plan applies at once.
    app.request("PUT", "/api/v1/plans/tiny", op, Some(&plan("tiny", 3600))).await;
    acme.start_run("builds", "slow").await;
}
