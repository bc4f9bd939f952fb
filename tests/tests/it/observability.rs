//! Prometheus metrics at `/metrics`: request counts by route pattern, task outcomes, dispatch
//! latency and the queue sampled from Postgres.

use std::time::Duration;

use gofer_core::RunStatus;
use gofer_tests::spawn_app;
use serde_json::json;

/// The value of the first sample of `metric` whose labels contain every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(metric) && line[metric.len()..].starts_with(['{', ' ']))
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_report_tasks_and_the_queue() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "hello", "say", "x", &["true"]).await;
    let run = acme.start_run("builds", "hello").await;
    let done = acme.wait_for_run("builds", "hello", run, Duration::from_secs(30)).await;
    assert_eq!(done.status, RunStatus::Successful);
    // A refused request is counted by its problem code.
    assert_eq!(acme.request("GET", "/api/v1/namespaces/builds/pipelines/nope", None).await.status, 404);

    let anonymous = app.request("GET", "/metrics", None, None).await;
    assert_eq!(anonymous.status, 401);
    let scrape =
        app.http.get(format!("{}/metrics", app.address)).bearer_auth(&app.operator_token).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = scrape.text().await.unwrap();

    let route = r#"route="/api/v1/namespaces/{namespace}/pipelines/{pipeline}/runs""#;
    let posted = sample(&text, "gofer_http_requests_total", &[route, r#"method="POST""#, r#"status="201""#]);
    assert!(posted.is_some_and(|n| n >= 1.0), "run starts counted by route pattern, not path:\n{text}");
    assert!(!text.contains("pipelines/hello/runs"), "concrete paths never become labels");
    assert!(sample(&text, "gofer_http_request_duration_seconds_count", &[route]).is_some_and(|n| n >= 1.0));
    assert!(
        sample(&text, "gofer_problem_responses_total", &[r#"code="pipeline_not_found""#]).is_some_and(|n| n >= 1.0)
    );
    assert!(sample(&text, "gofer_task_outcomes_total", &[r#"status="successful""#]).is_some_and(|n| n >= 1.0));
    assert!(sample(&text, "gofer_dispatch_latency_seconds_count", &[]).is_some_and(|n| n >= 1.0));
    // The run's successes went through the finisher: at least one batch, at least one task per batch.
    let batches = sample(&text, "gofer_success_batches_total", &[]).unwrap_or(0.0);
    let batched = sample(&text, "gofer_success_batch_tasks_total", &[]).unwrap_or(0.0);
    assert!(batches >= 1.0 && batched >= batches, "{batches} batches of {batched} successes:\n{text}");
    // Nothing is queued any more: every known reason reads 0.
    assert_eq!(sample(&text, "gofer_queue_depth", &[r#"reason="waiting_for_capacity""#]), Some(0.0));
    assert_eq!(sample(&text, "gofer_queue_depth", &[r#"reason="waiting_for_quota""#]), Some(0.0));
}

#[tokio::test]
async fn pipeline_stats_count_outcomes_and_durations_of_the_last_7_and_30_days() {
    let app = spawn_app().await;
    let acme = app.tenant("acme").await;
    acme.namespace("builds").await;
    acme.register_one_task_in_image("builds", "mixed", "work", "x", &["sh", "-c", "exit $CODE"]).await;
    let path = "/api/v1/namespaces/builds/pipelines/mixed/stats";
    let empty = acme.request("GET", path, None).await;
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(empty.body["stats"]["last_7_days"]["runs"], 0);
    assert!(empty.body["stats"]["last_7_days"]["success_rate"].is_null());
    for code in ["0", "0", "0", "1"] {
        let run = acme
            .request(
                "POST",
                "/api/v1/namespaces/builds/pipelines/mixed/runs",
                Some(&json!({"variables": {"CODE": code}})),
            )
            .await;
        assert_eq!(run.status, 201, "{run:?}");
        let id = run.body["run"]["id"].as_i64().unwrap();
        acme.wait_for_run("builds", "mixed", gofer_core::RunId::from_i64(id), Duration::from_secs(30)).await;
    }
    // A run that ended 10 days ago counts in the 30-day window only (rollup rows are per day).
    sqlx::query(
        "INSERT INTO pipeline_daily_stats (tenant_id, namespace_id, pipeline_id, day, runs, successful, failed,
                                           cancelled, duration_sum_s, duration_max_s, duration_buckets)
         VALUES ('acme', 'builds', 'mixed', (now() AT TIME ZONE 'UTC')::date - 10, 1, 0, 0, 1, 900, 900,
                 '{0,0,0,0,0,0,0,0,0,1,0,0,0}')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let stats = acme.request("GET", path, None).await.body["stats"].clone();
    let week = &stats["last_7_days"];
    assert_eq!(
        (week["runs"].as_u64(), week["successful"].as_u64(), week["failed"].as_u64()),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(week["success_rate"].as_f64(), Some(0.75));
    let p50 = week["duration_p50_s"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= 1.0, "sandboxed `exit` runs take well under a second: {week}");
    let month = &stats["last_30_days"];
    assert_eq!((month["runs"].as_u64(), month["cancelled"].as_u64()), (Some(5), Some(1)));
    assert_eq!(month["duration_max_s"].as_f64(), Some(900.0));
    // Missing parents answer like every pipeline route.
    let missing = acme.request("GET", "/api/v1/namespaces/builds/pipelines/nope/stats", None).await;
    assert_eq!((missing.status, missing.body["code"].as_str()), (404, Some("pipeline_not_found")));
}
