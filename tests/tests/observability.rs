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
    acme.register("builds", "hello", json!({"name": "H", "tasks": [{"id": "say", "image": "x", "command": ["true"]}]}))
        .await;
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
    // Nothing is queued any more: every known reason reads 0.
    assert_eq!(sample(&text, "gofer_queue_depth", &[r#"reason="waiting_for_capacity""#]), Some(0.0));
    assert_eq!(sample(&text, "gofer_queue_depth", &[r#"reason="waiting_for_quota""#]), Some(0.0));
}
