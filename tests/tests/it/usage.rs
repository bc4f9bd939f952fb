//! Usage reports: a tenant reads its own usage per day or per pipeline, paginated; operators read
//! any tenant's, also as CSV.

use std::sync::Arc;
use std::time::Duration;

use gofer_tests::fake_scheduler::FakeScheduler;
use gofer_tests::{TestApp, fresh_database, spawn_replica, test_config};
use serde_json::json;

async fn app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = Arc::new(FakeScheduler::default());
    spawn_replica(test_config(fresh_database().await, dir.path()), dir, Some(fake)).await
}

#[tokio::test]
async fn tenants_read_their_usage_by_day_and_pipeline_and_operators_export_csv() {
    let app = app().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    acme.namespace("builds").await;
    let sleepy = |id: &str| json!({"id": id, "image": "x", "command": ["sleep", "0.2"], "cpu": 500, "memory_mb": 100});
    acme.register("builds", "two", json!({"name": "T", "tasks": [sleepy("one"), sleepy("two")]})).await;
    acme.register("builds", "solo", json!({"name": "S", "tasks": [sleepy("one")]})).await;
    acme.run_to_completion("builds", "two", Duration::from_secs(30)).await;
    acme.run_to_completion("builds", "solo", Duration::from_secs(30)).await;

    let by_pipeline = acme.request("GET", "/api/v1/usage?group_by=pipeline&limit=1", None).await;
    assert_eq!(by_pipeline.status, 200, "{by_pipeline:?}");
    let items = by_pipeline.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["key"].as_str(), items[0]["attempts"].as_i64()), (Some("builds/solo"), Some(1)));
    let seconds = items[0]["task_seconds"].as_f64().unwrap();
    assert!((0.2..5.0).contains(&seconds), "{seconds}");
    let cpu = items[0]["cpu_core_seconds"].as_f64().unwrap();
    assert!((cpu - seconds * 0.5).abs() < 0.01, "half a core for {seconds}s: {cpu}");
    let cursor = by_pipeline.body["next_cursor"].as_str().unwrap();
    let next = acme.request("GET", &format!("/api/v1/usage?group_by=pipeline&limit=1&cursor={cursor}"), None).await;
    assert_eq!(next.body["items"][0]["key"], "builds/two");
    assert_eq!(next.body["items"][0]["attempts"], 2);
    assert!(next.body["next_cursor"].is_null());

    let by_day = acme.request("GET", "/api/v1/usage", None).await;
    let today = time::OffsetDateTime::now_utc().date().to_string();
    assert_eq!(by_day.body["group_by"], "day");
    assert_eq!(by_day.body["items"][0]["key"].as_str(), Some(today.as_str()));
    assert_eq!(by_day.body["items"][0]["attempts"], 3);
    let month = &by_day.body["this_month"];
    assert_eq!((month["plan"].as_str(), month["task_seconds_allowed"].as_u64()), (Some("default"), Some(1_000_000)));
    assert!(month["task_seconds_used"].as_f64().unwrap() >= 0.6, "{month}");
    let past = acme.request("GET", "/api/v1/usage?from=2020-01-01&to=2020-02-01T00:00:00Z", None).await;
    assert_eq!(past.body["items"], json!([]), "another period");

    for (bad, status, code) in [
        ("group_by=week", 400, "invalid_query"),
        ("from=yesterday", 400, "invalid_query"),
        ("from=2026-2-1", 400, "invalid_query"),
        ("from=2026-02-01&to=2026-01-01", 422, "empty_period"),
        ("format=xml", 400, "invalid_query"),
        ("format=csv", 403, "forbidden"),
    ] {
        let answer = acme.request("GET", &format!("/api/v1/usage?{bad}"), None).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{bad}: {answer:?}");
    }
    let theirs = globex.request("GET", "/api/v1/usage", None).await;
    assert_eq!(theirs.body["items"], json!([]), "another tenant's usage is never seen");

    let op = Some(app.operator_token.as_str());
    let json = app.request("GET", "/api/v1/tenants/acme/usage?group_by=pipeline", op, None).await;
    assert_eq!(json.body["items"].as_array().unwrap().len(), 2);
    let csv = app.request("GET", "/api/v1/tenants/acme/usage?group_by=pipeline&format=csv", op, None).await;
    assert_eq!(csv.status, 200);
    assert!(csv.content_type.starts_with("text/csv"), "{}", csv.content_type);
    let text = csv.body["text"].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "tenant,group_by,key,attempts,task_seconds,cpu_core_seconds,memory_mb_seconds");
    assert!(lines[1].starts_with("acme,pipeline,builds/solo,1,"), "{text}");
    assert!(lines[2].starts_with("acme,pipeline,builds/two,2,"), "{text}");
    let missing = app.request("GET", "/api/v1/tenants/nobody/usage", op, None).await;
    assert_eq!((missing.status, missing.code()), (404, "tenant_not_found"));
}
