//! The queue under faults and limits: retries, takeovers, cancel, deadlines, parallelism.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gofer_core::{NamespaceId, PipelineId, RunId, RunStatus, StatusReason, TaskId, TaskStatus};
use gofer_tests::fake_scheduler::FakeScheduler;
use gofer_tests::{TestApp, fresh_database, spawn_app, spawn_replica, test_config};
use serde_json::{Value, json};

fn ids(ns: &str, p: &str) -> (NamespaceId, PipelineId) {
    (NamespaceId::parse(ns).expect("valid"), PipelineId::parse(p).expect("valid"))
}

fn task(id: &str) -> TaskId {
    TaskId::parse(id).expect("valid")
}

/// A config for quick engine loops in tests: short leases, fast retries.
fn fast_config(database_url: String, state_dir: &std::path::Path) -> gofer_api::Config {
    let mut config = test_config(database_url, state_dir);
    config.engine.lease_s = 2;
    config.engine.retry_backoff_ms = 100;
    config
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two replicas on one fresh database sharing `fake`, each with [`fast_config`] changed by `configure`.
async fn two_replicas(fake: &Arc<FakeScheduler>, configure: impl Fn(&mut gofer_api::Config)) -> Vec<TestApp> {
    let database_url = fresh_database().await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let state_dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = fast_config(database_url.clone(), state_dir.path());
        configure(&mut config);
        let scheduler: Arc<dyn gofer_core::scheduler::Scheduler> = fake.clone();
        replicas.push(spawn_replica(config, state_dir, Some(scheduler)).await);
    }
    replicas
}

async fn task_state(app: &TestApp, run: i64, task: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT state, waiting_reason FROM task_executions WHERE run_id = $1 AND task_id = $2")
        .bind(run)
        .bind(task)
        .fetch_one(&app.db)
        .await
        .expect("task row")
}

#[tokio::test]
async fn cancelling_a_run_stops_its_running_task_and_never_starts_the_rest() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "long",
        json!({"name": "Long", "tasks": [
            {"id": "sleeper", "image": "debian:12", "command": ["sh", "-c", "echo started; sleep 60"]},
            {"id": "after", "image": "debian:12", "command": ["true"], "depends_on": {"sleeper": "any"}}
        ]}),
    )
    .await;
    let run = acme.start_run("builds", "long").await;
    wait_until("the sleeper to run", Duration::from_secs(30), || async {
        task_state(&app, run.get(), "sleeper").await.0 == "running"
            && task_state(&app, run.get(), "sleeper").await.1.is_none()
    })
    .await;

    let cancelled_at = Instant::now();
    let answer =
        acme.request("POST", &format!("/api/v1/namespaces/builds/pipelines/long/runs/{run}/cancel"), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let done = acme.wait_for_run("builds", "long", run, Duration::from_secs(30)).await;
    assert!(cancelled_at.elapsed() < Duration::from_secs(20), "the sandbox was stopped promptly");
    assert_eq!(done.status, RunStatus::Cancelled);
    assert_eq!(done.status_reason.unwrap().reason, StatusReason::UserCancelled);

    let (ns, p) = ids("builds", "long");
    let tasks = acme.sdk().list_tasks(&ns, &p, run).await.unwrap();
    for t in &tasks {
        assert_eq!(t.status, TaskStatus::Cancelled, "{t:?}");
        assert_eq!(t.status_reason.as_ref().unwrap().reason, StatusReason::UserCancelled);
    }
    let after = tasks.iter().find(|t| t.task_id.as_str() == "after").unwrap();
    assert!(after.started.is_none(), "a dependant of a cancelled run never starts");

    // Cancelling again changes nothing.
    let again =
        acme.request("POST", &format!("/api/v1/namespaces/builds/pipelines/long/runs/{run}/cancel"), None).await;
    assert_eq!((again.status, again.body["run"]["status"].as_str()), (200, Some("cancelled")));
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn cancel_all_cancels_every_unfinished_run_of_the_pipeline() {
    let state_dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeScheduler::default());
    let app = spawn_replica(fast_config(fresh_database().await, state_dir.path()), state_dir, Some(fake.clone())).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "slow", "wait", "x", &["sleep", "60"]).await;
    for _ in 0..3 {
        acme.start_run("builds", "slow").await;
    }
    let answer = acme.request("POST", "/api/v1/namespaces/builds/pipelines/slow/runs/cancel-all", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["cancelled"], json!([1, 2, 3]));
    for run in 1..=3 {
        let done = acme.wait_for_run("builds", "slow", RunId::from_i64(run), Duration::from_secs(20)).await;
        assert_eq!(done.status, RunStatus::Cancelled);
    }
    let none = acme.request("POST", "/api/v1/namespaces/builds/pipelines/slow/runs/cancel-all", None).await;
    assert_eq!(none.body["cancelled"], json!([]));
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_run_past_its_deadline_is_stopped_and_fails_with_reason_timeout() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "slow",
        json!({"name": "Slow", "run_timeout_s": 2, "tasks": [
            {"id": "sleeper", "image": "debian:12", "command": ["sleep", "60"]},
            {"id": "after", "image": "debian:12", "command": ["true"], "depends_on": {"sleeper": "success"}}
        ]}),
    )
    .await;
    let run = acme.start_run("builds", "slow").await;
    let done = acme.wait_for_run("builds", "slow", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.status_reason.unwrap().reason, StatusReason::Timeout);
    assert!(done.ended.unwrap() - done.created < time::Duration::seconds(20));
    let (ns, p) = ids("builds", "slow");
    let sleeper = acme.sdk().get_task(&ns, &p, run, &task("sleeper")).await.unwrap();
    assert_eq!((sleeper.status, sleeper.status_reason.unwrap().reason), (TaskStatus::Failed, StatusReason::Timeout));
    let after = acme.sdk().get_task(&ns, &p, run, &task("after")).await.unwrap();
    assert_eq!(after.status, TaskStatus::Cancelled);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_task_that_fails_is_run_again_as_configured_and_each_attempt_keeps_its_log() {
    let state_dir = tempfile::tempdir().unwrap();
    let app = spawn_replica(fast_config(fresh_database().await, state_dir.path()), state_dir, None).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "flaky",
        json!({"name": "Flaky", "tasks": [
            // Fails on attempts 1 and 2, succeeds on 3.
            {"id": "flaky", "image": "debian:12", "retries": 2,
             "command": ["sh", "-c", "echo try $GOFER_TASK_ATTEMPT; [ $GOFER_TASK_ATTEMPT -ge 3 ]"]},
            {"id": "never", "image": "debian:12", "retries": 1, "command": ["sh", "-c", "echo no $GOFER_TASK_ATTEMPT; exit 4"]}
        ]}),
    )
    .await;
    let run = acme.start_run("builds", "flaky").await;
    let done = acme.wait_for_run("builds", "flaky", run, Duration::from_secs(60)).await;
    assert_eq!(done.status, RunStatus::Failed, "never fails after its one retry");

    let (ns, p) = ids("builds", "flaky");
    let flaky = acme.sdk().get_task(&ns, &p, run, &task("flaky")).await.unwrap();
    assert_eq!((flaky.status, flaky.attempt, flaky.exit_code), (TaskStatus::Successful, 3, Some(0)));
    let attempts = acme
        .request("GET", &format!("/api/v1/namespaces/builds/pipelines/flaky/runs/{run}/tasks/flaky/attempts"), None)
        .await;
    let attempts = attempts.body["items"].as_array().unwrap().clone();
    let summary: Vec<(i64, &str, bool, Option<i64>)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["status"].as_str().unwrap(),
                a["retried"].as_bool().unwrap(),
                a["exit_code"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "failed", true, Some(1)), (2, "failed", true, Some(1)), (3, "successful", false, Some(0))]
    );
    assert_eq!(attempts[0]["status_reason"]["reason"], "abnormal_exit");
    assert_eq!(attempts[0]["scheduler_id"], format!("acme~builds~flaky~{run}~flaky~1"));
    for n in 1..=3 {
        let log = acme
            .request(
                "GET",
                &format!("/api/v1/namespaces/builds/pipelines/flaky/runs/{run}/tasks/flaky/logs?attempt={n}"),
                None,
            )
            .await;
        assert_eq!(log.body["text"], format!("try {n}\n"), "attempt {n} keeps its own log");
    }
    let current = acme.sdk().task_logs(&ns, &p, run, &task("flaky")).await.unwrap();
    assert_eq!(current, "try 3\n", "the log route shows the current attempt by default");
    let missing = acme
        .request(
            "GET",
            &format!("/api/v1/namespaces/builds/pipelines/flaky/runs/{run}/tasks/flaky/logs?attempt=9"),
            None,
        )
        .await;
    assert_eq!((missing.status, missing.code()), (404, "attempt_not_found"));

    let never = acme.sdk().get_task(&ns, &p, run, &task("never")).await.unwrap();
    assert_eq!((never.status, never.attempt, never.exit_code), (TaskStatus::Failed, 2, Some(4)));
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_scheduler_outage_at_dispatch_is_ridden_out_without_spending_attempts() {
    let state_dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeScheduler::default());
    // More failed starts than infra retries: without in-place retries the task would fail.
    fake.failing_starts.store(6, Ordering::SeqCst);
    let app = spawn_replica(fast_config(fresh_database().await, state_dir.path()), state_dir, Some(fake.clone())).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "outage", "work", "x", &["sleep", "0.1"]).await;
    let run = acme.start_run("builds", "outage").await;
    let done = acme.wait_for_run("builds", "outage", run, Duration::from_secs(60)).await;
    assert_eq!(done.status, RunStatus::Successful);
    let (ns, p) = ids("builds", "outage");
    let work = acme.sdk().get_task(&ns, &p, run, &task("work")).await.unwrap();
    assert_eq!(work.attempt, 1, "the outage spent no attempt");
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn infrastructure_failures_are_retried_and_a_task_exit_is_not() {
    let state_dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeScheduler::default());
    fake.failing_starts.store(2, Ordering::SeqCst);
    let mut config = fast_config(fresh_database().await, state_dir.path());
    // No in-place retries of the start: each unavailable start is an attempt of its own.
    config.engine.scheduler_outage_tolerance_s = 0;
    let app = spawn_replica(config, state_dir, Some(fake.clone())).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "infra", "work", "x", &["sleep", "0.2"]).await;
    let run = acme.start_run("builds", "infra").await;
    let done = acme.wait_for_run("builds", "infra", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Successful);
    let (ns, p) = ids("builds", "infra");
    let work = acme.sdk().get_task(&ns, &p, run, &task("work")).await.unwrap();
    assert_eq!((work.attempt, work.node.as_deref()), (3, Some("fake-node-1")));
    let attempts = acme
        .request("GET", &format!("/api/v1/namespaces/builds/pipelines/infra/runs/{run}/tasks/work/attempts"), None)
        .await;
    let reasons: Vec<Value> =
        attempts.body["items"].as_array().unwrap().iter().map(|a| a["status_reason"]["reason"].clone()).collect();
    assert_eq!(reasons, [json!("scheduler_error"), json!("scheduler_error"), Value::Null]);

    // A task's own failure is not an infrastructure failure: no retry without `retries`.
    acme.register_one_task_in_image("builds", "exits", "work", "x", &["exit", "3"]).await;
    let run = acme.start_run("builds", "exits").await;
    let done = acme.wait_for_run("builds", "exits", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Failed);
    let (ns, p) = ids("builds", "exits");
    let work = acme.sdk().get_task(&ns, &p, run, &task("work")).await.unwrap();
    assert_eq!((work.attempt, work.exit_code), (1, Some(3)));
}

#[tokio::test]
async fn a_dead_replicas_task_is_taken_over_and_runs_exactly_once() {
    let database_url = fresh_database().await;
    let fake = Arc::new(FakeScheduler::default());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config_a = fast_config(database_url.clone(), dir_a.path());
    let mut config_b = fast_config(database_url, dir_b.path());
    config_b.bootstrap_token = config_a.bootstrap_token.clone();
    // Only A claims at first: B starts after A has the task.
    config_a.engine.max_parallel_tasks = Some(4);
    config_b.engine.max_parallel_tasks = Some(4);
    let mut a = spawn_replica(config_a, dir_a, Some(fake.clone())).await;
    let acme = a.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "long", "work", "x", &["sleep", "4"]).await;
    let token = acme.token.clone();
    let run = acme.start_run("builds", "long").await;
    let job = format!("acme~builds~long~{run}~work~1");
    wait_until("replica A to dispatch", Duration::from_secs(10), || async { fake.starts(&job) == 1 }).await;
    a.kill().await;

    let b = spawn_replica(config_b, tempfile::tempdir().unwrap(), Some(fake.clone())).await;
    let acme_b = gofer_tests::TenantClient { app: &b, tenant: "acme".parse().unwrap(), token };
    let done = acme_b.wait_for_run("builds", "long", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Successful);
    assert_eq!(fake.starts(&job), 1, "re-attached, not dispatched again");
    assert_eq!(fake.job_ids().len(), 1, "no second attempt");
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM events WHERE run_id = $1 ORDER BY id")
        .bind(run.get())
        .fetch_all(&b.db)
        .await
        .unwrap();
    assert_eq!(
        kinds,
        [
            "run_created",
            "task_queued",
            "run_started",
            "task_started",
            "task_taken_over",
            "task_completed",
            "run_completed"
        ]
    );
    let log =
        acme_b.sdk().task_logs(&ids("builds", "long").0, &ids("builds", "long").1, run, &task("work")).await.unwrap();
    assert_eq!(log, format!("started {job} attempt 1\n"), "the log is not copied twice");
    b.assert_queue_drained().await;
}

#[tokio::test]
async fn a_task_lost_with_its_replica_runs_again_as_a_new_attempt_marked_orphaned() {
    let database_url = fresh_database().await;
    let fake = Arc::new(FakeScheduler::default());
    let dir = tempfile::tempdir().unwrap();
    let config = fast_config(database_url, dir.path());
    let app = spawn_replica(config, dir, Some(fake.clone())).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "lost", "work", "x", &["sleep", "1"]).await;
    let run = acme.start_run("builds", "lost").await;
    let job1 = format!("acme~builds~lost~{run}~work~1");
    wait_until("dispatch", Duration::from_secs(10), || async { fake.starts(&job1) == 1 }).await;
    // The job vanishes from the scheduler (its node died) and its watcher's lease expires, as if
    // the replica watching it had died too.
    fake.forget(&job1);
    sqlx::query(
        "UPDATE task_executions SET lease_owner = gen_random_uuid(), lease_until = now() - interval '1 second'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let done = acme.wait_for_run("builds", "lost", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Successful);
    let attempts = acme
        .request("GET", &format!("/api/v1/namespaces/builds/pipelines/lost/runs/{run}/tasks/work/attempts"), None)
        .await;
    let summary: Vec<(i64, &str, Option<&str>, bool)> = attempts.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["status"].as_str().unwrap(),
                a["status_reason"]["reason"].as_str(),
                a["retried"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(summary, [(1, "failed", Some("orphaned"), true), (2, "successful", None, false)]);
    assert_eq!(fake.starts(&job1), 1, "the job id of attempt 1 is never started twice");
    assert_eq!(fake.starts(&format!("acme~builds~lost~{run}~work~2")), 1);
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn pipeline_parallelism_keeps_runs_one_at_a_time_and_says_why_they_wait() {
    let state_dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeScheduler::default());
    let app = spawn_replica(fast_config(fresh_database().await, state_dir.path()), state_dir, Some(fake)).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register(
        "builds",
        "serial",
        json!({"name": "S", "parallelism": 1, "tasks": [{"id": "work", "image": "x", "command": ["sleep", "0.8"]}]}),
    )
    .await;
    let runs: Vec<RunId> = vec![
        acme.start_run("builds", "serial").await,
        acme.start_run("builds", "serial").await,
        acme.start_run("builds", "serial").await,
    ];
    wait_until("run 1 to run", Duration::from_secs(10), || async { task_state(&app, 1, "work").await.0 == "running" })
        .await;
    // Run 3 may have been queued while run 1's claim committed (each then saw the other's state
    // as before); the engine corrects the reason within a reaper pass.
    wait_until("run 3 to wait for parallelism", Duration::from_secs(5), || async {
        task_state(&app, 3, "work").await == ("queued".to_owned(), Some("waiting_for_parallelism".to_owned()))
    })
    .await;
    let waiting = acme.request("GET", "/api/v1/namespaces/builds/pipelines/serial/runs/3/tasks/work", None).await;
    assert_eq!(waiting.body["task"]["waiting_reason"], "waiting_for_parallelism");
    assert!(waiting.body["task"]["deadline"].is_string(), "a waiting task shows its deadline: {waiting:?}");
    let mut spans = Vec::new();
    for run in runs {
        let done = acme.wait_for_run("builds", "serial", run, Duration::from_secs(30)).await;
        assert_eq!(done.status, RunStatus::Successful);
        spans.push((done.started.unwrap(), done.ended.unwrap()));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlapped: {pair:?}");
    }
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn a_tenant_concurrency_limit_holds_across_pipelines_and_runs() {
    let state_dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeScheduler::default());
    let mut config = fast_config(fresh_database().await, state_dir.path());
    config.engine.tenant_max_running_tasks = 1;
    let app = spawn_replica(config, state_dir, Some(fake)).await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    let three = json!({"name": "T", "tasks": [
        {"id": "one", "image": "x", "command": ["sleep", "0.5"]},
        {"id": "two", "image": "x", "command": ["sleep", "0.5"]},
        {"id": "three", "image": "x", "command": ["sleep", "0.5"]}]});
    acme.register("builds", "three", three).await;
    let run = acme.start_run("builds", "three").await;
    let done = acme.wait_for_run("builds", "three", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Successful);
    let mut spans = task_spans(&acme, "three", run).await;
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "tasks overlapped: {pair:?}");
    }
}

#[tokio::test]
async fn runs_record_their_initiator_and_tasks_get_the_api_url() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task("builds", "env", "show", &["sh", "-c", "echo $GOFER_API_URL"]).await;
    let run = acme.start_run("builds", "env").await;
    let done = acme.wait_for_run("builds", "env", run, Duration::from_secs(30)).await;
    assert_eq!(done.initiator.kind, "token");
    let token_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM api_tokens WHERE tenant_id = 'acme'").fetch_one(&app.db).await.unwrap();
    assert_eq!(done.initiator.id, token_id.to_string());
    assert!(done.deadline.is_some());
    let (ns, p) = ids("builds", "env");
    let log = acme.sdk().task_logs(&ns, &p, run, &task("show")).await.unwrap();
    assert_eq!(log, format!("{}\n", app.address));
}

/// The most intervals of `spans` that overlap at any instant.
/// When each task of a finished run in namespace `builds` started and ended.
async fn task_spans(
    tenant: &gofer_tests::TenantClient<'_>,
    pipeline: &str,
    run: RunId,
) -> Vec<(time::OffsetDateTime, time::OffsetDateTime)> {
    let (ns, p) = ids("builds", pipeline);
    let tasks = tenant.sdk().list_tasks(&ns, &p, run).await.expect("the run's tasks");
    tasks.into_iter().map(|t| (t.started.expect("started"), t.ended.expect("ended"))).collect()
}

fn max_overlap(spans: &[(time::OffsetDateTime, time::OffsetDateTime)]) -> usize {
    let mut edges: Vec<(time::OffsetDateTime, i32)> = spans.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    // Ends sort before starts at the same instant: touching spans do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

#[tokio::test]
async fn two_replicas_claiming_in_batches_keep_the_tenant_limit_and_the_pipeline_parallelism() {
    let fake = Arc::new(FakeScheduler::default());
    let replicas = two_replicas(&fake, |config| config.engine.tenant_max_running_tasks = 3).await;
    let acme = replicas[0].tenant("acme").await;
    acme.namespace("builds").await;
    let wide = json!({"name": "W", "tasks": (0..4).map(|i| json!({"id": format!("task{i}"), "image": "x", "command": ["sleep", "0.3"]})).collect::<Vec<_>>()});
    acme.register("builds", "wide", wide).await;
    let serial =
        json!({"name": "S", "parallelism": 2, "tasks": [{"id": "work", "image": "x", "command": ["sleep", "0.3"]}]});
    acme.register("builds", "serial", serial).await;
    let mut wide_runs = Vec::new();
    let mut serial_runs = Vec::new();
    for _ in 0..4 {
        wide_runs.push(acme.start_run("builds", "wide").await);
        serial_runs.push(acme.start_run("builds", "serial").await);
    }
    let mut all_tasks = Vec::new();
    let mut serial_spans = Vec::new();
    for (pipeline, runs) in [("wide", &wide_runs), ("serial", &serial_runs)] {
        let (ns, p) = ids("builds", pipeline);
        for run in runs {
            let done = acme.wait_for_run("builds", pipeline, *run, Duration::from_secs(60)).await;
            assert_eq!(done.status, RunStatus::Successful, "{pipeline} run {run}");
            if pipeline == "serial" {
                serial_spans.push((done.started.unwrap(), done.ended.unwrap()));
            }
            for t in acme.sdk().list_tasks(&ns, &p, *run).await.unwrap() {
                all_tasks.push((t.started.unwrap(), t.ended.unwrap()));
            }
        }
    }
    assert_eq!(all_tasks.len(), 20);
    assert!(max_overlap(&all_tasks) <= 3, "more than 3 tasks of the tenant ran at once");
    assert!(max_overlap(&serial_spans) <= 2, "more than 2 runs of a parallelism-2 pipeline ran at once");
    for job in fake.job_ids() {
        assert_eq!(fake.starts(&job), 1, "{job} started more than once");
    }
    replicas[0].assert_queue_drained().await;
}

#[tokio::test]
async fn a_taken_over_task_whose_secrets_were_masked_resumes_its_log_at_the_raw_offset() {
    // Masking shortens the stored log (a 34-byte secret becomes `***`): the replica taking over
    // must resume at the scheduler's raw offset, not the stored length.
    const SECRET: &str = "hunter2-a-rather-long-secret-value";
    let database_url = fresh_database().await;
    let fake = Arc::new(FakeScheduler::default());
    // Both replicas share the state dir, as they share the log store and the secret keys.
    let dir = tempfile::tempdir().unwrap();
    let config_a = fast_config(database_url.clone(), dir.path());
    let mut config_b = fast_config(database_url, dir.path());
    config_b.bootstrap_token = config_a.bootstrap_token.clone();
    let mut a = spawn_replica(config_a, dir, Some(fake.clone())).await;
    let acme = a.tenant("acme").await;
    acme.namespace("builds").await;
    let lines: Vec<String> = (1..=12).map(|i| format!("{i} token $TOKEN")).collect();
    let mut command = vec!["lines".to_owned(), "0.25".to_owned()];
    command.extend(lines);
    acme.register(
        "builds",
        "masked",
        json!({"name": "M", "tasks": [{"id": "work", "image": "x", "command": command,
                                       "env": {"TOKEN": "secret{{ TOKEN }}"}}]}),
    )
    .await;
    let put = acme
        .request(
            "PUT",
            &format!("{}/secrets/TOKEN", gofer_tests::pipeline_path("builds", "masked")),
            Some(&json!({"value": SECRET})),
        )
        .await;
    assert_eq!(put.status, 201, "{put:?}");
    let token = acme.token.clone();
    let run = acme.start_run("builds", "masked").await;
    let (ns, p) = ids("builds", "masked");
    wait_until("replica A to copy a few masked lines", Duration::from_secs(10), || async {
        acme.sdk().task_logs(&ns, &p, run, &task("work")).await.is_ok_and(|log| log.contains("3 token ***"))
    })
    .await;
    a.kill().await;

    let b = spawn_replica(config_b, tempfile::tempdir().unwrap(), Some(fake.clone())).await;
    let acme_b = gofer_tests::TenantClient { app: &b, tenant: "acme".parse().unwrap(), token };
    let done = acme_b.wait_for_run("builds", "masked", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Successful);
    let job = format!("acme~builds~masked~{run}~work~1");
    assert_eq!(fake.starts(&job), 1, "re-attached, not dispatched again");
    let taken_over: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE run_id = $1 AND kind = 'task_taken_over'")
            .bind(run.get())
            .fetch_one(&b.db)
            .await
            .unwrap();
    assert_eq!(taken_over, 1);
    let log = acme_b.sdk().task_logs(&ns, &p, run, &task("work")).await.unwrap();
    let expected: String = std::iter::once(format!("started {job} attempt 1\n"))
        .chain((1..=12).map(|i| format!("{i} token ***\n")))
        .collect();
    assert_eq!(log, expected, "nothing repeated, nothing lost, nothing unmasked");
    b.assert_queue_drained().await;
}

/// Registers pipeline `wide` in namespace `builds` (created here): `siblings` quick tasks and a
/// `join` that needs each of them to succeed. Starts `runs` runs and waits until each succeeded.
async fn joined_runs(tenant: &gofer_tests::TenantClient<'_>, siblings: usize, runs: usize) -> Vec<RunId> {
    tenant.namespace("builds").await;
    let mut tasks: Vec<Value> =
        (0..siblings).map(|i| json!({"id": format!("part{i}"), "image": "x", "command": ["sleep", "0.1"]})).collect();
    let parents: serde_json::Map<String, Value> =
        (0..siblings).map(|i| (format!("part{i}"), json!("success"))).collect();
    tasks.push(json!({"id": "join", "image": "x", "command": ["exit", "0"], "depends_on": parents}));
    tenant.register("builds", "wide", json!({"name": "W", "tasks": tasks})).await;
    let mut started = Vec::new();
    for _ in 0..runs {
        started.push(tenant.start_run("builds", "wide").await);
    }
    for run in &started {
        let done = tenant.wait_for_run("builds", "wide", *run, Duration::from_secs(60)).await;
        assert_eq!(done.status, RunStatus::Successful, "run {run}");
    }
    started
}

/// How many end times several task executions share: successes recorded in one transaction share
/// its `now()`, those recorded alone never do.
async fn shared_transaction_ends(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT ended_at FROM task_executions GROUP BY ended_at HAVING count(*) > 1) batches",
    )
    .fetch_one(db)
    .await
    .expect("the end times")
}

#[tokio::test]
async fn successes_finishing_together_are_recorded_in_batches_each_exactly_once() {
    // Two replicas, wide runs of quick siblings and one task that waits for all of them: the
    // successes finish together, are recorded in batches (one transaction each), and every task
    // is recorded once, the dependant released once, each run completed once.
    let fake = Arc::new(FakeScheduler::default());
    let replicas = two_replicas(&fake, |_| {}).await;
    let acme = replicas[0].tenant("acme").await;
    const SIBLINGS: usize = 12;
    let runs = joined_runs(&acme, SIBLINGS, 6).await;
    let db = &replicas[0].db;
    let per_task: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT t.run_id, t.task_id,
                (SELECT count(*) FROM events e WHERE e.run_id = t.run_id AND e.task_id = t.task_id AND e.kind = 'task_completed'),
                (SELECT count(*) FROM usage_records u WHERE u.run_id = t.run_id AND u.task_id = t.task_id)
         FROM task_executions t ORDER BY 1, 2",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(per_task.len(), runs.len() * (SIBLINGS + 1));
    for (run, task, completed, metered) in &per_task {
        assert_eq!((*completed, *metered), (1, 1), "run {run} task {task}: completion events, usage rows");
    }
    let per_run: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT r.id,
                (SELECT count(*) FROM events e WHERE e.run_id = r.id AND e.task_id = 'join' AND e.kind = 'task_queued'),
                (SELECT count(*) FROM events e WHERE e.run_id = r.id AND e.kind = 'run_completed')
         FROM runs r ORDER BY 1",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(per_run.len(), runs.len());
    for (run, queued, completed) in &per_run {
        assert_eq!((*queued, *completed), (1, 1), "run {run}: the dependant queued, the run completed");
    }
    for job in fake.job_ids() {
        assert_eq!(fake.starts(&job), 1, "{job} started more than once");
    }
    // Successes recorded in one transaction share its `now()` as their end: some did.
    let shared_ends = shared_transaction_ends(db).await;
    assert!(shared_ends > 0, "no two successes were recorded in the same transaction");
    replicas[0].assert_queue_drained().await;
}

#[tokio::test]
async fn without_a_configured_limit_a_replica_over_a_cluster_scheduler_watches_64_tasks_at_once() {
    // `engine.max_parallel_tasks` unset: the scheduler's default. The fake scheduler keeps the
    // trait's default, that of a cluster (64); the local sandbox's is 16.
    assert_eq!(gofer_core::scheduler::CLUSTER_PARALLEL_TASKS, 64);
    let state_dir = tempfile::tempdir().unwrap();
    let config = fast_config(fresh_database().await, state_dir.path());
    assert_eq!(config.engine.max_parallel_tasks, None);
    let fake = Arc::new(FakeScheduler::default());
    let app = spawn_replica(config, state_dir, Some(fake.clone())).await;
    // The default plan's own limit (16 running tasks) is not what is measured here.
    sqlx::query("UPDATE plans SET max_concurrent_tasks = 100 WHERE id = 'default'").execute(&app.db).await.unwrap();
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    const WIDTH: usize = 24;
    let tasks: Vec<Value> =
        (0..WIDTH).map(|i| json!({"id": format!("part{i}"), "image": "x", "command": ["sleep", "1"]})).collect();
    acme.register("builds", "wide", json!({"name": "W", "tasks": tasks})).await;
    let run = acme.start_run("builds", "wide").await;
    let done = acme.wait_for_run("builds", "wide", run, Duration::from_secs(60)).await;
    assert_eq!(done.status, RunStatus::Successful);
    let spans = task_spans(&acme, "wide", run).await;
    assert_eq!(max_overlap(&spans), WIDTH, "every task of the run ran at once");
    app.assert_queue_drained().await;
}

#[tokio::test]
async fn successes_whose_batch_fails_are_each_recorded_alone() {
    // Every batch of more than one success fails here (a trigger refuses a statement inserting
    // several usage rows; a task recorded alone inserts one). Each such batch is rolled back
    // whole, and each of its successes is then recorded on its own, once.
    let fake = Arc::new(FakeScheduler::default());
    let replicas = two_replicas(&fake, |_| {}).await;
    let db = &replicas[0].db;
    sqlx::raw_sql(
        // A sequence counts the refusals: it is not rolled back with the batch.
        "CREATE SEQUENCE refused_batches;
         CREATE FUNCTION refuse_batches() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF (SELECT count(*) FROM inserted) > 1 THEN
                 PERFORM nextval('refused_batches');
                 RAISE EXCEPTION 'batches refused by the test';
             END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER refuse_batches AFTER INSERT ON usage_records REFERENCING NEW TABLE AS inserted
             FOR EACH STATEMENT EXECUTE FUNCTION refuse_batches();",
    )
    .execute(db)
    .await
    .unwrap();
    let acme = replicas[0].tenant("acme").await;
    joined_runs(&acme, 12, 3).await;
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM task_executions WHERE state = 'complete' AND status = 'successful'),
                (SELECT count(*) FROM usage_records),
                (SELECT count(*) FROM events WHERE kind = 'task_completed')",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(counts, (39, 39, 39), "successful executions, usage rows, completion events");
    // Each success was recorded alone: no two share a transaction's `now()`.
    let shared_ends = shared_transaction_ends(db).await;
    assert_eq!(shared_ends, 0);
    let refused: bool = sqlx::query_scalar("SELECT is_called FROM refused_batches").fetch_one(db).await.unwrap();
    assert!(refused, "no batch was tried, so none was refused");
    replicas[0].assert_queue_drained().await;
}
